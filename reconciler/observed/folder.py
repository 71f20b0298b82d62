"""Observed state: what actually exists, read once per run.

For a Dockerfile folder that is its stamp (the hash and inputs it was written for)
and any drift (files edited, added or removed by hand since).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.paths import display_path
from reconciler.core.stamp import STAMP_NAME, StampUnreadable, read_stamp
from reconciler.desired.digest import Digester


@dataclass(frozen=True)
class FolderState:
    """missing | ours | foreign (no stamp) | damaged (unreadable stamp) | other (another package's)."""

    status: str
    image_hash: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    drift: tuple[str, ...] = ()
    detail: str = ""


def _folder_digests(folder: str, digester: Digester) -> dict[str, str]:
    """Digest (with `+x`) of every file below `folder`, by POSIX relative path."""
    found: dict[str, str] = {}
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_symlink():  # reconciler never writes links
                    found[relative] = "symlink"
                elif entry.is_dir():
                    pending.append((entry.path, relative + "/"))
                elif relative != STAMP_NAME:
                    status = entry.stat()
                    digest = digester.file(entry.path, status)
                    found[relative] = digest + "+x" if status.st_mode & 0o111 else digest
    return found


def folder_drift(folder: Path, files: dict[str, str], digester: Digester) -> list[str]:
    """Files edited, added or removed since the stamp was written."""
    digester.cache.preload(str(folder))
    actual = _folder_digests(str(folder), digester)
    drift = []
    for relative in sorted(files.keys() | actual.keys()):
        if relative not in actual:
            drift.append(f"{relative} removed")
        elif relative not in files:
            drift.append(f"{relative} added")
        elif actual[relative] != files[relative]:
            drift.append(f"{relative} edited")
    return drift


def observe_folder(folder: Path, package_name: str, digester: Digester) -> FolderState:
    if not os.path.lexists(folder):
        return FolderState("missing")
    if folder.is_symlink() or not folder.is_dir():
        return FolderState("foreign", detail=f"{display_path(folder)} exists and is not a folder")
    try:
        stamp = read_stamp(folder)
    except StampUnreadable as error:
        return FolderState("damaged", detail=f"{display_path(folder)} has a damaged {STAMP_NAME}: {error}")
    if stamp is None:
        return FolderState(
            "foreign",
            detail=f"{display_path(folder)} exists and was not written by reconciler (no {STAMP_NAME}); "
            "move it away or choose another output.directory",
        )
    if stamp.package != package_name:
        return FolderState("other", detail=f"{display_path(folder)} belongs to package {stamp.package!r}")
    drift = folder_drift(folder, stamp.files, digester)
    return FolderState("ours", stamp.image_hash, stamp.inputs, tuple(drift))
