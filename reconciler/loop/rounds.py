"""After each run of the pipeline, what `watch` and `sync` both do with its outcomes: a line
per package, a retry with backoff for a temporary failure, a hold for a permanent one (and
its release once the package runs clean)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.loop.backoff import Backoff
from reconciler.loop.holds import Holds
from reconciler.loop.lines import Line, outcome_line
from reconciler.pipeline import Reconciliation


@dataclass(frozen=True)
class Said:
    """A package's line after a run, and what the loop does about it."""

    manifest: Path
    line: Line
    retry_in: float | None = None  # a temporary failure: retried in this many seconds
    held: bool = False  # a permanent failure: held from now on, until its inputs change
    still_failing: str = ""  # held already (not tried again): the failure it is held for


def settle(
    reconciliation: Reconciliation,
    backoff: Backoff,
    holds: Holds,
    *,
    triggers: Mapping[Path, str] | None = None,
    reason: str = "resync",
) -> list[Said]:
    """Each outcome's line, with the backoff and the holds brought up to date."""
    said = []
    for outcome in reconciliation.outcomes:
        manifest = outcome.package.manifest_path
        line = outcome_line(outcome, (triggers or {}).get(manifest), reason)
        if outcome.held:
            said.append(Said(manifest, line, still_failing=holds.error(manifest) or "held after a failure"))
        elif line.permanent:
            backoff.succeeded(manifest)
            holds.hold(manifest, outcome.desired.container_hash, line.error)
            said.append(Said(manifest, line, held=True))
        elif line.failed:
            said.append(Said(manifest, line, retry_in=backoff.failed(manifest, line.delay)))
        else:
            backoff.succeeded(manifest)
            if not outcome.held:
                holds.release(manifest)
            said.append(Said(manifest, line))
    return said
