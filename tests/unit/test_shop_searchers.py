"""The scorer keeps at most `max_shops` shop searchers (least recently used out first) and closes
one idle past `idle_s`; the default shop stays; an evicted shop opens again on its next use."""
import pytest

from productsearch.runtime.shop_searchers import ShopSearchers


class Searcher:
    def __init__(self, shop):
        self.shop, self.closed = shop, False

    def close(self):
        self.closed = True


@pytest.fixture
def clock():
    now = [0.0]
    return now


def searchers(clock, max_shops=3, idle_s=100.0):
    opened = []

    def open_searcher(shop):
        opened.append(Searcher(shop))
        return opened[-1]
    return ShopSearchers(open_searcher, max_shops, idle_s, "default", clock=lambda: clock[0], log=lambda m: None), opened


def test_the_least_recently_used_shop_goes_first_beyond_the_bound(clock):
    cache, opened = searchers(clock)
    for shop in ("default", "a", "b"):
        cache.get(shop)
    cache.get("a")  # b is now the least recently used but default (pinned)
    cache.get("c")
    assert list(cache.shops) == ["default", "a", "c"]
    assert [s.shop for s in opened if s.closed] == ["b"]
    again = cache.get("b")  # opened again
    assert again is opened[-1] and not again.closed and len(cache.shops) == 3


def test_an_idle_shop_is_closed_and_the_default_shop_never(clock):
    cache, opened = searchers(clock, max_shops=10, idle_s=100.0)
    cache.get("default")
    cache.get("a")
    clock[0] = 50.0
    cache.get("b")
    clock[0] = 120.0
    cache.get("b")
    assert list(cache.shops) == ["default", "b"]
    assert [s.shop for s in opened if s.closed] == ["a"]


def test_the_shop_asked_for_is_never_the_one_evicted(clock):
    cache, opened = searchers(clock, max_shops=1)
    cache.get("default")
    searcher = cache.get("x")
    assert not searcher.closed and "x" in cache.shops
    cache.get("y")
    assert searcher.closed and list(cache.shops) == ["default", "y"]


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_shops"):
        ShopSearchers(Searcher, 0, 10.0)
