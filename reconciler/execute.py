"""The executor: carries out a plan's actions and decides nothing.

Packages run side by side on one bounded pool; a package's own actions run in
order, and once one fails the rest of that package's actions are skipped with
`upstream failed`. Other packages go on. Builds take a slot from the session's
build semaphore (one at a time by default), held only around the build itself, so
no pool ever waits on itself.

A serving container is only ever replaced by one proven ready: the new image first
runs as a canary on an ephemeral loopback port; only when its /ready answers is the
old container stopped and a fresh one started on the real port. A canary that fails
is removed and the old container keeps serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from reconciler.apply import ActionResult, Outcome, Reconciliation, Session
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.desired.buildfolder import render_folder
from reconciler.desired.dockerfile import DEV_APP_ROOT
from reconciler.engine import labels
from reconciler.engine.docker import EngineError
from reconciler.engine.endpoint import score_url
from reconciler.plan import Action

Progress = Callable[[str, str], None]  # (package, line)


class ContainerNotReady(PermanentError):
    """A container of this image did not become ready: the same image will not either."""


class Executor:
    def __init__(self, session: Session, progress: Progress, should_stop: Callable[[], bool] = lambda: False):
        self.session = session
        self.progress = progress
        self.should_stop = should_stop

    # -- handlers: one per action kind ------------------------------------------------

    def pull(self, outcome: Outcome, action: Action) -> str:
        image_id = self.session.engine.pull(action.target)
        return image_id[7:19]

    def write(self, outcome: Outcome, action: Action) -> str:
        stamp = render_folder(outcome.desired, self.session.wheels, self.session.digester)
        return f"{len(stamp.files)} files"

    def build(self, outcome: Outcome, action: Action) -> str:
        package, desired = outcome.package, outcome.desired
        manifest = package.manifest
        tags = [desired.image_ref, f"{manifest.image_repository}:latest"]
        if desired.registry_ref:
            tags.append(desired.registry_ref)
        image_labels = {k: v for k, v in manifest.labels.items() if not k.startswith("reconciler.")}
        image_labels.update(
            {
                labels.PACKAGE: package.name,
                labels.IMAGE_HASH: desired.image_hash,
                labels.MANIFEST: str(package.manifest_path),
            }
        )
        environment = manifest.inference.environment
        with self.session.build_slots:
            built = self.session.engine.build(
                str(package.output_directory),
                tags,
                image_labels,
                network=bool(environment.system_packages),
                platform=None if environment.platform == "linux/amd64" else environment.platform,
                progress=lambda line: self.progress(package.name, line),
            )
        return f"image {built.image_id[7:19]}, {built.cached} of {built.steps} steps cached"

    def push(self, outcome: Outcome, action: Action) -> str:
        digest = self.session.engine.push(action.target)
        return f"digest {digest}" if digest else "pushed"

    def _container_labels(self, outcome: Outcome, role: str = "") -> dict[str, str]:
        container_labels = {
            labels.MANAGED: "true",
            labels.PACKAGE: outcome.package.name,
            labels.IMAGE_HASH: outcome.desired.image_hash,
            labels.CONTAINER_HASH: outcome.desired.container_hash,
            labels.MANIFEST: str(outcome.package.manifest_path),
        }
        if role:
            container_labels[labels.ROLE] = role
        return container_labels

    def _image(self, outcome: Outcome) -> str:
        return f"{outcome.package.manifest.image_repository}:{outcome.desired.short_hash}"

    def _container_options(self, outcome: Outcome) -> dict:
        """Dev mode (watch --dev): the source folder mounted read-only, one worker, reloads on request."""
        if not outcome.desired.dev:
            return {}
        return {
            "mounts": {str(outcome.package.source_directory): DEV_APP_ROOT},
            "environment": {"RECONCILER_DEV": "1", "AML_APP_ROOT": DEV_APP_ROOT, "WORKER_COUNT": "1"},
        }

    def _ready_or_fail(
        self, container_id: str, host: str, port: int, what: str, outcome: Outcome, remove: bool = True
    ) -> None:
        """Wait for /ready; on failure show the container's last log lines (and remove it)."""
        engine = self.session.engine
        why = engine.wait_ready(container_id, host, port, outcome.package.manifest.output.container.ready_timeout_s)
        if why:
            lines = engine.logs(container_id)
            if remove:
                engine.remove_container(container_id)
            tail = "\n    ".join(lines[-20:]) or "(no output)"
            raise ContainerNotReady(f"{what} did not become ready: {why}; its last log lines:\n    {tail}")

    def _ready_at(self, outcome: Outcome) -> str:
        container = outcome.package.manifest.output.container
        return f"ready at {score_url(container.host, container.port)}"

    def create(self, outcome: Outcome, action: Action) -> str:
        engine = self.session.engine
        container = outcome.package.manifest.output.container
        name = outcome.package.manifest.container_name
        container_id = engine.create_container(
            self._image(outcome),
            name,
            host=container.host,
            port=container.port,
            labels=self._container_labels(outcome),
            **self._container_options(outcome),
        )
        try:
            engine.start(container_id)
        except EngineError:
            engine.remove_container(container_id)
            raise
        self._ready_or_fail(container_id, container.host, container.port, f"container {name}", outcome)
        return self._ready_at(outcome)

    def start(self, outcome: Outcome, action: Action) -> str:
        container = outcome.package.manifest.output.container
        self.session.engine.start(action.subject)
        self._ready_or_fail(action.subject, container.host, container.port, "the container", outcome, remove=False)
        return self._ready_at(outcome)

    def recreate(self, outcome: Outcome, action: Action) -> str:
        engine = self.session.engine
        manifest = outcome.package.manifest
        container, name, image = manifest.output.container, manifest.container_name, self._image(outcome)
        old_id = action.subject
        # 1. the canary: the new image on an ephemeral loopback port
        canary = engine.create_container(
            image,
            f"{name}-canary-{outcome.desired.short_hash[:8]}",
            host="127.0.0.1",
            port=0,
            labels=self._container_labels(outcome, role="canary"),
            restart=False,
            **self._container_options(outcome),
        )
        try:
            engine.start(canary)
            self._ready_or_fail(
                canary,
                "127.0.0.1",
                engine.published_port(canary),
                "the canary (the old container keeps serving)",
                outcome,
            )
        finally:
            engine.remove_container(canary)
        # 2. proven: move the old one aside, put a fresh one on the real port
        engine.rename(old_id, f"{name}-previous-{int(time.time())}")
        new_id = engine.create_container(
            image,
            name,
            host=container.host,
            port=container.port,
            labels=self._container_labels(outcome),
            **self._container_options(outcome),
        )
        engine.stop(old_id)
        try:
            engine.start(new_id)
            self._ready_or_fail(new_id, container.host, container.port, f"container {name}", outcome)
        except ReconcilerError:
            engine.remove_container(new_id)
            engine.rename(old_id, name)
            engine.start(old_id)
            raise
        engine.remove_container(old_id)
        return self._ready_at(outcome)

    def remove(self, outcome: Outcome | None, action: Action) -> str:
        engine = self.session.engine
        if action.subject_kind == "image":
            engine.remove_image(action.subject)
        else:
            engine.stop(action.subject)
            engine.remove_container(action.subject)
        return "removed"

    # -- running ----------------------------------------------------------------------

    def run_action(self, outcome: Outcome | None, action: Action) -> ActionResult:
        started = time.perf_counter()
        permanent = False
        try:
            detail = getattr(self, action.kind)(outcome, action)
            status = "done"
        except ReconcilerError as error:
            detail, status, permanent = str(error), "failed", not error.temporary
        except OSError as error:  # a full disk, a folder that vanished: may pass on a later try
            detail, status = f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), "failed"
        except Exception as error:  # noqa: BLE001 - a bug or an SDK surprise: this package fails, others go on
            detail, status = f"{type(error).__name__}: {error}", "failed"
        seconds = time.perf_counter() - started
        return ActionResult(action.kind, action.target, action.cause, status, seconds, detail, permanent)

    def run_package(self, outcome: Outcome, kinds: frozenset[str] | None) -> None:
        upstream_failed = False
        for action in outcome.plan.actions:
            if kinds is not None and action.kind not in kinds:
                continue
            if upstream_failed or self.should_stop():
                outcome.results.append(
                    ActionResult(
                        action.kind,
                        action.target,
                        action.cause,
                        "skipped",
                        0.0,
                        "upstream failed" if upstream_failed else "interrupted",
                    )
                )
                continue
            result = self.run_action(outcome, action)
            outcome.results.append(result)
            upstream_failed = result.status == "failed"


def execute(
    reconciliation: Reconciliation,
    session: Session,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
    kinds: frozenset[str] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run the planned actions (only those of `kinds`, when given); results land on each outcome.
    Once `should_stop` says so, the actions not yet started are skipped."""
    executor = Executor(session, progress or (lambda package, line: None), should_stop)
    pending = [o for o in reconciliation.outcomes if o.plan and o.plan.actions and not o.problems]
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(pending)))) as pool:
            for future in [pool.submit(executor.run_package, outcome, kinds) for outcome in pending]:
                future.result()
    if kinds is None:
        for action in reconciliation.cleanup.actions:
            reconciliation.cleanup_results.append(executor.run_action(None, action))
    session.stat_cache.flush()


def printing_progress(stream) -> Progress:
    """Build progress as lines `package: Step 3/17 : COPY ...`, safe from several threads."""
    lock = threading.Lock()

    def progress(package: str, line: str) -> None:
        with lock:
            stream.write(f"{package}: {line}\n")
            stream.flush()

    return progress
