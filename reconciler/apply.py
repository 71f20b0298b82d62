"""The one apply pipeline: lock -> plan -> pull -> re-plan -> execute. Every caller uses it.

`apply`, `watch` (and later `sync`) decide *when* to run; this module is the only place
that says *how* a run goes:

1. lock the packages (two reconcilers never act on one package at once);
2. reconcile: discover -> load -> desire -> observe -> plan, re-reading everything
   (level-triggered); a package that fails at any stage carries its problems and the
   others go on;
3. pull the base images the plan says are missing, then plan again: a base image's ID
   is part of the image hash, so a plan made without it would build the wrong image;
4. execute the plan.

The Docker engine is asked only when a package needs it (image and container modes, or
--prune), and then once per kind of object.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.core.cachedir import cache_dir
from reconciler.core.errors import InvalidInput, PermanentError, Problem, ReconcilerError
from reconciler.core.package_locks import PackageLocks
from reconciler.desired.digest import Digester
from reconciler.desired.pins import BasePin, Lock, read_lock, resolve, write_lock
from reconciler.desired.proxy import network_name, serving_name
from reconciler.desired.secrets import SecretSource
from reconciler.desired.statcache import StatCache
from reconciler.desired.state import Desired, desire, image_reference
from reconciler.desired.wheels import WheelCache
from reconciler.engine.docker import Engine, EngineUnavailable
from reconciler.execute import ActionResult, Executor, Progress
from reconciler.observed.base_image import pin_base_image
from reconciler.observed.folder import observe_folder
from reconciler.observed.state import (
    ContainerState,
    ImagesOnDisk,
    Observed,
    Snapshot,
    image_state,
    images_on_disk,
    readiness,
)
from reconciler.plan import ActionKind, Cleanup, Intent, PackagePlan, plan_cleanup, plan_manifests, plan_package
from reconciler.spec.discovery import discover, load_workspace
from reconciler.spec.package import Package


class Session:
    """What one run keeps from start to end: the caches, and the engine once asked for."""

    def __init__(self, root: Path | None = None, *, build_slots: int = 1, secrets_file: Path | None = None):
        self.cache_root = root or cache_dir()
        self.secrets = SecretSource(self.cache_root, secrets_file)
        self.stat_cache = StatCache(self.cache_root / "statcache.sqlite")
        self.digester = Digester(self.stat_cache)
        self.wheels = WheelCache(self.cache_root / "wheels")
        self.build_slots = threading.BoundedSemaphore(build_slots)
        self._engine: Engine | None = None
        self._no_engine: EngineUnavailable | None = None

    @property
    def engine(self) -> Engine:
        """The Docker engine, connected on first use (EngineUnavailable if none answers, asked once)."""
        if self._no_engine is not None:
            raise self._no_engine
        if self._engine is None:
            try:
                self._engine = Engine.connect()
            except EngineUnavailable as error:
                self._no_engine = error
                raise
        return self._engine

    def executor(self, progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False) -> Executor:
        return Executor(
            engine=lambda: self.engine,
            wheels=self.wheels,
            digester=self.digester,
            build_slots=self.build_slots,
            progress=progress,
            should_stop=should_stop,
        )

    def close(self) -> None:
        self.stat_cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Outcome:
    """One package through the pipeline."""

    package: Package
    desired: Desired | None = None
    observed: Observed | None = None
    plan: PackagePlan | None = None
    problems: list[Problem] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)
    held: bool = False  # not executed: the caller is waiting for its inputs to change
    readiness: str | None = None  # the serving container's /ready, when status asked
    images_on_disk: ImagesOnDisk | None = None  # when status asked

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(r.status == "failed" for r in self.results)

    @property
    def failed_permanently(self) -> bool:
        """Failed in a way that the same inputs will fail again: wait for a change."""
        return bool(self.problems) or any(r.status == "failed" and r.permanent for r in self.results)


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


@dataclass(frozen=True)
class Options:
    """How a run goes; the same for every caller."""

    frozen: bool = False  # never resolve dependencies: a missing or stale package.lock is an error
    prune: bool = False  # also remove what no manifest wants (never while a manifest has errors)
    dev: bool = False  # containers mount their code and reload it in place (watch --dev)
    jobs: int = 4  # packages worked on at once
    builds: int = 1  # image builds at once
    lock_timeout_s: float = 120.0  # how long to wait for another reconciler holding a package
    holder: str | None = None  # how the package locks name this process to others
    secrets_file: Path | None = None  # NAME=value lines for inference.secrets (else the environment)


# -- reconcile: desired, observed, plan ------------------------------------------------


def uses_engine(package: Package) -> bool:
    return package.manifest.output.mode != "dockerfile"


def base_image(package: Package) -> str | None:
    """The base image whose ID the package's hash covers; None in Dockerfile mode."""
    return package.manifest.inference.environment.resolved_base_image if uses_engine(package) else None


def read_snapshot(session: Session, packages: Sequence[Package], *, images: bool) -> Snapshot:
    return Snapshot.read(session.engine, images=images, bases=[b for p in packages if (b := base_image(p))])


def desire_packages(
    packages: Sequence[Package],
    session: Session,
    *,
    frozen: bool,
    dev: bool = False,
    snapshot: Snapshot | None = None,
) -> list[Outcome]:
    """Each package's desired state. With a snapshot, image and container modes hash their
    base image's ID on the engine."""
    outcomes = []
    for package in packages:
        outcome = Outcome(package)
        outcomes.append(outcome)
        base = base_image(package)
        if snapshot is not None and base in snapshot.base_failures:
            outcome.problems.append(Problem(str(package.manifest_path), snapshot.base_failures[base]))
            continue
        pin_base = snapshot.pin_base if snapshot is not None and base else None
        try:
            outcome.desired = desire(
                package,
                session.digester,
                session.wheels,
                frozen=frozen,
                secrets=session.secrets,
                pin_base=pin_base,
                dev=dev,
            )
        except InvalidInput as error:
            outcome.problems.extend(error.problems)
        except ReconcilerError as error:
            outcome.problems.append(Problem(str(package.manifest_path), str(error)))
    return outcomes


def _observe(outcome: Outcome, session: Session, snapshot: Snapshot | None) -> Observed:
    package, desired = outcome.package, outcome.desired
    folder = observe_folder(package.output_directory, package.name, session.digester)
    manifests = None
    if package.kubernetes_directory is not None:
        manifests = observe_folder(package.kubernetes_directory, package.name, session.digester)
    if snapshot is None:
        return Observed(folder, manifests=manifests)
    observed = snapshot.observe(
        folder,
        package.name,
        owner=package.owner,
        image_hash=desired.image_hash,
        image_ref=desired.image_ref,
        push_ref=desired.push_ref,
        base_image=base_image(package),
        base=desired.base,
        proxy_image=proxy_image(package),
    )
    return replace(observed, manifests=manifests)


def proxy_image(package: Package) -> str | None:
    container = package.manifest.output.container
    return container.proxy_image if package.manifest.output.mode == "container" and container.proxy else None


def _recheck_inputs(outcome: Outcome, session: Session) -> bool:
    """Before an input that the stat cache vouched for counts as changed, read it again: a
    cache row can be wrong (a cache is a hint, never the truth)."""
    folder, desired = outcome.observed.folder, outcome.desired
    if folder.status != "ours" or folder.image_hash == desired.image_hash:
        return False
    suspects = [
        file.path
        for file in desired.files
        if desired.file_digests[file.destination] != folder.inputs.get(file.destination)
    ]
    return session.digester.recheck(suspects)


def reconcile(
    paths: Sequence[str],
    session: Session,
    *,
    frozen: bool,
    prune: bool = False,
    use_engine: bool = True,
    only: set[Path] | None = None,
    dev: bool = False,
    reload: frozenset[Path] = frozenset(),
) -> Reconciliation:
    """Load every package below `paths`, compute desired and observed state, and plan.

    Raises EngineUnavailable when a package needs Docker and no engine answers:
    nothing has been changed at that point. With `use_engine` False only the
    Dockerfile folders are observed. With `only` (manifest paths), the whole tree is
    still loaded (so conflicts between packages are seen) but only those are planned,
    and nothing is pruned. `reload`: manifests whose dev containers should load new code.
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
        if outcome.desired is None:
            continue
        try:
            outcome.observed = _observe(outcome, session, snapshot)
        except EngineUnavailable:
            raise
        except ReconcilerError as error:
            outcome.problems.append(Problem(str(package.manifest_path), str(error)))
            continue
        if _recheck_inputs(outcome, session):  # the stat cache was wrong about an input: hash again
            outcome.desired = desire_packages([package], session, frozen=frozen, dev=dev, snapshot=snapshot)[0].desired
            outcome.observed = _observe(outcome, session, snapshot)
        intent = Intent.of(outcome.desired)
        if use_engine or intent.mode == "dockerfile":
            outcome.plan = plan_package(intent, outcome.observed, reload=package.manifest_path in reload)
        elif intent.mode == "kubernetes":  # offline, only what is committed can be checked
            outcome.plan = plan_manifests(intent, outcome.observed.manifests)
        else:
            outcome.plan = PackagePlan(intent)
        outcome.plan.notes.extend(outcome.desired.notes)
        outcome.problems.extend(Problem(str(package.manifest_path), e) for e in outcome.plan.errors)
    cleanup = Cleanup()
    if snapshot is not None and only is None:
        wanted = {o.package.owner: (o.desired.image_hash, o.desired.container_hash) for o in outcomes if o.desired}
        # a package whose desired state could not be computed still owns its objects
        wanted.update({o.package.owner: ("", "") for o in outcomes if o.desired is None})
        cleanup = plan_cleanup(
            snapshot.images or [],
            snapshot.containers,
            wanted,
            snapshot.container_images,
            [os.path.realpath(p) for p in paths],
            prune=prune,
            complete=workspace.complete and all(not o.problems for o in outcomes),
        )
    session.stat_cache.flush()
    return Reconciliation(outcomes, workspace.problems, workspace.manifests_found, cleanup, workspace.packages)


# -- the pipeline ------------------------------------------------------------------------


def run(
    paths: Sequence[str],
    options: Options,
    *,
    only: set[Path] | None = None,
    reload: frozenset[Path] = frozenset(),
    hold: Mapping[Path, str] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Reconciliation:
    """Make the packages below `paths` (only those in `only`, when given) what their manifests say.

    `hold` maps manifests to the container hash a caller has seen fail permanently: such a
    package is planned but not executed while its desired hash is the same (it is marked
    `held`). Raises a TemporaryError (no engine, a lock held too long) before changing
    anything; failures of single actions land in the outcomes' results."""
    manifests = only if only is not None else discover(list(paths))[0]
    with PackageLocks(manifests, timeout=options.lock_timeout_s, command=options.holder):
        with Session(build_slots=options.builds, secrets_file=options.secrets_file) as session:
            executor = session.executor(progress, should_stop)
            plan = _plan_for_run(paths, session, options, only, reload)
            pulled = _pull_missing_bases(plan, executor, options)
            if pulled:
                plan = _plan_for_run(paths, session, options, only, reload)
                for outcome in plan.outcomes:
                    outcome.results = pulled.get(outcome.package.name, [])
            runnable = [o for o in plan.outcomes if _runnable(o, hold)]
            work = [(o.desired, [a for a in o.plan.actions if a.kind is not ActionKind.PULL]) for o in runnable]
            for outcome, results in zip(runnable, executor.run_packages(work, jobs=options.jobs)):
                outcome.results += results
            if only is None and plan.cleanup.actions:
                plan.cleanup_results = executor.run_actions(None, plan.cleanup.actions)
            session.stat_cache.flush()
    return plan


def _plan_for_run(paths, session: Session, options: Options, only, reload) -> Reconciliation:
    return reconcile(
        paths, session, frozen=options.frozen, prune=options.prune, only=only, dev=options.dev, reload=reload
    )


def _pull_missing_bases(plan: Reconciliation, executor: Executor, options: Options) -> dict[str, list[ActionResult]]:
    """Pull every base image the plan says is missing; the results by package."""
    work = [
        (o, [a for a in o.plan.actions if a.kind is ActionKind.PULL])
        for o in plan.outcomes
        if o.plan and not o.problems
    ]
    work = [(o, pulls) for o, pulls in work if pulls]
    if not work:
        return {}
    results = executor.run_packages([(o.desired, pulls) for o, pulls in work], jobs=options.jobs)
    return {o.package.name: r for (o, _), r in zip(work, results)}


def _runnable(outcome: Outcome, hold: Mapping[Path, str] | None) -> bool:
    if not outcome.plan or not outcome.plan.actions or outcome.problems:
        return False
    if any(r.status == "failed" for r in outcome.results):
        return False  # its base image could not be pulled
    held = hold or {}
    if held.get(outcome.package.manifest_path) == outcome.desired.container_hash:
        outcome.held = True
        return False
    return True


COMMITTED_MODES = ("dockerfile", "kubernetes")


def check(paths: Sequence[str], session: Session) -> Reconciliation:
    """`apply --check`: whether each committed folder is up to date, offline: the Dockerfile
    folder in dockerfile mode, the Kubernetes folder in kubernetes mode. The other modes
    commit nothing, so there is nothing to check."""
    reconciliation = reconcile(paths, session, frozen=True, use_engine=False)
    reconciliation.outcomes = [o for o in reconciliation.outcomes if o.package.manifest.output.mode in COMMITTED_MODES]
    return reconciliation


def status(paths: Sequence[str], session: Session) -> Reconciliation:
    """Each package's state, with its serving container's readiness and the disk its images
    take; changes nothing."""
    reconciliation = reconcile(paths, session, frozen=True)
    if any(uses_engine(o.package) for o in reconciliation.outcomes):
        usage = session.engine.disk_usage()
        for outcome in reconciliation.outcomes:
            if uses_engine(outcome.package):
                outcome.images_on_disk = images_on_disk(usage, outcome.package.name)
    for outcome in reconciliation.outcomes:
        front = front_container(outcome)
        if front is not None and outcome.package.manifest.output.mode == "container":
            outcome.readiness = readiness(front)
    return reconciliation


def front_container(outcome: Outcome) -> ContainerState | None:
    """What publishes the package's port: its proxy, or the container that serves directly."""
    if outcome.observed is None:
        return None
    containers = outcome.observed.containers
    return next((c for c in containers if c.role == "proxy"), None) or next((c for c in containers if not c.role), None)


def serving_container(outcome: Outcome) -> ContainerState | None:
    """The container that answers requests: the one named `<name>-serving` behind a proxy."""
    if outcome.observed is None:
        return None
    name = serving_name(outcome.package)
    containers = outcome.observed.containers
    return next((c for c in containers if c.role == "backend" and c.name == name), None) or next(
        (c for c in containers if not c.role), None
    )


# -- outside the plan: lock, down and pull ----------------------------------------------


@dataclass
class Relocked:
    old: Lock | None
    new: Lock
    seconds: float
    base_note: str = ""  # why the base image is not pinned, when it is not


def relock(package: Package, session: Session, *, upgrade: bool) -> Relocked:
    """`reconciler lock`: resolve the requirements again and pin the base image. The pin is
    asked of the registry, then the engine; an existing pin stays unless `upgrade`."""
    started = time.perf_counter()
    try:
        old = read_lock(package)
    except InvalidInput:
        old = None  # being rewritten is the fix for a damaged lock
    new = resolve(package, session.wheels)
    reference = package.manifest.inference.environment.resolved_base_image
    base = old.base if old is not None and old.base is not None and old.base.reference == reference else None
    note = ""
    if BasePin.from_manifest(reference) is not None:
        base = None  # the manifest pins it itself
    elif upgrade or base is None or base.pin is None:
        try:
            base = pin_base_image(session.engine, reference, ask_registry=True)
        except EngineUnavailable as error:
            note = f"base image {reference} not pinned: {error}"
        else:
            if base.pin is None:
                note = f"base image {reference} not pinned: no registry answers for it and the engine has no copy"
    new = replace(new, base=base)
    write_lock(package, new)
    return Relocked(old, new, time.perf_counter() - started, note)


@dataclass
class Removal:
    container: ContainerState
    seconds: float
    error: str = ""


def down(packages: Sequence[Package], session: Session) -> list[Removal]:
    """Stop (in-flight requests finish) and remove the packages' containers; images stay."""
    owners = {p.owner for p in packages}
    engine = session.engine
    removals: list[Removal] = []
    for container in [c for c in Snapshot.read(engine, images=False).containers if c.manifest in owners]:
        started = time.perf_counter()
        error = ""
        try:
            engine.stop(container.id)
            engine.remove_container(container.id)
        except EngineUnavailable:
            raise
        except ReconcilerError as failure:
            error = str(failure)
        removals.append(Removal(container, time.perf_counter() - started, error))
    emptied = {r.container.manifest for r in removals if not r.error}
    for package in packages:
        if proxy_image(package) is not None and package.owner in emptied:
            try:
                engine.remove_network(network_name(package))
            except EngineUnavailable:
                raise
            except ReconcilerError:
                pass  # something else still uses it: it stays
    return removals


@dataclass
class Pulled:
    remote: str
    local: str
    image_id: str
    seconds: float


def pull(package: Package, session: Session, image_hash: str | None) -> Pulled:
    """Fetch `<registry>/<repository>:<hash12>` (the hash this machine computes, unless
    given), check its hash label, and tag it as the local image, as Azure's package.pull()."""
    manifest = package.manifest
    registry = manifest.output.image.registry
    if not registry:
        raise PermanentError(f"{package.name} has no output.image.registry to pull from")
    engine = session.engine
    if image_hash is None:
        [outcome] = desire_packages([package], session, frozen=True)
        if outcome.problems:
            raise InvalidInput(outcome.problems)
        image_hash = outcome.desired.image_hash
    remote = image_reference(manifest.image_repository, image_hash, registry)
    local = image_reference(manifest.image_repository, image_hash)
    started = time.perf_counter()
    image_id = engine.pull(remote)
    details = engine.inspect_image(image_id)
    pulled = image_state(details) if details else None
    if pulled is None or not pulled.hash.startswith(image_hash):
        raise PermanentError(f"{remote} carries hash {pulled and pulled.hash!r}, not {image_hash}")
    engine.tag(image_id, local)
    return Pulled(remote, local, image_id, time.perf_counter() - started)
