"""`reconciler sync`: real git (a local bare repository stands in for the remote), a real
engine where marked, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from .cli_process import CliProcess
from .conftest import engine_package, remove_package_objects, run_cli, serving_container, write_package
from .runtime_helpers import free_port

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


class Remote:
    """A bare repository and a working clone that commits and pushes to it."""

    def __init__(self, root: Path):
        self.bare = root / "remote.git"
        self.work = root / "work"
        self.git("init", "--quiet", "--bare", str(self.bare), cwd=root)
        self.git("clone", "--quiet", str(self.bare), str(self.work), cwd=root)
        self.git("checkout", "--quiet", "-b", "main")
        (self.work / ".gitignore").write_text("build/\n")

    def git(self, *arguments: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["git", *arguments], cwd=cwd or self.work, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def commit(self, message: str, *extra: str) -> str:
        self.git("add", "-A")
        self.git("commit", "--quiet", *extra, "-m", message)
        self.git("push", "--quiet", "origin", "main")
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path) -> Remote:
    return Remote(tmp_path)


def sync_once(remote: Remote, state: Path, *extra: str, env: dict | None = None):
    return run_cli("sync", str(remote.bare), "--state", str(state), "--once", *extra, env=env, timeout=600)


class SyncProcess(CliProcess):
    wait_timeout = 120
    stop_timeout = 15

    def __init__(self, remote: Remote, state: Path, *extra: str):
        super().__init__("sync", str(remote.bare), "--state", str(state), *extra)


def status_file(state: Path) -> dict:
    return json.loads((state / "status.json").read_text())


def test_once_applies_the_commit_and_records_it(remote, tmp_path, runtime_only_lock):
    write_package(remote.work / "models" / "demo")
    shutil.copy(runtime_only_lock, remote.work / "models" / "demo" / "package.lock")
    first = remote.commit("First model")
    state = tmp_path / "state"
    result = sync_once(remote, state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sync: {first[:7]} (main): First model" in result.stdout
    stamp = json.loads(
        (state / "repository" / "models" / "demo" / "build" / "demo" / ".reconciler-stamp.json").read_text()
    )
    assert stamp["revision"] == {"commit": first, "dirty": False, "branch": "main", "source": str(remote.bare)}
    status = status_file(state)
    assert status["last_fetched"]["commit"] == first and status["last_applied"]["commit"] == first
    assert status["last_error"] is None
    shown = run_cli("status", str(state / "repository" / "models"), cwd=tmp_path)
    assert f"in sync at {first[:7]} (main)" in shown.stdout
    printed = run_cli("sync", str(remote.bare), "--state", str(state), "--status")
    assert re.search(rf"^last applied  {first[:7]} at ", printed.stdout, re.M)
    # a broken commit: exit 1, reported with its commit; the folder written before stays
    (remote.work / "models" / "demo" / "package.yaml").write_text("name: demo\nmodels: [\n")
    broken = remote.commit("Break the manifest")
    result = sync_once(remote, state)
    assert result.returncode == 1
    assert re.search(r"^error: .*models/demo/package.yaml:\d+:\d+: invalid YAML", result.stdout, re.M)
    status = status_file(state)
    assert status["last_error"]["commit"] == broken and status["last_applied"]["commit"] == first
    assert (state / "repository" / "models" / "demo" / "build" / "demo" / "Dockerfile").exists()


def test_two_agents_on_one_state_folder_the_second_refuses(remote, tmp_path, runtime_only_lock):
    write_package(remote.work / "demo")
    shutil.copy(runtime_only_lock, remote.work / "demo" / "package.lock")
    remote.commit("First model")
    state = tmp_path / "state"
    with SyncProcess(remote, state, "--interval", "30") as first:
        first.wait_for(r"^demo: [0-9a-f]{7} -> write")
        second = sync_once(remote, state)
        assert second.returncode == 1
        assert re.search(rf"another sync agent uses the state folder {re.escape(str(state))}: pid \d+", second.stderr)
        assert first.stop() == 0
    assert sync_once(remote, state).returncode == 0, "the lock goes with the agent that held it"


def test_require_signed_refuses_what_git_cannot_verify(remote, tmp_path, runtime_only_lock):
    key = tmp_path / "signing-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    signers = tmp_path / "allowed-signers"
    signers.write_text(f"test@example.com {(tmp_path / 'signing-key.pub').read_text()}")
    write_package(remote.work / "demo")
    shutil.copy(runtime_only_lock, remote.work / "demo" / "package.lock")
    unsigned = remote.commit("Unsigned")
    state = tmp_path / "state"
    refused = sync_once(remote, state, "--require-signed")
    assert refused.returncode == 1
    assert f"sync: {unsigned[:7]} not applied: its signature does not verify" in refused.stdout
    assert not (state / "repository" / "demo" / "build").exists()
    # git verifies with the configured keys: here, the agent's clone trusts one SSH key
    for name, value in (("gpg.format", "ssh"), ("gpg.ssh.allowedSignersFile", str(signers))):
        remote.git("config", name, value)
        subprocess.run(["git", "-C", str(state / "repository"), "config", name, value], check=True)
    (remote.work / "demo" / "score.py").write_text((remote.work / "demo" / "score.py").read_text() + "# signed\n")
    signed = remote.commit("Signed", "-S", f"--gpg-sign={key}")
    applied = sync_once(remote, state, "--require-signed")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"sync: {signed[:7]} (main): Signed" in applied.stdout


@pytest.mark.docker
def test_a_branch_is_deployed_bad_commits_keep_the_last_good_and_a_revert_needs_no_build(
    remote, tmp_path, base_image, runtime_only_lock, docker_client
):
    name = f"s{uuid.uuid4().hex[:10]}"
    port = free_port()
    package = engine_package(remote.work / "models", base_image, runtime_only_lock, name, port=port)
    state = tmp_path / "state"

    def score():
        return requests.post(f"http://127.0.0.1:{port}/score", json={"data": [[1, 2]]}, timeout=5).json()

    first = remote.commit("Serve the model")
    try:
        with SyncProcess(remote, state, "--interval", "1", "--path", "models") as agent:
            agent.wait_for(rf"^{name}: {first[:7]} -> .*create .*, ready at", timeout=180)
            assert score() == [6.0]
            container = serving_container(docker_client, name)
            assert container.labels["org.opencontainers.image.revision"] == first
            assert container.labels["reconciler.revision"] == first[:7]
            shown = run_cli("status", str(state / "repository" / "models"), cwd=tmp_path)
            assert f"in sync at {first[:7]} (main)" in shown.stdout, shown.stdout  # what serves, behind the proxy
            # a broken commit: the container keeps serving, the error names the commit
            mark = len(agent.output)
            manifest = package / "package.yaml"
            good = manifest.read_text()
            manifest.write_text(good + "  oops: [\n")
            broken = remote.commit("Break it")
            agent.wait_for(rf"^sync: {broken[:7]} failed; what served before keeps serving", after=mark)
            assert score() == [6.0]
            assert status_file(state)["last_error"]["commit"] == broken
            # the fix: the same inputs as the first commit, so nothing to do but say so
            mark = len(agent.output)
            manifest.write_text(good)
            fixed = remote.commit("Fix it")
            agent.wait_for(rf"^{name}: {fixed[:7]} -> in sync$", after=mark)
            status = status_file(state)
            assert status["last_applied"]["commit"] == fixed and status["last_error"] is None
            # an edit: built and served within a round or two
            mark = len(agent.output)
            score_py = package / "score.py"
            score_py.write_text(score_py.read_text().replace("scale * sum(row)", "scale * sum(row) + 1"))
            edited = remote.commit("Add one")
            agent.wait_for(rf"^{name}: {edited[:7]} -> .*build .*recreate .*, ready at", after=mark, timeout=180)
            assert score() == [7.0]
            # a revert: the previous image is still in the store, so no build
            mark = len(agent.output)
            remote.git("revert", "--no-edit", "HEAD")
            remote.git("push", "--quiet", "origin", "main")
            reverted = remote.git("rev-parse", "HEAD")
            line = agent.wait_for(rf"^{name}: {reverted[:7]} -> .*recreate .*, ready at.*$", after=mark, timeout=180)
            assert "build" not in line.group(0)
            assert score() == [6.0]
            # level-triggered: a container removed by hand comes back with no new commit
            mark = len(agent.output)
            container = serving_container(docker_client, name)
            container.remove(force=True)
            agent.wait_for(rf"^{name}: resync: no container -> create .*, ready at", after=mark, timeout=60)
            assert score() == [6.0]
            started = time.monotonic()
            assert agent.stop() == 0
            assert time.monotonic() - started < 10
        # a new agent on the same state converges and finds nothing to do
        again = sync_once(remote, state, "--path", "models")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "ready at" not in again.stdout and "build" not in again.stdout
    finally:
        remove_package_objects(docker_client, name)
