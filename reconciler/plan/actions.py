"""Actions: a kind, the package, the cause, and a typed payload with everything its handler
needs. The planner fills the payload in; the executor's handler for that payload type
carries it out and decides nothing. `str(action)` is the one printed form.

Payloads that record where an artifact came from (`with_revision`) get the package's commit
from the pipeline just before they run: provenance, not a decision, and asked of git only
when there is something to do.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from reconciler.engine.specs import BuildSpec, ContainerSpec, NetworkSpec

if TYPE_CHECKING:  # types only: the planner reads no files
    from reconciler.desired.pins import BasePin, Lock
    from reconciler.desired.revision import Revision
    from reconciler.desired.state import Desired
    from reconciler.spec.package import Package


class ActionKind(enum.Enum):
    PULL = "pull"
    WRITE = "write"
    BUILD = "build"
    WRITE_MANIFESTS = "write manifests"
    PUSH = "push"
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    RELOAD = "reload"
    REMOVE_CONTAINER = "remove container"
    REMOVE_IMAGE = "remove image"
    REMOVE_NETWORK = "remove network"
    CREATE_PROXY = "create proxy"  # the proxy is missing while the serving container is fine
    RECREATE_PROXY = "recreate proxy"
    START_PROXY = "start proxy"
    RETIRE = "remove retired"  # a container the proxy served: let the proxy move on, drain it, remove it
    FETCH = "pull image"  # `reconciler pull`: a pushed image by hash, checked and tagged locally
    LOCK = "lock"  # `reconciler lock`: resolve the requirements, pin the base image

    @property
    def verb(self) -> str:
        """The word people and JSON documents see (every removal is `remove`)."""
        return self.value.split()[0]


@dataclass(frozen=True)
class Published:
    """Where a serving container (or its proxy) is reached: name, address, port."""

    container: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.container} on {self.host}:{self.port}"


# -- payloads: one type per thing the executor knows how to do --------------------------


@dataclass(frozen=True)
class PullImage:
    reference: str

    @property
    def target(self) -> str:
        return self.reference


@dataclass(frozen=True)
class WriteFolder:
    """Render the package's Dockerfile folder from its desired state."""

    folder: str  # as displayed
    desired: Desired
    revision: Revision | None = None

    @property
    def target(self) -> str:
        return self.folder

    def with_revision(self, revision: Revision | None) -> WriteFolder:
        return replace(self, revision=revision)


@dataclass(frozen=True)
class WriteManifests:
    """Render the Kubernetes folder for the digest the registry gives `desired.push_ref`."""

    folder: str  # as displayed
    desired: Desired
    revision: Revision | None = None

    @property
    def target(self) -> str:
        return self.folder

    def with_revision(self, revision: Revision | None) -> WriteManifests:
        return replace(self, revision=revision)


@dataclass(frozen=True)
class Build:
    image: str  # the tag by hash, as printed
    spec: BuildSpec

    @property
    def target(self) -> str:
        return self.image

    def with_revision(self, revision: Revision | None) -> Build:
        return replace(self, spec=self.spec.labelled(revision.labels())) if revision else self

    def with_labels(self, labels: Mapping[str, str]) -> Build:
        return replace(self, spec=self.spec.labelled(labels))


@dataclass(frozen=True)
class Push:
    reference: str

    @property
    def target(self) -> str:
        return self.reference


@dataclass(frozen=True)
class CreateDirect:
    """A container that publishes the port itself, where nothing does yet."""

    at: Published
    spec: ContainerSpec
    ready_timeout_s: float

    @property
    def target(self) -> str:
        return str(self.at)

    def with_revision(self, revision: Revision | None) -> CreateDirect:
        return replace(self, spec=self.spec.labelled(revision.labels())) if revision else self


@dataclass(frozen=True)
class RecreateDirect:
    """Replace the container that publishes the port itself: the new one proves ready as a
    canary on an ephemeral port first, then takes the old one's place (a gap of one init())."""

    at: Published
    current: str  # the container serving now
    canary: ContainerSpec
    spec: ContainerSpec
    previous_name: str  # what the current one is renamed to while the new one starts
    ready_timeout_s: float

    @property
    def target(self) -> str:
        return str(self.at)

    @property
    def subject(self) -> str:
        return self.current

    def with_revision(self, revision: Revision | None) -> RecreateDirect:
        if revision is None:
            return self
        labels = revision.labels()
        return replace(self, canary=self.canary.labelled(labels), spec=self.spec.labelled(labels))


@dataclass(frozen=True)
class CanaryRun:
    """An update's canary (output.container.canary): the new container takes `name`, which the
    proxy sends `weight` per cent of the requests to, and is judged after `duration_s`."""

    name: str
    weight: int
    duration_s: float
    max_error_rate: float
    min_requests: int
    abort_name: str  # the name it gives up `name` for when it fails
    resumed: str = ""  # the proxy's counts when a canary that was interrupted began (its label)

    def __str__(self) -> str:
        return f"canary: {self.weight}% of requests for {self.duration_s:g} s"


@dataclass(frozen=True)
class Swap:
    """Behind the proxy (create and recreate): serve `backend` (or the running container
    `reuse`), give it the serving name, make sure the proxy runs, then drain and remove what
    served before. Each field is one step, in this order."""

    at: Published
    network: NetworkSpec
    backend: ContainerSpec | None  # None: `reuse` is running with the desired settings already
    reuse: str
    current: str  # the container serving now ("" when none does)
    retiring_name: str  # the name `current` gives up the serving name for
    serving_name: str
    clear: tuple[str, ...]  # containers holding the published port, removed before the proxy binds it
    proxy: str  # the proxy to (re)start; "" when `new_proxy` must be created
    replace_proxy: str  # a proxy with other settings, removed before the new one is created
    new_proxy: ContainerSpec | None
    retire: tuple[str, ...]  # other containers the proxy no longer serves: drained, then removed
    ready_timeout_s: float
    drain_s: int
    canary: CanaryRun | None = None  # first serve a share of the requests, and be judged

    @property
    def target(self) -> str:
        return str(self.at)

    @property
    def subject(self) -> str:
        return self.current

    def with_revision(self, revision: Revision | None) -> Swap:
        if revision is None:
            return self
        labels = revision.labels()
        backend = self.backend.labelled(labels) if self.backend else None
        new_proxy = self.new_proxy.labelled(labels) if self.new_proxy else None
        return replace(self, backend=backend, new_proxy=new_proxy)


@dataclass(frozen=True)
class Start:
    """Start a stopped container and wait until it is ready: on the published port, or
    behind the proxy on its own ephemeral loopback port."""

    at: Published
    container: str  # its id
    behind_proxy: bool
    ready_timeout_s: float

    @property
    def target(self) -> str:
        return str(self.at)

    @property
    def subject(self) -> str:
        return self.container


@dataclass(frozen=True)
class Reload:
    """watch --dev: the serving container imports the new code in place."""

    at: Published

    @property
    def target(self) -> str:
        return str(self.at)


@dataclass(frozen=True)
class CreateProxy:
    at: Published
    network: NetworkSpec
    spec: ContainerSpec
    ready_timeout_s: float
    replace: str = ""  # a proxy with other settings: drained and removed first
    drain_s: int = 0

    @property
    def target(self) -> str:
        return f"proxy {self.at}"

    @property
    def subject(self) -> str:
        return self.replace

    def with_revision(self, revision: Revision | None) -> CreateProxy:
        return replace(self, spec=self.spec.labelled(revision.labels())) if revision else self


@dataclass(frozen=True)
class StartProxy:
    at: Published
    container: str
    ready_timeout_s: float

    @property
    def target(self) -> str:
        return f"proxy {self.at}"

    @property
    def subject(self) -> str:
        return self.container


@dataclass(frozen=True)
class RemoveContainer:
    """Stop (in-flight requests finish) and remove."""

    name: str
    container: str  # its id

    @property
    def target(self) -> str:
        return f"container {self.name}"

    @property
    def subject(self) -> str:
        return self.container


@dataclass(frozen=True)
class Retire:
    """A container the proxy no longer serves: give the proxy its moment to stop sending to
    it (starting the proxy if it is stopped), drain it, remove it."""

    name: str
    container: str
    proxy: str
    drain_s: int
    unname: str = ""  # it still holds a name the proxy sends to (a canary): it takes this one first

    @property
    def target(self) -> str:
        return f"container {self.name}"

    @property
    def subject(self) -> str:
        return self.container


@dataclass(frozen=True)
class RemoveImage:
    label: str  # its tags, or its short id
    image: str  # its id

    @property
    def target(self) -> str:
        return f"image {self.label}"

    @property
    def subject(self) -> str:
        return self.image


@dataclass(frozen=True)
class RemoveNetwork:
    name: str

    @property
    def target(self) -> str:
        return f"network {self.name}"


@dataclass(frozen=True)
class FetchImage:
    """`reconciler pull`: `remote` must carry `image_hash` (its label says so); then it is
    tagged `local`, as if built here."""

    remote: str
    local: str
    image_hash: str

    @property
    def target(self) -> str:
        return self.remote


@dataclass(frozen=True)
class Relock:
    """`reconciler lock`: resolve the requirements again into package.lock, with the base
    image pin `keep`, or pinning `pin` (asked of the registry, then the engine)."""

    package: Package
    old: Lock | None  # what package.lock held: the report says what changed
    keep: BasePin | None
    pin: str  # the base image reference to pin; "" when `keep` stands (or the manifest pins it)

    @property
    def target(self) -> str:
        return str(self.package.lock_path)


Payload = (
    PullImage
    | WriteFolder
    | WriteManifests
    | Build
    | Push
    | CreateDirect
    | RecreateDirect
    | Swap
    | Start
    | Reload
    | CreateProxy
    | StartProxy
    | RemoveContainer
    | Retire
    | RemoveImage
    | RemoveNetwork
    | FetchImage
    | Relock
)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    package: str
    cause: str
    payload: Payload

    @property
    def target(self) -> str:
        return self.payload.target

    @property
    def subject(self) -> str:
        """The engine object acted on (a container's or image's id), when there is one."""
        return getattr(self.payload, "subject", "")

    @property
    def records_revision(self) -> bool:
        """Whether what it makes records the commit it came from."""
        return hasattr(self.payload, "with_revision")

    def with_revision(self, revision: Revision | None) -> Action:
        """The action with the commit its artifacts come from (for payloads that record it)."""
        stamp = getattr(self.payload, "with_revision", None)
        return replace(self, payload=stamp(revision)) if stamp else self

    def __str__(self) -> str:
        return f"{self.kind.verb} {self.target}  <- {self.cause}"


def remove_container(package: str, name: str, container: str, cause: str) -> Action:
    return Action(ActionKind.REMOVE_CONTAINER, package, cause, RemoveContainer(name, container))


def remove_image(package: str, tags: tuple[str, ...], image: str, cause: str) -> Action:
    return Action(ActionKind.REMOVE_IMAGE, package, cause, RemoveImage(", ".join(tags) or image[7:19], image))
