"""Packages held after a permanent failure: the same inputs would fail the same way, so the
pipeline plans them but does not act while their desired container hash is the one that
failed. A change of their inputs (a new hash) releases them by itself; the loops release them
by hand too (watch on any event touching the package, sync when the ref moves)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hold:
    container_hash: str  # what failed
    error: str  # how: what a status says while the package is held


class Holds:
    def __init__(self) -> None:
        self.held: dict[Path, Hold] = {}

    def hold(self, manifest: Path, container_hash: str, error: str) -> None:
        self.held[manifest] = Hold(container_hash, error)

    def release(self, manifest: Path) -> None:
        self.held.pop(manifest, None)

    def release_all(self) -> None:
        self.held.clear()

    def error(self, manifest: Path) -> str:
        hold = self.held.get(manifest)
        return hold.error if hold else ""

    @property
    def hashes(self) -> Mapping[Path, str]:
        """What pipeline.run's `hold` takes: manifest -> the container hash that failed."""
        return {manifest: hold.container_hash for manifest, hold in self.held.items()}
