"""Size of the sklearn example's image, with the base image and the dependency layer.

Target (issue 4): <= 450 MB on a python:3.11-slim-like base (the seed's packaged image is
1.43 GB). Tests and benchmarks here use a debootstrap Debian bookworm base with Python 3.11
(scripts/build-test-base-image), since no registry can be pulled from.

    .venv/bin/python benchmarks/image_size.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
from common import PYTHON, ROOT, forget_packages, header

sys.path.insert(0, str(ROOT / "benchmarks"))
from code_edit import container_package  # noqa: E402

BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")


def main() -> None:
    header("image size of the sklearn example")
    client = docker.from_env()
    with tempfile.TemporaryDirectory(prefix="reconciler-size-") as scratch:
        repo = Path(scratch)
        (repo / ".git").mkdir()
        package = container_package(repo, "bench-image-size", 6999)
        manifest = package / "package.yaml"
        manifest.write_text(manifest.read_text().replace("mode: container", "mode: image"))
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(repo / ".cache")}
        subprocess.run([PYTHON, "-m", "reconciler", "apply", str(package)], env=env, check=True, capture_output=True)
        [image] = client.images.list(filters={"label": "reconciler.package=bench-image-size"})
        base = client.images.get(BASE)
        history = client.api.history(image.id)
        venv = max(layer["Size"] for layer in history if "/opt/venv" in layer.get("CreatedBy", ""))
        megabytes = 1e6
        print(f"{'image':<44} {image.attrs['Size'] / megabytes:>8.0f} MB")
        print(f"{'  base image (' + BASE + ')':<44} {base.attrs['Size'] / megabytes:>8.0f} MB")
        print(f"{'  /opt/venv (scikit-learn, numpy, scipy, runtime)':<44} {venv / megabytes:>8.0f} MB")
        print(
            f"{'  everything else (runtime, model, code)':<44} {(image.attrs['Size'] - base.attrs['Size'] - venv) / megabytes:>8.2f} MB"
        )
        forget_packages(repo, env)


if __name__ == "__main__":
    main()
