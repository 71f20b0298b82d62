"""The executor: carries out a plan's typed actions and decides nothing.

One handler per payload type, in an explicit dispatch table; each reads its payload and
nothing else. Packages run side by side on one bounded pool; a package's own actions run in
order, and once one fails the rest of that package's actions are skipped with `upstream
failed`. Other packages go on. Builds take a slot from a shared semaphore (one at a time by
default), held only around the build itself, so no pool ever waits on itself.

How a serving container is replaced is `serving`'s; `upkeep` holds the handlers of the
commands around apply (pull, lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.core.errors import InvalidInput, Problem, ReconcilerError, TemporaryError
from reconciler.desired.buildfolder import render_folder
from reconciler.desired.digest import Digester
from reconciler.desired.folder_writer import FolderWriter, write_stamped_folder
from reconciler.desired.kubernetes import render_kubernetes
from reconciler.desired.secrets import redact
from reconciler.desired.state import by_digest
from reconciler.desired.wheels import WheelCache
from reconciler.engine.builders import Builder, choose_builder
from reconciler.engine.docker import Engine
from reconciler.engine.endpoint import request_reload
from reconciler.engine.specs import ContainerSpec
from reconciler.execute import upkeep
from reconciler.execute.serving import Serving
from reconciler.plan import actions as payloads
from reconciler.plan.actions import Action

Progress = Callable[[str, str], None]  # (package, line)


@dataclass
class ActionResult:
    action: Action
    status: str  # done | failed | skipped
    seconds: float
    detail: str = ""
    permanent: bool = False  # failed in a way that retrying the same inputs cannot fix
    value: object = None  # what a handler found, for the report (the new lock, the image pulled)
    delay: float | None = None  # a temporary failure's own hint of when to try again
    problems: list[Problem] = field(default_factory=list)  # a failure in the user's files, each with its place

    @property
    def kind(self) -> str:
        return self.action.kind.verb

    @property
    def target(self) -> str:
        return self.action.target

    @property
    def cause(self) -> str:
        return self.action.cause


class Executor:
    """Runs actions against the engine and the filesystem. `engine` is called only by
    actions that need one, so writing Dockerfile folders never connects to Docker."""

    def __init__(
        self,
        *,
        engine: Callable[[], Engine],
        wheels: WheelCache,
        digester: Digester,
        build_slots: threading.BoundedSemaphore,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self._engine = engine
        self.wheels = wheels
        self.digester = digester
        self.build_slots = build_slots
        self.progress = progress or (lambda package, line: None)
        self.should_stop = should_stop
        self._builder: Builder | None = None
        self._builder_lock = threading.Lock()
        self.handlers: dict[type, Callable[[Action], object]] = {
            payloads.PullImage: lambda action: self.engine.pull(action.payload.reference)[7:19],
            payloads.WriteFolder: self._write,
            payloads.WriteManifests: self._write_manifests,
            payloads.Build: self._build,
            payloads.Push: self._push,
            payloads.CreateDirect: lambda action: self._serving(action).create_direct(action.payload),
            payloads.RecreateDirect: lambda action: self._serving(action).recreate_direct(action.payload),
            payloads.Swap: lambda action: self._serving(action).swap(action.payload),
            payloads.Start: lambda action: self._serving(action).start(action.payload),
            payloads.Reload: self._reload,
            payloads.CreateProxy: lambda action: self._serving(action).create_proxy(action.payload),
            payloads.StartProxy: lambda action: self._serving(action).start_proxy(action.payload),
            payloads.Retire: lambda action: self._serving(action).retire(action.payload),
            payloads.RemoveContainer: self._remove_container,
            payloads.RemoveImage: self._remove_image,
            payloads.RemoveNetwork: self._remove_network,
            payloads.FetchImage: lambda action: upkeep.fetch(self.engine, action.payload),
            payloads.Relock: lambda action: upkeep.relock(self._engine, self.wheels, action.payload),
        }

    @property
    def engine(self) -> Engine:
        return self._engine()

    def builder(self, package: str) -> Builder:
        """Chosen once per run, on the first build; a fallback to the legacy builder is said once."""
        with self._builder_lock:
            if self._builder is None:
                self._builder = choose_builder(self.engine)
                if self._builder.note:
                    self.progress(package, f"note: {self._builder.note}")
            return self._builder

    # -- handlers: one per payload type ---------------------------------------------------

    def _write(self, action: Action) -> str:
        payload: payloads.WriteFolder = action.payload
        revision = payload.revision.to_json() if payload.revision else None
        stamp = render_folder(payload.desired, self.wheels, self.digester, revision)
        return f"{len(stamp.files)} files"

    def _write_manifests(self, action: Action) -> str:
        """Render the Kubernetes folder for the image the registry has: its digest is asked of
        the registry, which is what the cluster will pull from."""
        payload: payloads.WriteManifests = action.payload
        desired = payload.desired
        package = desired.package
        digest = self.engine.registry_digest(desired.push_ref)
        if not digest:
            raise TemporaryError(f"the registry gives no digest for {desired.push_ref}")
        files = render_kubernetes(
            package, image_hash=desired.image_hash, image=by_digest(desired.push_ref, digest), tag=desired.push_ref
        )

        def fill(writer: FolderWriter) -> None:
            for name, text in files.items():
                writer.text(name, text)

        write_stamped_folder(
            package.kubernetes_directory,
            package=package.name,
            image_hash=desired.manifests_hash,
            inputs=desired.manifests_inputs,
            digester=self.digester,
            fill=fill,
            revision=payload.revision.to_json() if payload.revision else None,
        )
        return f"{len(files)} files, image {digest[:19]}"

    def _build(self, action: Action) -> str:
        builder = self.builder(action.package)
        with self.build_slots:
            built = builder.build(action.payload.spec, lambda line: self.progress(action.package, line))
        return f"image {built.image_id[7:19]}, {built.cached} of {built.steps} steps cached"

    def _push(self, action: Action) -> str:
        digest = self.engine.push(action.payload.reference)
        return f"digest {digest}" if digest else "pushed"

    def _serving(self, action: Action) -> Serving:
        return Serving(self.engine, lambda line: self.progress(action.package, line))

    def _reload(self, action: Action) -> str:
        at = action.payload.at
        request_reload(at.host, at.port)
        return "reloaded (dev)"

    def _remove_container(self, action: Action) -> str:
        self.engine.stop(action.payload.container)
        self.engine.remove_container(action.payload.container)
        return "removed"

    def _remove_image(self, action: Action) -> str:
        self.engine.remove_image(action.payload.image)
        return "removed"

    def _remove_network(self, action: Action) -> str:
        self.engine.remove_network(action.payload.name)
        return "removed"

    # -- running ----------------------------------------------------------------------

    def run_action(self, action: Action) -> ActionResult:
        started = time.perf_counter()
        status, permanent, value, delay, problems = "done", False, None, None, []
        try:
            done = self.handlers[type(action.payload)](action)  # a detail, or a value with one
            detail, value = (done, None) if isinstance(done, str) else (done.detail, done)
        except ReconcilerError as error:
            detail, status, permanent = redact(str(error), _secrets_of(action.payload)), "failed", not error.temporary
            delay = error.delay
            problems = error.problems if isinstance(error, InvalidInput) else []
        except OSError as error:  # a full disk, a folder that vanished: may pass on a later try
            detail, status = f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), "failed"
        except Exception as error:  # noqa: BLE001 - a bug or an SDK surprise: this package fails, others go on
            detail, status = redact(f"{type(error).__name__}: {error}", _secrets_of(action.payload)), "failed"
        return ActionResult(action, status, time.perf_counter() - started, detail, permanent, value, delay, problems)

    def run_actions(self, actions: Sequence[Action]) -> list[ActionResult]:
        """A package's actions in order; after a failure (or a stop) the rest are skipped."""
        results: list[ActionResult] = []
        upstream_failed = False
        for action in actions:
            if upstream_failed or self.should_stop():
                why = "upstream failed" if upstream_failed else "interrupted"
                results.append(ActionResult(action, "skipped", 0.0, why))
                continue
            result = self.run_action(action)
            results.append(result)
            upstream_failed = result.status == "failed"
        return results

    def run_packages(self, work: Sequence[Sequence[Action]], *, jobs: int) -> list[list[ActionResult]]:
        """Each package's actions, packages side by side on at most `jobs` threads. They are
        daemon threads (a ThreadPoolExecutor's are joined at exit): a watch stopped by SIGTERM
        exits without waiting for a build in progress, leaving what a kill would, which the next
        run converges from."""
        pending = iter(enumerate(work))
        results: list[list[ActionResult]] = [[] for _ in work]
        errors: list[BaseException] = []  # a bug in the loop itself: raised again in the caller's thread
        taking = threading.Lock()

        def worker() -> None:
            while True:
                with taking:
                    item = next(pending, None)
                if item is None:
                    return
                index, actions = item
                try:
                    results[index] = self.run_actions(actions)
                except BaseException as error:  # noqa: BLE001
                    errors.append(error)
                    return

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(jobs, len(work))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results


def _secrets_of(payload: object) -> dict[str, str]:
    """The secret values a payload's containers get: an error about them is told without them."""
    found: dict[str, str] = {}
    for value in vars(payload).values():
        if isinstance(value, ContainerSpec):
            found |= value.secrets
    return found


def printing_progress(stream) -> Progress:
    """Build progress as lines `package: Step 3/17 : COPY ...`, safe from several threads."""
    lock = threading.Lock()

    def progress(package: str, line: str) -> None:
        with lock:
            stream.write(f"{package}: {line}\n")
            stream.flush()

    return progress
