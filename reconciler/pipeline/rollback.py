"""`reconciler rollback PATH [--to HASH|REVISION]`: serve an image the package keeps again,
with no build, and hold the package there until its inputs change.

The target: with `--to`, the kept image whose hash or commit starts so; without, the one
that served last before the current one. The swap is an update's (plan.rollback); the hold
lives on the new serving container (its `reconciler.hold` label), so it survives restarts of
everything, and every later plan of the same inputs leaves the package alone (plan.serving).
`--release` is an apply that ignores the hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.core.errors import PermanentError
from reconciler.core.package_locks import PackageLocks
from reconciler.desired.state import container_hash_of
from reconciler.pipeline.history import Retained, retained_images
from reconciler.pipeline.outcome import Outcome
from reconciler.pipeline.run import Options, reconcile
from reconciler.pipeline.session import Session
from reconciler.plan.rollback import plan_rollback
from reconciler.spec.discovery import discover

if TYPE_CHECKING:
    from reconciler.execute import ActionResult, Progress


@dataclass
class RolledBack:
    outcome: Outcome
    target: Retained
    results: list[ActionResult]

    @property
    def failed(self) -> bool:
        return any(r.status == "failed" for r in self.results)


def _listed(images: list[Retained]) -> str:
    shown = [f"{r.image.hash[:12]} ({r.image.revision.short if r.image.revision else 'no commit'})" for r in images]
    return ", ".join(shown) or "none"


def choose(images: list[Retained], to: str | None) -> Retained:
    """The image to go back to; PermanentError naming what can be gone back to otherwise."""
    others = [r for r in images if not r.serving]
    if to is None:
        if not others:
            raise PermanentError("nothing to roll back to: the package keeps no image but the one serving")
        return max(others, key=lambda r: r.image.last_used)  # the one that served last before this one
    wanted = to.lower()
    matches = [
        r
        for r in images
        if r.image.hash.startswith(wanted) or (r.image.revision and r.image.revision.commit.startswith(wanted))
    ]
    if len(wanted) < 4 or not matches:
        raise PermanentError(
            f"no kept image is {to} (at least 4 characters of a hash or a commit); kept: {_listed(images)}"
        )
    if all(r.serving for r in matches):
        raise PermanentError(f"{to} is what serves now")
    return max((r for r in matches if not r.serving), key=lambda r: r.image.last_used)


def rollback(path: str, options: Options, to: str | None, progress: Progress | None = None) -> RolledBack:
    manifests, _ = discover([path])
    with PackageLocks(manifests, timeout=options.lock_timeout_s, command=options.holder):
        with Session(secrets_file=options.secrets_file, data_root=options.data_root) as session:
            reconciliation = reconcile([path], session, frozen=True)
            problems = [*reconciliation.problems, *(p for o in reconciliation.outcomes for p in o.problems)]
            if problems:
                raise PermanentError("; ".join(str(p) for p in problems))
            serving = [o for o in reconciliation.outcomes if o.package.mode.serves]
            if len(serving) != 1:
                raise PermanentError(
                    f"{path} holds {len(serving)} packages that serve on this host; rollback takes one"
                )
            [outcome] = serving
            target = choose(retained_images(outcome, session), to)
            desired = outcome.desired
            container_hash = container_hash_of(target.image.hash, desired.container_settings)
            actions, error = plan_rollback(outcome.plan.intent, outcome.observed, target.image.hash, container_hash)
            if error:
                raise PermanentError(error)
            [results] = session.executor(progress).run_packages([actions], jobs=1)
    return RolledBack(outcome, target, results)
