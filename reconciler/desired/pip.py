"""The host's pip, asked for wheels for the image's target (Python version and platform).

Containers here (and behind many corporate proxies) cannot reach PyPI, so dependencies
are fetched on the host with the user's own pip configuration (index, certificates,
find-links), for the target rather than for the host: binary wheels only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.core.errors import PermanentError, TemporaryError

# glibc versions a manylinux wheel may need: up to Debian bookworm's 2.36, the base
# of python:3.X-slim. A base image with an older glibc needs wheels built for it.
_GLIBC_MINORS = range(36, 4, -1)
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
PLATFORM_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


def platform_tags(platform: str) -> list[str]:
    arch = PLATFORM_ARCH[platform]
    tags: list[str] = []
    for minor in _GLIBC_MINORS:
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in _LEGACY_MANYLINUX and not (arch == "aarch64" and minor < 17):
            tags.append(f"{_LEGACY_MANYLINUX[minor]}_{arch}")
    return tags


def pip_target_arguments(python: str, platform: str) -> list[str]:
    arguments = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    for tag in platform_tags(platform):
        arguments += ["--platform", tag]
    return arguments


# pip's words for a resolution that fails the same way every time (the inputs must change)
_UNRESOLVABLE = ("No matching distribution", "Could not find a version", "ResolutionImpossible", "conflict")


def run_pip(arguments: list[str], *, cwd: Path | None = None, what: str) -> None:
    """Run the host's pip with the user's configuration; turn a failure into its ERROR lines.

    A requirement that cannot be satisfied is permanent; anything else (an index that
    does not answer, a proxy) may pass on a later try."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments]
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except OSError as error:
        raise TemporaryError(f"{what}: cannot run pip: {error}") from None
    if result.returncode != 0:
        output = (result.stderr or "") + (result.stdout or "")
        errors = [line for line in output.splitlines() if line.startswith("ERROR")]
        detail = "\n  ".join(errors or output.strip().splitlines()[-10:])
        kind = PermanentError if any(word in output for word in _UNRESOLVABLE) else TemporaryError
        raise kind(f"{what}: pip failed:\n  {detail}")
