"""`reconciler sync`: git push -> new code served, and revert -> old code served.

A local bare repository stands in for the remote; one agent (`--interval 1s`) deploys two
packages made from the sklearn example: one in dockerfile mode (done when the agent's folder
carries the pushed commit), one in container mode (done when /score answers from the new
code). Each run pushes an edit, waits, then pushes its revert and waits again; the clock
starts when `git push` returns, and every push finds the agent idle (its last round, as
`status.json` records it, is over). The interval's wait is part of what a user waits for.

With `--webhook`, the agent listens on loopback and every push is followed by a signed
GitHub push hook (`--interval 1h`, so only the hook can start a round soon): the figure to
hold against the build time the agent's log reports for the same round (issue 21: at most
the build plus 1 s).

    .venv/bin/python benchmarks/sync_loop.py [--runs 5] [--interval 1]
    .venv/bin/python benchmarks/sync_loop.py --webhook --interval 1h
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import PROXY_IMAGE, PYTHON, ROOT, forget_abandoned, forget_packages, header, median

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import free_port  # noqa: E402

BASE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}
SECRET = b"benchmark-webhook-secret-0123456789"
ROUND_LINE = re.compile(r"^bench-sync-served: \S+ -> (.*)$", re.MULTILINE)
STEP = re.compile(r"(\w+) ([0-9.]+) s")


def git(*arguments: str, cwd: Path) -> str:
    return subprocess.run(["git", *arguments], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def package(work: Path, name: str, mode: str, port: int) -> Path:
    folder = work / "models" / name
    shutil.copytree(ROOT / "examples" / "sklearn-regression", folder, ignore=shutil.ignore_patterns("build"))
    manifest = folder / "package.yaml"
    text = manifest.read_text().replace("name: sklearn-regression", f"name: {name}")
    text = text.replace("base_image: python:3.11-slim", f"base_image: {BASE}").replace(
        "mode: dockerfile", f"mode: {mode}"
    )
    manifest.write_text(
        text.replace("container: {port: 6789}", f"container: {{port: {port}, proxy_image: '{PROXY_IMAGE}'}}")
    )
    return folder


def wait(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"not done within {timeout} s")


def send_hook(url: str) -> None:
    """What GitHub sends on a push to main, signed with the agent's secret."""
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature}"}
    answer = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=10)
    if answer.status_code != 202:
        raise SystemExit(f"the hook got {answer.status_code}: {answer.text}")


def builds(log: Path) -> list[tuple[float, float]]:
    """(the build, all the round's steps) in seconds, for each container-mode round that
    built, as the agent's log reports them (`write 0.1 s, build 0.2 s, recreate 3.4 s`)."""
    found = []
    for line in ROUND_LINE.finditer(log.read_text()):
        steps = {kind: float(seconds) for kind, seconds in STEP.findall(line.group(1))}
        if "build" in steps:
            found.append((steps["build"], sum(steps.values())))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", default="1")
    parser.add_argument("--webhook", action="store_true", help="follow each push with a signed GitHub hook")
    arguments = parser.parse_args()
    how = " and a push webhook" if arguments.webhook else ""
    header(f"git push -> served, through `reconciler sync --interval {arguments.interval}`{how}")
    forget_abandoned(str(Path(tempfile.gettempdir()) / "reconciler-sync-bench-"), "state/repository/models")
    with tempfile.TemporaryDirectory(prefix="reconciler-sync-bench-") as scratch:
        root = Path(scratch)
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(root / "cache")}
        bare, work, state = root / "remote.git", root / "work", root / "state"
        git("init", "--quiet", "--bare", str(bare), cwd=root)
        git("clone", "--quiet", str(bare), str(work), cwd=root)
        git("checkout", "--quiet", "-b", "main", cwd=work)
        (work / ".gitignore").write_text("build/\n")
        port = free_port()
        folder_package = package(work, "bench-sync-folder", "dockerfile", free_port())
        served_package = package(work, "bench-sync-served", "container", port)
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", "models", cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)
        command = [PYTHON, "-m", "reconciler", "sync", str(bare), "--state", str(state)]
        command += ["--interval", arguments.interval]
        hook_url = None
        if arguments.webhook:
            (root / "secret").write_bytes(SECRET)
            listen = free_port()
            command += ["--listen", f"127.0.0.1:{listen}", "--webhook-secret-file", str(root / "secret")]
            hook_url = f"http://127.0.0.1:{listen}"

        def push() -> None:
            git("push", "--quiet", "origin", "main", cwd=work)
            if hook_url:
                send_hook(hook_url)

        log = open(root / "agent.log", "w")
        agent = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        stamp = (
            state
            / "repository"
            / "models"
            / folder_package.name
            / "build"
            / "sklearn-regression"
            / ".reconciler-stamp.json"
        )

        def idle_at(commit: str) -> bool:
            """Whether the agent's last finished round was the one for `commit`."""
            rounds = json.loads((state / "status.json").read_text()).get("rounds") or [{}]
            return rounds[0].get("commit") == commit

        def score() -> object:
            return requests.post(f"http://127.0.0.1:{port}/score", json=SEED_REQUEST, timeout=5).json()

        def first_deploy() -> bool:
            """Served; a first round that failed ends the benchmark with the agent's error."""
            status = json.loads((state / "status.json").read_text())
            if status.get("last_error") and not status.get("last_applied"):
                raise SystemExit(f"the first deploy failed: {status['last_error']['message']}")
            return isinstance(score(), list)

        try:
            wait(first_deploy, timeout=600)
            first = git("rev-parse", "HEAD", cwd=work).strip()
            wait(lambda: idle_at(first))
            pushed, reverted = [], []
            token = time.time_ns()
            for run in range(arguments.runs):
                for score_py in (folder_package / "score.py", served_package / "score.py"):
                    text = score_py.read_text()
                    score_py.write_text(
                        text.replace(
                            "return result.tolist()", f'return {{"edit": {run}, "t": {token}, "p": result.tolist()}}'
                        )
                    )
                git("commit", "--quiet", "-am", f"edit {run}", cwd=work)
                commit = git("rev-parse", "HEAD", cwd=work).strip()
                built_before = len(builds(root / "agent.log"))
                push()
                started = time.perf_counter()
                folder_done = served_done = None
                while folder_done is None or served_done is None:
                    now = time.perf_counter()
                    if (
                        folder_done is None
                        and json.loads(stamp.read_text()).get("revision", {}).get("commit") == commit
                    ):
                        folder_done = now - started
                    try:
                        body = score()
                        if served_done is None and isinstance(body, dict) and body.get("edit") == run:
                            served_done = now - started
                    except requests.RequestException:
                        pass
                    if now - started > 300:
                        raise SystemExit("the push was not served within 300 s")
                    time.sleep(0.02)
                log.flush()
                wait(lambda before=built_before: len(builds(root / "agent.log")) > before, timeout=30)
                build, steps = builds(root / "agent.log")[built_before]
                wait(functools.partial(idle_at, commit))
                git("revert", "--no-edit", "HEAD", cwd=work)
                revert = git("rev-parse", "HEAD", cwd=work).strip()
                push()
                started = time.perf_counter()
                wait(lambda: isinstance(score(), list))
                reverted.append(time.perf_counter() - started)
                wait(functools.partial(idle_at, revert))
                pushed.append((folder_done, served_done, build, steps, served_done - build, served_done - steps))
            print(f"{'what':<48} {'median s':>9} {'min s':>7} {'max s':>7}")
            rows = [
                ("push -> folder rewritten (dockerfile mode)", [p[0] for p in pushed]),
                ("push -> new code served (container mode)", [p[1] for p in pushed]),
                ("  the image build (agent's log)", [p[2] for p in pushed]),
                ("  the round's steps: write, build, swap (log)", [p[3] for p in pushed]),
                ("  served minus the build", [p[4] for p in pushed]),
                ("  served minus the round's steps", [p[5] for p in pushed]),
                ("revert -> old code served (container mode)", reverted),
            ]
            for label, values in rows:
                print(f"{label:<48} {median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}")
            print(
                f"# container-mode rounds that built an image: {len(builds(root / 'agent.log'))}"
                f" for {arguments.runs} pushes and {arguments.runs} reverts"
            )
        except SystemExit:
            print(f"# the agent's last lines:\n{(root / 'agent.log').read_text()[-4000:]}", file=sys.stderr)
            raise
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
            log.close()
            forget_packages(state / "repository" / "models", env)


if __name__ == "__main__":
    main()
