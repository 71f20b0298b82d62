"""What goes into a package's Dockerfile folder: everything `docker build` needs, no network.

The Dockerfile, the application code, the models in Azure's layout, the locked wheels
(hard links into the read-only wheel cache where the filesystem allows), the lock, and
the serving runtime as one zip, imported from it as it is. Written atomically and stamped
by `folder_writer`.
"""

from __future__ import annotations

import io
import os
import zipfile

from reconciler.core.stamp import Stamp
from reconciler.desired.digest import Digester, without_mode
from reconciler.desired.dockerfile import RUNTIME_ARCHIVE, RUNTIME_PACKAGE
from reconciler.desired.folder_writer import FolderWriter, write_stamped_folder
from reconciler.desired.sbom import SBOM_NAME, render_sbom
from reconciler.desired.state import Desired, runtime_files
from reconciler.desired.wheels import WheelCache


def render_folder(desired: Desired, wheel_cache: WheelCache, digester: Digester, revision: dict | None = None) -> Stamp:
    """Write the package's build folder and return the stamp written into it."""
    package = desired.package
    lock = desired.lock
    wheel_cache.fetch(lock.wheels, python=lock.python, platform=lock.platform, what=f"fetch wheels for {package.name}")

    archive = runtime_archive()

    def fill(writer: FolderWriter) -> None:
        writer.text("Dockerfile", desired.dockerfile)
        writer.text(SBOM_NAME, render_sbom(desired, archive))
        writer.text("requirements.lock.txt", desired.lock.pip_requirements())
        writer.text("package.lock", desired.lock.to_json())
        for wheel in desired.lock.wheels:
            writer.link(f"wheels/{wheel.filename}", wheel_cache.path(wheel))
        writer.data(RUNTIME_ARCHIVE, archive)
        for file in desired.files:
            digest = without_mode(desired.file_digests[file.destination])  # hashed already
            writer.copy(file.destination, file.path, digest, file.executable)

    return write_stamped_folder(
        package.output_directory,
        package=package.name,
        image_hash=desired.image_hash,
        inputs=desired.inputs,
        digester=digester,
        fill=fill,
        revision=revision,
    )


def runtime_archive() -> bytes:
    """The runtime's files as one zip, stored (not compressed) with fixed times and modes: the
    same bytes on every machine, so a committed folder is the same everywhere; and one file
    where there were twenty, in every build folder a plan checks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in runtime_files():
            entry = zipfile.ZipInfo(f"{RUNTIME_PACKAGE}/{os.path.basename(path)}", date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            with open(path, "rb") as handle:
                archive.writestr(entry, handle.read())
    return buffer.getvalue()
