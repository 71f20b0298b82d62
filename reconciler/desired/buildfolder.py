"""Write a package's Dockerfile folder: self-contained, atomic, stamped.

The folder holds everything `docker build` needs with no network: the Dockerfile,
the application code, the models in Azure's layout, the locked wheels (hard links
into the read-only wheel cache where the filesystem allows), the lock, and the
serving runtime. It is written to a hidden temporary sibling and renamed into
place, so a reader sees the old folder or the new one, never half of one.

A folder is only ever replaced when its stamp says it is ours and this package's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from reconciler import __version__
from reconciler.core.errors import PermanentError
from reconciler.core.paths import display_path
from reconciler.core.stamp import STAMP_NAME, Stamp, StampUnreadable, read_stamp
from reconciler.desired.digest import Digester, bytes_digest
from reconciler.desired.dockerfile import RUNTIME_PACKAGE
from reconciler.desired.pins import WheelCache
from reconciler.desired.state import Desired, runtime_files


def check_ownership(folder: Path, package_name: str) -> Stamp | None:
    """Refuse to touch a folder reconciler did not write for this package; its stamp if it is ours."""
    if not os.path.lexists(folder):
        return None
    if folder.is_symlink() or not folder.is_dir():
        raise PermanentError(f"{display_path(folder)} exists and is not a folder; reconciler will not replace it")
    try:
        stamp = read_stamp(folder)
    except StampUnreadable as error:
        raise PermanentError(
            f"{display_path(folder)} has a damaged {STAMP_NAME} ({error}); "
            "if the folder is reconciler's, delete it and apply again"
        ) from None
    if stamp is None:
        raise PermanentError(
            f"{display_path(folder)} exists and was not written by reconciler (no {STAMP_NAME}); "
            "move it away or choose another output.directory"
        )
    if stamp.package != package_name:
        raise PermanentError(f"{display_path(folder)} belongs to package {stamp.package!r}, not {package_name!r}")
    return stamp


class _FolderWriter:
    """Writes the new folder. A file the previous folder already holds, unedited, is hard-linked
    from it instead of copied again: rewriting a folder for a code edit must not copy a
    multi-gigabyte model."""

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
            digest = self.digester.file(str(old), status)
            if (digest + "+x" if status.st_mode & 0o111 else digest) != expected:
                return False  # edited by hand since: write it afresh
            os.link(old, path)
        except OSError:
            return False
        return True

    def text(self, relative: str, text: str) -> None:
        data = text.encode()
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
        self.files[relative] = bytes_digest(data)

    def copy(self, relative: str, source: str, digest: str, executable: bool) -> None:
        """Copy a file whose digest is already known (an input of the hash)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = digest + "+x" if executable else digest
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


def render_folder(desired: Desired, wheel_cache: WheelCache, digester: Digester) -> Stamp:
    """Write the package's build folder and return the stamp written into it."""
    package = desired.package
    target = package.output_directory
    previous = check_ownership(target, package.name)
    wheel_cache.fetch(package, desired.lock)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.reconciler-new-", dir=target.parent))
    try:
        writer = _FolderWriter(scratch, digester, target if previous else None, previous.files if previous else {})
        writer.text("Dockerfile", desired.dockerfile)
        writer.text("requirements.lock.txt", desired.lock.pip_requirements())
        writer.text("package.lock", desired.lock.to_json())
        for wheel in desired.lock.wheels:
            writer.link(f"wheels/{wheel.filename}", wheel_cache.path(wheel))
        for path in runtime_files():
            name = os.path.basename(path)
            writer.copy(f"runtime/{RUNTIME_PACKAGE}/{name}", path, digester.file(path), False)
        for file in desired.files:
            digest = desired.file_digests[file.destination].removesuffix("+x")
            writer.copy(file.destination, file.path, digest, file.executable)
        stamp = Stamp(
            package=package.name,
            image_hash=desired.image_hash,
            inputs=desired.inputs,
            files=dict(sorted(writer.files.items())),
            generator=f"reconciler {__version__}",
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
