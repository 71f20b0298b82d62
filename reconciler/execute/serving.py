"""Replacing the container that serves a package, without a broken service.

**Behind the proxy** (the default): a new container starts beside the serving one, on the
package's network, with only an ephemeral loopback port for the readiness probe. Once ready,
it takes the name `<name>-serving` (the old one gives it up first); the proxy, which resolves
that name every 100 ms, sends new requests to it, and the old container is drained (the
runtime finishes what it serves) and removed. The container that passed readiness is the one that serves: one
init() per update, and no refused request. Every step is one engine call whose result shows
in the container list (labels and names), so an update interrupted anywhere (a kill -9, an
engine restart) is recognised by the planner and finished by the next apply.

**Directly** (`output.container.proxy: false`): the new image runs as a canary on an
ephemeral port first; only when it is ready is the old container stopped and a fresh one
started on the real port. Requests are refused for about one init() during the swap.

RECONCILER_PAUSE_AT=<step> stops an update at a named step (a test hook, for killing it
there): backend-created, backend-ready, old-renamed, new-renamed, switched, proxy-created,
old-stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable

from reconciler.core.errors import PermanentError, ReconcilerError, TemporaryError
from reconciler.desired.dockerfile import DEV_APP_ROOT
from reconciler.desired.proxy import (
    CONFIG_VARIABLE,
    PROXY_CONFINEMENT,
    PROXY_MEMORY_BYTES,
    PROXY_PORT,
    SWITCH_WAIT_S,
    backend_name,
    network_name,
    proxy_command,
    render_proxy_config,
)
from reconciler.desired.state import Desired
from reconciler.engine import labels
from reconciler.engine.docker import Confinement, Engine, NotOnEngine
from reconciler.engine.endpoint import score_url
from reconciler.plan import Action
from reconciler.spec.manifest import ContainerOutput, memory_bytes


class ContainerNotReady(PermanentError):
    """A container of this image did not become ready: the same image will not either."""


def pause_at(step: str, say: Callable[[str], None]) -> None:
    """The test hook: stop here until killed."""
    if os.environ.get("RECONCILER_PAUSE_AT") == step:
        say(f"paused at {step}")
        time.sleep(3600)


def container_labels(desired: Desired, role: str = "") -> dict[str, str]:
    container_labels_ = {
        labels.MANAGED: "true",
        labels.PACKAGE: desired.package.name,
        labels.IMAGE_HASH: desired.image_hash,
        labels.CONTAINER_HASH: desired.container_hash,
        labels.CONTAINER_INPUTS: json.dumps(desired.container_inputs, sort_keys=True, separators=(",", ":")),
        labels.MANIFEST: desired.package.owner,
    }
    if role:
        container_labels_[labels.ROLE] = role
    return container_labels_


def confinement(settings: ContainerOutput) -> Confinement:
    """output.container.security and .logs, as the engine applies them."""
    security, logs_ = settings.security, settings.logs
    return Confinement(
        read_only_root=security.read_only_root,
        tmp_bytes=memory_bytes(security.tmp_size),
        drop_capabilities=security.drop_capabilities,
        no_new_privileges=security.no_new_privileges,
        pids_limit=security.pids_limit,
        log_max_size=logs_.max_size,
        log_max_files=logs_.max_files,
    )


def run_options(desired: Desired) -> dict:
    """How the package's containers run: confined (output.container.security, .logs), within
    output.resources (a memory limit always), with their secrets in the environment; in dev mode (watch --dev) the source folder
    mounted read-only, one worker, reloads on request."""
    output = desired.package.manifest.output
    options: dict = {
        "cpus": output.resources.cpu_cores,
        "memory": output.container_memory_bytes,
        "gpus": output.resources.gpus,
        "confinement": confinement(output.container),
    }
    environment = desired.secrets.environment
    if desired.dev:
        options["mounts"] = {str(desired.package.source_directory): DEV_APP_ROOT}
        environment |= {"RECONCILER_DEV": "1", "AML_APP_ROOT": DEV_APP_ROOT, "WORKER_COUNT": "1"}
    options["environment"] = environment
    return options


def proxy_options(desired: Desired) -> dict:
    """The proxy: its configuration by environment, confined, and small."""
    logs_ = desired.package.manifest.output.container.logs
    return {
        "command": proxy_command(),
        "environment": {CONFIG_VARIABLE: render_proxy_config(desired.package)},
        "memory": PROXY_MEMORY_BYTES,
        "confinement": Confinement(**PROXY_CONFINEMENT, log_max_size=logs_.max_size, log_max_files=logs_.max_files),
    }


def wait_switched() -> None:
    """After a rename the proxy re-resolves `<name>-serving` within a few 100 ms intervals;
    until then it may still send new requests to the old container, which must keep serving."""
    time.sleep(SWITCH_WAIT_S)


def ready_at(action: Action) -> str:
    return f"ready at {score_url(action.host, action.port)}"


class Serving:
    """The serving-container protocols for one package's action."""

    def __init__(self, engine: Engine, desired: Desired, revision_labels: dict[str, str], say: Callable[[str], None]):
        self.engine = engine
        self.desired = desired
        self.revision_labels = revision_labels
        self.say = say
        self.settings = desired.package.manifest.output.container

    def _labels(self, role: str = "") -> dict[str, str]:
        return {**container_labels(self.desired, role), **self.revision_labels}

    def ready_or_fail(self, container_id: str, host: str, port: int, what: str, remove: bool = True) -> None:
        """Wait for /ready; on failure show the container's last log lines (and remove it)."""
        why = self.engine.wait_ready(container_id, host, port, self.settings.ready_timeout_s)
        if why:
            lines = self.engine.logs(container_id)
            if remove:
                self.engine.remove_container(container_id)
            tail = "\n    ".join(lines[-20:]) or "(no output)"
            raise ContainerNotReady(f"{what} did not become ready: {why}; its last log lines:\n    {tail}")

    # -- directly on the published port --------------------------------------------------

    def mark_used(self, image: str) -> None:
        """Tag the image again: its last tagging is when it last served, which retention
        (output.image.keep) reads, so the image that served before an update is kept."""
        self.engine.tag(image, image)

    def create_direct(self, action: Action) -> str:
        engine = self.engine
        self.mark_used(action.image)
        container_id = engine.create_container(
            action.image,
            action.container,
            host=action.host,
            port=action.port,
            labels=self._labels(),
            **run_options(self.desired),
        )
        try:
            engine.start(container_id)
        except ReconcilerError:
            engine.remove_container(container_id)
            raise
        self.ready_or_fail(container_id, action.host, action.port, f"container {action.container}")
        return ready_at(action)

    def start(self, action: Action) -> str:
        try:
            self.engine.start(action.subject)
        except NotOnEngine:  # removed since it was observed: the next run sees it gone and creates one
            raise TemporaryError(f"the container {action.subject[:12]} went away before it could be started") from None
        if action.proxied or self.settings.proxy:
            port = self.engine.published_port(action.subject)
            self.ready_or_fail(action.subject, "127.0.0.1", port, "the container", remove=False)
        else:
            self.ready_or_fail(action.subject, action.host, action.port, "the container", remove=False)
        return ready_at(action)

    def recreate_direct(self, action: Action) -> str:
        engine = self.engine
        name, old_id = action.container, action.subject
        self.mark_used(action.image)
        # 1. the canary: the new image on an ephemeral loopback port
        canary = engine.create_container(
            action.image,
            f"{name}-canary-{self.desired.short_hash[:8]}-{secrets.token_hex(2)}",
            host="127.0.0.1",
            port=0,
            labels=self._labels(role="canary"),
            restart=False,
            **run_options(self.desired),
        )
        try:
            engine.start(canary)
            port = engine.published_port(canary)
            self.ready_or_fail(canary, "127.0.0.1", port, "the canary (the old container keeps serving)")
        finally:
            engine.remove_container(canary)
        # 2. proven: move the old one aside, put a fresh one on the real port
        engine.rename(old_id, f"{name}-previous-{int(time.time())}")
        new_id = engine.create_container(
            action.image,
            name,
            host=action.host,
            port=action.port,
            labels=self._labels(),
            **run_options(self.desired),
        )
        engine.stop(old_id)
        try:
            engine.start(new_id)
            self.ready_or_fail(new_id, action.host, action.port, f"container {name}")
        except ReconcilerError:
            engine.remove_container(new_id)
            engine.rename(old_id, name)
            engine.start(old_id)
            raise
        engine.remove_container(old_id)
        return ready_at(action)

    # -- behind the proxy ------------------------------------------------------------------

    def replace_behind_proxy(self, action: Action) -> str:
        """create / recreate: serve the desired container, creating it unless one is running
        already, then the proxy, then retire what served before."""
        engine, package = self.engine, self.desired.package
        network = network_name(package)
        engine.ensure_network(network, {labels.MANAGED: "true", labels.PACKAGE: package.name})
        backend, created = action.reuse, False
        if not backend:
            self.mark_used(action.image)
            name = f"{backend_name(package, self.desired.container_hash)}-{secrets.token_hex(2)}"
            backend = engine.create_container(
                action.image,
                name,
                host="127.0.0.1",
                port=0,
                labels=self._labels(role="backend"),
                network=network,
                **run_options(self.desired),
            )
            created = True
            pause_at("backend-created", self.say)
        try:
            engine.start(backend)
            what = "the new container (what serves now keeps serving)"
            self.ready_or_fail(backend, "127.0.0.1", engine.published_port(backend), what, remove=created)
        except ReconcilerError:
            if created:
                engine.remove_container(backend)
            raise
        pause_at("backend-ready", self.say)
        serving = f"{action.container}-serving"
        if action.subject:  # the one serving now gives up the name (the proxy keeps its address until reloaded)
            engine.rename(action.subject, f"{action.container}-retiring-{secrets.token_hex(3)}")
            pause_at("old-renamed", self.say)
        engine.rename(backend, serving)
        pause_at("new-renamed", self.say)
        for holder in action.clear:  # publishing the port itself: must go before the proxy binds it
            engine.stop(holder)
            engine.remove_container(holder)
        if action.proxy:
            engine.start(action.proxy)  # no-op when it runs
            wait_switched()
            pause_at("switched", self.say)
        else:
            if action.replace_proxy:
                engine.stop(action.replace_proxy, timeout=5)
                engine.remove_container(action.replace_proxy)
            self.create_proxy(action)
            pause_at("proxy-created", self.say)
        for old in (action.subject, *action.retire):
            if old:
                engine.stop(old, timeout=self._drain_timeout())  # the runtime finishes what it serves
                pause_at("old-stopped", self.say)
                engine.remove_container(old)
        return ready_at(action)

    def create_proxy(self, action: Action) -> str:
        """The proxy: HAProxy on the package's network, publishing the package's port."""
        engine, package = self.engine, self.desired.package
        network = network_name(package)
        engine.ensure_network(network, {labels.MANAGED: "true", labels.PACKAGE: package.name})
        proxy = engine.create_container(
            self.settings.proxy_image,
            action.container,
            host=action.host,
            port=action.port,
            labels={**self._labels(role="proxy"), labels.PROXY_HASH: self.desired.proxy_hash},
            network=network,
            container_port=PROXY_PORT,
            **proxy_options(self.desired),
        )
        try:
            engine.start(proxy)
        except ReconcilerError:
            engine.remove_container(proxy)
            raise
        self.ready_or_fail(proxy, action.host, action.port, f"the proxy {action.container}", remove=False)
        return ready_at(action)

    def recreate_proxy(self, action: Action) -> str:
        self.engine.stop(action.subject, timeout=self._drain_timeout())
        self.engine.remove_container(action.subject)
        return self.create_proxy(action)

    def start_proxy(self, action: Action) -> str:
        self.engine.start(action.subject)
        self.ready_or_fail(action.subject, action.host, action.port, f"the proxy {action.container}", remove=False)
        return ready_at(action)

    def retire(self, action: Action) -> str:
        """A container the proxy no longer serves (an update was interrupted after the renames):
        give the proxy its moment to stop sending to it, drain it, remove it."""
        if action.proxy:
            self.engine.start(action.proxy)
            wait_switched()
        self.engine.stop(action.subject, timeout=self._drain_timeout())
        self.engine.remove_container(action.subject)
        return "removed"

    def _drain_timeout(self) -> int:
        return self.desired.package.manifest.inference.server.timeout_ms // 1000 + 10
