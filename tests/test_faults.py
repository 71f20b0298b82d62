"""Faults an unlucky operator meets: an engine that goes away, a full disk, files that cannot
go into an image, a wrong stat-cache row, a closed pipe. Each yields one clear line (never a
traceback or a hang) and loses nothing; docs/reliability.md lists them with what they yield."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.core.package_locks import PackageLocks

from .conftest import ROOT, engine_package, missing, run_cli, write_package


def assert_one_clear_line(result, pattern: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr


# -- files that cannot go into an image -----------------------------------------------


def test_a_named_pipe_as_model_or_manifest_is_an_error_not_a_hang(repo):
    package = write_package(repo / "demo").parent
    os.unlink(package / "model" / "model.txt")
    os.mkfifo(package / "model" / "model.txt")
    result = run_cli("validate", str(repo), cwd=repo, timeout=30)
    assert result.returncode == 1
    assert "demo/model/model.txt is neither a file nor a folder" in result.stderr
    (repo / "pipe").mkdir()
    os.mkfifo(repo / "pipe" / "package.yaml")
    result = run_cli("plan", str(repo / "pipe"), cwd=repo, timeout=30)
    assert result.returncode == 1 and "pipe/package.yaml: is not a regular file" in result.stdout + result.stderr


def test_a_symlink_loop_a_socket_and_a_name_that_is_not_utf8_are_named_at_validate(repo, runtime_only_lock):
    package = write_package(repo / "demo").parent
    shutil.copy(runtime_only_lock, package / "package.lock")
    os.symlink("loop-b", package / "loop-a")
    os.symlink("loop-a", package / "loop-b")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(package / "app.sock"))
    (package / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    try:
        result = run_cli("validate", str(package), cwd=repo)
    finally:
        server.close()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "demo/loop-a cannot be read (Too many levels of symbolic links); a symlink loop?" in result.stderr
    assert "demo/app.sock is a socket, not a file" in result.stderr
    assert "demo/caf\\xe9.txt: the name is not UTF-8" in result.stderr
    # ignored, they are no problem at all
    (package / ".reconcilerignore").write_text("loop-*\napp.sock\ncaf*\n")
    assert run_cli("validate", str(package), cwd=repo).returncode == 0


def test_an_ignored_symlink_leaving_the_repository_is_never_followed(repo, runtime_only_lock, tmp_path_factory):
    package = write_package(repo / "demo").parent
    shutil.copy(runtime_only_lock, package / "package.lock")
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, package / ".cache")  # hidden: ignored by default
    (package / ".reconcilerignore").write_text("secrets-link\n")
    os.symlink(outside, package / "secrets-link")
    assert run_cli("validate", str(package), cwd=repo).returncode == 0
    assert run_cli("plan", str(package), cwd=repo).returncode == 2


# -- the stat cache is a hint ----------------------------------------------------------


def tamper(cache_root: Path, suffix: str) -> None:
    """Give the cache row of the file ending in `suffix` a well-formed, wrong digest."""
    db = sqlite3.connect(cache_root / "statcache.sqlite")
    changed = db.execute("UPDATE files SET digest = ? WHERE path LIKE ?", ("f" * 64, f"%{suffix}")).rowcount
    db.commit()
    db.close()
    assert changed >= 1


def test_a_wrong_cache_row_is_caught_before_it_causes_a_rebuild_or_drift(package_dir, repo, cache_root):
    assert run_cli("apply", str(package_dir), cwd=repo).returncode == 0
    time.sleep(2.1)  # rows are trusted only for files still for a while (racy-git rule)
    assert run_cli("plan", str(package_dir), cwd=repo).returncode == 0  # rows for every file now
    tamper(cache_root, "/demo/score.py")  # the input
    tamper(cache_root, "/build/demo/app/score.py")  # the copy in the build folder
    for _ in range(2):
        plan = run_cli("plan", str(package_dir), cwd=repo)
        assert plan.returncode == 0, plan.stdout


# -- disk full -------------------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path):
    """A repository on a 1 MiB tmpfs that is then filled."""
    if os.geteuid() != 0:
        missing("needs root to mount a tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_a_full_disk_names_where_the_write_went_and_keeps_what_was_there(full_disk, runtime_only_lock):
    (full_disk / ".git").mkdir()
    package = write_package(full_disk / "demo").parent
    shutil.copy(runtime_only_lock, package / "package.lock")
    (package / "requirements.txt").write_text("")
    lock_before = (package / "package.lock").read_bytes()
    fill(full_disk)
    result = run_cli("lock", str(package), cwd=full_disk)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: cannot write demo/package.lock: No space left on device" in result.stderr
    assert (package / "package.lock").read_bytes() == lock_before
    result = run_cli("apply", str(package), cwd=full_disk)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert re.search(
        r"write demo/build/demo  FAILED .*: cannot write demo/build/demo: No space left on device", result.stdout
    )
    assert not [p for p in package.iterdir() if p.name.startswith(".demo.reconciler")], "no half-written folder"


# -- a closed pipe, a symlinked route ----------------------------------------------------


def test_a_closed_pipe_is_no_traceback(package_dir, repo):
    command = f"{sys.executable} -m reconciler hash {package_dir} | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=repo)
    assert result.stdout.strip() == "demo" and "Traceback" not in result.stderr and "Broken" not in result.stderr


def test_the_same_package_through_a_symlink_waits_for_the_same_lock(package_dir, repo):
    os.symlink(repo, repo.parent / f"{repo.name}-link")
    linked = repo.parent / f"{repo.name}-link" / "demo"
    with PackageLocks([package_dir / "package.yaml"], timeout=5, command="test holder"):
        result = run_cli("apply", "--lock-timeout", "0.5", str(linked), cwd=repo)
    assert result.returncode == 1 and "is being reconciled by" in result.stderr and "(test holder)" in result.stderr


# -- an engine that goes away ------------------------------------------------------------


class VersionOnlyEngine:
    """A unix socket that answers the version check from the real engine and then drops every
    other request: an engine that went away between the check and the first real call."""

    def __init__(self, path: Path):
        self.path = path
        self.target = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            while True:
                request = client.recv(65536)
                if not request or b" /version " not in request.split(b"\r\n", 1)[0] and b"/_ping" not in request[:64]:
                    return  # gone
                with socket.socket(socket.AF_UNIX) as upstream:
                    upstream.connect(self.target)
                    upstream.sendall(request.replace(b"keep-alive", b"close"))
                    while data := upstream.recv(65536):
                        client.sendall(data)
                return

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def lost_engine(tmp_path_factory, docker_client):
    engine = VersionOnlyEngine(tmp_path_factory.mktemp("engine") / "docker.sock")
    yield f"unix://{engine.path}"
    engine.close()


@pytest.mark.docker
@pytest.mark.parametrize("command", ["plan", "apply", "status", "down"])
def test_an_engine_that_goes_away_is_one_clear_line(repo, base_image, runtime_only_lock, lost_engine, command):
    package = engine_package(repo, base_image, runtime_only_lock, "lost")
    result = run_cli(command, str(package), cwd=repo, env={"DOCKER_HOST": lost_engine}, timeout=120)
    assert result.returncode == 1
    assert_one_clear_line(result, r"^error: .*the Docker engine at unix://.* went away")


@pytest.mark.docker
def test_watch_with_a_lost_engine_backs_off_and_stops_cleanly(repo, base_image, runtime_only_lock, lost_engine):
    engine_package(repo, base_image, runtime_only_lock, "lost")
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", "--resync", "1", str(repo)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DOCKER_HOST": lost_engine, "PYTHONUNBUFFERED": "1"},
    )
    time.sleep(8)
    assert process.poll() is None, "the watch keeps going"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    retries = re.findall(r"went away.*; retrying in (\d+) s$", output, re.M)
    assert 2 <= len(retries) <= 6, output  # backoff: 1, 2, 4 ... not a line per loop turn
    assert [int(r) for r in retries] == sorted(int(r) for r in retries)
    assert "Traceback" not in output and output.rstrip().endswith("stopped")


def test_the_reliability_page_lists_every_fault_this_module_covers():
    page = (ROOT / "docs" / "reliability.md").read_text()
    names = [
        name
        for name in globals()
        if name.startswith("test_") and name != "test_the_reliability_page_lists_every_fault_this_module_covers"
    ]
    unlisted = [name for name in names if name not in page]
    assert not unlisted, f"docs/reliability.md does not list {unlisted}"
