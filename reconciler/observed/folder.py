"""An output folder's observed state: whose it is (its stamp), what it was written for,
and any drift (files edited, added or removed by hand since).

An unchanged folder is proven unchanged by one stat cache row: the fingerprint of every
file's stat (as git's index does for a work tree), recorded when the folder last matched its
stamp. Any difference in any file's size, times, inode or mode, or a file added or removed,
and each file's digest is looked up (or read) and compared with the stamp again.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from reconciler.core.stamp import STAMP_NAME, ownership
from reconciler.desired.digest import Digester, is_executable, with_mode
from reconciler.desired.revision import Revision
from reconciler.desired.statcache import now_ns
from reconciler.observed.state import FolderState

Listing = dict[str, os.stat_result | None]  # relative POSIX path -> its stat (None: a symlink)


def _listing(folder: str) -> Listing:
    """Every file below `folder`, the stamp included, with its stat."""
    found: Listing = {}
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                if entry.is_symlink():  # reconciler never writes links
                    found[relative] = None
                elif entry.is_dir():
                    pending.append((entry.path, relative + "/"))
                else:
                    found[relative] = entry.stat()
    return found


def _fingerprint(listing: Listing) -> str:
    lines = []
    for relative in sorted(listing):
        s = listing[relative]
        if s is None:
            lines.append(f"{relative}\0symlink")
        else:
            lines.append(f"{relative}\0{s.st_size} {s.st_mtime_ns} {s.st_ctime_ns} {s.st_ino} {s.st_dev} {s.st_mode}")
    return blake3.blake3("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _digests(folder: str, listing: Listing, digester: Digester) -> dict[str, str]:
    """Recorded digest of every file below `folder` but the stamp, by relative path."""
    found: dict[str, str] = {}
    for relative, status in listing.items():
        if status is None:
            found[relative] = "symlink"
        elif relative != STAMP_NAME:
            path = os.path.join(folder, relative)
            found[relative] = with_mode(digester.file(path, status), is_executable(status.st_mode))
    return found


def folder_drift(folder: Path, files: dict[str, str], digester: Digester) -> list[str]:
    """Files edited, added or removed since the stamp was written. Where a digest from the
    stat cache disagrees with the stamp, the file is read again before it counts as drift."""
    where = str(folder)
    listing = _listing(where)
    fingerprint = _fingerprint(listing)
    if digester.cache.folder_known_clean(where, fingerprint):
        return []
    checked_at = now_ns()
    digester.cache.preload(where)
    actual = _digests(where, listing, digester)
    suspects = [os.path.join(where, r) for r in files.keys() & actual.keys() if actual[r] != files[r]]
    if suspects and digester.recheck(suspects):
        actual = _digests(where, listing, digester)
    drift = []
    for relative in sorted(files.keys() | actual.keys()):
        if relative not in actual:
            drift.append(f"{relative} removed")
        elif relative not in files:
            drift.append(f"{relative} added")
        elif actual[relative] != files[relative]:
            drift.append(f"{relative} edited")
    if not drift:
        newest = max((max(s.st_mtime_ns, s.st_ctime_ns) for s in listing.values() if s is not None), default=0)
        digester.cache.remember_folder_clean(where, fingerprint, newest, checked_at)
    return drift


def observe_folder(folder: Path, package_name: str, digester: Digester) -> FolderState:
    owner = ownership(folder, package_name)
    if owner.status != "ours":
        return FolderState(owner.status, detail=owner.detail)
    stamp = owner.stamp
    drift = tuple(folder_drift(folder, stamp.files, digester))
    return FolderState("ours", stamp.image_hash, stamp.inputs, drift, revision=Revision.from_json(stamp.revision))
