"""The output modes, as one table of what each does.

Everything outside this module asks a mode's capability (`mode.serves`, `mode.builds`),
never its name: a new output mode is one row here, its renderer, its observed part and its
handlers (docs/architecture.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    builds: bool  # an image on the engine: the plan needs an engine, the hash its base image's pin
    pushes: bool  # always pushes the image to output.image.registry (image mode pushes when asked)
    serves: bool  # a container serving on this host, with its secrets, dev reloads and a port
    renders_manifests: bool  # a folder of Kubernetes manifests, pinned to the pushed digest
    commits_output: bool  # its output is meant to be committed: `apply --check` verifies it
    leaves: str  # what stays when its manifest is deleted (said by watch)


class Mode(enum.Enum):
    """`output.mode`. Every mode writes the Dockerfile folder."""

    DOCKERFILE = "dockerfile"
    IMAGE = "image"
    CONTAINER = "container"
    KUBERNETES = "kubernetes"

    @property
    def capabilities(self) -> Capabilities:
        return _TABLE[self]

    @property
    def builds(self) -> bool:
        return self.capabilities.builds

    @property
    def pushes(self) -> bool:
        return self.capabilities.pushes

    @property
    def serves(self) -> bool:
        return self.capabilities.serves

    @property
    def renders_manifests(self) -> bool:
        return self.capabilities.renders_manifests

    @property
    def commits_output(self) -> bool:
        return self.capabilities.commits_output

    @property
    def uses_engine(self) -> bool:
        """Whether a plan of this mode asks the Docker engine."""
        return self.builds or self.serves

    def __str__(self) -> str:
        return self.value


_TABLE = {
    Mode.DOCKERFILE: Capabilities(
        builds=False, pushes=False, serves=False, renders_manifests=False, commits_output=True, leaves="folder"
    ),
    Mode.IMAGE: Capabilities(
        builds=True, pushes=False, serves=False, renders_manifests=False, commits_output=False, leaves="images"
    ),
    Mode.CONTAINER: Capabilities(
        builds=True, pushes=False, serves=True, renders_manifests=False, commits_output=False, leaves="containers"
    ),
    Mode.KUBERNETES: Capabilities(
        builds=True, pushes=True, serves=False, renders_manifests=True, commits_output=True, leaves="images"
    ),
}

MODE_NAMES = tuple(mode.value for mode in Mode)
