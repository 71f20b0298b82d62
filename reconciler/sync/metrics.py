"""The sync agent's Prometheus metrics (`GET /metrics`), through prometheus_client: rounds by
outcome, how long rounds take, when one last applied its commit, whether each package is in
sync, and webhooks by provider and result."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ROUND_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class SyncMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rounds = Counter(
            "reconciler_sync_rounds",
            "Rounds, by outcome (applied, failed, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.round_seconds = Histogram(
            "reconciler_sync_round_duration_seconds",
            "How long a round took.",
            buckets=ROUND_BUCKETS,
            registry=self.registry,
        )
        self.last_success = Gauge(
            "reconciler_sync_last_success_timestamp_seconds",
            "When a round last applied its commit with no error (Unix time).",
            registry=self.registry,
        )
        self.in_sync = Gauge(
            "reconciler_sync_package_in_sync",
            "1 when the package is what the commit says.",
            ["package"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "reconciler_sync_webhooks",
            "Webhooks, by provider and the status answered.",
            ["provider", "status"],
            registry=self.registry,
        )
        self._packages: set[str] = set()

    def round_ended(self, outcome: str, seconds: float, at: float, packages: dict[str, bool]) -> None:
        self.rounds.labels(outcome).inc()
        self.round_seconds.observe(seconds)
        if outcome == "applied":
            self.last_success.set(at)
        for gone in self._packages - set(packages):  # a package no longer in the commit has no gauge
            self.in_sync.remove(gone)
        for name, in_sync in packages.items():
            self.in_sync.labels(name).set(1 if in_sync else 0)
        self._packages = set(packages)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
