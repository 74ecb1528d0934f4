"""Click popularity as the `popularity` boost, through the public contract on the session
tritonserver: a shop opts in with a write key (`set_popularity`, read-your-writes by its
SEQUENCE), its shoppers' events then lift what they click and buy, recomputed while serving; a
shop that did not opt in, or another shop, is not moved; bad settings and wrong keys are refused."""
from __future__ import annotations

import pytest

from clients.catalog import CatalogClient
from clients.contract import Event, Product, ReadOptions, Relevance
from clients.events import EventsClient
from clients.keys import KeyClient
from clients.search import SearchClient
from productsearch.control.admin import ADMIN_KEY_ENV
from tests.polling import wait_until
from tests.refusals import refused

pytestmark = pytest.mark.integration

OPTED, OTHER = "popular-a", "popular-b"
PRODUCTS = [Product(f"POP-{i}", title, None, {"category": "mug", "price": 10.0 + i})
            for i, title in enumerate(["blue ceramic coffee mug", "red enamel camping mug", "white porcelain tea mug",
                                       "black travel mug with lid"])]
BOOST = 50.0  # big enough that popularity decides the order among four mugs
QUERY = "mug"


class PopularShops:
    """Two shops with the same four mugs, a search and a write key of each."""

    def __init__(self, server):
        self.server = server
        with KeyClient(server.grpc_url, timeout_s=30, key=server.key) as admin:
            for shop in (OPTED, OTHER):
                admin.create_shop(shop)
                self.sequence = max(admin.upsert(PRODUCTS, shop=shop))
            self.search_keys = {s: admin.create("search", [s])["secret"] for s in (OPTED, OTHER)}
            self.write_keys = {s: admin.create("write", [s])["secret"] for s in (OPTED, OTHER)}

    def search(self, shop: str, sequence: int | None = None, boost: float = BOOST):
        with SearchClient(self.server.grpc_url, timeout_s=30, retries=0, key=self.search_keys[shop]) as client:
            return client.search(QUERY, top_k=len(PRODUCTS), read=ReadOptions(shop, sequence or self.sequence),
                                 relevance=Relevance(lexical_weight=0.0, boosts={"popularity": boost}, explain=True))

    def shop_events(self, shop: str, product: str, event: str, searches: int) -> None:
        """`searches` shoppers each search and do `event` on `product`."""
        events = [Event(self.search(shop).query_id, event, product, shop=shop, value=20.0) for _ in range(searches)]
        with EventsClient(self.server.grpc_url, timeout_s=30, retries=0, key=self.search_keys[shop]) as client:
            assert client.record(events) == ["recorded"] * searches

    def catalog(self, shop: str, key: str | None = None) -> CatalogClient:
        return CatalogClient(self.server.grpc_url, timeout_s=30, retries=0, key=key or self.write_keys[shop])


@pytest.fixture(scope="module")
def popular(triton):
    return PopularShops(triton)


def factors(found) -> dict[str, float]:
    return {pid: e["boost_factor"] for pid, e in zip(found.ids, found.explanations)}


def test_events_lift_what_shoppers_buy_only_in_the_shop_that_opted_in(popular):
    before = popular.search(OPTED)
    last = before.ids[-1]  # the mug the vectors rank last; shoppers buy it
    assert set(factors(before).values()) == {1.0}  # no popularity field: the boost is neutral
    for shop in (OPTED, OTHER):
        popular.shop_events(shop, last, "purchase", 3)
    assert popular.search(OPTED).ids == before.ids  # events alone change nothing: opt-in per shop
    with popular.catalog(OPTED) as catalog:
        assert catalog.popularity(OPTED)["popularity"] == {"source": "catalog"}
        sequence = catalog.set_popularity({"source": "events", "half_life_days": 7, "refresh_s": 1}, OPTED)
        shown = catalog.popularity(OPTED)
    assert shown["popularity"]["source"] == "events" and shown["products"][0]["id"] == last
    after = popular.search(OPTED, sequence)  # read-your-writes: the very next search uses the events
    assert after.ids[0] == last and factors(after)[last] == pytest.approx(1 + BOOST)
    assert all(f == 1.0 for pid, f in factors(after).items() if pid != last)
    assert popular.search(OTHER).ids == before.ids  # the same events in a shop that did not opt in
    # recomputed while serving: another mug gets more (and more valuable) events; within refresh_s
    # (1 s) plus a refresh it overtakes, with no write and no restart
    runner_up = before.ids[0]
    popular.shop_events(OPTED, runner_up, "purchase", 3)
    popular.shop_events(OPTED, runner_up, "click", 4)
    lifted = wait_until(lambda: (r := popular.search(OPTED)).ids[0] == runner_up and r, 20,
                        "the refreshed popularity", every_s=0.3)
    assert factors(lifted)[runner_up] == pytest.approx(1 + BOOST)
    assert 1.0 < factors(lifted)[last] < 1 + BOOST  # 15 of 19 points: still lifted, less
    with popular.catalog(OPTED) as catalog:  # back to the catalog's field: the events are ignored again
        back = catalog.set_popularity({"source": "catalog"}, OPTED)
    assert popular.search(OPTED, back).ids == before.ids


def test_bad_settings_and_wrong_keys_are_refused_and_the_server_lives_on(popular, monkeypatch):
    with popular.catalog(OPTED) as catalog:
        for setting, words in [({"source": "clicks"}, "source must be one of"),
                               ({"source": "events", "half_life_days": 0}, "half_life_days must be a number"),
                               ({"source": "events", "weights": {"view": 1}}, "weights maps event kinds"),
                               ({"source": "events", "weights": {"click": 0}}, "at least one event kind"),
                               ({"source": "events", "refresh_s": "soon"}, "refresh_s must be a number"),
                               ({"source": "catalog", "half_life_days": 3}, "takes no other field"),
                               ({"source": "events", "decay": 1}, "unknown fields ['decay']")]:
            refused(lambda: catalog.set_popularity(setting, OPTED), "INVALID_ARGUMENT", words)
        refused(lambda: catalog.set_popularity({"source": "events"}, OTHER), "PERMISSION_DENIED", OTHER)
        refused(lambda: catalog.popularity(OPTED, top=0), "INVALID_ARGUMENT", "popularity takes")
    with popular.catalog(OPTED, key=popular.search_keys[OPTED]) as reader:  # a search key reads no analytics
        refused(lambda: reader.popularity(OPTED), "PERMISSION_DENIED", "write")
        refused(lambda: reader.set_popularity({"source": "events"}, OPTED), "PERMISSION_DENIED", "write")
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    with CatalogClient(popular.server.grpc_url, timeout_s=30, retries=0, key_file=None) as anonymous:
        refused(lambda: anonymous.set_popularity({"source": "events"}, OPTED), "UNAUTHENTICATED", "key")
    assert popular.search(OPTED).ids  # the server lives on
