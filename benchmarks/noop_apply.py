"""No-op `reconciler apply` in container mode (the whole process), beside docker-compose
1.29's no-op `up -d` of one service, measured alternately in one run; then 50 packages.

Targets (issue 4): <= 0.35 s for one package (docker-compose 1.29: ~0.31 s here).
docker-compose 1.29.2 is installed by this script into benchmarks/.venv-compose.

    .venv/bin/python benchmarks/noop_apply.py [--runs 9] [--packages 50] [--compare OTHER_PYTHON]

With --compare, another Python's `-m reconciler` (say the venv of an earlier checkout) is
timed too, alternately, on the same packages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PROXY_IMAGE, PYTHON, ROOT, forget_packages, header, median, time_command

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import free_port  # noqa: E402

COMPOSE_VENV = ROOT / "benchmarks" / ".venv-compose"
BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
SCORE = "import json\n\ndef init():\n    pass\n\ndef run(raw):\n    return json.loads(raw)\n"


def compose() -> str:
    binary = COMPOSE_VENV / "bin" / "docker-compose"
    if not binary.exists():
        print("# installing docker-compose 1.29.2 into benchmarks/.venv-compose ...", flush=True)
        pip = [str(COMPOSE_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([sys.executable, "-m", "venv", str(COMPOSE_VENV)], check=True)
        # PyYAML 5.4 (which compose 1.29 needs) only builds with Cython 2 on Python 3.11
        subprocess.run(pip + ["cython<3", "wheel", "setuptools"], check=True)
        subprocess.run(pip + ["--no-build-isolation", "PyYAML==5.4.1"], check=True)
        # compose 1.29 predates docker-py 6, requests 2.32 and urllib3 2, which changed what it calls
        subprocess.run(pip + ["docker-compose==1.29.2", "docker==5.0.3", "requests<2.32", "urllib3<2"], check=True)
    return str(binary)


def generate(root: Path, count: int, lock: Path) -> list[Path]:
    packages = []
    for index in range(count):
        name = f"noop-{index:02d}"
        package = root / name
        (package / "model").mkdir(parents=True)
        (package / "model" / "model.txt").write_text(str(index))
        (package / "score.py").write_text(SCORE)
        (package / "package.yaml").write_text(
            f"name: {name}\nmodels: [{{name: m, version: 1, path: model/model.txt}}]\n"
            f"inference: {{environment: {{base_image: '{BASE}', pip: []}}}}\n"
            f"output: {{mode: container, container: {{port: {free_port()}, proxy_image: '{PROXY_IMAGE}'}}}}\n"
        )
        shutil.copy(lock, package / "package.lock")
        packages.append(package)
    return packages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--packages", type=int, default=50)
    parser.add_argument("--compare", metavar="PYTHON", help="another Python with reconciler installed")
    arguments = parser.parse_args()
    header("no-op apply, container mode, whole process, median of runs")
    binary = compose()
    print(
        "# "
        + subprocess.run([binary, "version", "--short"], capture_output=True, text=True).stdout.strip()
        + " (docker-compose)"
    )
    with tempfile.TemporaryDirectory(prefix="reconciler-noop-apply-") as scratch:
        root = Path(scratch)
        env = {"RECONCILER_CACHE_DIR": str(root / "cache")}
        repo = root / "repo"
        (repo / ".git").mkdir(parents=True)
        seed = generate(root / "seed", 1, Path(os.devnull))[0]
        (seed / "package.lock").unlink()
        subprocess.run(
            [PYTHON, "-m", "reconciler", "lock", str(seed)], check=True, capture_output=True, env={**os.environ, **env}
        )
        packages = generate(repo, arguments.packages, seed / "package.lock")
        compose_file = root / "compose" / "docker-compose.yml"
        try:
            started = time.perf_counter()
            subprocess.run(
                [PYTHON, "-m", "reconciler", "apply", str(repo)],
                check=True,
                capture_output=True,
                env={**os.environ, **env},
            )
            print(f"# first apply of {len(packages)} packages (build + start): {time.perf_counter() - started:.1f} s")
            time.sleep(30)  # let the new containers settle (start-up, first health checks) before timing
            compose_file.parent.mkdir()
            compose_file.write_text(
                f"version: '3.8'\nservices:\n  noop:\n    image: noop-00:latest\n"
                f"    ports: ['127.0.0.1:{free_port()}:5001']\n"
            )
            compose_command = [binary, "-f", str(compose_file), "-p", "reconcilerbench", "up", "-d"]
            subprocess.run(compose_command, check=True, capture_output=True)
            ours_one, compose_one, ours_all, other_one, other_all = [], [], [], [], []
            other = arguments.compare
            for _ in range(arguments.runs):  # alternate, so all of them see the same machine
                # a pause between commands: compose's `up` leaves the engine busy for a moment
                # after it exits, which would be charged to whichever command came next
                ours_one += time_command([PYTHON, "-m", "reconciler", "apply", str(packages[0])], 1, env=env)
                time.sleep(1)
                compose_one += time_command(compose_command, 1)
                time.sleep(1)
                ours_all += time_command([PYTHON, "-m", "reconciler", "apply", str(repo)], 1, env=env)
                time.sleep(1)
                if other:
                    other_one += time_command([other, "-m", "reconciler", "apply", str(packages[0])], 1, env=env)
                    time.sleep(1)
                    other_all += time_command([other, "-m", "reconciler", "apply", str(repo)], 1, env=env)
                    time.sleep(1)
        finally:
            if compose_file.exists():
                subprocess.run([binary, "-f", str(compose_file), "-p", "reconcilerbench", "down"], capture_output=True)
            forget_packages(repo, env)
        print(f"{'what':<46} {'median s':>9} {'min s':>7}")
        print(f"{'reconciler apply, 1 package, no-op':<46} {median(ours_one):>9.3f} {min(ours_one):>7.3f}")
        print(
            f"{'docker-compose 1.29 up -d, 1 service, no-op':<46} {median(compose_one):>9.3f} {min(compose_one):>7.3f}"
        )
        print(
            f"{f'reconciler apply, {len(packages)} packages, no-op':<46} {median(ours_all):>9.3f} {min(ours_all):>7.3f}"
        )
        if other:
            print(f"# other: {other}")
            print(f"{'other reconciler, 1 package, no-op':<46} {median(other_one):>9.3f} {min(other_one):>7.3f}")
            print(
                f"{f'other reconciler, {len(packages)} packages, no-op':<46} "
                f"{median(other_all):>9.3f} {min(other_all):>7.3f}"
            )
            print(f"this / other (1 package): {median(ours_one) / median(other_one):.2f}")
            print(f"this / other ({len(packages)} packages): {median(ours_all) / median(other_all):.2f}")
        print(f"reconciler / docker-compose (1 package): {median(ours_one) / median(compose_one):.2f}")


if __name__ == "__main__":
    main()
