"""The `console` bench section: what the search console adds to a search. The console's Search
page round trip (HTTP to the app on this host, the search through the client package, each
result's catalog record for its price, the page rendered) against the bare gRPC search the page
makes (the same text, 12 results, the page's facets), one at a time, interleaved per round;
median (min-max) of the rounds' p50s. The page runs twice per round over the same texts: first
with the console's records forgotten (one `products` call a page for the 12 cards' records), then again (records kept for
the unchanged catalog sequence: the search and the page alone).
"""
from __future__ import annotations

import http.client
import random
import statistics
import threading
import time
import urllib.parse

from clients.search import SearchClient
from productsearch.console.app import create_app
from productsearch.console.queries import PAGE_SIZE, Query
from productsearch.control.processes import free_ports
from loadtest.workload import DEMO_CATALOG

REQUESTS = 100  # per variant and round


def start_console(grpc_url: str):
    """The console app in a uvicorn thread on a free port; (server, port, the app's Console)."""
    import uvicorn

    (port,) = free_ports(1)
    app = create_app(grpc_url, [DEMO_CATALOG])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    return server, port, app.state.console


def signed_in(port: int, key: str) -> tuple[http.client.HTTPConnection, str]:
    """A kept-alive connection to the console and its session cookie (the key posted once)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/signin", urllib.parse.urlencode({"key": key}),
                       {"content-type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("set-cookie", "").split(";")[0]
    if response.status != 303 or not cookie:
        raise RuntimeError(f"sign-in refused ({response.status})")
    return connection, cookie


def page_search(connection: http.client.HTTPConnection, cookie: str, text: str) -> float:
    """One Search page round trip (ms); the page must hold result cards."""
    start = time.perf_counter()
    connection.request("GET", "/?" + urllib.parse.urlencode({"q": text, "go": "1"}), headers={"cookie": cookie})
    response = connection.getresponse()
    body = response.read()
    millis = (time.perf_counter() - start) * 1000
    if response.status != 200 or b'class="card' not in body:
        raise RuntimeError(f"the console answered {response.status} without results for {text!r}")
    return millis


def grpc_search(client: SearchClient, text: str) -> float:
    """The page's own search, bare (ms)."""
    query = Query(text=text)
    start = time.perf_counter()
    client.search(text, top_k=PAGE_SIZE, filters=query.filters(), relevance=query.relevance())
    return (time.perf_counter() - start) * 1000


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def console_section(server, workload, settings, log=print, rounds: int = 3) -> str:
    console, port, app = start_console(server.grpc_url)
    try:
        connection, cookie = signed_in(port, server.key)
        with SearchClient(server.grpc_url, timeout_s=30, key=server.key, key_file=None) as client:
            def fresh_page(text: str) -> float:
                app.records.forget()
                return page_search(connection, cookie, text)

            variants = {"bare gRPC search (client package)": lambda text: grpc_search(client, text),
                        "console page, records fetched (one `products` call)": fresh_page,
                        "console page, records kept (same catalog sequence)": lambda text: page_search(connection, cookie, text)}
            rng = random.Random(0)
            for measure in variants.values():  # warm-up, not counted
                for _ in range(20):
                    measure(rng.choice(workload.texts))
            p50s: dict[str, list[float]] = {name: [] for name in variants}
            for round_no in range(rounds):
                texts = [rng.choice(workload.texts) for _ in range(REQUESTS)]
                for text in texts:  # untimed: the scorer keeps each text's lexical hits, so the first
                    grpc_search(client, text)  # variant to send a text would pay for all of them
                for name, measure in variants.items():
                    p50 = statistics.median(measure(text) for text in texts)
                    p50s[name].append(p50)
                    log(f"round {round_no + 1} {name}: p50 {p50:.1f} ms")
        connection.close()
    finally:
        console.should_exit = True
    bare = p50s[next(iter(variants))]
    lines = ["| variant | p50 ms | p50 - bare gRPC, ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {spread(v)} | {spread([p - b for p, b in zip(v, bare)]) if v is not bare else ''} |"
              for name, v in p50s.items()]
    lines += ["",
              f"Text queries from the workload, one at a time, {REQUESTS} per variant and round (the same texts for both), "
              f"after 20 warm-up calls of each; each round's texts searched once untimed first (the scorer caches a "
              f"text's lexical hits: the first variant to send it would pay for all); {rounds} rounds, median (min-max) of the rounds' p50. The page: HTTP "
              f"keep-alive to the console (uvicorn, in this process), its search ({PAGE_SIZE} results, facets "
              f"{', '.join(Query().relevance().facets)}), the {PAGE_SIZE} results' catalog records (their prices: one "
              "`products` call when not kept) and the rendered page."]
    return "\n".join(lines)
