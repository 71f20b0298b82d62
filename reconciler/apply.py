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
from reconciler.engine.docker import Engine, EngineError, EngineUnavailable, ImageState, Snapshot
from reconciler.observed.folder import observe_folder
from reconciler.plan import Cleanup, Intent, Observed, PackagePlan, plan_cleanup, plan_package
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
    image_repository = manifest.image_repository
    registry = manifest.output.image.registry
    container = manifest.output.container
    return Intent(
        name=package.name,
        mode=manifest.output.mode,
        folder=display_path(package.output_directory),
        image_hash=desired.image_hash,
        container_hash=desired.container_hash,
        inputs=desired.inputs,
        base_image=manifest.inference.environment.resolved_base_image,
        image=f"{image_repository}:{desired.short_hash}",
        push_to=f"{registry}/{image_repository}:{desired.short_hash}" if manifest.output.image.push else "",
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


def _base(package: Package) -> str:
    return package.manifest.inference.environment.resolved_base_image


def desire_packages(
    packages: list[Package], session: Session, *, frozen: bool, dev: bool = False, engine: Engine | None = None
) -> tuple[list[Outcome], dict[str, str | None]]:
    """Each package's desired state. With an engine, image and container modes hash their base
    image's ID (one inspect per distinct base image); the IDs found are returned too."""
    bases: dict[str, str | None] = {}
    failures: dict[str, str] = {}
    if engine is not None:
        for reference in sorted({_base(p) for p in packages if uses_engine(p)}):
            try:
                bases[reference] = engine.image_id(reference)
            except EngineUnavailable:
                raise
            except EngineError as error:  # e.g. a reference the engine refuses: that package's problem
                failures[reference] = str(error)
    outcomes = []
    for package in packages:
        if uses_engine(package) and _base(package) in failures:
            outcomes.append(Outcome(package, problems=[Problem(str(package.manifest_path), failures[_base(package)])]))
        else:
            outcomes.append(
                desire_package(package, session, frozen=frozen, base_image_id=bases.get(_base(package)), dev=dev)
            )
    return outcomes, bases


INSPECTS_BEFORE_LISTING = 16


def _desired_image(
    package: Package, desired: Desired, intent: Intent, snapshot: Snapshot, containers: list, session: Session
):
    """The image carrying the desired hash, if the engine has it: from a serving container
    already running it, else by one inspect of its tag; past a handful of inspects in one
    run, one listing of all images answers for the rest."""
    running = next((c for c in containers if c.image_hash == desired.image_hash and c.image_id), None)
    if running is not None and snapshot.images is None:
        return ImageState(running.image_id, package.name, desired.image_hash, (intent.image,))
    if snapshot.images is None and snapshot.inspects >= INSPECTS_BEFORE_LISTING:
        listed = session.engine.snapshot(images=True)
        snapshot.images, snapshot.container_images = listed.images, listed.container_images
    if snapshot.images is not None:
        return next((i for i in snapshot.images_of(package.name) if i.hash == desired.image_hash), None)
    snapshot.inspects += 1
    return session.engine.image(intent.image, desired.image_hash)


def _observe(
    outcome: Outcome, intent: Intent, session: Session, snapshot: Snapshot | None, bases: dict[str, str | None]
) -> Observed:
    package, desired = outcome.package, outcome.desired
    folder = observe_folder(package.output_directory, package.name, session.digester)
    if snapshot is None:
        return Observed(folder)
    containers = snapshot.containers_of(package.name)
    images = snapshot.images_of(package.name)
    registry_has = None
    if uses_engine(package):
        desired_image = _desired_image(package, desired, intent, snapshot, containers, session)
        if desired_image is not None and desired_image not in images:
            images.append(desired_image)
        if package.manifest.output.image.push and desired_image is not None:
            registry_has = session.engine.registry_has(intent.push_to)
    return Observed(
        folder,
        images=images,
        containers=containers,
        base_present=bases.get(_base(package)) is not None or not uses_engine(package),
        registry_has=registry_has,
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
    engine = None
    if use_engine and (prune or any(uses_engine(p) for p in selected)):
        engine = session.engine
        snapshot = engine.snapshot(images=prune)
    outcomes, bases = desire_packages(selected, session, frozen=frozen, dev=dev, engine=engine)
    for outcome in outcomes:
        package = outcome.package
        if outcome.desired is not None:
            intent = intent_of(outcome.desired)
            try:
                outcome.observed = _observe(outcome, intent, session, snapshot, bases)
            except EngineError as error:
                outcome.problems.append(Problem(str(package.manifest_path), str(error)))
            else:
                outcome.plan = plan_package(intent, outcome.observed)
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
