"""Helpers shared by the benchmarks: the machine, medians, whole-process timings."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# command: {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}")
    print(f"# machine: {machine()}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def time_command(
    command: list[str], runs: int, *, cwd: Path | None = None, env: dict | None = None, expect: tuple[int, ...] = (0,)
) -> list[float]:
    """Wall-clock seconds of whole processes, as a user would wait for them."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
        timings.append(time.perf_counter() - started)
        if result.returncode not in expect:
            raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return timings


def forget_packages(repo: Path, env: dict | None = None) -> None:
    """Remove the containers and images a benchmark made for the packages below `repo`."""
    import docker

    subprocess.run(
        [PYTHON, "-m", "reconciler", "down", str(repo)], capture_output=True, env={**os.environ, **(env or {})}
    )
    client = docker.from_env()
    for image in client.images.list(filters={"label": "reconciler.manifest"}):
        if image.labels.get("reconciler.manifest", "").startswith(str(repo)):
            client.images.remove(image.id, force=True)
