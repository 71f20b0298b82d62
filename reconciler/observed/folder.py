"""An output folder's observed state: whose it is (its stamp), what it was written for,
and any drift (files edited, added or removed by hand since)."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.core.stamp import STAMP_NAME, ownership
from reconciler.desired.digest import Digester, is_executable, with_mode
from reconciler.desired.revision import Revision
from reconciler.observed.state import FolderState


def _folder_digests(folder: str, digester: Digester) -> dict[str, str]:
    """Recorded digest of every file below `folder`, by POSIX relative path."""
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
                    found[relative] = with_mode(digester.file(entry.path, status), is_executable(status.st_mode))
    return found


def folder_drift(folder: Path, files: dict[str, str], digester: Digester) -> list[str]:
    """Files edited, added or removed since the stamp was written. Where a digest from the
    stat cache disagrees with the stamp, the file is read again before it counts as drift."""
    digester.cache.preload(str(folder))
    actual = _folder_digests(str(folder), digester)
    suspects = [str(folder / r) for r in files.keys() & actual.keys() if actual[r] != files[r]]
    if suspects and digester.recheck(suspects):
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
    owner = ownership(folder, package_name)
    if owner.status != "ours":
        return FolderState(owner.status, detail=owner.detail)
    stamp = owner.stamp
    drift = tuple(folder_drift(folder, stamp.files, digester))
    return FolderState("ours", stamp.image_hash, stamp.inputs, drift, revision=Revision.from_json(stamp.revision))
