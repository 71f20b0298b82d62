"""Paths as reconciler compares and shows them."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person wants to read it: relative to the working directory when below it,
    and printable whatever bytes its name holds (what is not UTF-8 shows as \\xNN)."""
    path = os.fspath(path)
    cwd = os.getcwd()
    below = cwd.rstrip(os.sep) + os.sep
    if path.startswith(os.sep) and not path.startswith(2 * os.sep) and os.path.normpath(path) == path:
        # absolute and normalised, the usual case: relpath's work (and its own getcwd) spared
        shown = "." if path == cwd else path[len(below) :] if path.startswith(below) else path
    else:
        try:
            relative = os.path.relpath(path)
        except ValueError:  # another drive on Windows
            relative = os.pardir
        shown = path if relative.startswith(os.pardir) else relative
    return os.fsencode(shown).decode("utf-8", "backslashreplace")


GIT_METADATA = ".git"  # a repository's own folder (or a worktree's pointer file): never content


def in_git_metadata(path: Path | str) -> bool:
    """Whether `path` is, or is below, a `.git`: the repository's metadata, where a clone keeps
    its remote's URL and credentials. Ask it of a real path, so no link leads around it."""
    return GIT_METADATA in Path(path).parts


def inside(path: Path | str, root: Path | str) -> bool:
    """Whether `path` is `root` or below it (both absolute and normalised)."""
    path, root = str(path), str(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class RealPaths:
    """os.path.realpath with each folder on the way resolved once. One loading of a
    repository's packages asks about thousands of paths in the same few folders; made anew
    for each, as links may change between runs."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike[str]) -> str:
        path = os.fspath(path)
        known = self._known.get(path)
        if known is None:
            known = self._known[path] = self._resolve(path)
        return known

    def _resolve(self, path: str) -> str:
        parent, name = os.path.split(path)
        if not name or name in (os.curdir, os.pardir) or not os.path.isabs(path) or parent == path:
            return os.path.realpath(path)
        candidate = os.path.join(self(parent), name)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate


@functools.lru_cache(maxsize=4096)
def real_path(path: Path) -> Path:
    """realpath for folders asked about once per package (repository roots)."""
    return Path(os.path.realpath(path))
