"""Write an output folder so a reader sees the old one or the new one, never half of one.

The new folder is written to a hidden temporary sibling, stamped, and renamed into place.
A file the previous folder already holds, unedited, is hard-linked from it instead of
copied again: rewriting a folder for a code edit must not copy a multi-gigabyte model.
A folder is only ever replaced when its stamp says it is ours and this package's; a
kill at any moment leaves either folder whole, and the next write clears the leftovers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from reconciler import __version__
from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.paths import display_path
from reconciler.core.stamp import STAMP_NAME, Stamp, ownership
from reconciler.desired.digest import Digester, bytes_digest, is_executable, with_mode


class FolderWriter:
    """Fills the new folder, recording the digest of every file it writes (for the stamp)."""

    def __init__(self, root: Path, digester: Digester, previous: Path | None, previous_files: dict[str, str]):
        self.root = root
        self.digester = digester
        self.previous = previous
        self.previous_files = previous_files
        self.files: dict[str, str] = {}

    def _reuse(self, relative: str, expected: str, path: Path) -> bool:
        if self.previous is None or self.previous_files.get(relative) != expected:
            return False
        old = self.previous / relative
        try:
            status = old.lstat()
            if with_mode(self.digester.file(str(old), status), is_executable(status.st_mode)) != expected:
                return False  # edited by hand since: write it afresh
            os.link(old, path)
        except OSError:
            return False
        return True

    def text(self, relative: str, text: str) -> None:
        self.data(relative, text.encode())

    def data(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
        self.files[relative] = bytes_digest(data)

    def copy(self, relative: str, source: str, digest: str, executable: bool) -> None:
        """Copy a file whose content digest is already known (an input of the hash)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = with_mode(digest, executable)
        if not self._reuse(relative, expected, path):
            shutil.copyfile(source, path)
            os.chmod(path, 0o755 if executable else 0o644)
        self.files[relative] = expected

    def link(self, relative: str, source: Path) -> None:
        """Hard-link a read-only cache file, copying when the filesystem will not link."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
            os.chmod(path, 0o444)
        self.files[relative] = self.digester.file(str(path))


def write_stamped_folder(
    target: Path,
    *,
    package: str,
    image_hash: str,
    inputs: dict[str, str],
    digester: Digester,
    fill: Callable[[FolderWriter], None],
    revision: dict | None = None,
) -> Stamp:
    """Replace `target` by a folder that `fill` writes, stamped with the hash it was written for."""
    owner = ownership(target, package)
    if owner.status not in ("missing", "ours"):
        raise PermanentError(owner.detail)
    try:
        return _write(target, owner.stamp, package, image_hash, inputs, digester, fill, revision)
    except OSError as error:  # a full disk: the folder as it was stays, and the message says where
        raise TemporaryError(f"cannot write {display_path(target)}: {error.strerror or error}") from None


def _write(target, previous, package, image_hash, inputs, digester, fill, revision) -> Stamp:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.reconciler-new-", dir=target.parent))
    try:
        writer = FolderWriter(scratch, digester, target if previous else None, previous.files if previous else {})
        fill(writer)
        stamp = Stamp(
            package=package,
            image_hash=image_hash,
            inputs=inputs,
            files=dict(sorted(writer.files.items())),
            generator=f"reconciler {__version__}",
            revision=revision,
        )
        (scratch / STAMP_NAME).write_text(stamp.to_json(), encoding="utf-8")
        os.chmod(scratch, 0o755)
        _swap_into_place(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return stamp


def _remove_leftovers(target: Path) -> None:
    """Temporary siblings of an earlier write that was killed midway (they carry our names;
    the package lock guarantees no other reconciler is writing this folder now)."""
    for prefix in (f".{target.name}.reconciler-new-", f".{target.name}.reconciler-old-"):
        for leftover in target.parent.glob(prefix + "*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)


def _swap_into_place(new: Path, target: Path) -> None:
    """Replace `target` by `new` with two renames; the old folder is deleted last."""
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.reconciler-old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
