"""The search console in a real browser (Playwright driving Debian's chromium, headless) against
the session tritonserver: the console app runs in this process (uvicorn in a thread) and talks
to the server only through the client package, as any shop backend does.

CONSOLE_SCREENSHOTS=DIR also saves the search and compare pages (1280x900) there (`make
console-screenshots` writes docs/)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import DEMO_CATALOG
from tests.integration.browser import browser  # noqa: F401 (a fixture)
from tests.integration.console_app import running_console, screenshot, sign_in


@pytest.fixture(scope="module")
def console(triton):
    """The console app on a free port, for the session server; its address."""
    with running_console(triton.grpc_url) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, console, triton):
    """A page signed in with the session server's admin key (the key typed into the form only)."""
    page = sign_in(browser, console, triton.key)
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def catalog():
    return {p["id"]: p for p in map(json.loads, DEMO_CATALOG.read_text().splitlines())}


def search(page, text: str = "", **fields) -> None:
    page.goto("/")
    page.fill("#q", text)
    for name, value in fields.items():
        page.fill(f"#{name}", str(value))
    page.click("#go")
    page.wait_for_load_state()


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.id)")


def card_categories(page) -> list[str]:
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.category)")


def test_the_key_stays_on_the_server(page, triton):
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "console_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert triton.key not in session["value"]
    for path in ("/", "/status", "/catalog", "/compare"):
        page.goto(path)
        assert triton.key not in page.content()


def test_a_wrong_key_is_refused(browser, console):
    context = browser.new_context(base_url=console)
    page = context.new_page()
    page.goto("/signin")
    page.fill("#key", "psk_nobody_notasecret")
    page.click("button[type=submit]")
    error = page.locator("#error").inner_text()
    assert "UNAUTHENTICATED" in error or "PERMISSION_DENIED" in error, error
    page.goto("/")
    assert page.url.endswith("/signin")  # no session for a refused key
    context.close()


def test_a_chinese_query_shows_cards_with_photos(page, catalog):
    search(page, "红色T恤")
    ids = card_ids(page)
    assert len(ids) == 12
    assert sum(catalog[i]["category"] == "t-shirt" for i in ids) >= 8
    # the photos are lazy (loaded when scrolled to) and load after the page: show each, wait for all
    for k in range(page.locator("#results .card img").count()):
        page.locator("#results .card img").nth(k).scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('#results .card img')].every(i => i.complete)",
                           timeout=30_000)
    widths = page.eval_on_selector_all("#results .card img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert all(w > 0 for w in widths), widths  # every photo loaded from the console
    assert page.locator("#results .card .price").count() == 12  # prices from the catalog, per result
    screenshot(page, "console-search.png")


def test_a_photo_upload_finds_its_category(page, catalog):
    product = catalog["P00005"]
    page.goto("/")
    page.set_input_files("#photo", str(DEMO_CATALOG.parent / product["image"]))  # the script searches at once
    page.wait_for_selector("#results .card")
    assert page.locator("#query-photo").count() == 1
    categories = [catalog[i]["category"] for i in card_ids(page)]
    assert categories.count(product["category"]) >= 8, categories
    page.click("#next")  # the photo is kept for the next page
    page.wait_for_selector("#results .card")
    assert page.locator("#query-photo").count() == 1 and "page 2" in page.inner_text("#summary")


def test_a_bad_upload_shows_the_services_message(page, tmp_path):
    bad = tmp_path / "not-a-photo.png"
    bad.write_bytes(b"this is text, not an image")
    page.goto("/")
    page.set_input_files("#photo", str(bad))
    page.wait_for_selector("#error")
    error = page.inner_text("#error")
    assert "INVALID_ARGUMENT" in error and "Traceback" not in page.content(), error
    search(page, "")  # an empty query: the service's words again
    assert "INVALID_ARGUMENT" in page.inner_text("#error")


def test_a_facet_narrows_the_search(page):
    search(page, "red")
    facet = page.locator("#facets .facet[data-facet=category]").nth(1)
    value, count = facet.get_attribute("data-value"), int(facet.locator(".count").inner_text())
    before = sum(int(c) for c in page.locator("#facets .facet[data-facet=category] .count").all_inner_texts())
    assert count < before
    facet.click()
    page.wait_for_load_state()
    after = page.locator("#facets .facet[data-facet=category]")
    assert after.count() == 1 and after.get_attribute("data-value") == value
    assert int(after.locator(".count").inner_text()) == count
    assert set(card_categories(page)) == {value}
    assert page.input_value("#category") == value


def test_explain_shows_the_breakdown(page):
    search(page, "blue mug")
    assert page.locator(".explain").count() == 0
    page.check("#explain")
    page.click("#go")
    page.wait_for_load_state()
    first = page.locator("#results .card .explain").first
    text = first.inner_text()
    assert "vector" in text and "lexical" in text and "boost" in text and "rules" in text


def test_more_like_this(page, catalog):
    search(page, "black handbag")
    first = card_ids(page)[0]
    page.locator("#results .card .like").first.click()
    page.wait_for_selector("#results .card")
    ids = card_ids(page)
    assert first not in ids and f"More like {first}" in page.inner_text(".like-note")
    assert sum(catalog[i]["category"] == catalog[first]["category"] for i in ids) >= 8


def test_compare_two_settings(page):
    page.goto("/compare")
    assert "No experiment is running for shop default" in page.inner_text("#no-experiment")
    assert page.locator("#against-arms").count() == 0  # no arms to offer
    page.fill("#q", "条纹连衣裙")
    page.fill("#lexical_a", "0")
    page.fill("#lexical_b", "1")
    page.click("#go")
    page.wait_for_selector("#overlap")
    overlap = float(page.inner_text("#overlap strong"))
    a = page.eval_on_selector_all("#side-a .card", "cards => cards.map(c => c.dataset.id)")
    b = page.eval_on_selector_all("#side-b .card", "cards => cards.map(c => c.dataset.id)")
    assert len(a) == len(b) == 10
    assert overlap == pytest.approx(len(set(a) & set(b)) / 10)
    rows = page.locator("#moved tbody tr")
    assert rows.count() == 10 + len(set(a) - set(b))
    screenshot(page, "console-compare.png")


def test_a_price_edit_changes_the_filtered_search(page, catalog, catalog_client):
    pid = "P00007"
    product = catalog[pid]
    try:
        search(page, product["title"], price_max=1)
        assert pid not in card_ids(page)
        page.goto(f"/catalog?id={pid}")
        page.fill("#field-price", "0.5")
        page.click("#save")
        page.wait_for_selector("#done")
        assert "set price" in page.inner_text("#done") and int(page.inner_text("#sequence")) > 0
        assert page.locator(f"#results .card.highlight[data-id={pid}]").count() == 1  # the next search finds it
        search(page, product["title"], price_max=1)
        assert pid in card_ids(page)
        assert all(float(p) <= 1 for p in page.eval_on_selector_all("#results .card", "c => c.map(x => x.dataset.price)"))
    finally:
        catalog_client.update_fields({pid: {"price": product["price"]}})


def test_the_console_lives_through_the_service_restarting(browser, triton):
    """The service's address goes away (connections dropped, then refused) and comes back: the
    page says the service cannot be reached, never a stack trace, and the same signed-in session
    searches again once the service answers, without restarting the console."""
    from productsearch.control.processes import free_ports
    from tests.polling import wait_until
    from tests.tcp_relay import TcpRelay

    (relay_port,) = free_ports(1)
    host, port = triton.grpc_url.rsplit(":", 1)
    relay = TcpRelay(relay_port, (host, int(port))).start()
    try:
        with running_console(relay.url, timeout_s=3.0) as console:
            page = sign_in(browser, console, triton.key)
            search(page, "red dress")
            assert len(card_ids(page)) == 12
            relay.stop()  # the service restarts: its connections drop and its port refuses
            search(page, "blue mug")
            error = page.inner_text("#error")
            assert "UNAVAILABLE" in error or "could not be reached" in error, error
            assert "Traceback" not in page.content() and card_ids(page) == []
            page.goto("/status")
            assert "Traceback" not in page.content()
            relay.start()  # the service is back

            def answers() -> bool:
                search(page, "blue mug")
                return len(card_ids(page)) == 12

            wait_until(answers, 60, "the console never searched again after the service came back")
            assert page.locator("#error").count() == 0
            page.context.close()
    finally:
        relay.stop()


def test_the_background_console_starts_and_stops_by_pid(triton, tmp_path):
    """`make serve` / `make stop`: the console's own process, found again by its PID file."""
    import urllib.request

    from productsearch.control.console import main as console_main
    from productsearch.control.processes import free_ports, pid_alive

    (port,) = free_ports(1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "triton.json").write_text(json.dumps({"grpc_url": triton.grpc_url, "pid": triton.pid}))
    args = ["--run-dir", str(run_dir), "--port", str(port)]
    assert console_main(["start", *args]) == 0
    pid = int((run_dir / "console" / "console.pid").read_text())
    try:
        assert console_main(["start", *args]) == 0 and int((run_dir / "console" / "console.pid").read_text()) == pid
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/signin", timeout=10).read().decode()
        assert 'name="key"' in page
        assert str(triton.key) not in open(f"/proc/{pid}/cmdline").read()  # no key in argv
    finally:
        assert console_main(["stop", *args]) == 0
    assert not pid_alive(pid) and not (run_dir / "console" / "console.pid").exists()
