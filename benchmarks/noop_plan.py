"""No-op `reconciler plan` (the whole process) over 1, 100 and 1000 generated packages.

Targets (issue 2): <= 0.25 s for 1 package, <= 2 s for 1000.

    .venv/bin/python benchmarks/noop_plan.py [--runs 7]
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
        print(f"{'packages':>8}  {'median s':>9}  {'min s':>7}  {'max s':>7}  runs")
        for size in arguments.sizes:
            root = scratch_path / f"repo-{size}"
            (root / ".git").mkdir(parents=True)
            generate(root, size, lock)
            command = [PYTHON, "-m", "reconciler", "apply", str(root)]
            subprocess.run(command, check=True, capture_output=True, env={**os.environ, **env})
            # the stat cache only trusts files that have been still for 2 s (racy-git rule)
            time.sleep(2.1)
            time_command([PYTHON, "-m", "reconciler", "plan", str(root)], 1, env=env)
            timings = time_command([PYTHON, "-m", "reconciler", "plan", str(root)], arguments.runs, env=env)
            print(f"{size:>8}  {median(timings):>9.3f}  {min(timings):>7.3f}  {max(timings):>7.3f}  {len(timings)}")


if __name__ == "__main__":
    main()
