"""The executor: carries out a plan's typed actions and decides nothing.

One handler per action kind, in an explicit dispatch table. Packages run side by side
on one bounded pool; a package's own actions run in order, and once one fails the rest
of that package's actions are skipped with `upstream failed`. Other packages go on.
Builds take a slot from a shared semaphore (one at a time by default), held only around
the build itself, so no pool ever waits on itself.

How a serving container is replaced (behind the proxy, or directly after a canary) is
`serving`'s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from reconciler.core.errors import ReconcilerError, TemporaryError
from reconciler.desired.buildfolder import render_folder
from reconciler.desired.digest import Digester
from reconciler.desired.folder_writer import FolderWriter, write_stamped_folder
from reconciler.desired.kubernetes import render_kubernetes
from reconciler.desired.revision import Revision, revision_of
from reconciler.desired.state import Desired, by_digest
from reconciler.desired.wheels import WheelCache
from reconciler.engine import labels
from reconciler.engine.builders import Builder, choose_builder
from reconciler.engine.docker import Engine
from reconciler.engine.endpoint import request_reload
from reconciler.execute.serving import Serving
from reconciler.plan import Action, ActionKind

Progress = Callable[[str, str], None]  # (package, line)


@dataclass
class ActionResult:
    action: Action
    status: str  # done | failed | skipped
    seconds: float
    detail: str = ""
    permanent: bool = False  # failed in a way that retrying the same inputs cannot fix

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
        self._revisions: dict[str, Revision | None] = {}
        self.handlers: dict[ActionKind, Callable[[Desired | None, Action], str]] = {
            ActionKind.PULL: self._pull,
            ActionKind.WRITE: self._write,
            ActionKind.WRITE_MANIFESTS: self._write_manifests,
            ActionKind.BUILD: self._build,
            ActionKind.PUSH: self._push,
            ActionKind.CREATE: self._create,
            ActionKind.RECREATE: self._recreate,
            ActionKind.START: self._start,
            ActionKind.RELOAD: self._reload,
            ActionKind.REMOVE_CONTAINER: self._remove_container,
            ActionKind.REMOVE_IMAGE: self._remove_image,
            ActionKind.CREATE_PROXY: self._create_proxy,
            ActionKind.RECREATE_PROXY: self._recreate_proxy,
            ActionKind.START_PROXY: self._start_proxy,
            ActionKind.RETIRE: self._retire,
        }

    @property
    def engine(self) -> Engine:
        return self._engine()

    def revision(self, desired: Desired) -> Revision | None:
        """The commit the package's inputs come from, asked of git once per run."""
        key = str(desired.package.manifest_path)
        if key not in self._revisions:
            self._revisions[key] = revision_of(desired.package)
        return self._revisions[key]

    def _revision_json(self, desired: Desired) -> dict | None:
        revision = self.revision(desired)
        return revision.to_json() if revision else None

    def _revision_labels(self, desired: Desired) -> dict[str, str]:
        revision = self.revision(desired)
        return revision.labels() if revision else {}

    def builder(self, package: str) -> Builder:
        """Chosen once per run, on the first build; a fallback to the legacy builder is said once."""
        with self._builder_lock:
            if self._builder is None:
                self._builder = choose_builder(self.engine)
                if self._builder.note:
                    self.progress(package, f"note: {self._builder.note}")
            return self._builder

    # -- handlers: one per action kind ------------------------------------------------

    def _pull(self, desired: Desired | None, action: Action) -> str:
        return self.engine.pull(action.image)[7:19]

    def _write(self, desired: Desired, action: Action) -> str:
        stamp = render_folder(desired, self.wheels, self.digester, self._revision_json(desired))
        return f"{len(stamp.files)} files"

    def _write_manifests(self, desired: Desired, action: Action) -> str:
        """Render the Kubernetes folder for the image the registry has: its digest is asked of
        the registry, which is what the cluster will pull from."""
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
            revision=self._revision_json(desired),
        )
        return f"{len(files)} files, image {digest[:19]}"

    def _build(self, desired: Desired, action: Action) -> str:
        package = desired.package
        manifest = package.manifest
        tags = [action.image, f"{manifest.image_repository}:latest"]
        if desired.registry_ref:
            tags.append(desired.registry_ref)
        image_labels = {k: v for k, v in manifest.labels.items() if not k.startswith("reconciler.")}
        image_labels.update(self._revision_labels(desired))
        image_labels.update(
            {
                labels.PACKAGE: package.name,
                labels.IMAGE_HASH: desired.image_hash,
                labels.MANIFEST: package.owner,
            }
        )
        environment = manifest.inference.environment
        builder = self.builder(package.name)
        with self.build_slots:
            built = builder.build(
                str(package.output_directory),
                tags,
                image_labels,
                network=bool(environment.system_packages),
                platform=None if environment.platform == "linux/amd64" else environment.platform,
                progress=lambda line: self.progress(package.name, line),
            )
        return f"image {built.image_id[7:19]}, {built.cached} of {built.steps} steps cached"

    def _push(self, desired: Desired | None, action: Action) -> str:
        digest = self.engine.push(action.image)
        return f"digest {digest}" if digest else "pushed"

    def _serving(self, desired: Desired) -> Serving:
        package = desired.package.name
        return Serving(self.engine, desired, self._revision_labels(desired), lambda line: self.progress(package, line))

    def _create(self, desired: Desired, action: Action) -> str:
        serving = self._serving(desired)
        return serving.replace_behind_proxy(action) if action.proxied else serving.create_direct(action)

    def _recreate(self, desired: Desired, action: Action) -> str:
        serving = self._serving(desired)
        return serving.replace_behind_proxy(action) if action.proxied else serving.recreate_direct(action)

    def _start(self, desired: Desired, action: Action) -> str:
        return self._serving(desired).start(action)

    def _create_proxy(self, desired: Desired, action: Action) -> str:
        return self._serving(desired).create_proxy(action)

    def _recreate_proxy(self, desired: Desired, action: Action) -> str:
        return self._serving(desired).recreate_proxy(action)

    def _start_proxy(self, desired: Desired, action: Action) -> str:
        return self._serving(desired).start_proxy(action)

    def _retire(self, desired: Desired, action: Action) -> str:
        return self._serving(desired).retire(action)

    def _reload(self, desired: Desired, action: Action) -> str:
        request_reload(action.host, action.port)
        return "reloaded (dev)"

    def _remove_container(self, desired: Desired | None, action: Action) -> str:
        self.engine.stop(action.subject)
        self.engine.remove_container(action.subject)
        return "removed"

    def _remove_image(self, desired: Desired | None, action: Action) -> str:
        self.engine.remove_image(action.subject)
        return "removed"

    # -- running ----------------------------------------------------------------------

    def run_action(self, desired: Desired | None, action: Action) -> ActionResult:
        started = time.perf_counter()
        permanent = False
        try:
            detail = self.handlers[action.kind](desired, action)
            status = "done"
        except ReconcilerError as error:
            detail, status, permanent = str(error), "failed", not error.temporary
        except OSError as error:  # a full disk, a folder that vanished: may pass on a later try
            detail, status = f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), "failed"
        except Exception as error:  # noqa: BLE001 - a bug or an SDK surprise: this package fails, others go on
            detail, status = f"{type(error).__name__}: {error}", "failed"
        return ActionResult(action, status, time.perf_counter() - started, detail, permanent)

    def run_actions(self, desired: Desired | None, actions: Sequence[Action]) -> list[ActionResult]:
        """A package's actions in order; after a failure (or a stop) the rest are skipped."""
        results: list[ActionResult] = []
        upstream_failed = False
        for action in actions:
            if upstream_failed or self.should_stop():
                why = "upstream failed" if upstream_failed else "interrupted"
                results.append(ActionResult(action, "skipped", 0.0, why))
                continue
            result = self.run_action(desired, action)
            results.append(result)
            upstream_failed = result.status == "failed"
        return results

    def run_packages(
        self, work: Sequence[tuple[Desired | None, Sequence[Action]]], *, jobs: int
    ) -> list[list[ActionResult]]:
        """Each package's actions, packages side by side on at most `jobs` threads."""
        if not work:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(work)))) as pool:
            futures = [pool.submit(self.run_actions, desired, actions) for desired, actions in work]
            return [future.result() for future in futures]


def printing_progress(stream) -> Progress:
    """Build progress as lines `package: Step 3/17 : COPY ...`, safe from several threads."""
    lock = threading.Lock()

    def progress(package: str, line: str) -> None:
        with lock:
            stream.write(f"{package}: {line}\n")
            stream.flush()

    return progress
