"""The executor: carries out a plan's actions and decides nothing.

Packages run side by side on one bounded pool; a package's own actions run in
order, and once one fails the rest of that package's actions are skipped with
`upstream failed`. Other packages go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .engine import ActionResult, Outcome, Reconciliation, Session
from .plan import Action
from .problems import ReconcilerError
from .render import render_folder

Handler = Callable[[Outcome, Action, Session], str]


def _write(outcome: Outcome, action: Action, session: Session) -> str:
    stamp = render_folder(outcome.desired, session.wheels, session.digester)
    return f"{len(stamp.files)} files"


HANDLERS: dict[str, Handler] = {"write": _write}


def _run_package(outcome: Outcome, session: Session) -> None:
    upstream_failed = False
    for action in outcome.plan.actions:
        if upstream_failed:
            outcome.results.append(ActionResult(action.kind, action.target, action.cause, "skipped", 0.0, "upstream failed"))
            continue
        started = time.perf_counter()
        try:
            detail = HANDLERS[action.kind](outcome, action, session)
            status = "done"
        except ReconcilerError as error:
            detail, status = str(error), "failed"
        except OSError as error:
            detail, status = f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), "failed"
        seconds = time.perf_counter() - started
        outcome.results.append(ActionResult(action.kind, action.target, action.cause, status, seconds, detail))
        upstream_failed = status == "failed"


def execute(reconciliation: Reconciliation, session: Session, *, jobs: int = 4) -> None:
    """Run every planned action; results land on each outcome."""
    pending = [o for o in reconciliation.outcomes if o.plan and o.plan.actions and not o.problems]
    if not pending:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pending)))) as pool:
        for future in [pool.submit(_run_package, outcome, session) for outcome in pending]:
            future.result()
    session.stat_cache.flush()
