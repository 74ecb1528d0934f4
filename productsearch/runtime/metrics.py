"""The service's own Prometheus metrics (`productsearch_*`), served on Triton's metrics endpoint
beside Triton's per-model ones, through the python backend's custom metrics API
(`pb_utils.MetricFamily`: COUNTER, GAUGE, HISTOGRAM; the stub in our 2.51 wheel has all three).

Cheap on the hot path: a model adds to plain in-process sums (`add`, `set`, `observe`: a dict
update under a lock); a daemon thread hands them to Triton every `PRODUCTSEARCH_METRICS_FLUSH_S`
(default 1 s; each metric call of the API is a message to the Triton process), so a batch costs
no IPC at all, and gauges (catalog lag) stay fresh while no searches come.
Why every series carries its model instance and a `load` label (the stub's process id): Triton
2.41 keeps one reference count per stub for a series that several stubs share by identical labels,
and the first stub to drop it frees it under the others (triton-inference-server/server#8663,
open). A reload (a new config, or the same one again) loads the new stubs before it unloads the
old, so with shared labels the old stubs' unload freed the new stubs' series and tritonserver died
at their next flush (SIGSEGV, or "malloc(): unaligned fastbin chunk" later; a CI run lost its
session server that way). No two live stubs share a series now. The price: after a stub restart
(the supervisor reloading a dead stub) the new stub counts in new series, and Triton keeps the
dead stub's last values beside them (its counters stop; rate()/increase() over the sum are right;
read gauges with max by the labels you want). A tritonserver restart starts every counter at 0.

Cardinality is bounded: labels are the model, its generation, its instance and load, the shop (the first
`PRODUCTSEARCH_METRICS_MAX_SHOPS`, default 50, a process sees keep their name, later ones are
folded into `other`) and small closed sets (kind, stage, reason). No product id, query text or key
is ever a label. Outside Triton (unit tests, in-process benchmarks) there is no pb_utils, and
every call is a no-op; PRODUCTSEARCH_METRICS=0 turns them off inside Triton too, and a model's
config parameter `metrics` "0" turns off that model's (the overhead benchmark reloads with it).
"""
from __future__ import annotations

import os
import threading
from collections import defaultdict

OTHER_SHOP = "other"
UNKNOWN_SHOP = "unknown"  # a request refused before its SHOP was read
MAX_SHOPS = int(os.environ.get("PRODUCTSEARCH_METRICS_MAX_SHOPS", "50"))
FLUSH_S = float(os.environ.get("PRODUCTSEARCH_METRICS_FLUSH_S", "1.0"))
# seconds: 0.5 ms .. 5 s, the scorer's stages (tens of us) and a catalog lag (s) both resolved
LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
# name -> (kind, HELP text); the README's "Observability" section lists the same
FAMILIES = {
    "productsearch_searches_total": (COUNTER, "Search and recommendation queries answered by the scorer, by kind "
                                              "(text, image, text+image, embedding, recommend)"),
    "productsearch_results_total": (COUNTER, "Results returned by the scorer"),
    "productsearch_zero_result_searches_total": (COUNTER, "Queries answered with no result"),
    "productsearch_paged_searches_total": (COUNTER, "Queries asking for a page past the first (OFFSET > 0)"),
    "productsearch_refused_searches_total": (COUNTER, "Queries refused by the query gate or the scorer, by "
                                                      "reason (bad_input, key, rate_limit, catalog_lag, "
                                                      "store_unavailable, internal)"),
    "productsearch_scorer_seconds": (HISTOGRAM, "Scorer time per batch of one shop, end to end in the scorer"),
    "productsearch_scorer_stage_seconds": (HISTOGRAM, "Scorer time per batch of one shop and stage (filter, "
                                                      "vector, lexical, rank)"),
    "productsearch_catalog_products": (GAUGE, "Products in a scorer instance's live index"),
    "productsearch_catalog_applied_sequence": (GAUGE, "Last catalog sequence a scorer instance has applied"),
    "productsearch_catalog_lag_sequences": (GAUGE, "Catalog sequences the store has that a scorer instance "
                                                   "has not applied yet"),
    "productsearch_catalog_lag_seconds": (GAUGE, "Seconds since a scorer instance last saw itself at the "
                                                 "store's head (about the tail interval when it follows)"),
    "productsearch_index_builds_total": (COUNTER, "Live index builds of a scorer instance: the first load of "
                                                  "a shop, then rebuilds (compaction, IVF retraining)"),
    "productsearch_index_build_seconds": (HISTOGRAM, "Duration of a live index build"),
    "productsearch_catalog_writes_total": (COUNTER, "Catalog rows written and acknowledged, by kind (upsert, "
                                                    "update, delete)"),
    "productsearch_refused_writes_total": (COUNTER, "Catalog write requests refused, by reason (bad_input, key, "
                                                    "closed_value, unknown_id, fenced, internal)"),
    "productsearch_generation_serving": (GAUGE, "1 for each generation (model version) a model instance serves"),
    "productsearch_photos_encoded_total": (COUNTER, "Photos the image tower decoded and encoded"),
    "productsearch_photos_reused_total": (COUNTER, "Photos the image tower answered without encoding them again "
                                                   "(the same bytes earlier in the batch or among the last encoded)"),
    "productsearch_shadow_requests_total": (COUNTER, "Requests a shadow experiment repeated on generation N, by "
                                                     "outcome (answered, failed, dropped) and target generation"),
    "productsearch_swaps_total": (COUNTER, "Generation swaps (and rollbacks) by stage (started, finished, failed) "
                                           "and target generation, as the deploy tool reports them"),
}


def _pb():
    try:
        import triton_python_backend_utils as pb_utils  # only inside the python backend stub
    except ImportError:
        return None
    return pb_utils if hasattr(pb_utils, "MetricFamily") else None


class Metrics:
    """The metrics of one model instance; `base` labels (model, generation, ...) go on all."""

    def __init__(self, enabled: bool = True, **base: str):
        self.base = {k: str(v) for k, v in base.items()}
        self.pb = _pb() if enabled and os.environ.get("PRODUCTSEARCH_METRICS", "1") != "0" else None
        self.enabled = self.pb is not None
        self._lock = threading.Lock()
        self._sums: dict = defaultdict(float)
        self._gauges: dict = {}
        self._observed: dict = defaultdict(list)
        self._shops: set[str] = set()
        self._families: dict = {}
        self._metrics: dict = {}
        self.collectors: list = []  # called at each flush, before the sums are taken (gauges)
        self._stop = threading.Event()
        self._thread = None
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
            self._thread.start()

    @classmethod
    def of_model(cls, ctx, **labels: str) -> "Metrics":
        """A model's metrics (labels model, generation, instance, load); off where its config says metrics "0"."""
        return cls(ctx.parameter("metrics", "1") != "0", model=ctx.name, generation=ctx.version,
                   instance=ctx.instance, load=str(os.getpid()), **labels)

    def shop(self, shop: str) -> str:
        """The shop's label: its name for the first MAX_SHOPS shops, then `other`."""
        if shop in self._shops:
            return shop
        if len(self._shops) >= MAX_SHOPS:
            return OTHER_SHOP
        self._shops.add(shop)
        return shop

    def add(self, name: str, value: float = 1.0, **labels) -> None:
        if self.enabled and value:
            with self._lock:
                self._sums[name, tuple(sorted(labels.items()))] += value

    def set(self, name: str, value: float, **labels) -> None:
        if self.enabled:
            with self._lock:
                self._gauges[name, tuple(sorted(labels.items()))] = value

    def observe(self, name: str, value: float, **labels) -> None:
        if self.enabled:
            with self._lock:
                self._observed[name, tuple(sorted(labels.items()))].append(value)

    # ------------------------------------------------------------------ to Triton

    def _metric(self, name: str, labels: tuple):
        key = (name, labels)
        metric = self._metrics.get(key)
        if metric is None:
            kind, text = FAMILIES[name]
            family = self._families.get(name)
            if family is None:
                family = self._families[name] = self.pb.MetricFamily(
                    name=name, description=text, kind=getattr(self.pb.MetricFamily, kind.upper()))
            every = {**self.base, **{k: str(v) for k, v in labels}}
            if kind == HISTOGRAM:
                metric = family.Metric(labels=every, buckets=LATENCY_BUCKETS)
            else:
                metric = family.Metric(labels=every)
            self._metrics[key] = metric
        return metric

    def flush(self) -> None:
        """Hand what was counted since the last flush to Triton."""
        if not self.enabled:
            return
        for collect in self.collectors:
            collect()
        with self._lock:
            sums, self._sums = self._sums, defaultdict(float)
            gauges, self._gauges = self._gauges, {}
            observed, self._observed = self._observed, defaultdict(list)
        for (name, labels), value in sums.items():
            self._metric(name, labels).increment(value)
        for (name, labels), value in gauges.items():
            self._metric(name, labels).set(value)
        for (name, labels), values in observed.items():
            metric = self._metric(name, labels)
            for value in values:
                metric.observe(value)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            try:
                self.flush()
            except Exception as err:  # noqa: BLE001 - metrics never take the model down
                print(f"metrics: flushing failed ({type(err).__name__}: {err})", flush=True)

    def close(self) -> None:
        """Flush once more and stop; the metrics are dropped before their families (the API's rule)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the server is going away
                pass
        self._metrics.clear()
        self._families.clear()


class StageClock:
    """Seconds per stage of one batch, summed (`with clock("vector"): ...`)."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str):
        return _Stage(self, stage)


class _Stage:
    __slots__ = ("clock", "stage", "started")

    def __init__(self, clock: StageClock, stage: str):
        self.clock, self.stage = clock, stage

    def __enter__(self):
        self.started = self.clock._now()

    def __exit__(self, *exc):
        seconds = self.clock.seconds
        seconds[self.stage] = seconds.get(self.stage, 0.0) + self.clock._now() - self.started
