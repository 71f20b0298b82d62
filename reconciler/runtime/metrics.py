"""GET /metrics: Prometheus text format, from prometheus_client.

Request count and latency by route and status, run() failures, /score requests in
progress (waiting for init(), queued, or in run()), how long init() took, and with batching
the rows per batched run() call and each batched request's wait. With
several workers each process writes its samples to PROMETHEUS_MULTIPROC_DIR (set by the
supervisor before the workers start) and a scrape, answered by any worker, sums them all.
Routes are a closed set, so a client cannot grow the label space.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
ROUTES = frozenset({"/", "/ready", "/score", "/swagger.json", "/metrics", "/-/reload"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if self.shared else self.registry  # multiprocess: samples go to files instead
        self.requests = Counter(
            "inference_requests", "Requests answered, by route and status.", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time from request to response, by route and status.",
            ["route", "status"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.run_failures = Counter(
            "inference_run_failures", "run() calls that raised or timed out.", registry=registry
        )
        self.waiting = Gauge(
            "inference_requests_waiting",
            "/score requests in progress: waiting for init(), queued for the entry-script thread, or in run().",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.init_seconds = Gauge(
            "inference_init_seconds", "How long init() took.", registry=registry, multiprocess_mode="max"
        )
        self.batch_rows = Histogram(
            "inference_batch_rows",
            "Rows in each run() call that scored a batch (inference.batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=registry,
        )
        self.batch_wait = Histogram(
            "inference_batch_queue_wait_seconds",
            "Time a batched request waited, from joining its batch to the run() call's start.",
            buckets=BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, int], tuple] = {}  # bound label children: one lookup per request
        if self.shared:
            multiprocess.MultiProcessCollector(self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        key = (path if path in ROUTES else "other", status)
        children = self._children.get(key)
        if children is None:
            labels = (key[0], str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def batched(self, rows: int, waits: list[float]) -> None:
        self.batch_rows.observe(rows)
        for seconds in waits:
            self.batch_wait.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
