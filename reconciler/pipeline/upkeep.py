"""The commands around apply, as plans the executor runs: `down` (stop and remove a package's
containers, then its network), `pull` (a pushed image by hash) and `lock` (resolve again)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from reconciler.core.errors import InvalidInput, PermanentError
from reconciler.desired.pins import read_lock
from reconciler.observed.state import Snapshot
from reconciler.pipeline.run import desire_packages
from reconciler.pipeline.session import Session
from reconciler.plan import plan_down, plan_fetch, plan_relock
from reconciler.spec.package import Package

if TYPE_CHECKING:
    from reconciler.execute import ActionResult


def down(packages: Sequence[Package], session: Session) -> list[ActionResult]:
    """Every container of the packages, each removed on its own (one that fails does not
    keep the others); a package's network goes once all its containers have."""
    teardowns = plan_down(packages, Snapshot.read(session.engine, images=False).containers)
    executor = session.executor()
    removals = executor.run_packages([[a] for t in teardowns for a in t.containers], jobs=4)
    results = [result for [result] in removals]
    for teardown in teardowns:
        mine = [r for r in results if r.action in teardown.containers]
        if teardown.network is not None and all(r.status == "done" for r in mine):
            # something else may still use the network: then it stays, and that is no failure
            executor.run_action(teardown.network)
    return results


def pull(package: Package, session: Session, image_hash: str | None) -> ActionResult:
    """`<registry>/<repository>:<hash12>` (the hash this machine computes, unless given),
    checked to carry that hash, tagged as the local image."""
    if not package.manifest.output.image.registry:
        raise PermanentError(f"{package.name} has no output.image.registry to pull from")
    if image_hash is None:
        [outcome] = desire_packages([package], session, frozen=True)
        if outcome.problems:
            raise InvalidInput(outcome.problems)
        image_hash = outcome.desired.image_hash
    return session.executor().run_action(plan_fetch(package, image_hash))


def relock(package: Package, session: Session, *, upgrade: bool) -> ActionResult:
    """`reconciler lock`: resolve the requirements again and pin the base image. The pin is
    asked of the registry, then the engine; an existing pin stays unless `upgrade`."""
    try:
        old = read_lock(package)
    except InvalidInput:
        old = None  # being rewritten is the fix for a damaged lock
    return session.executor().run_action(plan_relock(package, old, upgrade=upgrade))
