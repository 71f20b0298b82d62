"""No-op `reconciler plan` (the whole process) over 1, 100 and 1000 generated packages, and
the import floor: a bare `import yaml, pydantic, docker` in a fresh process.

Targets (issue 17): 1 package <= 1.5x the floor; 1000 packages <= 2 s and <= 6x the floor.

    .venv/bin/python benchmarks/noop_plan.py [--runs 7] [--sizes 1 1000] [--compare OTHER_PYTHON]

With --compare, another Python's `-m reconciler` (say the venv of an earlier checkout) is
timed on its own copy of the same trees (applied by it, so a plan is a no-op for each),
alternately with this one, so both see the same machine.
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

FLOOR = "import yaml, pydantic, docker"  # what any tool of this kind imports before it does anything
SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"


def seed_lock(scratch: Path, env: dict) -> Path:
    """A package.lock for the generated packages (they all ask for the same, nothing), resolved
    once with `reconciler lock` in scratch/seed and copied into every tree."""
    seed = scratch / "seed"
    generate(seed, 1, Path("/dev/null"))
    (seed / "pkg-0000" / "package.lock").unlink()
    subprocess.run(
        [PYTHON, "-m", "reconciler", "lock", str(seed)], check=True, env={**os.environ, **env}, capture_output=True
    )
    return seed / "pkg-0000" / "package.lock"


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
        lock = seed_lock(scratch_path, env)
        columns = f"{'packages':>8}  {'median s':>9}  {'min s':>7}  {'max s':>7}  runs"
        if arguments.compare:
            print(f"# compared with: {arguments.compare}")
            columns += f"  {'other median s':>14}  {'this / other':>12}"
        columns += f"  {'floor x':>7}"
        print(columns)
        pythons = [PYTHON] + ([arguments.compare] if arguments.compare else [])
        floors: list[float] = []
        for size in arguments.sizes:
            roots = {}
            for number, python in enumerate(pythons):
                roots[python] = root = scratch_path / f"repo-{size}-{number}"
                (root / ".git").mkdir(parents=True)
                generate(root, size, lock)
                command = [python, "-m", "reconciler", "apply", str(root)]
                subprocess.run(command, check=True, capture_output=True, env={**os.environ, **env})
            # the stat cache only trusts files that have been still for 2 s (racy-git rule)
            time.sleep(2.1)
            for python in pythons:
                time_command([python, "-m", "reconciler", "plan", str(roots[python])], 1, env=env)
            timings: dict[str, list[float]] = {python: [] for python in pythons}
            for _ in range(arguments.runs):  # alternate, so all see the same machine
                floors.extend(time_command([PYTHON, "-c", FLOOR], 1))
                for python in pythons:
                    plan = [python, "-m", "reconciler", "plan", str(roots[python])]
                    timings[python] += time_command(plan, 1, env=env)
            ours = timings[PYTHON]
            line = f"{size:>8}  {median(ours):>9.3f}  {min(ours):>7.3f}  {max(ours):>7.3f}  {len(ours)}"
            if arguments.compare:
                other = median(timings[arguments.compare])
                line += f"  {other:>14.3f}  {median(ours) / other:>12.2f}"
            print(line + f"  {median(ours) / median(floors[-arguments.runs :]):>7.2f}")
        print(f"# import floor (python -c '{FLOOR}', timed between the plans): median {median(floors):.3f} s")


if __name__ == "__main__":
    main()
