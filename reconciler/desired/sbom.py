"""The software bill of materials of a package's image, as CycloneDX 1.6 JSON (`sbom.cdx.json`
in every Dockerfile folder): the locked Python distributions (name, version, the wheel's
SHA-256), the serving runtime, the models and the base image reference.

A pure function of the desired state: the same inputs give the same bytes on every machine
(its serial number comes from the image hash, and it carries no timestamp), so a committed
folder does not change from one apply to the next. Built with cyclonedx-python-lib, imported
only when a folder is written. The image records the document's digest in a label
(`reconciler.sbom`), so what was scanned at admission is known to be what runs.
"""

from __future__ import annotations

import uuid

from reconciler import __version__
from reconciler.core import labels
from reconciler.desired.digest import bytes_digest
from reconciler.desired.state import Desired

SBOM_NAME = "sbom.cdx.json"


_rendered: dict[str, str] = {}  # by image hash: a run that labels the build and writes the folder renders once


def render_sbom(desired: Desired, runtime_archive: bytes) -> str:
    """The document; the image hash covers every input it is made of (the lock, the runtime,
    the models, the base image), so it is rendered once per image in a process."""
    if desired.image_hash not in _rendered:
        _rendered[desired.image_hash] = _render(desired, runtime_archive)
    return _rendered[desired.image_hash]


def _render(desired: Desired, runtime_archive: bytes) -> str:
    from cyclonedx.model import HashAlgorithm, HashType
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    package = desired.package
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler:image:{desired.image_hash}"))
    bom.metadata.timestamp = None  # the same inputs, the same document
    root = Component(
        name=package.name,
        version=desired.short_hash,
        type=ComponentType.CONTAINER,
        bom_ref=f"image:{desired.image_hash}",
        description=f"the image of {package.name}, built by reconciler {__version__}",
    )
    bom.metadata.component = root
    parts = []
    for wheel in desired.lock.wheels:
        purl = PackageURL("pypi", None, wheel.name, wheel.version)
        parts.append(
            Component(
                name=wheel.name,
                version=wheel.version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel.sha256)],
            )
        )
    parts.append(
        Component(
            name="reconciler-runtime",
            version=__version__,
            type=ComponentType.FRAMEWORK,
            bom_ref="reconciler-runtime",
            description="the scoring server (Azure ML compatible)",
            hashes=[HashType(alg=HashAlgorithm.BLAKE3, content=bytes_digest(runtime_archive))],
        )
    )
    for model in package.manifest.models:
        prefix = f"models/{model.name}/{model.version}/"
        files = sorted((name, digest) for name, digest in desired.file_digests.items() if name.startswith(prefix))
        parts.append(
            Component(
                name=model.name,
                version=str(model.version),
                type=ComponentType.MACHINE_LEARNING_MODEL,
                bom_ref=f"model:{model.name}:{model.version}",
                # the digest of the model's files together (name and content of each)
                hashes=[HashType(alg=HashAlgorithm.BLAKE3, content=bytes_digest(repr(files).encode()))],
            )
        )
    base = desired.base
    parts.append(
        Component(
            name=base.reference if base else package.manifest.inference.environment.resolved_base_image,
            version=(base.pin if base and base.pin else "not pinned"),
            type=ComponentType.CONTAINER,
            bom_ref="base-image",
            description="the base image",
        )
    )
    for part in parts:
        bom.components.add(part)
    bom.register_dependency(root, parts)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def sbom_label(sbom: str) -> dict[str, str]:
    return {labels.SBOM: f"blake3:{bytes_digest(sbom.encode())}"}
