"""The serving scorer's shadow sender: in a shadow experiment every request M answered goes to
generation N as well, queued as M answers it and sent once M's execute() has returned the answer,
so that N's answers (returned to no one) can be compared.

Why a bounded queue and sender threads: the shopper's answer must not wait for N. execute() copies
the request's inputs (its tensors are freed once execute returns: a copy of a few KB) and queues
them without waiting; `shadow_threads` daemon threads (default 4) pass them on to scorer N through
BLS (InferenceRequest.exec releases the GIL while it waits for N), so N's dynamic batcher can
batch them as it batches shoppers' requests (one thread sending one request at a time covered
18% of the searches at c=16 and 35% at c=4 in `loadtest.bench --sections shadow` on 2026-12-07;
four cover 49% and 94%: BENCHMARKS.md "Shadow experiment cost"). When N cannot keep up the
queue (`shadow_queue` requests, default 64) fills and the next request is dropped, not waited
for: M logs its rows as `shadow_dropped`. When N refuses or does not answer, M logs them as
`shadow_failed`, the error in the row's filters. N logs its answers itself (arm `shadow`,
runtime/arm_router.py), so their latency is measured as the control's is, inside the scorer.
Each request's outcome is counted in `productsearch_shadow_requests_total{outcome="answered|failed|
dropped", target="N"}`, so an operator sees a shadow that falls behind without reading the report.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from productsearch.runtime.arm_router import (INTERNAL_INPUTS, ROUTED_ARM, SHADOW_OF, request_parameters,
                                              scorer_request, shadow_query_id)
from productsearch.runtime.experiments import SHADOW, SHADOW_DROPPED, SHADOW_FAILED
from productsearch.runtime.model_io import pb
from productsearch.runtime.search_log import SearchLog, search_row

SHADOW_QUEUE = 64
SHADOW_THREADS = 4
REPLY_OUTPUTS = ["QUERY_ID"]  # N logs its own answer: M only learns that it came
MAX_ERROR_CHARS = 300


@dataclass
class ShadowJob:
    """One answered request to repeat on N: its inputs copied out of the request."""

    generation: int
    inputs: list[tuple[str, np.ndarray]]
    parameters: dict
    rows: list  # its RowQuery per row (the search log's row of an outcome)
    query_ids: list[str]  # M's query id per row


class ShadowSender:
    def __init__(self, search_log: SearchLog, capacity: int = SHADOW_QUEUE, metrics=None, log=print,
                 threads: int = SHADOW_THREADS):
        self.search_log, self.metrics, self.log, self.thread_count = search_log, metrics, log, max(1, threads)
        self.jobs: queue.Queue[ShadowJob] = queue.Queue(maxsize=max(1, capacity))
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.failures = 0

    def offer(self, request, generation: int, rows: list, query_ids: list[str]) -> None:
        """Queue `request`, which M answered, for generation N; never waits."""
        if self.jobs.full():  # dropped before its inputs are copied: a saturated server pays no copy
            self.outcome(ShadowJob(generation, [], {}, rows, query_ids), SHADOW_DROPPED, "the shadow queue was full")
            return
        try:
            inputs = [(t.name(), np.array(t.as_numpy(), copy=True)) for t in request.inputs()
                      if t.name() not in INTERNAL_INPUTS]
        except Exception as err:  # noqa: BLE001 - a shadow problem never touches the shopper's answer
            self.outcome(ShadowJob(generation, [], {}, rows, query_ids), SHADOW_FAILED,
                         f"could not copy the request: {type(err).__name__}: {err}")
            return
        job = ShadowJob(generation, inputs, request_parameters(request), rows, query_ids)
        self.start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self.outcome(job, SHADOW_DROPPED, "the shadow queue was full")

    def start(self) -> None:
        with self.lock:
            if not self.threads and not self.stopping.is_set():
                self.threads = [threading.Thread(target=self.run, name=f"shadow-{i}", daemon=True)
                                for i in range(self.thread_count)]
                for thread in self.threads:
                    thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self.send(job)

    def send(self, job: ShadowJob) -> None:
        """Pass one job on to scorer N; log its rows as failed when N does not answer."""
        pb_utils = pb()
        started = time.perf_counter()
        try:
            tensors = [pb_utils.Tensor(name, value) for name, value in job.inputs]
            tensors.append(pb_utils.Tensor(ROUTED_ARM, np.array([[SHADOW.encode()]] * len(job.rows), dtype=object)))
            tensors.append(pb_utils.Tensor(SHADOW_OF, np.array([[q.encode()] for q in job.query_ids], dtype=object)))
            reply = scorer_request(job.generation, tensors, job.parameters, REPLY_OUTPUTS).exec()
            error = reply.error().message() if reply.has_error() else None
        except Exception as err:  # noqa: BLE001 - N's failure is counted, M and the server go on
            error = f"{type(err).__name__}: {err}"
        if error is not None:
            self.outcome(job, SHADOW_FAILED, error, (time.perf_counter() - started) * 1000.0)
        else:
            self.count(job, "answered")

    def count(self, job: ShadowJob, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.add("productsearch_shadow_requests_total", 1, outcome=outcome, target=str(job.generation))

    def outcome(self, job: ShadowJob, arm: str, error: str, latency_ms: float = 0.0) -> None:
        """The search log's rows of a job N did not answer (arm shadow_failed / shadow_dropped)."""
        self.count(job, "dropped" if arm == SHADOW_DROPPED else "failed")
        with self.lock:  # the request thread (dropped) and the shadow thread (failed) both count
            self.failures += 1
            failures = self.failures
        if failures in (1, 10, 100) or failures % 1000 == 0:
            self.log(f"shadow: generation {job.generation}: {arm} ({failures} so far): {error}")
        for row, query_id in zip(job.rows, job.query_ids):
            record = search_row(row, shadow_query_id(query_id), [], job.generation, arm, latency_ms)
            record.filters["error"] = error[:MAX_ERROR_CHARS]
            self.search_log.add(row.shop, record)

    def close(self) -> None:
        """Stop the threads (their requests in flight finish); what is still queued is logged dropped."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=10)
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            self.outcome(job, SHADOW_DROPPED, "the serving scorer was unloaded first")
