"""No-op `reconciler plan` (the whole process) over 1, 100 and 1000 generated packages.

Targets (issue 2): <= 0.25 s for 1 package, <= 2 s for 1000.

    .venv/bin/python benchmarks/noop_plan.py [--runs 7] [--sizes 1 1000] [--compare OTHER_PYTHON]

With --compare, another Python's `-m reconciler` (say the venv of an earlier checkout) is
timed on the same trees, alternately with this one, so both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import PYTHON, header, median, time_command

SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"


def generate(root: Path, count: int, lock: Path) -> None:
    for index in range(count):
        package = root / f"pkg-{index:04d}"
        (package / "model").mkdir(parents=True)
        (package / "model" / "model.bin").write_bytes(index.to_bytes(4, "little") * 256)
        (package / "score.py").write_text(SCORE)
        (package / "package.yaml").write_text(
            f"name: pkg-{index:04d}\n"
            "models: [{name: model, version: 1, path: model/model.bin}]\n"
            "inference: {environment: {pip: []}}\n"
        )
        shutil.copy(lock, package / "package.lock")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--compare", metavar="PYTHON", help="another Python with reconciler installed")
    arguments = parser.parse_args()
    header("no-op `reconciler plan`, whole process, median of runs")
    with tempfile.TemporaryDirectory(prefix="reconciler-bench-") as scratch:
        scratch_path = Path(scratch)
        env = {"RECONCILER_CACHE_DIR": str(scratch_path / "cache")}
        seed = scratch_path / "seed"
        generate(seed, 1, Path("/dev/null"))
        (seed / "pkg-0000" / "package.lock").unlink()
        subprocess.run(
            [PYTHON, "-m", "reconciler", "lock", str(seed)], check=True, env={**os.environ, **env}, capture_output=True
        )
        lock = seed / "pkg-0000" / "package.lock"
        columns = f"{'packages':>8}  {'median s':>9}  {'min s':>7}  {'max s':>7}  runs"
        if arguments.compare:
            print(f"# compared with: {arguments.compare}")
            columns += f"  {'other median s':>14}  {'this / other':>12}"
        print(columns)
        for size in arguments.sizes:
            root = scratch_path / f"repo-{size}"
            (root / ".git").mkdir(parents=True)
            generate(root, size, lock)
            command = [PYTHON, "-m", "reconciler", "apply", str(root)]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, **env})
            # the stat cache only trusts files that have been still for 2 s (racy-git rule)
            time.sleep(2.1)
            pythons = [PYTHON] + ([arguments.compare] if arguments.compare else [])
            for python in pythons:
                time_command([python, "-m", "reconciler", "plan", str(root)], 1, env=env)
            timings: dict[str, list[float]] = {python: [] for python in pythons}
            for _ in range(arguments.runs):  # alternate, so both see the same machine
                for python in pythons:
                    timings[python] += time_command([python, "-m", "reconciler", "plan", str(root)], 1, env=env)
            ours = timings[PYTHON]
            line = f"{size:>8}  {median(ours):>9.3f}  {min(ours):>7.3f}  {max(ours):>7.3f}  {len(ours)}"
            if arguments.compare:
                other = median(timings[arguments.compare])
                line += f"  {other:>14.3f}  {median(ours) / other:>12.2f}"
            print(line)


if __name__ == "__main__":
    main()
