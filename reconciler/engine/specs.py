"""What the engine is asked to make: a container or a build, every setting decided.

The planner fills these in; the engine applies them as they are. They hold no Docker SDK
types, so plans are built and compared without Docker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconciler.desired.dockerfile import CONTAINER_PORT


@dataclass(frozen=True)
class Confinement:
    """What a container may do beyond serving: read-only root (with a tmpfs /tmp), capabilities,
    privilege gain, processes, and how much log it keeps."""

    read_only_root: bool
    tmp_bytes: int
    drop_capabilities: bool
    no_new_privileges: bool
    pids_limit: int  # 0: no limit
    log_max_size: str  # json-file rotation: "20m"
    log_max_files: int


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is created with. `port` 0 publishes on any free port;
    `mounts` (host folder -> path in the container) are read-only, `writable_mounts` not."""

    image: str
    name: str
    labels: Mapping[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    container_port: int = CONTAINER_PORT
    loopback_ports: tuple[int, ...] = ()  # more container ports, each on an ephemeral 127.0.0.1 port: for reconciler
    network: str | None = None
    restart: bool = True  # serving containers come back after a reboot; a canary does not
    user: str | None = None  # UID:GID it runs as, whatever its image declares (None: the image's USER)
    command: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # more environment, never shown
    mounts: Mapping[str, str] = field(default_factory=dict)
    writable_mounts: Mapping[str, str] = field(default_factory=dict)  # collected data (inference.data_collection)
    cpus: float | None = None
    memory: int | None = None  # bytes
    gpus: int = 0
    confinement: Confinement | None = None

    def labelled(self, extra: Mapping[str, str]) -> ContainerSpec:
        return replace(self, labels={**self.labels, **extra})

    def with_image(self, image: str) -> ContainerSpec:
        return replace(self, image=image)


@dataclass(frozen=True)
class NetworkSpec:
    """A package's own bridge network: its proxy and its containers, no one else."""

    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class BuildSpec:
    """A build folder into a tagged, labelled image. `network`: the Dockerfile installs
    system packages; else the build runs with no network at all."""

    folder: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    network: bool = False
    platform: str | None = None  # None: the engine's own

    def labelled(self, extra: Mapping[str, str]) -> BuildSpec:
        return replace(self, labels={**self.labels, **extra})
