"""Paths as reconciler compares and shows them."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person wants to read it: relative to the working directory when below it,
    and printable whatever bytes its name holds (what is not UTF-8 shows as \\xNN)."""
    path = os.fspath(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        relative = os.pardir
    shown = path if relative.startswith(os.pardir) else relative
    return os.fsencode(shown).decode("utf-8", "backslashreplace")


def inside(path: Path | str, root: Path | str) -> bool:
    """Whether `path` is `root` or below it (both absolute and normalised)."""
    path, root = str(path), str(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)
def real_path(path: Path) -> Path:
    """realpath for folders asked about once per package (repository roots)."""
    return Path(os.path.realpath(path))
