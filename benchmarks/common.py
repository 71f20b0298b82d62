"""Helpers shared by the benchmarks: the machine, medians, whole-process timings."""

from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Images these machines cannot pull are built by scripts/build-test-*; users get the official ones.
BASE_IMAGE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
PROXY_IMAGE = os.environ.get("RECONCILER_TEST_PROXY_IMAGE", "reconciler-test/haproxy:bookworm")


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


def forget_abandoned(prefix: str, packages_below: str) -> None:
    """Remove what an interrupted earlier run left behind: its scratch folders (`prefix`*),
    with the containers, networks and images of the packages in them (`packages_below`, a
    path inside each), and those of scratch folders already gone. Without this the next run's
    agent rightly refuses to take over containers another checkout owns."""
    import docker

    for scratch in Path(prefix).parent.glob(Path(prefix).name + "*"):
        forget_packages(scratch / packages_below)
        shutil.rmtree(scratch, ignore_errors=True)
    client = docker.from_env()

    def abandoned(labels: dict) -> bool:
        return labels.get("reconciler.manifest", "").startswith(prefix)

    for container in client.containers.list(all=True, filters={"label": "reconciler.manifest"}):
        if abandoned(container.labels):
            container.remove(force=True)
    for network in client.networks.list(filters={"label": "reconciler.manifest"}):
        if abandoned(network.attrs.get("Labels") or {}):
            network.remove()


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")


def wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    output = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)$", output, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }
