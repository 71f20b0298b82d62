"""Container updates under a steady request stream, and what the proxy costs.

1. A POST /score every 20 ms (bounded, loopback) during N code-edit updates, with init()
   taking 0 s and 8 s: failed requests (target 0), the longest gap between successful
   answers, and the update's duration (the whole `reconciler apply`). Behind the proxy (the
   default) and, for comparison, with `output.container.proxy: false`.
2. The proxy's cost on serving: the sklearn example behind the proxy, wrk against the proxy's
   published port and against the serving container's own (ephemeral, loopback) port, runs
   alternating: requests/s through the proxy as a share of direct (target >= 80%).

    .venv/bin/python benchmarks/zero_downtime.py [--updates 10] [--runs 5] [--seconds 5]
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
from common import PYTHON, ROOT, forget_packages, header, median, require_wrk, wrk

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import free_port  # noqa: E402

BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
PROXY = os.environ.get("RECONCILER_TEST_PROXY_IMAGE", "reconciler-test/haproxy:bookworm")
SCORE = "import time\n\nVERSION = {version}\n\n\ndef init():\n    time.sleep({init_s})\n\n\ndef run(raw):\n    return {{'version': VERSION}}\n"
SEED = '{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}'


def run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    return result


def small_package(repo: Path, name: str, port: int, proxied: bool, init_s: float, lock: Path) -> Path:
    package = repo / name
    (package / "model").mkdir(parents=True)
    (package / "model" / "m.txt").write_text("1")
    (package / "score.py").write_text(SCORE.format(version=0, init_s=init_s))
    proxy = "" if proxied else "proxy: false, "
    (package / "package.yaml").write_text(
        f"name: {name}\nmodels: [{{name: m, version: 1, path: model/m.txt}}]\n"
        f"inference: {{environment: {{base_image: '{BASE}', pip: []}}}}\n"
        f"output: {{mode: container, container: {{{proxy}port: {port}, proxy_image: '{PROXY}'}}}}\n"
    )
    shutil.copy(lock, package / "package.lock")
    return package


class Stream:
    """A POST every 20 ms; the time and outcome of each."""

    def __init__(self, port: int):
        self.port, self.stop, self.answers = port, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                ok = session.post(f"http://127.0.0.1:{self.port}/score", data="{}", timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            self.answers.append((sent, ok))
            time.sleep(0.02)

    def longest_gap(self) -> float:
        times = [t for t, ok in self.answers if ok]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def updates(repo: Path, env: dict, lock: Path, *, proxied: bool, init_s: float, count: int) -> dict:
    name = f"bench-zd-{'proxy' if proxied else 'direct'}-{int(init_s)}s"
    port = free_port()
    package = small_package(repo, name, port, proxied, init_s, lock)
    run([PYTHON, "-m", "reconciler", "apply", str(package)], env)
    stream = Stream(port)
    stream.thread.start()
    durations = []
    try:
        for version in range(1, count + 1):
            (package / "score.py").write_text(SCORE.format(version=version, init_s=init_s))
            started = time.perf_counter()
            run([PYTHON, "-m", "reconciler", "apply", str(package)], env)
            durations.append(time.perf_counter() - started)
        time.sleep(0.5)
    finally:
        stream.stop.set()
        stream.thread.join(60)
    failed = sum(1 for _, ok in stream.answers if not ok)
    return {"requests": len(stream.answers), "failed": failed, "gap": stream.longest_gap(), "update": median(durations)}


def proxy_cost(repo: Path, env: dict, runs: int, seconds: int, connections: int) -> tuple[list[float], list[float]]:
    package = repo / "bench-zd-serve"
    shutil.copytree(ROOT / "examples" / "sklearn-regression", package, ignore=shutil.ignore_patterns("build"))
    port = free_port()
    manifest = package / "package.yaml"
    text = manifest.read_text().replace("name: sklearn-regression", "name: bench-zd-serve")
    text = text.replace("base_image: python:3.11-slim", f"base_image: {BASE}").replace(
        "mode: dockerfile", "mode: container"
    )
    manifest.write_text(text.replace("container: {port: 6789}", f"container: {{port: {port}, proxy_image: '{PROXY}'}}"))
    run([PYTHON, "-m", "reconciler", "apply", str(package)], env)
    inspect = run(["docker", "port", "bench-zd-serve-serving", "5001/tcp"], env).stdout
    direct_port = int(re.search(r":(\d+)$", inspect.strip().splitlines()[0]).group(1))
    script = repo / "seed.lua"
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{SEED}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    proxied, direct = [], []
    for _ in range(runs):  # alternate, so both see the same machine
        for url, into in (
            (f"http://127.0.0.1:{port}/score", proxied),
            (f"http://127.0.0.1:{direct_port}/score", direct),
        ):
            wrk(url, 1, connections, script)  # warm up
            into.append(wrk(url, seconds, connections, script)["rps"])
    return proxied, direct


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--parts", nargs="+", choices=["updates", "cost"], default=["updates", "cost"], help="what to measure"
    )
    arguments = parser.parse_args()
    require_wrk()
    header("container updates under a request every 20 ms; the proxy's cost on serving")
    with tempfile.TemporaryDirectory(prefix="reconciler-zero-downtime-") as scratch:
        repo = Path(scratch)
        (repo / ".git").mkdir()
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(repo / ".cache")}
        seed = repo / "seed"
        (seed / "model").mkdir(parents=True)
        (seed / "model" / "m.txt").write_text("1")
        (seed / "score.py").write_text(SCORE.format(version=0, init_s=0))
        (seed / "package.yaml").write_text(
            "name: seed\nmodels: [{name: m, version: 1, path: model/m.txt}]\ninference: {environment: {pip: []}}\n"
        )
        run([PYTHON, "-m", "reconciler", "lock", str(seed)], env)
        lock = seed / "package.lock"
        shutil.rmtree(seed / "model")
        try:
            if "updates" in arguments.parts:
                print(
                    f"{'updates':<26} {'init':>5} {'requests':>9} {'failed':>7} {'longest gap':>12} "
                    f"{'update (median)':>16}"
                )
            for proxied in (True, False) if "updates" in arguments.parts else ():
                for init_s in (0, 8):
                    row = updates(repo, env, lock, proxied=proxied, init_s=init_s, count=arguments.updates)
                    label = "behind the proxy" if proxied else "proxy: false (direct)"
                    print(
                        f"{label:<26} {init_s:>4}s {row['requests']:>9} {row['failed']:>7} "
                        f"{row['gap']:>10.2f} s {row['update']:>14.2f} s",
                        flush=True,
                    )
            if "cost" not in arguments.parts:
                return
            proxied, direct = proxy_cost(repo, env, arguments.runs, arguments.seconds, arguments.connections)
            print(
                f"\n# wrk -t1 -c{arguments.connections} -d{arguments.seconds}s, sklearn example, {arguments.runs} runs each, alternating"
            )
            print(f"through the proxy       {median(proxied):>9.0f} req/s")
            print(f"to the container itself {median(direct):>9.0f} req/s")
            print(f"proxy / direct          {median(proxied) / median(direct):>9.2f}")
        finally:
            forget_packages(repo, env)


if __name__ == "__main__":
    main()
