"""Pinned dependencies: `package.lock`, resolved on the host for the image's target.

Containers here (and behind many corporate proxies) cannot reach PyPI, so the
dependencies are resolved on the host with the user's own pip configuration
(index, certificates, find-links), for the target Python and platform, into
`package.lock` (names, versions, wheel file names, sha256) and a local
content-addressed wheel cache. The image then installs from those wheels with no
network, hash-checked.

The lock records a digest of what it was resolved from (requirement lines,
Python, platform, the runtime's own requirements): when those change, the lock
is stale. Hashing a package reads the lock, never the network.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from reconciler import __version__
from reconciler.core.atomic import write_atomic
from reconciler.core.credentials import without_credentials
from reconciler.core.errors import InvalidInput, PermanentError, Problem
from reconciler.desired.digest import value_digest
from reconciler.desired.numpy_abi import numpy_1_builds
from reconciler.desired.pip import pip_target_arguments, run_pip
from reconciler.desired.requirements import Requirements, read_requirements
from reconciler.desired.wheels import LockedWheel, WheelCache
from reconciler.spec.package import Package

LOCK_VERSION = 1
RUNTIME_REQUIREMENTS = Path(__file__).parent.parent / "runtime" / "requirements.txt"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PINNED_BY = ("registry", "engine", "image id", "manifest")


@dataclass(frozen=True)
class BasePin:
    """The base image as package.lock pins it, so the image hash reads the lock only and
    comes out the same on every machine, with or without a Docker engine.

    `by` says where the pin came from: the registry's manifest digest for the tag, the
    engine's repo digest of its copy, the local image ID of an image that was never pushed
    (only this machine can build it), or the manifest itself (`name@sha256:...`)."""

    reference: str
    pin: str | None  # sha256:..., None when nothing could pin it
    by: str | None  # one of PINNED_BY; None when not pinned

    @classmethod
    def from_manifest(cls, reference: str) -> BasePin | None:
        """The pin a reference carries itself (`name@sha256:...`), if it does."""
        name, _, digest = reference.partition("@")
        return cls(reference, digest, "manifest") if digest and _IMAGE_DIGEST.match(digest) else None

    @property
    def from_reference(self) -> str:
        """What FROM names: `reference@digest` where a digest is known. A local image ID
        cannot be named in FROM (BuildKit reads it as a repository), so it keeps the tag."""
        if self.pin and self.by in ("registry", "engine"):
            return f"{self.reference}@{self.pin}"
        return self.reference

    @property
    def hash_input(self) -> str:
        return self.pin or "not pinned"

    def to_json(self) -> dict:
        return {"reference": self.reference, "pin": self.pin, "by": self.by}


@dataclass(frozen=True)
class Lock:
    inputs_digest: str
    python: str
    platform: str
    requirements: tuple[str, ...]
    wheels: tuple[LockedWheel, ...]
    base: BasePin | None = None  # None: the lock does not pin the base image (yet)
    notes: tuple[str, ...] = field(default=(), compare=False)  # what resolving decided, to say once

    @property
    def digest(self) -> str:
        """What the image depends on: the exact wheels (not how they were asked for)."""
        return value_digest([[w.name, w.version, w.filename, w.sha256] for w in self.wheels])

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "lock_version": LOCK_VERSION,
                    "generated_by": f"reconciler {__version__}",
                    "inputs_digest": self.inputs_digest,
                    "python": self.python,
                    "platform": self.platform,
                    "requirements": list(self.requirements),
                    "packages": [
                        {"name": w.name, "version": w.version, "filename": w.filename, "sha256": w.sha256}
                        for w in self.wheels
                    ],
                    **({"base_image": self.base.to_json()} if self.base else {}),
                },
                indent=2,
            )
            + "\n"
        )

    def pip_requirements(self) -> str:
        """The lock as a hash-checked pip requirements file for the image."""
        return "".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in self.wheels)


# -- what a lock is resolved from ----------------------------------------------------


def requirement_lines(package: Package) -> list[str]:
    """The package's own requirements as written (inline list, or files with their includes),
    checked: what a lock is resolved from."""
    return list(read_requirements(package).lines)


@functools.lru_cache(maxsize=1)
def runtime_requirement_lines() -> tuple[str, ...]:
    """The runtime's requirements (shipped with reconciler): read once per process, not per package."""
    return tuple(
        line.strip()
        for line in RUNTIME_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def inputs_digest(package: Package) -> str:
    environment = package.manifest.inference.environment
    return value_digest(
        {
            "lock_version": LOCK_VERSION,
            "python": environment.python,
            "platform": environment.platform,
            "requirements": requirement_lines(package),
            "runtime": list(runtime_requirement_lines()),
            **({"index_url": without_credentials(environment.index_url)} if environment.index_url else {}),
        }
    )


# -- reading and checking ------------------------------------------------------------


def read_lock(package: Package) -> Lock | None:
    """The package's lock, None if there is none; InvalidInput if it is damaged."""
    path = package.lock_path
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(
            [Problem(str(path), f"cannot read the lock: {error}; run `reconciler lock` to rewrite it")]
        ) from None
    try:
        if data["lock_version"] != LOCK_VERSION:
            raise ValueError(f"lock_version {data['lock_version']!r}, expected {LOCK_VERSION}")
        wheels = tuple(
            LockedWheel(str(p["name"]), str(p["version"]), str(p["filename"]), str(p["sha256"]))
            for p in data["packages"]
        )
        for wheel in wheels:
            _check_wheel_entry(wheel)
        return Lock(
            inputs_digest=str(data["inputs_digest"]),
            python=str(data["python"]),
            platform=str(data["platform"]),
            requirements=tuple(str(r) for r in data["requirements"]),
            wheels=wheels,
            base=_read_base(data.get("base_image")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput(
            [Problem(str(path), f"damaged lock ({error}); run `reconciler lock` to rewrite it")]
        ) from None


def _read_base(entry: object) -> BasePin | None:
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError("base_image must be a mapping")
    reference, pin, by = entry["reference"], entry.get("pin"), entry.get("by")
    if not isinstance(reference, str) or not reference:
        raise ValueError("base_image.reference must be an image reference")
    if pin is not None and not (isinstance(pin, str) and _IMAGE_DIGEST.match(pin)):
        raise ValueError("base_image.pin must be sha256:<64 hex digits>")
    if (pin is None) != (by is None) or (by is not None and by not in PINNED_BY):
        raise ValueError(f"base_image.by must be one of {', '.join(PINNED_BY)} when pinned")
    return BasePin(reference, pin, by)


@functools.lru_cache(maxsize=4096)
def _check_wheel_entry(wheel: LockedWheel) -> None:
    """A lock is input too: names and hashes must be what pip would accept, nothing more."""
    if not _SHA256.match(wheel.sha256):
        raise ValueError(f"{wheel.filename}: sha256 is not 64 hex digits")
    if os.path.basename(wheel.filename) != wheel.filename or not wheel.filename.endswith(".whl"):
        raise ValueError(f"{wheel.filename!r} is not a wheel file name")
    try:
        name, version, _, _ = parse_wheel_filename(wheel.filename)
    except InvalidWheelFilename as error:
        raise ValueError(str(error)) from None
    if name != canonicalize_name(wheel.name) or str(version) != wheel.version:
        raise ValueError(f"{wheel.filename} does not match {wheel.name}=={wheel.version}")


def stale_reason(package: Package, lock: Lock | None) -> str | None:
    """Why the lock must be resolved again, or None when it is current."""
    if lock is None:
        return "no package.lock yet"
    environment = package.manifest.inference.environment
    if lock.python != environment.python:
        return f"python changed ({lock.python} -> {environment.python})"
    if lock.platform != environment.platform:
        return f"platform changed ({lock.platform} -> {environment.platform})"
    if lock.inputs_digest != inputs_digest(package):
        return "requirements changed"
    return None


def base_stale_reason(package: Package, lock: Lock, *, can_pin: bool) -> str | None:
    """Why the base image must be pinned (again), or None. `can_pin`: an engine is there to
    pin it, so an earlier failed attempt is tried again."""
    reference = package.manifest.inference.environment.resolved_base_image
    if lock.base is None:
        return "the base image is not pinned yet"
    if lock.base.reference != reference:
        return f"base image changed ({lock.base.reference} -> {reference})"
    if lock.base.pin is None and can_pin:
        return "the base image was not pinned"
    return None


# -- resolving ----------------------------------------------------------------------


def resolve(package: Package, wheel_cache: WheelCache) -> Lock:
    """Resolve the package's requirements for its target, fill the wheel cache, return the lock.

    Where NumPy 2 was chosen but a locked wheel was built for NumPy 1.x (numpy_abi), the set
    would crash at import: it is resolved again with `numpy<2`, as conda would have kept it,
    and the lock says why."""
    environment = package.manifest.inference.environment
    parsed = read_requirements(package)
    lines = list(parsed.lines)
    with tempfile.TemporaryDirectory(prefix="reconciler-lock-") as scratch:
        scratch_path = Path(scratch)
        downloaded = _download(package, parsed, scratch_path, "wheels", ())
        numpy = next((version for name, version, _ in downloaded if name == "numpy"), None)
        old_builds = numpy_1_builds(downloaded) if numpy and Version(numpy).major >= 2 else []
        notes: tuple[str, ...] = ()
        if old_builds:
            why = f"{', '.join(old_builds)} {'was' if len(old_builds) == 1 else 'were'} built for NumPy 1.x"
            try:
                downloaded = _download(package, parsed, scratch_path, "wheels-numpy-1", ("numpy<2",))
            except PermanentError as error:
                raise PermanentError(
                    f"lock {package.name}: {why} and numpy {numpy} was chosen; with numpy<2 the requirements do "
                    f"not resolve either ({error}). Pin a newer {old_builds[0].split()[0]}, built for NumPy 2"
                ) from None
            lines.append(f"numpy<2  # added by reconciler: {why}")
            notes = (f"{why}; numpy {numpy} would fail at import, so numpy is kept below 2, as conda would",)
        wheels = sorted(
            (LockedWheel(name, version, path.name, wheel_cache.add(path)) for name, version, path in downloaded),
            key=lambda w: (w.name, w.version, w.filename),
        )
    return Lock(
        inputs_digest=inputs_digest(package),
        python=environment.python,
        platform=environment.platform,
        requirements=(*lines, *runtime_requirement_lines()),
        wheels=tuple(wheels),
        notes=notes,
    )


def _download(
    package: Package, parsed: Requirements, scratch: Path, folder: str, extra_constraints: tuple[str, ...]
) -> list:
    """pip download of the requirements (and the runtime's) into scratch/folder: (name, version,
    path) of each wheel. pip reads only what reconciler writes: requirements and constraints."""
    environment = package.manifest.inference.environment
    requirements = scratch / "requirements.txt"
    requirements.write_text("".join(r + "\n" for r in parsed.requirements), encoding="utf-8")
    constraints = scratch / f"constraints-{folder}.txt"
    constraints.write_text("".join(c + "\n" for c in (*parsed.constraints, *extra_constraints)), encoding="utf-8")
    download = scratch / folder
    arguments = ["download", "--quiet", "--progress-bar", "off", "--dest", str(download)]
    arguments += pip_target_arguments(environment.python, environment.platform)
    if environment.index_url:
        arguments += ["--index-url", environment.index_url]
    arguments += ["-r", str(requirements), "-c", str(constraints), "-r", str(RUNTIME_REQUIREMENTS)]
    run_pip(arguments, cwd=scratch, what=f"lock {package.name}")
    found = []
    for file in sorted(download.iterdir()):
        if not file.name.endswith(".whl"):
            raise PermanentError(
                f"lock {package.name}: pip fetched {file.name}, which is not a wheel; "
                "every dependency needs a wheel for the target platform"
            )
        name, version, _, _ = parse_wheel_filename(file.name)
        found.append((str(name), str(version), file))
    return found


def write_lock(package: Package, lock: Lock) -> None:
    write_atomic(package.lock_path, lock.to_json().encode())
