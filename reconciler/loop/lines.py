"""What the long-running loops (watch, sync) say: one line per package per run that did
something, as a value (the text, and whether and how it failed) that they never parse back.

`sklearn-regression: score.py changed -> write 0.0 s, build 0.9 s, recreate 2.3 s, ready at ...`
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.pipeline import Outcome
from reconciler.plan import ActionKind


@dataclass(frozen=True)
class Line:
    text: str | None  # None: nothing worth a line (a resync that found the package in sync)
    failed: bool = False  # an action failed (a failed dev reload does not count: the old code serves)
    permanent: bool = False  # and the same inputs will fail the same way
    error: str = ""  # the failure's first line: what a status records
    delay: float | None = None  # a temporary failure's own hint of when to try again


def outcome_line(outcome: Outcome, trigger: str | None, reason: str) -> Line:
    """The package's line. `trigger` says what changed (None: the run was a `reason`,
    such as a resync or a retry, and the plan's first cause says why it acted)."""
    name = outcome.package.name
    if outcome.problems or (outcome.held and not outcome.results):
        return Line(None)  # problems are reported on their own; the running container keeps serving
    event = trigger is not None
    if outcome.held:  # held at failing inputs: only what served before was healed
        trigger, event = f"held: {outcome.results[0].cause}", False
    if not trigger:
        first = outcome.plan.actions[0].cause if outcome.plan and outcome.plan.actions else None
        trigger = f"{reason}: {first}" if first else None
    parts, failure, ready = [], None, ""
    for result in outcome.results:
        if result.action.kind is ActionKind.RELOAD:
            done = result.status == "done"
            parts.append(f"reloaded {result.seconds:.2f} s (dev)" if done else f"reload FAILED: {result.detail}")
        elif result.status == "done":
            parts.append(f"{result.kind} {result.seconds:.1f} s")
            if result.detail.startswith("ready at "):
                ready = result.detail
        elif result.status == "failed":
            parts.append(f"{result.kind} FAILED after {result.seconds:.1f} s: {result.detail}")
            failure = result
    if ready:
        parts.append(ready)
    if not parts and outcome.plan and outcome.plan.rolled_back:
        return Line(f"{name}: {trigger} -> {outcome.plan.rolled_back}" if event else None)
    if not parts:
        return Line(f"{name}: {trigger} -> in sync" if event else None)
    text = f"{name}: {trigger or reason} -> {', '.join(parts)}"
    if failure is None:
        return Line(text)
    error = f"{failure.kind} FAILED after {failure.seconds:.1f} s: {failure.detail}".splitlines()[0]
    return Line(text, True, failure.permanent, error, failure.delay)
