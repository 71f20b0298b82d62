"""The reconcile loop: discover -> load -> desire -> observe -> plan.

Every run re-reads desired and observed state (level-triggered). A package that
fails at any stage carries its problems and the others go on. The Docker engine is
asked only when a package needs it (image and container modes, or --prune), and
then once per kind of object.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.cachedir import cache_dir
from reconciler.core.errors import InvalidInput, Problem, ReconcilerError
from reconciler.core.paths import display_path
from reconciler.desired.digest import Digester
from reconciler.desired.pins import WheelCache
from reconciler.desired.statcache import StatCache
from reconciler.desired.state import Desired, desire
from reconciler.engine.docker import Engine, EngineUnavailable
from reconciler.observed.folder import observe_folder
from reconciler.observed.state import Observed, Snapshot
from reconciler.plan import Cleanup, Intent, PackagePlan, plan_cleanup, plan_package
from reconciler.spec.discovery import load_workspace
from reconciler.spec.package import Package


class Session:
    """What one command keeps for its whole run: the caches, and the engine once asked for."""

    def __init__(self, root: Path | None = None, *, build_slots: int = 1):
        self.cache_root = root or cache_dir()
        self.stat_cache = StatCache(self.cache_root / "statcache.sqlite")
        self.digester = Digester(self.stat_cache)
        self.wheels = WheelCache(self.cache_root / "wheels")
        self.build_slots = threading.BoundedSemaphore(build_slots)
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The Docker engine, connected on first use (EngineUnavailable if none answers)."""
        if self._engine is None:
            self._engine = Engine.connect()
        return self._engine

    def close(self) -> None:
        self.stat_cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ActionResult:
    kind: str
    target: str
    cause: str
    status: str  # done | failed | skipped
    seconds: float
    detail: str = ""
    permanent: bool = False  # failed in a way that retrying the same inputs cannot fix


@dataclass
class Outcome:
    """One package through the loop."""

    package: Package
    desired: Desired | None = None
    observed: Observed | None = None
    plan: PackagePlan | None = None
    problems: list[Problem] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(r.status == "failed" for r in self.results)


@dataclass
class Reconciliation:
    outcomes: list[Outcome]
    problems: list[Problem]  # manifests that did not load, paths that do not exist
    manifests_found: int
    cleanup: Cleanup = field(default_factory=Cleanup)
    packages: list[Package] = field(default_factory=list)  # every package that loaded, planned or not
    cleanup_results: list[ActionResult] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return (
            bool(self.problems)
            or any(o.failed for o in self.outcomes)
            or any(r.status == "failed" for r in self.cleanup_results)
        )

    @property
    def has_changes(self) -> bool:
        return any(o.plan and o.plan.actions for o in self.outcomes) or bool(self.cleanup.actions)


def intent_of(desired: Desired) -> Intent:
    package = desired.package
    manifest = package.manifest
    container = manifest.output.container
    return Intent(
        name=package.name,
        mode=manifest.output.mode,
        folder=display_path(package.output_directory),
        image_hash=desired.image_hash,
        container_hash=desired.container_hash,
        inputs=desired.inputs,
        base_image=manifest.inference.environment.resolved_base_image,
        image=desired.image_ref,
        push_to=desired.push_ref,
        container=manifest.container_name,
        address=f"{container.host}:{container.port}",
    )


def desire_package(
    package: Package, session: Session, *, frozen: bool, base_image_id: str | None = None, dev: bool = False
) -> Outcome:
    outcome = Outcome(package)
    try:
        outcome.desired = desire(
            package, session.digester, session.wheels, frozen=frozen, base_image_id=base_image_id, dev=dev
        )
    except InvalidInput as error:
        outcome.problems.extend(error.problems)
    except ReconcilerError as error:
        outcome.problems.append(Problem(str(package.manifest_path), str(error)))
    return outcome


def uses_engine(package: Package) -> bool:
    return package.manifest.output.mode != "dockerfile"


def base_image(package: Package) -> str | None:
    """The base image whose ID the package's hash covers; None in Dockerfile mode."""
    return package.manifest.inference.environment.resolved_base_image if uses_engine(package) else None


def read_snapshot(session: Session, packages: list[Package], *, images: bool) -> Snapshot:
    return Snapshot.read(session.engine, images=images, bases=[b for p in packages if (b := base_image(p))])


def desire_packages(
    packages: list[Package], session: Session, *, frozen: bool, dev: bool = False, snapshot: Snapshot | None = None
) -> list[Outcome]:
    """Each package's desired state. With a snapshot, image and container modes hash their
    base image's ID on the engine."""
    outcomes = []
    for package in packages:
        base = base_image(package)
        if snapshot is not None and base in snapshot.base_failures:
            outcomes.append(Outcome(package, problems=[Problem(str(package.manifest_path), snapshot.base_failures[base])]))
            continue
        base_id = snapshot.base_ids.get(base) if snapshot is not None and base else None
        outcomes.append(desire_package(package, session, frozen=frozen, base_image_id=base_id, dev=dev))
    return outcomes


def _observe(outcome: Outcome, session: Session, snapshot: Snapshot | None) -> Observed:
    package, desired = outcome.package, outcome.desired
    folder = observe_folder(package.output_directory, package.name, session.digester)
    if snapshot is None:
        return Observed(folder)
    return snapshot.observe(
        folder,
        package.name,
        image_hash=desired.image_hash,
        image_ref=desired.image_ref,
        push_ref=desired.push_ref,
        base_image=base_image(package),
    )


def reconcile(
    paths: list[str],
    session: Session,
    *,
    frozen: bool,
    prune: bool = False,
    use_engine: bool = True,
    only: set[Path] | None = None,
    dev: bool = False,
) -> Reconciliation:
    """Load every package below `paths`, compute desired and observed state, and plan.

    Raises EngineUnavailable when a package needs Docker and no engine answers:
    nothing has been changed at that point. With `use_engine` False only the
    Dockerfile folders are observed. With `only` (manifest paths), the whole tree is
    still loaded (so conflicts between packages are seen) but only those are planned,
    and nothing is pruned.
    """
    workspace = load_workspace(paths)
    selected = [p for p in workspace.packages if only is None or p.manifest_path in only]
    prune = prune and only is None
    snapshot: Snapshot | None = None
    if use_engine and (prune or any(uses_engine(p) for p in selected)):
        snapshot = read_snapshot(session, selected, images=prune)
    outcomes = desire_packages(selected, session, frozen=frozen, dev=dev, snapshot=snapshot)
    for outcome in outcomes:
        package = outcome.package
        if outcome.desired is not None:
            try:
                outcome.observed = _observe(outcome, session, snapshot)
            except ReconcilerError as error:
                if isinstance(error, EngineUnavailable):
                    raise
                outcome.problems.append(Problem(str(package.manifest_path), str(error)))
            else:
                outcome.plan = plan_package(intent_of(outcome.desired), outcome.observed)
                outcome.problems.extend(Problem(str(package.manifest_path), e) for e in outcome.plan.errors)
    cleanup = Cleanup()
    if snapshot is not None and only is None:
        wanted = {o.package.name: (o.desired.image_hash, o.desired.container_hash) for o in outcomes if o.desired}
        # a package whose desired state could not be computed still owns its objects
        wanted.update({o.package.name: ("", "") for o in outcomes if o.desired is None})
        cleanup = plan_cleanup(
            snapshot.images or [],
            snapshot.containers,
            wanted,
            {i.id: i.manifest for i in snapshot.images or []},
            snapshot.container_images,
            [os.path.abspath(p) for p in paths],
            prune=prune,
            complete=workspace.complete and all(not o.problems for o in outcomes),
        )
    session.stat_cache.flush()
    return Reconciliation(outcomes, workspace.problems, workspace.manifests_found, cleanup, workspace.packages)
