"""Replacing the container that serves a package, without a broken service.

**Behind the proxy** (the default, `Swap`): a new container starts beside the serving one,
on the package's network, with only an ephemeral loopback port for the readiness probe. Once
ready, it takes the serving name (the old one gives it up first); the proxy, which resolves
that name every 100 ms, sends new requests to it, and the old container is drained (the
runtime finishes what it serves) and removed. The container that passed readiness is the one
that serves: one init() per update, and no refused request. Every step is one engine call
whose result shows in the container list (labels and names), so an update interrupted
anywhere (a kill -9, an engine restart) is recognised by the planner and finished by the
next apply.

**Directly** (`output.container.proxy: false`, `RecreateDirect`): the new image runs as a
canary on an ephemeral port first; only when it is ready is the old container stopped and a
fresh one started on the real port. Requests are refused for about one init() during the swap.

Every name, label and setting comes from the payload: the planner decided them.

**With a canary** (`Swap.canary`): once ready, the new container first takes the canary
name, which the proxy sends a share of the requests to, and is judged by what the proxy
counted for it (`canary`). Promoted, it takes the serving name as above; failed, it gives up
the canary name, drains and goes, and the old one never stopped serving. The proxy's counts
when it began are a label on it, so an interrupted canary is resumed where it was.

RECONCILER_PAUSE_AT=<step> stops an update at a named step (a test hook, for killing it
there): backend-created, backend-ready, canary-named, canary-judged, old-renamed,
new-renamed, switched, proxy-created, old-stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from reconciler.core import labels
from reconciler.core.errors import PermanentError, ReconcilerError, TemporaryError
from reconciler.desired.dockerfile import APP_USER_ID
from reconciler.desired.proxy import CANARY_SERVER, SWITCH_WAIT_S
from reconciler.engine.docker import Engine, NotOnEngine
from reconciler.engine.endpoint import ServerCounts, score_url
from reconciler.engine.specs import ContainerSpec
from reconciler.execute import canary
from reconciler.plan.actions import (
    CanaryRun,
    CreateDirect,
    CreateProxy,
    Published,
    RecreateDirect,
    Retire,
    Start,
    StartProxy,
    Swap,
)


class ContainerNotReady(PermanentError):
    """A container of this image did not become ready: the same image will not either."""


def pause_at(step: str, say: Callable[[str], None]) -> None:
    """The test hook: stop here until killed."""
    if os.environ.get("RECONCILER_PAUSE_AT") == step:
        say(f"paused at {step}")
        time.sleep(3600)


def wait_switched() -> None:
    """After a rename the proxy re-resolves the serving name within a few 100 ms intervals;
    until then it may still send new requests to the old container, which must keep serving."""
    time.sleep(SWITCH_WAIT_S)


def writable_folders(spec: ContainerSpec) -> None:
    """The host folders a container writes (collected data), made when missing: the runtime's
    user's (UID 10001) when this runs as root, else open to all. A folder that exists is left
    as it is (it must be writable by UID 10001)."""
    for folder in spec.writable_mounts:
        if os.path.isdir(folder):
            continue
        os.makedirs(folder)
        if os.geteuid() == 0:
            os.chown(folder, APP_USER_ID, APP_USER_ID)
        else:
            os.chmod(folder, 0o777)


def ready_at(at: Published) -> str:
    return f"ready at {score_url(at.host, at.port)}"


class Serving:
    """The serving-container protocols, each carrying out one payload."""

    def __init__(self, engine: Engine, say: Callable[[str], None]):
        self.engine = engine
        self.say = say

    def ready_or_fail(
        self, container_id: str, host: str, port: int, timeout_s: float, what: str, remove: bool = True
    ) -> None:
        """Wait for /ready; on failure show the container's last log lines (and remove it)."""
        why = self.engine.wait_ready(container_id, host, port, timeout_s)
        if why:
            lines = self.engine.logs(container_id)
            if remove:
                self.engine.remove_container(container_id)
            tail = "\n    ".join(lines[-20:]) or "(no output)"
            raise ContainerNotReady(f"{what} did not become ready: {why}; its last log lines:\n    {tail}")

    def _create_from_image(self, spec: ContainerSpec) -> str:
        """Tag the image again first: its last tagging is when it last served, which retention
        (output.image.keep) reads, so the image that served before an update is kept."""
        self.engine.tag(spec.image, spec.image)
        writable_folders(spec)
        return self.engine.create_container(spec)

    def _start_or_remove(self, container_id: str) -> None:
        try:
            self.engine.start(container_id)
        except ReconcilerError:
            self.engine.remove_container(container_id)
            raise

    # -- directly on the published port --------------------------------------------------

    def create_direct(self, payload: CreateDirect) -> str:
        container_id = self._create_from_image(payload.spec)
        self._start_or_remove(container_id)
        at = payload.at
        self.ready_or_fail(container_id, at.host, at.port, payload.ready_timeout_s, f"container {at.container}")
        return ready_at(at)

    def start(self, payload: Start) -> str:
        try:
            self.engine.start(payload.container)
        except NotOnEngine:  # removed since it was observed: the next run sees it gone and creates one
            raise TemporaryError(
                f"the container {payload.container[:12]} went away before it could be started"
            ) from None
        host, port = payload.at.host, payload.at.port
        if payload.behind_proxy:
            host, port = "127.0.0.1", self.engine.published_port(payload.container)
        self.ready_or_fail(payload.container, host, port, payload.ready_timeout_s, "the container", remove=False)
        return ready_at(payload.at)

    def recreate_direct(self, payload: RecreateDirect) -> str:
        engine, at, timeout = self.engine, payload.at, payload.ready_timeout_s
        # 1. the canary: the new image on an ephemeral loopback port
        canary = self._create_from_image(payload.canary)
        try:
            engine.start(canary)
            port = engine.published_port(canary)
            self.ready_or_fail(canary, "127.0.0.1", port, timeout, "the canary (the old container keeps serving)")
        finally:
            engine.remove_container(canary)
        # 2. proven: move the old one aside, put a fresh one on the real port
        engine.rename(payload.current, payload.previous_name)
        new_id = engine.create_container(payload.spec)
        engine.stop(payload.current)
        try:
            engine.start(new_id)
            self.ready_or_fail(new_id, at.host, at.port, timeout, f"container {at.container}")
        except ReconcilerError:
            engine.remove_container(new_id)
            engine.rename(payload.current, at.container)
            engine.start(payload.current)
            raise
        engine.remove_container(payload.current)
        return ready_at(at)

    # -- behind the proxy ------------------------------------------------------------------

    def swap(self, payload: Swap) -> str:
        """create / recreate: serve the desired container, creating it unless one is running
        already, then the proxy, then retire what served before."""
        engine = self.engine
        engine.ensure_network(payload.network)
        backend, created = payload.reuse, False
        run, began = payload.canary, ServerCounts()
        if run is not None:  # what the proxy counted for the canary server before this canary
            began = (
                ServerCounts.of_label(run.resumed) if run.resumed else engine.proxy_counts(payload.proxy, CANARY_SERVER)
            )
        if payload.backend is not None:
            spec = payload.backend.labelled({labels.CANARY: began.label()}) if run else payload.backend
            backend, created = self._create_from_image(spec), True
            pause_at("backend-created", self.say)
        try:
            engine.start(backend)
            what = "the new container (what serves now keeps serving)"
            port = engine.published_port(backend)
            self.ready_or_fail(backend, "127.0.0.1", port, payload.ready_timeout_s, what, remove=created)
        except ReconcilerError:
            if created:
                engine.remove_container(backend)
            raise
        pause_at("backend-ready", self.say)
        verdict = self._canary(backend, run, began, payload) if run is not None else ""
        gave_up = False
        try:
            if payload.current:  # the one serving now gives up the name (the proxy keeps its address until reloaded)
                engine.rename(payload.current, payload.retiring_name)
                gave_up = True
                pause_at("old-renamed", self.say)
            engine.rename(backend, payload.serving_name)
        except ReconcilerError:
            if created:  # it never served: nothing is left running for nothing
                engine.remove_container(backend)
            if gave_up:
                engine.rename(payload.current, payload.serving_name)
            raise
        pause_at("new-renamed", self.say)
        for holder in payload.clear:  # publishing the port itself: must go before the proxy binds it
            self._stop_and_remove(holder)
        if payload.new_proxy is None:
            engine.start(payload.proxy)  # no-op when it runs
            wait_switched()
            pause_at("switched", self.say)
        else:
            if payload.replace_proxy:
                self._stop_and_remove(payload.replace_proxy, timeout=5)
            self._new_proxy(payload.at, payload.new_proxy, payload.ready_timeout_s)
            pause_at("proxy-created", self.say)
        for old in (payload.current, *payload.retire):
            if old:
                engine.stop(old, timeout=payload.drain_s)  # the runtime finishes what it serves
                pause_at("old-stopped", self.say)
                engine.remove_container(old)
        return f"{verdict}; {ready_at(payload.at)}" if verdict else ready_at(payload.at)

    def _canary(self, backend: str, run: CanaryRun, began: ServerCounts, payload: Swap) -> str:
        """Serve the canary's share until it is judged; failed, it goes (CanaryFailed), and
        nothing is left serving unattended whatever stops the judging."""
        if not run.resumed:
            self.engine.rename(backend, run.name)
        pause_at("canary-named", self.say)
        self.say(f"{run}, then judged (at most {canary.percent(run.max_error_rate)} errors)")
        try:
            verdict = canary.watch(self.engine, payload.proxy, began, run, self.say)
        except ReconcilerError:
            self._abort_canary(backend, run, payload.drain_s)
            raise
        pause_at("canary-judged", self.say)
        if not verdict.passed:
            self._abort_canary(backend, run, payload.drain_s)
            for leftover in payload.retire:  # what an interrupted update left goes too: one version runs
                self._stop_and_remove(leftover, payload.drain_s)
            raise canary.CanaryFailed(f"{verdict.text}; what served before keeps serving")
        self.say(verdict.text)
        return verdict.text

    def _abort_canary(self, backend: str, run: CanaryRun, drain_s: int) -> None:
        self.engine.rename(backend, run.abort_name)
        wait_switched()
        self._stop_and_remove(backend, drain_s)

    def _stop_and_remove(self, container: str, timeout: int = 30) -> None:
        """Stop (the runtime finishes what it serves within `timeout`), then remove."""
        self.engine.stop(container, timeout=timeout)
        self.engine.remove_container(container)

    def _new_proxy(self, at: Published, spec: ContainerSpec, timeout_s: float) -> None:
        proxy = self.engine.create_container(spec)
        self._start_or_remove(proxy)
        self.ready_or_fail(proxy, at.host, at.port, timeout_s, f"the proxy {at.container}", remove=False)

    def create_proxy(self, payload: CreateProxy) -> str:
        """The proxy (again, when `replace` names one with other settings): HAProxy on the
        package's network, publishing the package's port."""
        if payload.replace:
            self._stop_and_remove(payload.replace, payload.drain_s)
        self.engine.ensure_network(payload.network)
        self._new_proxy(payload.at, payload.spec, payload.ready_timeout_s)
        return ready_at(payload.at)

    def start_proxy(self, payload: StartProxy) -> str:
        at = payload.at
        self.engine.start(payload.container)
        what = f"the proxy {at.container}"
        self.ready_or_fail(payload.container, at.host, at.port, payload.ready_timeout_s, what, remove=False)
        return ready_at(at)

    def retire(self, payload: Retire) -> str:
        """A container the proxy no longer serves (an update was interrupted after the renames):
        give the proxy its moment to stop sending to it, drain it, remove it."""
        if payload.unname:
            self.engine.rename(payload.container, payload.unname)
        if payload.proxy:
            self.engine.start(payload.proxy)
            wait_switched()
        self._stop_and_remove(payload.container, payload.drain_s)
        return "removed"
