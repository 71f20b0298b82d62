"""An idle `reconciler sync` round over many packages: nothing was pushed, every package is in
sync, and the agent still fetches, checks out and plans each one (level-triggered).

Each round is `reconciler sync REPO --once` (a whole process: start-up, the agent's lock, git
fetch, the pipeline over every package, the status file). The packages are generated in
dockerfile mode, so no Docker engine is needed. Target (issue 17): 2,000 packages <= 5 s.

    .venv/bin/python benchmarks/sync_idle.py [--packages 2000] [--runs 5] [--compare OTHER_PYTHON]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import PYTHON, header, median, time_command
from noop_plan import generate, seed_lock

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b"}
GIT_ENV["GIT_COMMITTER_EMAIL"] = "b@b"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", metavar="PYTHON", help="another Python with reconciler installed")
    arguments = parser.parse_args()
    header(f"idle `reconciler sync --once` round over {arguments.packages} packages, whole process")
    pythons = [PYTHON] + ([arguments.compare] if arguments.compare else [])
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as scratch:
        scratch_path = Path(scratch)
        env = {"RECONCILER_CACHE_DIR": str(scratch_path / "cache")}
        source = scratch_path / "source"
        generate(source, arguments.packages, seed_lock(scratch_path, env))
        for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "packages"]):
            subprocess.run(["git", *command], cwd=source, env=GIT_ENV, check=True)
        rounds = {}
        for number, python in enumerate(pythons):
            state = scratch_path / f"state-{number}"
            rounds[python] = [python, "-m", "reconciler", "sync", str(source), "--once", "--state", str(state)]
            subprocess.run(rounds[python], check=True, capture_output=True, env={**os.environ, **env})
        time.sleep(2.1)  # the stat cache trusts only files that have been still for 2 s
        for python in pythons:
            time_command(rounds[python], 1, env=env)
        timings: dict[str, list[float]] = {python: [] for python in pythons}
        for _ in range(arguments.runs):  # alternate, so all see the same machine
            for python in pythons:
                timings[python] += time_command(rounds[python], 1, env=env)
        for python in pythons:
            ours = timings[python]
            print(f"{python}: median {median(ours):.2f} s (min {min(ours):.2f}, max {max(ours):.2f}, {len(ours)} runs)")


if __name__ == "__main__":
    main()
