"""Observed state: every state type the planner reads, and the one snapshot read per run.

After docker compose v2's observed_state.go. What exists is read from the artifacts
themselves (no central state file): the stamp in each output folder (`folder`), and
the labels on images and containers, read in one label-filtered list call per kind of
object. Images are listed only when asked (for --prune): the engine lists images in
time proportional to every image it holds, so a plan looks up the one image it needs
by tag, and past a handful of lookups in one run, one listing answers for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core import labels
from reconciler.core.errors import ReconcilerError
from reconciler.desired.dockerfile import CONTAINER_PORT
from reconciler.desired.pins import BasePin
from reconciler.desired.proxy import PROXY_PORT
from reconciler.desired.revision import Revision
from reconciler.engine.docker import Engine
from reconciler.engine.endpoint import is_ready, port_refuses
from reconciler.observed.base_image import moved_from_pin, pin_from_engine

INSPECTS_BEFORE_LISTING = 16


@dataclass(frozen=True)
class FolderState:
    """An output folder: missing | ours | foreign (no stamp) | damaged (unreadable stamp) |
    other (another package's), with the hash and inputs its stamp records and any drift."""

    status: str
    image_hash: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    drift: tuple[str, ...] = ()
    detail: str = ""
    revision: Revision | None = None  # the commit the folder was written from


@dataclass(frozen=True)
class ImageState:
    id: str
    package: str
    hash: str
    tags: tuple[str, ...]
    manifest: str = ""
    repo_digests: tuple[str, ...] = ()
    created: float = 0.0  # seconds since the epoch
    revision: Revision | None = None  # the commit it was built from
    last_used: float = 0.0  # built, or last made a container from (its last tagging, known from an inspect)


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    package: str
    container_hash: str
    image_hash: str
    state: str  # created | running | paused | restarting | exited | dead
    status: str  # as docker says it: "Up 3 minutes (healthy)", "Exited (3) 2 seconds ago"
    manifest: str
    role: str  # "" (publishes the port itself), "backend" (behind a proxy), "proxy", "canary"
    host_port: int | None
    host_ip: str | None
    image_id: str = ""
    revision: Revision | None = None  # the commit its image was built from
    proxy_hash: str = ""  # a proxy: what it was made of
    container_inputs: Mapping[str, str] = field(default_factory=dict)  # a short digest per setting
    networks: Mapping[str, str] = field(default_factory=dict)  # the networks it is attached to: name -> id
    hold: str = ""  # rolled back: the container hash of the inputs it was rolled back from
    canary: str = ""  # a canary: the proxy's counts when it began ("requests,errors")


@dataclass(frozen=True)
class NetworkState:
    id: str
    name: str
    package: str
    manifest: str  # "" on networks made before they recorded it


def network_state(summary: dict) -> NetworkState:
    labels_ = summary.get("Labels") or {}
    return NetworkState(
        summary.get("Id", ""),
        summary.get("Name", ""),
        labels_.get(labels.PACKAGE, ""),
        labels_.get(labels.MANIFEST, ""),
    )


@dataclass(frozen=True)
class Observed:
    """What exists for one package."""

    folder: FolderState
    images: Sequence[ImageState] = ()
    containers: Sequence[ContainerState] = ()
    base_present: bool = True  # the image the Dockerfile's FROM names is on the engine
    base_moved: str = ""  # why the base image's tag no longer points at the pinned image
    registry_has: bool | None = None  # None: not asked (not pushing, or nothing to push yet)
    images_in_use: frozenset[str] = frozenset()  # ids of the images any container was created from
    manifests: FolderState | None = None  # the Kubernetes folder (kubernetes mode)
    proxy_image_present: bool = True
    foreign: tuple[ContainerState, ...] = ()  # containers of a same-named package from another checkout
    names: frozenset[str] = frozenset()  # every name the package's containers hold, those being removed too
    names_elsewhere: frozenset[str] = frozenset()  # names held by containers that are not the package's
    network_gone: bool = False  # behind a proxy: its network is missing, or a container is not on it
    port_refused: bool = False  # what publishes the port runs, yet a connection to the port is refused


def image_state(summary: dict) -> ImageState:
    """An image as the engine lists or inspects it."""
    labels_ = summary.get("Labels") or (summary.get("Config") or {}).get("Labels") or {}
    return ImageState(
        id=summary["Id"],
        package=labels_.get(labels.PACKAGE, ""),
        hash=labels_.get(labels.IMAGE_HASH, ""),
        tags=tuple(t for t in summary.get("RepoTags") or () if t != "<none>:<none>"),
        manifest=labels_.get(labels.MANIFEST, ""),
        repo_digests=tuple(summary.get("RepoDigests") or ()),
        created=_created(summary.get("Created")),
        revision=Revision.from_labels(labels_),
        last_used=max(_created(summary.get("Created")), _created((summary.get("Metadata") or {}).get("LastTagTime"))),
    )


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?")


def _created(value: object) -> float:
    """An image's creation (or tagging) time: whole seconds in a listing, an RFC 3339 string in
    an inspect, whose fraction of a second is kept: retention and rollback order images built
    within one second (a cached build takes a fraction of one) by it."""
    if isinstance(value, int | float):
        return float(value)
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return 0.0
    from datetime import datetime

    try:
        whole = datetime.fromisoformat(match.group(1) + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return whole + float(match.group(2) or 0)


def container_state(summary: dict) -> ContainerState:
    """A container as the engine lists it."""
    labels_ = summary.get("Labels") or {}
    port = host_ip = None
    private = (CONTAINER_PORT, PROXY_PORT)
    for binding in summary.get("Ports") or []:
        if binding.get("PrivatePort") in private and binding.get("PublicPort"):
            port, host_ip = binding["PublicPort"], binding.get("IP")
            break
    return ContainerState(
        id=summary["Id"],
        name=(summary.get("Names") or ["/?"])[0].lstrip("/"),
        package=labels_.get(labels.PACKAGE, ""),
        container_hash=labels_.get(labels.CONTAINER_HASH, ""),
        image_hash=labels_.get(labels.IMAGE_HASH, ""),
        state=summary.get("State", ""),
        status=summary.get("Status", ""),
        manifest=labels_.get(labels.MANIFEST, ""),
        role=labels_.get(labels.ROLE, ""),
        host_port=port,
        host_ip=host_ip,
        image_id=summary.get("ImageID", ""),
        revision=Revision.from_labels(labels_),
        proxy_hash=labels_.get(labels.PROXY_HASH, ""),
        container_inputs=_json_object(labels_.get(labels.CONTAINER_INPUTS, "")),
        hold=labels_.get(labels.HOLD, ""),
        canary=labels_.get(labels.CANARY, ""),
        networks={
            name: str((attached or {}).get("NetworkID") or "")
            for name, attached in ((summary.get("NetworkSettings") or {}).get("Networks") or {}).items()
        },
    )


def _json_object(text: str) -> dict[str, str]:
    """A label holding a JSON object of strings; {} when it is missing or not one."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def _port_refused(containers: Sequence[ContainerState]) -> bool:
    """Whether the running container that publishes the package's port (its proxy, or the one
    serving directly) has a published port that refuses connections."""
    front = next((c for c in containers if c.role == "proxy"), None) or next(
        (c for c in containers if not c.role), None
    )
    if front is None or front.state != "running" or not front.host_port:
        return False
    return port_refuses(front.host_ip, front.host_port)


def readiness(container: ContainerState) -> str:
    """What the container's GET /ready says, through its published port."""
    if container.state != "running":
        return "stopped"
    if not container.host_port:
        return "-"
    try:
        return "ready" if is_ready(container.host_ip, container.host_port, timeout=1) else "not ready"
    except OSError:
        return "no answer"


@dataclass(frozen=True)
class ImagesOnDisk:
    count: int
    bytes: int  # layers shared between the images counted once (as far as the engine says)


def images_on_disk(disk_usage: dict, package: str) -> ImagesOnDisk:
    """The package's images and about how much disk they take: the largest whole, and of the
    others only the layers no other image has (`docker system df -v`'s unique size)."""
    images = [i for i in disk_usage.get("Images") or () if (i.get("Labels") or {}).get(labels.PACKAGE) == package]
    if not images:
        return ImagesOnDisk(0, 0)
    sizes = sorted(((i.get("Size") or 0), max(0, i.get("SharedSize") or 0)) for i in images)
    largest = sizes[-1][0]
    return ImagesOnDisk(len(images), largest + sum(max(0, size - shared) for size, shared in sizes[:-1]))


@dataclass
class Snapshot:
    """Everything reconciler manages on one engine, read once per run."""

    engine: Engine
    images: list[ImageState] | None = None  # None: not listed (a plan without --prune)
    containers: list[ContainerState] = field(default_factory=list)
    # every container on the engine, ours or not, with the image it was created from (with images)
    container_images: dict[str, str] = field(default_factory=dict)
    details: dict[str, dict | None] = field(default_factory=dict)  # image reference -> what the engine says
    base_failures: dict[str, str] = field(default_factory=dict)  # reference -> why it cannot be inspected
    inspects: int = 0  # images looked up by tag so far in this run
    every_container_listed: bool = False
    removing: list[ContainerState] = field(default_factory=list)  # gone but for their names
    every_name: dict[str, str] = field(default_factory=dict)  # every container's name -> its manifest label
    networks: dict[str, NetworkState] | None = None  # reconciler's networks by name (listed when asked)
    cpus: int | None = None  # the engine host's CPUs (asked once, when a package limits its CPUs)

    @classmethod
    def read(cls, engine: Engine, *, images: bool, bases: Iterable[str] = ()) -> Snapshot:
        """Our containers (one label-filtered list), our images and every container's image
        when `images`, and each base image (one inspect per reference)."""
        listed = [container_state(s) for s in engine.containers(managed_only=True)]
        # a container the engine is removing is gone already: nothing can start or reuse it
        snapshot = cls(
            engine,
            containers=[c for c in listed if c.state != "removing"],
            removing=[c for c in listed if c.state == "removing"],
        )
        if images:
            snapshot._list_images()
            snapshot.list_networks()
        for reference in sorted(set(bases)):
            try:
                snapshot.image_details(reference)
            except ReconcilerError as error:
                if error.temporary:
                    raise
                snapshot.base_failures[reference] = str(error)  # a reference the engine refuses
        return snapshot

    def engine_cpus(self) -> int:
        if self.cpus is None:
            self.cpus = self.engine.cpus()
        return self.cpus

    def list_networks(self) -> dict[str, NetworkState]:
        """reconciler's networks, listed once per run."""
        if self.networks is None:
            found = [network_state(s) for s in self.engine.networks(label=f"{labels.MANAGED}=true")]
            self.networks = {network.name: network for network in found}
        return self.networks

    def network_gone(self, containers: Sequence[ContainerState], network: str) -> bool:
        """Whether the package's network is missing, or one of its proxied containers is not on
        it (removed and made again by hand, the containers still point at the old one)."""
        current = self.list_networks().get(network)
        if current is None:
            return True
        for container in containers:
            if container.role in ("proxy", "backend"):
                attached = container.networks.get(network)  # "" for one created and never started
                if attached is None or attached not in ("", current.id):
                    return True
        return False

    def image_details(self, reference: str) -> dict | None:
        """What the engine says of an image (by tag, digest or ID), asked once per run."""
        if reference not in self.details:
            self.details[reference] = self.engine.inspect_image(reference)
        return self.details[reference]

    def pin_base(self, reference: str) -> BasePin:
        """The pin this engine's copy of a base image gives (no registry asked: a plan stays fast)."""
        return pin_from_engine(reference, self.image_details(reference))

    def _list_images(self) -> None:
        self.images = [image_state(s) for s in self.engine.images(label=labels.IMAGE_HASH)]
        self._list_every_container()

    def _list_every_container(self) -> None:
        every = self.engine.containers(managed_only=False)
        self.container_images = {s["Id"]: s.get("ImageID", "") for s in every}
        self.every_name = {
            (s.get("Names") or ["/?"])[0].lstrip("/"): (s.get("Labels") or {}).get(labels.MANIFEST, "") for s in every
        }
        self.every_container_listed = True

    def package_images(self, package: str) -> list[ImageState]:
        """Every image of `package` (one label-filtered listing when images were not listed)."""
        if self.images is not None:
            return self.images_of(package)
        return [image_state(s) for s in self.engine.images(label=f"{labels.PACKAGE}={package}")]

    def images_of(self, package: str) -> list[ImageState]:
        return [i for i in self.images or () if i.package == package]

    def _when_used(self, image: ImageState) -> ImageState:
        """The image with its last use, which only an inspect tells (retention keeps the
        images used last, so going back to the code that served before needs no build)."""
        details = self.engine.inspect_image(image.id)
        return image_state(details) if details is not None else image

    def containers_of(self, owner: str) -> list[ContainerState]:
        """The containers of the package whose manifest is `owner` (its real path)."""
        return [c for c in self.containers if c.manifest == owner]

    def image_with_hash(self, package: str, image_hash: str, reference: str) -> ImageState | None:
        """The image carrying `image_hash`, if the engine has it: from a serving container
        already running it, else by one inspect of its tag, else from the listing. (The proxy
        runs HAProxy's image, and its labels name the package's image of the day it was made:
        it proves nothing.)"""
        running = next(
            (
                c
                for c in self.containers
                if c.package == package and c.image_hash == image_hash and c.image_id and c.role != "proxy"
            ),
            None,
        )
        if running is not None and self.images is None:
            return ImageState(running.image_id, package, image_hash, (reference,))
        if self.images is None and self.inspects >= INSPECTS_BEFORE_LISTING:
            self._list_images()
        if self.images is not None:
            return next((i for i in self.images_of(package) if i.hash == image_hash), None)
        self.inspects += 1
        details = self.engine.inspect_image(reference)
        if details is None:
            return None
        state = image_state(details)
        return state if state.hash == image_hash else None

    def observe(
        self,
        folder: FolderState,
        package: str,
        *,
        owner: str,
        image_hash: str,
        image_ref: str,
        push_ref: str,
        base_image: str | None,
        base: BasePin | None,
        proxy_image: str | None = None,
        serves: bool = False,
        network: str = "",
    ) -> Observed:
        """One package's observed state. `base_image` (the manifest's reference) is None in
        Dockerfile mode, where the engine has nothing of the package's to observe but
        leftover containers; `base` is its pin in package.lock. A container of a package of
        the same name from another checkout (another `owner`) is reported, never taken over."""
        containers = self.containers_of(owner)
        foreign = tuple(c for c in self.containers if c.package == package and c.manifest != owner)
        names = frozenset(c.name for c in [*containers, *self.removing] if c.manifest == owner)
        if serves and not self.every_container_listed:  # which names another container holds
            self._list_every_container()
        elsewhere = frozenset(name for name, manifest in self.every_name.items() if manifest != owner)
        images = self.images_of(package)
        if base_image is None:
            return Observed(folder, images=images, containers=containers, foreign=foreign, names=names)
        if base is not None and base.by == "image id":
            from_image = base.pin  # FROM names the tag, but only the pinned image will do
        else:
            from_image = base.from_reference if base is not None else base_image
        current = self.image_with_hash(package, image_hash, image_ref)
        in_use: frozenset[str] = frozenset()
        if current is None:  # a build is coming: the package's older images may be too many
            images = [self._when_used(image) for image in self.package_images(package)]
            if not self.every_container_listed:
                self._list_every_container()
            in_use = frozenset(self.container_images.values())
        elif current not in images:
            images.append(current)
        registry_has = self.engine.registry_has(push_ref) if push_ref and current is not None else None
        return Observed(
            folder,
            images=images,
            containers=containers,
            base_present=self.image_details(from_image) is not None,
            proxy_image_present=proxy_image is None or self.image_details(proxy_image) is not None,
            base_moved=moved_from_pin(self.image_details(base_image), base),
            registry_has=registry_has,
            images_in_use=in_use,
            foreign=foreign,
            names=names,
            names_elsewhere=elsewhere - names,
            network_gone=bool(network and containers) and self.network_gone(containers, network),
            port_refused=serves and _port_refused(containers),
        )
