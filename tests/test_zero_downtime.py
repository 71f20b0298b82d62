"""Container updates behind the proxy: no refused or failed request, whatever init() costs,
and an update interrupted at any step (kill -9, an engine restart) converges on the next
apply. A real engine, real HTTP on loopback, the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from .conftest import run_cli, serving_container

pytestmark = pytest.mark.docker

SLOW_SCORE = """\
import os
import time

VERSION = {version}


def init():
    time.sleep({init_s})


def run(raw_data):
    return {{"version": VERSION}}
"""

STEPS = ("backend-created", "backend-ready", "old-renamed", "new-renamed", "switched", "old-stopped")


class Probe:
    """POST /score every 20 ms from another thread; every answer that is not a 200 is kept."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.answers: list[tuple[float, object]] = []
        self.versions: list[tuple[float, int | None]] = []  # the version of each 200's answer
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                response = session.post(f"http://127.0.0.1:{self.port}/score", data="{}", timeout=30)
                self.answers.append((time.monotonic(), response.status_code))
                if response.status_code == 200:
                    self.versions.append((time.monotonic(), response.json().get("version")))
            except requests.RequestException as error:
                self.answers.append((time.monotonic(), repr(error)[:300]))
            time.sleep(0.02)

    @property
    def failures(self) -> list:
        return [answer for answer in self.answers if answer[1] != 200]

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def version_served(port: int) -> int:
    return requests.post(f"http://127.0.0.1:{port}/score", data="{}", timeout=30).json()["version"]


def set_version(package: Path, version: int, init_s: float) -> None:
    (package / "score.py").write_text(SLOW_SCORE.format(version=version, init_s=init_s))


def containers(docker_client, name: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"reconciler.package={name}"})


def assert_converged(docker_client, name: str, version: int, port: int) -> None:
    """One proxy, one serving container with the wanted code, nothing else."""
    names = sorted(c.name for c in containers(docker_client, name))
    assert names == [name, f"{name}-serving"], names
    assert all(c.status == "running" for c in containers(docker_client, name))
    assert version_served(port) == version


@pytest.mark.parametrize("init_s", [0, 3], ids=["instant-init", "slow-init"])
def test_updates_under_a_steady_stream_lose_no_request(served, repo, docker_client, init_s):
    package, name, port = served
    set_version(package, 0, init_s)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    kept_alive = requests.Session()  # a client that keeps its connection to the proxy across updates
    assert kept_alive.post(f"http://127.0.0.1:{port}/score", data="{}").json()["version"] == 0
    with Probe(port) as probe:
        for version in (1, 2):
            set_version(package, version, init_s)
            result = run_cli("apply", str(package), cwd=repo)
            assert result.returncode == 0, result.stdout + result.stderr
            assert re.search(rf"{name}: recreate {name} on 127\.0\.0\.1:{port}  done", result.stdout)
            assert version_served(port) == version
            assert kept_alive.post(f"http://127.0.0.1:{port}/score", data="{}").json()["version"] == version
        time.sleep(0.2)
    assert len(probe.answers) > 20 and probe.failures == []
    assert_converged(docker_client, name, 2, port)


def test_going_back_to_code_whose_image_was_removed_builds_it_again(served, repo, docker_client):
    """The proxy is not recreated by updates, and its labels name the package's image of the
    day it was made: they must not pass for that image once retention has removed it."""
    package, name, port = served
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("  mode: container\n", "  mode: container\n  image: {keep: 1}\n"))
    for version in (0, 1):
        set_version(package, version, 0)
        assert run_cli("apply", str(package), cwd=repo).returncode == 0
    assert len(docker_client.images.list(filters={"label": f"reconciler.package={name}"})) == 1  # version 0's is gone
    set_version(package, 0, 0)
    result = run_cli("apply", str(package), cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"{name}: build ", result.stdout), result.stdout
    assert_converged(docker_client, name, 0, port)


def test_retention_keeps_the_image_that_served_last_so_a_revert_needs_no_build(served, repo, docker_client):
    """Push, revert, push, revert: the image gone back to is the oldest built, but the one
    served last before each push; output.image.keep counts use, not age."""
    package, name, port = served
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("  mode: container\n", "  mode: container\n  image: {keep: 2}\n"))
    for version in (0, 1, 0, 2):  # 0 served, 1 pushed, reverted to 0, 2 pushed: 1 is the one to drop
        set_version(package, version, 0)
        result = run_cli("apply", str(package), cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
    set_version(package, 0, 0)
    result = run_cli("apply", str(package), cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.search(rf"{name}: build ", result.stdout), result.stdout
    assert_converged(docker_client, name, 0, port)
    # history: the two images kept, newest built first, the one serving now marked
    listed = run_cli("history", str(package), "--output", "json", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    images = entry["images"]
    assert len(images) == 2 and images[0]["built"] >= images[1]["built"]
    [serving] = [c for c in containers(docker_client, name) if c.name == f"{name}-serving"]
    assert [i["hash"] for i in images if i["serving"]] == [serving.labels["reconciler.hash"]]
    assert images[1]["serving"]  # version 0 was built first and serves again
    assert all(i["bytes"] > 0 and i["last_used"] >= i["built"] for i in images)
    text = run_cli("history", str(package), cwd=repo).stdout
    assert f"{name} (container): 2 image(s) kept" in text and "serving now" in text


def test_a_new_container_that_fails_leaves_the_old_one_serving_without_a_gap(served, repo, docker_client):
    package, name, port = served
    set_version(package, 1, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    serving = serving_container(docker_client, name).id
    (package / "score.py").write_text("def init():\n    raise RuntimeError('broken')\n\ndef run(raw):\n    return 0\n")
    with Probe(port) as probe:
        result = run_cli("apply", str(package), cwd=repo)
    assert result.returncode == 1 and "what serves now keeps serving" in result.stdout
    assert probe.failures == [] and serving_container(docker_client, name).id == serving
    assert_converged(docker_client, name, 1, port)


def apply_until_paused(package: Path, repo: Path, step: str, command: str = "apply") -> subprocess.Popen:
    """`reconciler apply` (or `command`) with the test hook that stops it at `step`, once it got there."""
    log = tempfile.NamedTemporaryFile(prefix="apply-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", command, str(package)],
        cwd=repo,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RECONCILER_PAUSE_AT": step, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if f"paused at {step}" in Path(log.name).read_text():
            return process
        assert process.poll() is None, Path(log.name).read_text()
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"apply never reached {step}:\n{Path(log.name).read_text()}")


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_any_step_converges_on_the_next_apply_and_the_service_answers_throughout(
    served, repo, docker_client, step
):
    package, name, port = served
    set_version(package, 1, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    set_version(package, 2, 0)
    with Probe(port) as probe:
        process = apply_until_paused(package, repo, step)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        plan = run_cli("plan", str(package), cwd=repo)
        assert plan.returncode == 2, plan.stdout  # something is left to finish
        result = run_cli("apply", str(package), cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
        time.sleep(0.2)
    assert probe.failures == [], probe.failures[:5]
    assert_converged(docker_client, name, 2, port)
    assert run_cli("plan", str(package), cwd=repo).returncode == 0


def restart_engine() -> None:
    """Stop dockerd as a crash or an upgrade would (its containers stop with it) and start it
    again with scripts/ensure-docker."""
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.2)
    root = Path(__file__).resolve().parent.parent
    subprocess.run([str(root / "scripts" / "ensure-docker")], check=True, timeout=120)


def test_an_engine_restart_in_the_middle_of_an_update_converges(served, repo, docker_client):
    if os.geteuid() != 0 or subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode != 0:
        pytest.skip("restarting the engine needs a local dockerd this test may stop (root)")
    package, name, port = served
    set_version(package, 1, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    set_version(package, 2, 0)
    process = apply_until_paused(package, repo, "new-renamed")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    restart_engine()
    result = run_cli("apply", str(package), cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_converged(docker_client, name, 2, port)
    assert run_cli("plan", str(package), cwd=repo).returncode == 0


CRASHING_SCORE = """\
import json
import os

RUNS = "/tmp/runs"


def init():
    pass


def run(raw_data):
    request = json.loads(raw_data)
    if request.get("count"):
        with open(RUNS) as runs:
            return {"runs": len(runs.read().split())}
    with open(RUNS, "a") as runs:
        runs.write("ran\\n")
    if request.get("crash"):
        os._exit(1)  # the worker dies with the request in hand: no response at all
    return {"ok": True}
"""


def test_the_proxy_never_sends_a_request_again_once_it_reached_a_container(served):
    """A POST whose run() killed its worker ran four times: the proxy retried it on an empty
    response. A request is resent only when its connection failed to open."""
    package, name, port = served
    (package / "score.py").write_text(CRASHING_SCORE)
    manifest = package / "package.yaml"  # two workers: the supervisor replaces a dead one, /tmp stays
    manifest.write_text(manifest.read_text().replace("inference:\n", "inference:\n  server: {workers: 2}\n"))
    assert run_cli("apply", str(package)).returncode == 0
    crashed = requests.post(f"http://127.0.0.1:{port}/score", json={"crash": True}, timeout=60)
    assert crashed.status_code >= 500
    deadline = time.monotonic() + 60  # the runtime starts a new worker
    while True:
        try:
            counted = requests.post(f"http://127.0.0.1:{port}/score", json={"count": True}, timeout=10)
            if counted.status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "no worker came back"
        time.sleep(0.2)
    assert counted.json() == {"runs": 1}


def test_rollback_under_a_steady_stream_refuses_nothing_then_holds_until_the_inputs_change(served, repo, docker_client):
    package, name, port = served
    for version in (0, 1, 2):
        set_version(package, version, 0)
        assert run_cli("apply", str(package), cwd=repo).returncode == 0
    with Probe(port) as probe:
        rolled = run_cli("rollback", str(package), cwd=repo)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert version_served(port) == 1  # the one that served before the current one
        time.sleep(0.2)
    assert len(probe.answers) > 5 and probe.failures == []
    assert f"{name}: rolled back to " in rolled.stdout and "held until the inputs change" in rolled.stdout
    assert " build " not in rolled.stdout
    # held: plan says so and exits 0, apply leaves it, status shows it
    planned = run_cli("plan", str(package), cwd=repo)
    assert planned.returncode == 0 and "held until the inputs change" in planned.stdout, planned.stdout
    applied = run_cli("apply", str(package), cwd=repo)
    assert applied.returncode == 0 and "recreate" not in applied.stdout and version_served(port) == 1
    assert "rolled back to" in run_cli("status", str(package), cwd=repo).stdout
    # --to by hash prefix, then a missing target names what is kept
    kept = json.loads(run_cli("history", str(package), "--output", "json", cwd=repo).stdout)[0]["images"]
    oldest = min(kept, key=lambda i: i["built"])["hash"]
    assert run_cli("rollback", str(package), "--to", oldest[:8], cwd=repo).returncode == 0
    assert version_served(port) == 0
    missing = run_cli("rollback", str(package), "--to", "ffffffff", cwd=repo)
    assert missing.returncode == 1 and "no kept image is ffffffff" in missing.stderr and oldest[:12] in missing.stderr
    # the hold survives an engine-side restart of the container, and the first input change releases it
    [serving] = [c for c in containers(docker_client, name) if c.name == f"{name}-serving"]
    serving.restart(timeout=5)
    assert run_cli("plan", str(package), cwd=repo).returncode == 0
    set_version(package, 3, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0 and version_served(port) == 3
    # --release deploys the inputs again at once
    assert run_cli("rollback", str(package), cwd=repo).returncode == 0 and version_served(port) != 3
    released = run_cli("rollback", "--release", str(package), cwd=repo)
    assert released.returncode == 0, released.stdout + released.stderr
    assert version_served(port) == 3
    assert_converged(docker_client, name, 3, port)


@pytest.mark.parametrize("step", ["backend-ready", "new-renamed"])
def test_kill_9_during_a_rollback_converges_with_one_version_serving(served, repo, docker_client, step):
    """Killed before the rollback's container took the serving name, the next apply finishes
    towards the inputs; after it, the rollback holds and what it replaced goes."""
    package, name, port = served
    for version in (1, 2):
        set_version(package, version, 0)
        assert run_cli("apply", str(package), cwd=repo).returncode == 0
    with Probe(port) as probe:
        process = apply_until_paused(package, repo, step, command="rollback")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        result = run_cli("apply", str(package), cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
        time.sleep(0.2)
    assert probe.failures == [], probe.failures[:5]
    assert_converged(docker_client, name, 2 if step == "backend-ready" else 1, port)
    assert run_cli("plan", str(package), cwd=repo).returncode == 0
