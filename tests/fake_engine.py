"""A Docker engine in memory, for the tier between the pure planner and the real engine.

It answers every call `reconciler.engine.docker.Engine` makes, with the engine's own shapes
(summaries, inspections) and failures (a name or a port in use, an object that is not there),
so the executor, the observed state and the serving protocols run against it unchanged:

- containers with states (created, running, exited), names, labels and published ports;
- images with tags and labels, built from a BuildSpec (the folder is not read), pushed to and
  pulled from an in-memory registry;
- networks, which cannot be removed while a container is on them;
- a proxy that routes by name, as HAProxy behind Docker's DNS does: to the container that holds
  the serving name, and, until the protocol waits for the switch (`switched()`), also still to
  the one that held it before, which must therefore keep serving.

- the proxy's counts for the canary server: every read adds `canary_traffic` (requests,
  errors) while a running container holds the canary name, as a steady stream would.

`kill_after` makes the N+1th changing call raise `Killed`, as a kill -9 would stop the process
there; `save()`/`restore()` put the whole engine back, to try the next N. After every change,
`refusals` counts the moments a request to the package would have been refused.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from reconciler.engine.docker import BuildFailed, BuildResult, EngineError, NotOnEngine
from reconciler.engine.endpoint import ServerCounts
from reconciler.engine.specs import BuildSpec, ContainerSpec, NetworkSpec


class Killed(BaseException):
    """The process was killed here: nothing after this call happened (not an Exception, so
    nothing in reconciler catches it, as nothing survives a kill -9)."""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class FakeImage:
    id: str
    labels: dict[str, str]
    tags: list[str]
    created: float
    last_tagged: float
    digests: list[str] = field(default_factory=list)


@dataclass
class FakeContainer:
    id: str
    name: str
    spec: ContainerSpec
    image_id: str
    state: str = "created"
    host_port: int = 0
    starts: int = 0
    network_id: str = ""  # the network it was created on, as the engine remembers it


class FakeEngine:
    def __init__(self) -> None:
        self.stored_images: dict[str, FakeImage] = {}
        self.stored_containers: dict[str, FakeContainer] = {}
        self.stored_networks: dict[str, tuple[str, NetworkSpec]] = {}  # name -> (id, what it was made with)
        self.registry: dict[str, tuple[str, str]] = {}  # reference -> (digest, image id)
        self.pullable: dict[str, dict[str, str]] = {}  # reference -> labels of an image a pull gives
        self.never_ready: set[str] = set()  # image hashes (reconciler.hash) whose containers exit at start
        self.broken_builds = False  # images built from now on never become ready (their init() fails)
        self.failing_builds: set[str] = set()  # packages whose builds fail, as a bad Dockerfile step would
        self.create_error = ""  # when set, creating a container fails with it ({environment} filled in)
        self.dead_forwarders: set[str] = set()  # containers whose published port refuses (its forwarder died)
        self.calls: list[str] = []  # every changing call, in order
        self.kill_after: int | None = None
        self.refusals: list[str] = []  # after which call a request would have been refused
        self.watched: tuple[int, str] | None = None  # (published port, serving name) to check
        self.canary_name = ""  # the name the proxy sends a canary's share to
        self.canary_traffic = (10, 0)  # what each read of the counts adds while a canary serves
        self.canary_counts = ServerCounts()
        self.host_cpus = 2  # what the engine's host has (Engine.cpus)
        self._stale_route: str | None = None  # the container the proxy may still send to
        self._ids = itertools.count(1)
        self._ports = itertools.count(41000)

    # -- test controls ------------------------------------------------------------------

    _STATE = (
        "stored_images",
        "stored_containers",
        "stored_networks",
        "registry",
        "never_ready",
        "calls",
        "refusals",
        "_stale_route",
        "canary_counts",
    )

    def save(self) -> dict:
        """Everything on the engine now (ids and ports stay unique across restores)."""
        return copy.deepcopy({name: getattr(self, name) for name in self._STATE})

    def restore(self, saved: dict) -> None:
        for name, value in copy.deepcopy(saved).items():
            setattr(self, name, value)

    def add_image(self, reference: str, labels: dict[str, str] | None = None) -> str:
        """An image on the engine, as if pulled (a base or proxy image)."""
        image_id = self._new_id("sha256:")
        digest = "sha256:" + hashlib.sha256(reference.encode()).hexdigest()
        now = time.time()
        self.stored_images[image_id] = FakeImage(
            image_id, labels or {}, [reference], now, now, [f"{reference.rsplit(':', 1)[0]}@{digest}"]
        )
        return image_id

    def watch_service(self, port: int, serving_name: str, canary_name: str = "") -> None:
        """From now on, count every moment a request to `port` would be refused."""
        self.watched = (port, serving_name)
        self.canary_name = canary_name

    def switched(self) -> None:
        """The protocol waited for the proxy to re-resolve the serving name."""
        self._stale_route = None

    def running(self, role: str | None = None) -> list[FakeContainer]:
        return [
            c
            for c in self.stored_containers.values()
            if c.state == "running" and (role is None or c.spec.labels.get("reconciler.role", "") == role)
        ]

    # -- bookkeeping ----------------------------------------------------------------------

    def _new_id(self, prefix: str = "") -> str:
        return prefix + hashlib.sha256(f"fake-{next(self._ids)}".encode()).hexdigest()

    def _change(self, what: str) -> None:
        """Before a changing call: a kill may stop the process right here."""
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed(what)
        self.calls.append(what)

    def _changed(self) -> None:
        if self.watched is None:
            return
        if not self._serves(*self.watched):
            self.refusals.append(self.calls[-1])

    def _ready(self, container: FakeContainer) -> bool:
        return container.state == "running" and self._image_hash(container) not in self.never_ready

    def _image_hash(self, container: FakeContainer) -> str:
        image = self.stored_images.get(container.image_id)
        return image.labels.get("reconciler.hash", "") if image else ""

    def _serves(self, port: int, serving_name: str) -> bool:
        front = next((c for c in self.running() if c.host_port == port), None)
        if front is None:
            return False
        if front.spec.labels.get("reconciler.role") != "proxy":
            return self._ready(front)
        holder = next((c for c in self.stored_containers.values() if c.name == serving_name), None)
        canary = next((c for c in self.stored_containers.values() if self.canary_name == c.name), None)
        stale = self.stored_containers.get(self._stale_route or "")
        routes = [c for c in (holder, canary, stale) if c is not None]
        return bool(routes) and all(self._ready(c) for c in routes)

    def _container(self, container_id: str) -> FakeContainer:
        container = self.stored_containers.get(container_id) or next(
            (c for c in self.stored_containers.values() if c.name == container_id), None
        )
        if container is None:
            raise NotOnEngine(f"no such container: {container_id[:12]}")
        return container

    def _image(self, reference: str) -> FakeImage | None:
        if reference in self.stored_images:
            return self.stored_images[reference]
        if "@" in reference:  # name[:tag]@digest: found by its digest, whatever the tag
            name, digest = reference.split("@", 1)
            repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
            reference = f"{repository}@{digest}"
        return next((i for i in self.stored_images.values() if reference in i.tags or reference in i.digests), None)

    # -- observing --------------------------------------------------------------------

    def containers(self, *, managed_only: bool) -> list[dict]:
        found = []
        for c in self.stored_containers.values():
            if managed_only and c.spec.labels.get("reconciler.managed") != "true":
                continue
            ports = [{"PrivatePort": c.spec.container_port, "PublicPort": c.host_port, "IP": c.spec.host}]
            network_id = c.network_id if c.starts else ""  # as Docker: no endpoint before the first start
            attached = {c.spec.network: {"NetworkID": network_id}} if c.spec.network else {}
            found.append(
                {
                    "Id": c.id,
                    "Names": [f"/{c.name}"],
                    "Labels": dict(c.spec.labels),
                    "State": c.state,
                    "Status": "Up 1 second" if c.state == "running" else "Exited (0) 1 second ago",
                    "Ports": ports if c.host_port and c.state == "running" else [],
                    "ImageID": c.image_id,
                    "NetworkSettings": {"Networks": attached},
                }
            )
        return found

    def networks(self, *, label: str) -> list[dict]:
        key, _, value = label.partition("=")
        return [
            {"Id": network_id, "Name": name, "Labels": dict(spec.labels)}
            for name, (network_id, spec) in self.stored_networks.items()
            if key in spec.labels and (not value or spec.labels[key] == value)
        ]

    def images(self, *, label: str) -> list[dict]:
        key, _, value = label.partition("=")
        return [
            {"Id": i.id, "Labels": i.labels, "RepoTags": i.tags, "Created": int(i.created), "RepoDigests": i.digests}
            for i in self.stored_images.values()
            if key in i.labels and (not value or i.labels[key] == value)
        ]

    def inspect_image(self, reference: str) -> dict | None:
        image = self._image(reference)
        if image is None:
            return None
        return {
            "Id": image.id,
            "RepoTags": list(image.tags),
            "RepoDigests": list(image.digests),
            "Config": {"Labels": dict(image.labels)},
            "Created": _iso(image.created),
            "Metadata": {"LastTagTime": _iso(image.last_tagged)},
        }

    def cpus(self) -> int:
        return self.host_cpus

    def disk_usage(self) -> dict:
        return {"Images": [{"Labels": i.labels, "Size": 1000, "SharedSize": 0} for i in self.stored_images.values()]}

    def registry_digest(self, reference: str) -> str | None:
        return self.registry[reference][0] if reference in self.registry else None

    def registry_has(self, reference: str) -> bool:
        return reference in self.registry

    # -- images -----------------------------------------------------------------------

    def pull(self, reference: str) -> str:
        self._change(f"pull {reference}")
        if reference in self.registry:
            image_id = self.registry[reference][1]
            if image_id in self.stored_images:
                self._tag(image_id, reference)
                return image_id
        if reference in self.pullable:
            return self.add_image(reference, self.pullable[reference])
        raise EngineError(f"cannot pull {reference}: not found")

    def build(self, spec: BuildSpec, progress) -> BuildResult:
        self._change(f"build {spec.tags[0]}")
        if spec.labels.get("reconciler.package") in self.failing_builds:
            raise BuildFailed("Step 3/5 : RUN pip install", ["ERROR: no matching distribution"], "exit code 1")
        for step in ("FROM", "COPY wheels", "RUN pip install", "COPY models", "COPY app"):
            progress(f"Step : {step}")
        image_id = self._new_id("sha256:")
        now = time.time()
        self.stored_images[image_id] = FakeImage(image_id, dict(spec.labels), [], now, now)
        if self.broken_builds:
            self.never_ready.add(spec.labels.get("reconciler.hash", ""))
        for tag in spec.tags:
            self._tag(image_id, tag)
        return BuildResult(image_id, 5, 0)

    def _tag(self, image_id: str, reference: str) -> None:
        for other in self.stored_images.values():
            if reference in other.tags:
                other.tags.remove(reference)
        image = self.stored_images[image_id]
        image.tags.append(reference)
        image.last_tagged = time.time()

    def tag(self, image_id: str, reference: str) -> None:
        self._change(f"tag {reference}")
        image = self._image(image_id)
        if image is None:
            raise NotOnEngine(f"cannot tag {reference}: no such image {image_id}")
        self._tag(image.id, reference)

    def push(self, reference: str) -> str:
        self._change(f"push {reference}")
        image = self._image(reference)
        if image is None:
            raise EngineError(f"push {reference} failed: no such image")
        digest = "sha256:" + hashlib.sha256(image.id.encode()).hexdigest()
        self.registry[reference] = (digest, image.id)
        return digest

    def remove_image(self, image_id: str) -> None:
        self._change(f"remove image {image_id[:19]}")
        self.stored_images.pop(image_id, None)

    # -- containers -------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        self._change(f"create {spec.name}")
        if self.create_error:  # as an engine that quotes what it refused would
            raise EngineError(self.create_error.format(environment={**spec.environment, **spec.secrets}))
        if any(c.name == spec.name for c in self.stored_containers.values()):
            raise EngineError(f"cannot create container {spec.name}: Conflict. The name is already in use")
        image = self._image(spec.image)
        if image is None:
            raise NotOnEngine(f"cannot create container {spec.name}: no such image {spec.image}")
        if spec.network and spec.network not in self.stored_networks:
            raise NotOnEngine(f"cannot create container {spec.name}: network {spec.network} not found")
        network_id = self.stored_networks[spec.network][0] if spec.network else ""
        container = FakeContainer(self._new_id(), spec.name, spec, image.id, network_id=network_id)
        self.stored_containers[container.id] = container
        return container.id

    def ensure_network(self, network: NetworkSpec) -> None:
        if network.name not in self.stored_networks:
            self._change(f"create network {network.name}")
            self.stored_networks[network.name] = (self._new_id(), network)

    def remove_network(self, name: str) -> None:
        self._change(f"remove network {name}")
        current = self.stored_networks.get(name)
        if current and any(
            c.network_id == current[0] and c.state == "running" for c in self.stored_containers.values()
        ):
            raise EngineError(f"cannot remove network {name}: it has active endpoints")
        self.stored_networks.pop(name, None)

    def start(self, container_id: str) -> None:
        container = self._container(container_id)
        self._change(f"start {container.name}")
        if container.state == "running":
            return
        if container.spec.port:
            for other in self.running():
                if other.host_port == container.spec.port:
                    raise EngineError(f"cannot start container {container.id[:12]}: port is already allocated")
        container.host_port = container.spec.port or container.host_port or next(self._ports)
        container.state = "running"
        container.starts += 1
        self._changed()

    def published_port(self, container_id: str, container_port: int = 5001) -> int:
        container = self._container(container_id)
        if not container.host_port or container.state != "running":
            raise EngineError(f"container {container_id[:12]} publishes no port")
        return container.host_port

    def proxy_counts(self, proxy_id: str, server: str) -> ServerCounts:
        self.published_port(proxy_id)  # the proxy runs
        if any(c.name == self.canary_name and c.state == "running" for c in self.stored_containers.values()):
            requests, errors = self.canary_traffic
            self.canary_counts = ServerCounts(
                self.canary_counts.requests + requests, self.canary_counts.errors + errors
            )
        return self.canary_counts

    def logs(self, container_id: str, lines: int = 30) -> list[str]:
        return ["fake: init() failed"] if container_id in self.stored_containers else []

    def stop(self, container_id: str, timeout: int = 30) -> None:
        container = self.stored_containers.get(container_id)
        self._change(f"stop {container.name if container else container_id[:12]}")
        if container is not None:
            container.state = "exited"
            self._changed()

    def rename(self, container_id: str, name: str) -> None:
        container = self._container(container_id)
        self._change(f"rename {container.name} {name}")
        if any(c.name == name and c is not container for c in self.stored_containers.values()):
            raise EngineError(f"cannot rename container {container_id[:12]} to {name}: Conflict")
        if self.watched and container.name == self.watched[1]:
            self._stale_route = container.id  # the proxy keeps its address until it resolves again
        container.name = name
        self._changed()

    def remove_container(self, container_id: str) -> None:
        container = self.stored_containers.get(container_id)
        self._change(f"remove {container.name if container else container_id[:12]}")
        if container is not None:
            del self.stored_containers[container_id]
            self._changed()

    def wait_ready(self, container_id: str, host: str, port: int, timeout: float) -> str | None:
        container = self._container(container_id)
        if self._ready(container):
            return None
        if container.state == "running":  # init() fails: the runtime exits with code 3
            container.state = "exited"
            self._changed()
        return "the container exited with code 3"

    def port_refuses(self, host: str | None, port: int, timeout: float = 0.5) -> bool:
        """What a connection to a published port meets: refused when nothing publishes it."""
        front = next((c for c in self.running() if c.host_port == port), None)
        return front is None or front.id in self.dead_forwarders


def connect_to(monkeypatch, engine: FakeEngine) -> None:
    """Make every reconciler run in this test talk to `engine`, and probe its ports."""
    from reconciler.engine import docker
    from reconciler.execute import serving
    from reconciler.observed import state

    monkeypatch.setattr(docker.Engine, "connect", classmethod(lambda cls: engine))
    monkeypatch.setattr(state, "port_refuses", engine.port_refuses)
    monkeypatch.setattr(serving, "wait_switched", engine.switched)
    monkeypatch.setenv("RECONCILER_BUILDER", "legacy")  # builds go to engine.build
