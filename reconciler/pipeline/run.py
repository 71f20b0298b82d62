"""The one pipeline: lock -> plan -> pull -> re-plan -> execute. Every caller uses it.

`apply`, `watch` and `sync` decide *when* to run; this module is the only place that says
*how* a run goes:

1. lock the packages (two reconcilers never act on one package at once);
2. plan: discover -> load -> desire -> observe -> plan, re-reading everything
   (level-triggered); a package that fails at any stage carries its problems and the
   others go on;
3. pull the base images the plan says are missing, then plan again: a base image's pin is
   part of the image hash, so a plan made without it would build the wrong image;
4. stamp the actions with the commit their artifacts come from, and execute them.

The Docker engine is asked only when a package needs it (modes that build, or --prune),
and then once per kind of object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.errors import InvalidInput, Problem, ReconcilerError
from reconciler.core.package_locks import PackageLocks
from reconciler.desired.buildfolder import runtime_archive
from reconciler.desired.proxy import CANARY_SERVER, canary_name, network_name
from reconciler.desired.revision import revision_of
from reconciler.desired.sbom import render_sbom, sbom_label
from reconciler.desired.state import desire
from reconciler.engine.docker import Engine, EngineUnavailable, engine_address
from reconciler.engine.endpoint import ServerCounts
from reconciler.observed.folder import observe_folder
from reconciler.observed.state import Observed, Snapshot, images_on_disk, readiness
from reconciler.pipeline.outcome import CanaryInProgress, Outcome, Reconciliation
from reconciler.pipeline.session import Session
from reconciler.plan import (
    Action,
    ActionKind,
    Cleanup,
    Intent,
    PackagePlan,
    plan_cleanup,
    plan_manifests,
    plan_package,
    plan_restarts,
)
from reconciler.plan.actions import Build
from reconciler.spec.discovery import discover, load_workspace
from reconciler.spec.package import Package

if TYPE_CHECKING:  # loaded by the session when a run has something to do
    from reconciler.execute import Executor, Progress


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
    release: bool = False  # rollback --release: a package a rollback holds deploys its inputs again
    data_root: Path | None = None  # sync: collected data under <data_root>/<package>/, kept across clones


# -- plan: desired, observed, actions ----------------------------------------------------


def base_image(package: Package) -> str | None:
    """The base image whose pin the package's hash covers; None in modes that do not build."""
    return package.manifest.inference.environment.resolved_base_image if package.mode.builds else None


def proxy_image(package: Package) -> str | None:
    container = package.manifest.output.container
    return container.proxy_image if package.mode.serves and container.proxy else None


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
    """Each package's desired state. With a snapshot, modes that build pin their base image
    on the engine."""
    outcomes = []
    for package in packages:
        outcome = Outcome(package)
        outcomes.append(outcome)
        base = base_image(package)
        if snapshot is not None and base in snapshot.base_failures:
            outcome.problems.append(Problem(str(package.manifest_path), snapshot.base_failures[base]))
            continue
        too_many_cpus = _more_cpus_than_the_engine(package, snapshot) if snapshot is not None else None
        if too_many_cpus is not None:
            outcome.problems.append(too_many_cpus)
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
                runtime=session.runtime_digest,
                data_root=session.data_root,
            )
        except InvalidInput as error:
            outcome.problems.extend(error.problems)
        except ReconcilerError as error:
            outcome.problems.append(Problem(str(package.manifest_path), str(error)))
    return outcomes


def _more_cpus_than_the_engine(package: Package, snapshot: Snapshot) -> Problem | None:
    """A serving container given more CPUs than the engine's host has is refused when it is
    created, after its build: say so before anything is built (an Azure instance size that
    `import azure` carried over is larger than most hosts)."""
    cores = package.manifest.output.resources.cpu_cores
    if not package.mode.serves or cores is None or cores <= (cpus := snapshot.engine_cpus()):
        return None
    return package.problem(
        ("output", "resources", "cpu"),
        f"{cores:g} CPUs, and the host of the Docker engine at {engine_address()} has {cpus}: the engine refuses "
        f"a container given more CPUs than its host has; lower it to {cpus} or less",
    )


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
        serves=package.mode.serves,
        network=network_name(package) if proxy_image(package) else "",
    )
    return replace(observed, manifests=manifests)


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
    release: bool = False,
) -> Reconciliation:
    """Load every package below `paths`, compute desired and observed state, and plan.

    Raises EngineUnavailable when a package needs Docker and no engine answers:
    nothing has been changed at that point. With `use_engine` False only the
    folders are observed. With `only` (manifest paths), the whole tree is still loaded
    (so conflicts between packages are seen) but only those are planned, and nothing is
    pruned. `reload`: manifests whose dev containers should load new code.
    """
    workspace = load_workspace(paths)
    selected = [p for p in workspace.packages if only is None or p.manifest_path in only]
    prune = prune and only is None
    snapshot: Snapshot | None = None
    if use_engine and (prune or any(p.mode.uses_engine for p in selected)):
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
        if use_engine or not intent.mode.uses_engine:
            outcome.plan = plan_package(
                intent, outcome.observed, reload=package.manifest_path in reload, release=release
            )
        elif intent.mode.renders_manifests:  # offline, only what is committed can be checked
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
            networks=list((snapshot.networks or {}).values()),
            package_names=frozenset(p.name for p in workspace.packages),
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
    `held`); only what served before is healed (a stopped container started). Raises a TemporaryError (no engine, a lock held too long) before changing
    anything; failures of single actions land in the outcomes' results."""
    manifests = only if only is not None else discover(list(paths))[0]
    with PackageLocks(manifests, timeout=options.lock_timeout_s, command=options.holder):
        with Session(
            build_slots=options.builds, secrets_file=options.secrets_file, data_root=options.data_root
        ) as session:
            executor = session.executor(progress, should_stop)
            plan = _plan_for_run(paths, session, options, only, reload)
            pulled = _pull_missing_bases(plan, executor, options)
            if pulled:
                plan = _plan_for_run(paths, session, options, only, reload)
                for outcome in plan.outcomes:
                    outcome.results = pulled.get(outcome.package.name, [])
            runnable = [o for o in plan.outcomes if _runnable(o, hold)]
            work = [_with_provenance(o, [a for a in o.plan.actions if a.kind is not ActionKind.PULL]) for o in runnable]
            restarts = [(o, plan_restarts(o.plan.intent, o.observed)) for o in plan.outcomes if o.held]
            healing = [o for o, actions in restarts if actions]
            work += [actions for _, actions in restarts if actions]
            for outcome, results in zip(runnable + healing, executor.run_packages(work, jobs=options.jobs)):
                outcome.results += results
            if only is None and plan.cleanup.actions:
                plan.cleanup_results = executor.run_actions(plan.cleanup.actions)
            session.stat_cache.flush()
    return plan


def _plan_for_run(paths, session: Session, options: Options, only, reload) -> Reconciliation:
    return reconcile(
        paths,
        session,
        frozen=options.frozen,
        prune=options.prune,
        only=only,
        dev=options.dev,
        reload=reload,
        release=options.release,
    )


def _with_provenance(outcome: Outcome, actions: list[Action]) -> list[Action]:
    """The actions, with where their artifacts come from: the commit (asked of git once per
    package, and only when something is about to be made) and, on an image, the digest of its
    bill of materials."""
    if not any(action.records_revision for action in actions):
        return actions
    revision = revision_of(outcome.package)
    stamped = [action.with_revision(revision) for action in actions]
    if any(isinstance(action.payload, Build) for action in stamped):
        labels = sbom_label(render_sbom(outcome.desired, runtime_archive()))
        stamped = [
            replace(action, payload=action.payload.with_labels(labels)) if isinstance(action.payload, Build) else action
            for action in stamped
        ]
    return stamped


def _pull_missing_bases(plan: Reconciliation, executor: Executor, options: Options) -> dict[str, list]:
    """Pull every base image the plan says is missing; the results by package."""
    work = [
        (o, [a for a in o.plan.actions if a.kind is ActionKind.PULL])
        for o in plan.outcomes
        if o.plan and not o.problems
    ]
    work = [(o, pulls) for o, pulls in work if pulls]
    if not work:
        return {}
    results = executor.run_packages([pulls for _, pulls in work], jobs=options.jobs)
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


def check(paths: Sequence[str], session: Session) -> Reconciliation:
    """`apply --check`: whether each committed folder is up to date, offline (the modes whose
    output is committed: the Dockerfile folder, the Kubernetes folder). The other modes commit
    nothing, so there is nothing to check."""
    reconciliation = reconcile(paths, session, frozen=True, use_engine=False)
    reconciliation.outcomes = [o for o in reconciliation.outcomes if o.package.mode.commits_output]
    return reconciliation


def status(paths: Sequence[str], session: Session) -> Reconciliation:
    """Each package's state, with its serving container's readiness and the disk its images
    take; changes nothing."""
    reconciliation = reconcile(paths, session, frozen=True)
    if any(o.package.mode.builds for o in reconciliation.outcomes):
        usage = session.engine.disk_usage()
        for outcome in reconciliation.outcomes:
            if outcome.package.mode.builds:
                outcome.images_on_disk = images_on_disk(usage, outcome.package.name)
    for outcome in reconciliation.outcomes:
        front = outcome.front_container()
        if front is not None and outcome.package.mode.serves:
            outcome.readiness = readiness(front)
            outcome.canary = canary_in_progress(outcome, session.engine)
    return reconciliation


def canary_in_progress(outcome: Outcome, engine: Engine) -> CanaryInProgress | None:
    """The package's canary, when one serves now, with its own counts (those since it began)."""
    settings = outcome.package.manifest.output.container.canary
    containers = outcome.observed.containers if outcome.observed else []
    name = canary_name(outcome.package)
    canary = next((c for c in containers if c.role == "backend" and c.name == name and c.state == "running"), None)
    proxy = next((c for c in containers if c.role == "proxy" and c.state == "running"), None)
    if settings is None or canary is None or proxy is None:
        return None
    try:
        counts = engine.proxy_counts(proxy.id, CANARY_SERVER).since(ServerCounts.of_label(canary.canary))
    except ReconcilerError:
        counts = None
    return CanaryInProgress(canary.name, settings.weight, settings.max_error_rate, counts)
