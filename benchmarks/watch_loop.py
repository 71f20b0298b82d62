"""Save -> result under `reconciler watch`, with the sklearn example, median of several edits:

- Dockerfile folder regenerated (dockerfile mode): target <= 0.5 s;
- container mode, rebuild path, new code served: target <= 5 s;
- --dev path (reload in place), new code served: target <= 1.5 s.

Each edit changes what run() returns; the clock stops at the first response (or stamp)
that shows it.

    .venv/bin/python benchmarks/watch_loop.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import PYTHON, ROOT, forget_packages, header, median

sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from code_edit import container_package  # noqa: E402

from tests.runtime_helpers import free_port  # noqa: E402

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def start_watch(repo: Path, env: dict, extra: list[str]) -> tuple[subprocess.Popen, Path]:
    log = repo / "watch.log"
    process = subprocess.Popen(
        [PYTHON, "-m", "reconciler", "watch", *extra, str(repo)],
        env=env,
        cwd=repo,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    return process, log


def wait_until(check, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.005)
    raise TimeoutError("timed out")


def served(port: int, marker: str):
    def check() -> bool:
        try:
            body = requests.post(f"http://127.0.0.1:{port}/score", json=SEED_REQUEST, timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return isinstance(body, dict) and body.get("marker") == marker

    return check


def edit(score: Path, original: str, marker: str) -> None:
    score.write_text(
        original.replace("return result.tolist()", f'return {{"marker": "{marker}", "p": result.tolist()}}')
    )


def measure(mode: str, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix=f"reconciler-watch-{mode}-") as scratch:
        repo = Path(scratch)
        (repo / ".git").mkdir()
        port = free_port()
        package = container_package(repo, f"watch-{mode}", port)
        if mode == "dockerfile":
            manifest = package / "package.yaml"
            manifest.write_text(manifest.read_text().replace("mode: container", "mode: dockerfile"))
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(ROOT / "benchmarks" / ".cache")}
        score = package / "score.py"
        original = score.read_text()
        edit(score, original, "start")
        process, log = start_watch(repo, env, ["--dev"] if mode == "dev" else [])
        timings = []
        try:
            if mode == "dockerfile":
                folder = package / "build" / "sklearn-regression"  # the example's output.directory
                stamp = folder / ".reconciler-stamp.json"
                wait_until(stamp.exists)
            else:
                wait_until(served(port, "start"), timeout=300)
            token = time.time_ns()
            for run in range(runs):
                marker = f"{token}-{run}"
                before = stamp.read_text() if mode == "dockerfile" else ""
                time.sleep(0.5)
                started = time.perf_counter()
                edit(score, original, marker)
                if mode == "dockerfile":
                    wait_until(
                        lambda before=before, marker=marker: (
                            stamp.exists()
                            and stamp.read_text() != before
                            and marker in (folder / "app" / "score.py").read_text()
                        )
                    )
                else:
                    wait_until(served(port, marker))
                timings.append(time.perf_counter() - started)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
            forget_packages(repo, env)
            if "error" in log.read_text() or not timings:
                print(log.read_text())
        return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    header("save -> result under reconciler watch (sklearn example)")
    print(f"{'path':<42} {'median s':>9} {'min s':>7} {'max s':>7}   target")
    for mode, label, target in (
        ("dockerfile", "Dockerfile folder regenerated", "<= 0.5 s"),
        ("container", "container mode: rebuild, new code served", "<= 5 s"),
        ("dev", "--dev: reloaded in place, new code served", "<= 1.5 s"),
    ):
        timings = measure(mode, arguments.runs)
        print(f"{label:<42} {median(timings):>9.3f} {min(timings):>7.3f} {max(timings):>7.3f}   {target}", flush=True)
    shutil.rmtree(ROOT / "benchmarks" / ".cache", ignore_errors=True)


if __name__ == "__main__":
    main()
