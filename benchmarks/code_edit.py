"""Code-only edit -> new code served, container mode, the sklearn example: the time from
saving score.py to the first response from the new code (apply builds the code layer,
runs a canary, replaces the container).

Target (issue 4): <= 5 s.

    .venv/bin/python benchmarks/code_edit.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import PYTHON, ROOT, forget_packages, header, median

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import free_port  # noqa: E402

BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def container_package(repo: Path, name: str, port: int) -> Path:
    package = repo / name
    shutil.copytree(ROOT / "examples" / "sklearn-regression", package, ignore=shutil.ignore_patterns("build"))
    manifest = package / "package.yaml"
    text = manifest.read_text().replace("name: sklearn-regression", f"name: {name}")
    text = text.replace("base_image: python:3.11-slim", f"base_image: {BASE}").replace(
        "mode: dockerfile", "mode: container"
    )
    manifest.write_text(text.replace("container: {port: 6789}", f"container: {{port: {port}}}"))
    return package


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    header("code-only edit -> new code served (container mode, sklearn example)")
    with tempfile.TemporaryDirectory(prefix="reconciler-code-edit-") as scratch:
        repo = Path(scratch)
        (repo / ".git").mkdir()
        port = free_port()
        package = container_package(repo, "bench-code-edit", port)
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(repo / ".cache")}
        try:
            subprocess.run(
                [PYTHON, "-m", "reconciler", "apply", str(package)], env=env, check=True, capture_output=True
            )
            score = package / "score.py"
            original = score.read_text()
            timings, phases = [], []
            token = time.time_ns()  # new content every time, so no earlier image can be reused
            for run in range(arguments.runs):
                score.write_text(
                    original.replace(
                        "return result.tolist()", f'return {{"edit": {run}, "token": {token}, "p": result.tolist()}}'
                    )
                )
                started = time.perf_counter()
                result = subprocess.run(
                    [PYTHON, "-m", "reconciler", "apply", str(package)], env=env, capture_output=True, text=True
                )
                if result.returncode != 0:
                    raise SystemExit(result.stdout + result.stderr)
                while True:
                    body = requests.post(f"http://127.0.0.1:{port}/score", json=SEED_REQUEST, timeout=5).json()
                    if isinstance(body, dict) and body.get("edit") == run:
                        break
                    time.sleep(0.01)
                timings.append(time.perf_counter() - started)
                phases.append(
                    {
                        kind: float(seconds)
                        for kind, seconds in re.findall(
                            r": (write|build|recreate) .+?  done in ([\d.]+) s", result.stdout
                        )
                    }
                )
        finally:
            forget_packages(repo, env)
        print(
            f"{'save -> new code served':<28} median {median(timings):.2f} s  (min {min(timings):.2f}, max {max(timings):.2f})"
        )
        for kind in ("write", "build", "recreate"):
            values = [p[kind] for p in phases if kind in p]
            if values:
                print(f"  {kind:<26} median {median(values):.2f} s")


if __name__ == "__main__":
    main()
