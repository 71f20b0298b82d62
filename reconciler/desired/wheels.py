"""The local wheel cache: every wheel a lock names, stored by content, read-only."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from reconciler.core.errors import PermanentError
from reconciler.desired.pip import pip_target_arguments, run_pip


class LockedWheel(NamedTuple):
    """One wheel as package.lock pins it (a tuple: a plan reads thousands)."""

    name: str
    version: str
    filename: str
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WheelCache:
    """Wheels stored by content: `<cache>/wheels/sha256/<ab>/<sha256>/<file name>`.

    Files are read-only: build folders hard-link to them, so a hand edit in a build
    folder must not be able to change the cache.
    """

    def __init__(self, root: Path):
        self.root = root

    def path(self, wheel: LockedWheel) -> Path:
        return self.root / "sha256" / wheel.sha256[:2] / wheel.sha256 / wheel.filename

    def add(self, file: Path) -> str:
        sha256 = sha256_of(file)
        target = self.root / "sha256" / sha256[:2] / sha256 / file.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{file.name}.{os.getpid()}.tmp")
            shutil.copyfile(file, temporary)
            os.chmod(temporary, 0o444)
            os.replace(temporary, target)
        return sha256

    def missing(self, wheels: Iterable[LockedWheel]) -> list[LockedWheel]:
        return [wheel for wheel in wheels if not self.path(wheel).is_file()]

    def fetch(self, wheels: Sequence[LockedWheel], *, python: str, platform: str, what: str) -> None:
        """Download the wheels that are not cached yet (a fresh machine, a committed lock)."""
        missing = self.missing(wheels)
        if not missing:
            return
        with tempfile.TemporaryDirectory(prefix="reconciler-wheels-") as scratch:
            pins = Path(scratch) / "pins.txt"
            pins.write_text(
                "".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in missing), encoding="utf-8"
            )
            download = Path(scratch) / "wheels"
            arguments = ["download", "--quiet", "--progress-bar", "off", "--no-deps", "--dest", str(download)]
            arguments += pip_target_arguments(python, platform) + ["-r", str(pins)]
            run_pip(arguments, what=what)
            for file in download.iterdir():
                self.add(file)
        still_missing = self.missing(wheels)
        if still_missing:
            names = ", ".join(w.filename for w in still_missing)
            raise PermanentError(f"{what}: pip did not provide {names}")
