"""Code-only edit -> new code served, container mode, the sklearn example with 0, 1 and 4 GiB
of extra model files (generated, not committed), with each builder side by side.

For every model size and builder: one package (its own name and port); its first build is
timed; then edits alternate between the builders, each edit timed from saving score.py to
the first response from the new code, polled while apply runs (apply writes the folder,
builds the code layer, starts the new container beside the old one and switches the proxy
to it), and to apply's return (which keeps the old container serving through the switch,
then drains it), with the build step alone from apply's output.

With `--via watch`, one `reconciler watch` per package takes the edits instead of an apply
each (the dev loop: no interpreter start per edit, caches warm, a 200 ms quiet period); the
next edit waits for its update to finish.

Targets (issue 14): save -> served <= 5 s at every size and the 1 GiB run within 1.5x of
the small one (BuildKit); build step <= 1 s at every size with BuildKit. Issue 20: save ->
served <= 2.5 s, seed model, no extra model.

    .venv/bin/python benchmarks/code_edit.py [--runs 5] [--sizes 0 1 4] [--builders buildkit legacy]
        [--via apply|watch]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import PROXY_IMAGE, PYTHON, ROOT, forget_packages, header, median

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import free_port  # noqa: E402

BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
CHUNK = 64 * 1024 * 1024


def container_package(repo: Path, name: str, port: int, extra_gib: int = 0) -> Path:
    package = repo / name
    shutil.copytree(ROOT / "examples" / "sklearn-regression", package, ignore=shutil.ignore_patterns("build"))
    manifest = package / "package.yaml"
    text = manifest.read_text().replace("name: sklearn-regression", f"name: {name}")
    text = text.replace("base_image: python:3.11-slim", f"base_image: {BASE}").replace(
        "mode: dockerfile", "mode: container"
    )
    text = text.replace("container: {port: 6789}", f"container: {{port: {port}, proxy_image: '{PROXY_IMAGE}'}}")
    if extra_gib:
        weights = package / "weights" / "extra.bin"
        weights.parent.mkdir()
        block = os.urandom(CHUNK)
        with open(weights, "wb") as handle:
            for index in range(extra_gib * 1024 * 1024 * 1024 // CHUNK):
                handle.write(index.to_bytes(8, "little") + block[8:])
        text = text.replace(
            "models:\n", "models:\n  - name: extra_weights\n    version: 1\n    path: weights/extra.bin\n", 1
        )
        # with two models AZUREML_MODEL_DIR is their parent, as in Azure: <name>/<version>/<file>
        score = package / "score.py"
        score.write_text(
            score.read_text().replace(
                '"sklearn_regression_model.pkl"', '"sklearn_regression_model", "1", "sklearn_regression_model.pkl"'
            )
        )
    manifest.write_text(text)
    return package


def start_apply(package: Path, env: dict, builder: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "reconciler", "apply", str(package)],
        env={**env, "RECONCILER_BUILDER": builder},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(output)
    return output


def apply(package: Path, env: dict, builder: str) -> str:
    return finish(start_apply(package, env, builder))


class Watch:
    """`reconciler watch PACKAGE` in the background, its output lines collected."""

    def __init__(self, package: Path, env: dict, builder: str):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [PYTHON, "-m", "reconciler", "watch", str(package)],
            env={**env, "RECONCILER_BUILDER": builder, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    def updates(self) -> list[str]:
        return [line for line in self.lines if re.search(r" changed -> .*recreate [\d.]+ s", line)]

    def wait_for_updates(self, count: int, timeout: float = 120) -> str:
        """The `count`th finished update's line (the old container drained)."""
        deadline = time.monotonic() + timeout
        while len(self.updates()) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("watch did not finish the update:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)
        return self.updates()[count - 1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def build_seconds(output: str) -> float:
    return float(re.search(r": build .+?  done in ([\d.]+) s", output).group(1))


def wait_for_edit(port: int, run: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = requests.post(f"http://127.0.0.1:{port}/score", json=SEED_REQUEST, timeout=5).json()
            if isinstance(body, dict) and body.get("edit") == run:
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise SystemExit(f"the new code was not served within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1, 4], metavar="GIB")
    parser.add_argument("--builders", nargs="+", default=["buildkit", "legacy"], choices=["buildkit", "legacy"])
    parser.add_argument("--via", choices=["apply", "watch"], default="apply", help="what takes each edit")
    arguments = parser.parse_args()
    header("code-only edit -> new code served (container mode, sklearn example + extra model GiB)")
    rows = []
    for size in arguments.sizes:
        with tempfile.TemporaryDirectory(prefix="reconciler-code-edit-") as scratch:
            repo = Path(scratch)
            (repo / ".git").mkdir()
            env = {**os.environ, "RECONCILER_CACHE_DIR": str(repo / ".cache")}
            token = time.time_ns()  # new content every time, so no earlier image or cache can be reused
            packages = {}
            try:
                for builder in arguments.builders:
                    port = free_port()
                    package = container_package(repo, f"bench-edit-{size}g-{builder}", port, size)
                    score = package / "score.py"
                    score.write_text(score.read_text() + f"\n# {token} {builder}\n")
                    first = apply(package, env, builder)
                    packages[builder] = (package, port, score.read_text(), build_seconds(first))
                served = {b: [] for b in arguments.builders}
                returned = {b: [] for b in arguments.builders}
                built = {b: [] for b in arguments.builders}
                watches = {}
                if arguments.via == "watch":  # started once, in sync already: its first pass changes nothing
                    watches = {b: Watch(packages[b][0], env, b) for b in arguments.builders}
                    time.sleep(5)
                for run in range(arguments.runs):
                    for builder in arguments.builders:  # alternate, so both see the same machine
                        package, port, original, _ = packages[builder]
                        (package / "score.py").write_text(
                            original.replace(
                                "return result.tolist()",
                                f'return {{"edit": {run}, "token": {token}, "p": result.tolist()}}',
                            )
                        )
                        started = time.perf_counter()
                        if arguments.via == "watch":
                            wait_for_edit(port, run)
                            served[builder].append(time.perf_counter() - started)
                            line = watches[builder].wait_for_updates(run + 1)
                            returned[builder].append(time.perf_counter() - started)
                            built[builder].append(float(re.search(r"build ([\d.]+) s", line).group(1)))
                            continue
                        process = start_apply(package, env, builder)
                        wait_for_edit(port, run)  # while apply runs: served is when the new code answers
                        served[builder].append(time.perf_counter() - started)
                        output = finish(process)
                        returned[builder].append(time.perf_counter() - started)
                        built[builder].append(build_seconds(output))
                for watch in watches.values():
                    watch.stop()
                for builder in arguments.builders:
                    rows.append(
                        (
                            size,
                            builder,
                            packages[builder][3],
                            median(built[builder]),
                            median(served[builder]),
                            median(returned[builder]),
                        )
                    )
            finally:
                forget_packages(repo, env)
        for row in rows[-len(arguments.builders) :]:
            print(
                f"extra {row[0]} GiB, {row[1]:<8}  first build {row[2]:7.2f} s   "
                f"edit: build {row[3]:6.2f} s, save -> served {row[4]:6.2f} s, apply returned {row[5]:6.2f} s "
                f"(median of {arguments.runs})",
                flush=True,
            )
    print()
    print(
        f"{'extra model':>11}  {'builder':<8}  {'first build':>11}  {'edit: build':>11}  {'save -> served':>14}"
        f"  {'apply returned':>14}"
    )
    for size, builder, first, build, served, done in rows:
        print(f"{size:>8} GiB  {builder:<8}  {first:>9.2f} s  {build:>9.2f} s  {served:>12.2f} s  {done:>12.2f} s")
    small = {b: s for size, b, _, _, s, _ in rows if size == arguments.sizes[0]}
    for size, builder, _, _, served, _ in rows:
        if size != arguments.sizes[0] and builder in small:
            print(f"{builder}: save -> served at {size} GiB is {served / small[builder]:.2f}x the smallest")


if __name__ == "__main__":
    main()
