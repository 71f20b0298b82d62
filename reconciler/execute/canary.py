"""The canary of an update behind the proxy (output.container.canary): the new container holds
the canary name, the proxy sends it its share of the requests, and what the proxy counts for
it (5xx answers and failed connections are errors) decides whether it is promoted.

It is judged as soon as enough requests came to judge (`min_requests`) and its error rate is
already over the bound (no point sending it more), else when `duration_s` is over. Fewer
requests than `min_requests` by then are too few to judge: it is promoted, and the result
says so, unless its errors alone already exceed what the bound allows of `min_requests`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.errors import PermanentError
from reconciler.desired.proxy import CANARY_SERVER
from reconciler.engine.docker import Engine
from reconciler.engine.endpoint import ServerCounts
from reconciler.plan.actions import CanaryRun

POLL_S = 0.5  # how often the proxy's counts are read
PROGRESS_EVERY_S = 10.0


class CanaryFailed(PermanentError):
    """The canary's error rate was over the bound: the same image fails the same way."""


def percent(rate: float) -> str:
    return f"{rate * 100:.3g}%"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str


def judge(counts: ServerCounts, run: CanaryRun, *, over: bool) -> Verdict | None:
    """The verdict on these counts, or None while it is too early (`over`: duration_s has passed)."""
    bound = percent(run.max_error_rate)
    if counts.requests >= run.min_requests:
        rate = counts.errors / counts.requests
        measured = f"{percent(rate)} errors ({counts.errors} of {counts.requests})"
        if rate > run.max_error_rate:
            return Verdict(False, f"canary failed: {measured} > {bound}")
        return Verdict(True, f"canary passed: {measured} <= {bound}") if over else None
    if not over:
        return None
    if counts.errors > run.max_error_rate * run.min_requests:
        return Verdict(
            False,
            f"canary failed: {counts.errors} errors in {counts.requests} requests, over {bound} "
            f"of even the {run.min_requests} needed to judge",
        )
    return Verdict(
        True,
        f"canary promoted untested: too few requests to judge ({counts.requests} of the {run.min_requests} "
        f"needed in {run.duration_s:g} s, {counts.errors} errors)",
    )


def progress(counts: ServerCounts, run: CanaryRun, elapsed_s: float) -> str:
    errors = f", {percent(counts.errors / counts.requests)} errors" if counts.requests else ""
    return f"canary: {counts.requests} requests{errors} after {elapsed_s:.0f} of {run.duration_s:g} s"


def watch(engine: Engine, proxy: str, began: ServerCounts, run: CanaryRun, say: Callable[[str], None]) -> Verdict:
    """Read the proxy's counts for the canary until it can be judged."""
    start = time.monotonic()
    said = start
    while True:
        elapsed = time.monotonic() - start
        counts = engine.proxy_counts(proxy, CANARY_SERVER).since(began)
        verdict = judge(counts, run, over=elapsed >= run.duration_s)
        if verdict is not None:
            return verdict
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            say(progress(counts, run, elapsed))
        time.sleep(max(0.0, min(POLL_S, run.duration_s - elapsed)))
