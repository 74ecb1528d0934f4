"""A shop name is checked by a full match: a trailing newline (which `$` lets through) or any other
character outside the name's alphabet is refused, by the check and by every store that opens one."""
import pytest

from productsearch.catalog.records import RecordError
from productsearch.catalog.rows import check_shop
from productsearch.catalog.store import catalog_url, open_store


@pytest.mark.parametrize("bad", ["default\n", "a\nb", "", "-x", "a/b", "x" * 65, "a b", "\ndefault"])
def test_a_bad_shop_name_is_refused(bad):
    with pytest.raises(RecordError, match="shop name"):
        check_shop(bad)


@pytest.mark.parametrize("good", ["default", "a", "Shop_1.eu-west", "x" * 64])
def test_a_good_shop_name_passes(good):
    assert check_shop(good) == good


def test_the_store_refuses_a_name_with_a_trailing_newline(tmp_path):
    with pytest.raises(RecordError, match="shop name"):
        open_store(catalog_url(tmp_path), "default\n", create=True)
    assert not list(tmp_path.rglob("*\n*"))
