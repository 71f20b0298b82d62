"""`reconciler watch`: a real watcher process, real files, a real engine where marked."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from reconciler.core.package_locks import PackageLocks
from reconciler.spec.discovery import load_workspace
from reconciler.watch.router import WatchedPackage, route

from .cli_process import CliProcess
from .conftest import engine_package, remove_package_objects, run_cli, serving_container, write_package
from .runtime_helpers import free_port


class WatchProcess(CliProcess):
    def __init__(self, *paths, cwd, extra=(), env=None):
        super().__init__("watch", *extra, *map(str, paths), cwd=cwd, env=env)


def stamp_hash(package: Path) -> str:
    return json.loads((package / "build" / "demo" / ".reconciler-stamp.json").read_text())["image_hash"]


def test_edit_rewrites_the_folder_and_a_burst_is_one_run(package_dir, repo):
    with WatchProcess(repo, cwd=repo) as watch:
        watch.wait_for(r"^demo: start: not written yet -> write \d+\.\d s$")
        first = stamp_hash(package_dir)
        mark = len(watch.output)
        with open(package_dir / "score.py", "a") as handle:
            handle.write("# an edit\n")
        watch.wait_for(r"^demo: score.py changed -> write \d+\.\d s$", after=mark)
        assert stamp_hash(package_dir) != first
        mark = len(watch.output)
        for index in range(200):
            (package_dir / f"data_{index:03d}.txt").write_text(str(index))
        watch.wait_for(r"^demo: 200 files changed -> write", after=mark)
        time.sleep(1.5)  # nothing else may follow: the burst was one run
        tail = watch.output[mark:]
        assert tail.count("\n") == 1, tail
        assert (package_dir / "build" / "demo" / "app" / "data_199.txt").exists()


def test_ignored_and_output_files_trigger_nothing(package_dir, repo):
    (package_dir / ".reconcilerignore").write_text("notes/\n")
    (package_dir / "notes").mkdir()
    with WatchProcess(repo, cwd=repo) as watch:
        watch.wait_for(r"^demo: start: ")
        mark = len(watch.output)
        (package_dir / "notes" / "todo.txt").write_text("x")
        (package_dir / ".hidden.txt").write_text("x")
        (package_dir / "__pycache__").mkdir(exist_ok=True)
        (package_dir / "__pycache__" / "score.cpython-311.pyc").write_bytes(b"\0")
        (package_dir / "build" / "demo" / "Dockerfile").write_text("hand edit\n")  # drift: for the resync, not an event
        time.sleep(1.5)
        assert watch.output[mark:] == ""


def test_a_new_folder_is_a_rescan_unless_discovery_never_looks_inside(package_dir, repo):
    workspace = load_workspace([repo])
    watched = {p.manifest_path: WatchedPackage.of(p) for p in workspace.packages}
    for name in ("__pycache__", ".cache", "node_modules"):
        (repo / name).mkdir()
        assert route({str(repo / name)}, watched, [str(repo)], dev=False).empty, name
    (repo / "models").mkdir()
    assert route({str(repo / "models")}, watched, [str(repo)], dev=False).rescan


def test_invalid_manifest_is_reported_and_a_valid_one_picked_up_again(package_dir, repo):
    with WatchProcess(repo, cwd=repo) as watch:
        watch.wait_for(r"^demo: start: ")
        manifest = package_dir / "package.yaml"
        good = manifest.read_text()
        mark = len(watch.output)
        manifest.write_text(good + "broken: [\n")
        watch.wait_for(r"^error: demo/package.yaml:\d+:\d+: invalid YAML", after=mark)
        mark = len(watch.output)
        manifest.write_text(good.replace("pip: []", "pip: []\n    variables: {MODE: fast}"))
        watch.wait_for(r"^demo: package.yaml changed -> write", after=mark)


def test_new_and_deleted_packages(package_dir, repo, runtime_only_lock):
    with WatchProcess(repo, cwd=repo) as watch:
        watch.wait_for(r"^demo: start: ")
        mark = len(watch.output)
        write_package(repo / "second", name="second")
        shutil.copy(runtime_only_lock, repo / "second" / "package.lock")
        watch.wait_for(r"^second: .* -> write", after=mark)
        mark = len(watch.output)
        shutil.rmtree(repo / "second")
        watch.wait_for(
            r"^second: second/package.yaml deleted; its build folder stays$",  # a Dockerfile-mode package
            after=mark,
        )


def test_sigterm_stops_within_a_second(package_dir, repo):
    watch = WatchProcess(repo, cwd=repo)
    try:
        watch.wait_for(r"^demo: start: ")
        started = time.monotonic()
        watch.process.send_signal(signal.SIGTERM)
        assert watch.process.wait(5) == 0
        assert time.monotonic() - started < 1.0
        assert watch.output.rstrip().endswith("stopped")
    finally:
        watch.stop()
        os.unlink(watch.log.name)


# `reconciler watch`, with every action taking a minute: what a long build is to the loop
SLOW_ACTIONS = """\
import sys, time
from reconciler.cli import main
from reconciler.execute.executor import Executor
run_action = Executor.run_action
def slowly(self, action):
    print("an action started", flush=True)
    time.sleep(60)
    return run_action(self, action)
Executor.run_action = slowly
raise SystemExit(main(["watch", *sys.argv[1:]]))
"""


def test_sigterm_during_a_long_action_stops_at_once_and_the_next_run_converges(package_dir, repo):
    """An action in progress (a build) held the exit until it ended, though `stopped` was
    printed: SIGTERM stops the watch as a kill would, and the next run picks up from there."""
    watch = subprocess.Popen(
        [sys.executable, "-c", SLOW_ACTIONS, str(repo)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        output = ""
        while "an action started" not in output and watch.poll() is None:
            output += watch.stdout.readline()
        assert "an action started" in output, output
        started = time.monotonic()
        watch.send_signal(signal.SIGTERM)
        output += watch.communicate(timeout=30)[0]
        assert watch.returncode == 0, output
        assert time.monotonic() - started < 5, "the exit did not wait for the action"
        assert output.rstrip().endswith("stopped"), output
    finally:
        watch.kill()
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert (package_dir / "build" / "demo" / "Dockerfile").is_file()


def test_two_reconcilers_never_act_on_one_package_at_once(package_dir, repo):
    manifest = package_dir / "package.yaml"
    with PackageLocks([manifest], timeout=5, command="test holder"):
        blocked = subprocess.run(
            [sys.executable, "-m", "reconciler", "apply", "--lock-timeout", "1", str(repo)],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        assert blocked.returncode == 1
        assert re.search(
            rf"error: {re.escape(str(manifest))} is being reconciled by pid {os.getpid()} "
            r"\(test holder\) on .* since \d\d:\d\d:\d\d; waited 1 s",
            blocked.stderr,
        )
        assert not (package_dir / "build").exists()
        watch = WatchProcess(repo, cwd=repo)
        watch.wait_for(r"^waiting: .* is being reconciled by pid \d+ \(test holder\).*; retrying in 1 s$")
        assert not (package_dir / "build").exists()
    with watch:  # released: the watcher's retry goes through
        watch.wait_for(r"^demo: retry: not written yet -> write")


# -- with a Docker engine ----------------------------------------------------------------


@pytest.fixture
def served_package(repo, base_image, runtime_only_lock, docker_client):
    name = f"w{uuid.uuid4().hex[:10]}"
    port = free_port()
    package = engine_package(repo, base_image, runtime_only_lock, name, port=port)
    yield package, name, port
    remove_package_objects(docker_client, name)


def score(port):
    return requests.post(f"http://127.0.0.1:{port}/score", json={"data": [[1, 2]]}, timeout=5).json()


@pytest.mark.docker
def test_edit_is_served_invalid_manifest_keeps_serving_and_resync_heals(served_package, repo, docker_client):
    package, name, port = served_package
    with WatchProcess(repo, cwd=repo, extra=["--resync", "3"]) as watch:
        watch.wait_for(
            rf"^{name}: start: not written yet -> write .*, build .*, create .*, ready at http://127\.0\.0\.1:{port}/score$",
            timeout=180,
        )
        assert score(port) == [6.0]
        mark = len(watch.output)
        (package / "score.py").write_text(
            (package / "score.py").read_text().replace("scale * sum(row)", "scale * sum(row) + 1")
        )
        watch.wait_for(
            rf"^{name}: score.py changed -> write .*, build .*, recreate .*, ready at", after=mark, timeout=120
        )
        assert score(port) == [7.0]
        mark = len(watch.output)
        manifest = package / "package.yaml"
        good = manifest.read_text()
        manifest.write_text(good + "  oops: [\n")
        watch.wait_for(r"^error: .*package.yaml:\d+:\d+: invalid YAML", after=mark)
        assert score(port) == [7.0], "the running container keeps serving"
        mark = len(watch.output)
        manifest.write_text(good)
        watch.wait_for(rf"^{name}: package.yaml changed -> in sync$", after=mark)
        mark = len(watch.output)
        container = serving_container(docker_client, name)
        container.remove(force=True)
        watch.wait_for(rf"^{name}: resync: no container -> create .*, ready at", after=mark, timeout=60)
        assert score(port) == [7.0]


@pytest.mark.docker
def test_dev_mode_reloads_code_without_a_rebuild(served_package, repo, docker_client):
    package, name, port = served_package
    with WatchProcess(repo, cwd=repo, extra=["--dev"]) as watch:
        watch.wait_for(rf"^{name}: start: .* -> .*create .*, ready at", timeout=180)
        container = serving_container(docker_client, name)
        assert score(port) == [6.0]
        mark = len(watch.output)
        good_score = (package / "score.py").read_text().replace("scale * sum(row)", "scale * sum(row) * 10")
        (package / "score.py").write_text(good_score)
        started = time.monotonic()
        watch.wait_for(rf"^{name}: score.py changed -> reloaded \d+\.\d\d s \(dev\)$", after=mark, timeout=30)
        assert score(port) == [60.0]
        assert time.monotonic() - started < 5
        assert serving_container(docker_client, name).id == container.id
        mark = len(watch.output)
        (package / "score.py").write_text(
            "def init():\n    raise ValueError('half-written')\n\ndef run(raw):\n    return 0\n"
        )
        watch.wait_for(
            rf"^{name}: score.py changed -> reload FAILED: reload failed: ValueError: half-written; "
            r"the previous code keeps serving$",
            after=mark,
            timeout=30,
        )
        assert score(port) == [60.0]
        (package / "score.py").write_text(good_score)
        watch.wait_for(rf"^{name}: score.py changed -> reloaded", after=mark, timeout=30)
        mark = len(watch.output)
        (package / "model" / "model.txt").write_text("3.0")  # not code: the full path
        watch.wait_for(
            rf"^{name}: model/model.txt changed -> write .*, build .*, recreate .*, ready at", after=mark, timeout=120
        )
        assert score(port) == [90.0]


class EngineProxy:
    """A unix socket that forwards to the real engine, and can go away like a restarting dockerd."""

    def __init__(self, path: Path):
        import threading

        self.path = path
        self.target = (os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock").removeprefix("unix://")
        self.threading = threading
        self.server = None
        self.connections = []

    def start(self) -> None:
        import socket

        if self.path.exists():
            self.path.unlink()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        self.server.listen(64)
        self.threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server) -> None:
        import socket

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                self.threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def stop(self) -> None:
        self.server.close()
        for connection in self.connections:
            try:
                connection.close()
            except OSError:
                pass
        self.connections = []
        self.path.unlink()


@pytest.mark.docker
def test_the_loop_survives_an_engine_restart(served_package, repo, docker_client, tmp_path_factory):
    if (os.environ.get("DOCKER_HOST") or "unix://").startswith("unix://") is False:
        pytest.skip("the engine is not on a unix socket here")
    package, name, port = served_package
    proxy = EngineProxy(tmp_path_factory.mktemp("engine") / "docker.sock")
    proxy.start()
    with WatchProcess(repo, cwd=repo, extra=["--resync", "1"], env={"DOCKER_HOST": f"unix://{proxy.path}"}) as watch:
        watch.wait_for(rf"^{name}: start: .*create .*, ready at", timeout=180)
        mark = len(watch.output)
        proxy.stop()
        watch.wait_for(
            rf"^error: no Docker engine answers at unix://{re.escape(str(proxy.path))}: .*; retrying in \d+ s$",
            after=mark,
            timeout=30,
        )
        container = serving_container(docker_client, name)
        container.remove(force=True)
        mark = len(watch.output)
        proxy.start()
        watch.wait_for(rf"^{name}: (retry|resync): no container -> create .*, ready at", after=mark, timeout=60)
        assert watch.process.poll() is None
        assert score(port) == [6.0]


@pytest.mark.docker
def test_a_watch_that_pulls_its_base_image_builds_once(repo, base_image, runtime_only_lock, docker_client):
    """The base image's ID is part of the image hash: after pulling it, the run must plan
    again with that ID, or it builds for a hash nobody wants and builds again next time."""
    registry = os.environ.get("RECONCILER_TEST_REGISTRY", "127.0.0.1:5000")
    name = f"w{uuid.uuid4().hex[:10]}"
    remote = f"{registry}/reconciler-test/pulled-base-{name}:1"
    docker_client.images.get(base_image).tag(remote)
    for line in docker_client.api.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(remote)
    package = engine_package(repo, remote, runtime_only_lock, name, mode="image")
    try:
        with WatchProcess(repo, cwd=repo) as watch:
            watch.wait_for(rf"^{name}: start: .*pull .*, write .*, build \d+\.\d s$", timeout=180)
        plan = subprocess.run(
            [sys.executable, "-m", "reconciler", "plan", str(package)], cwd=repo, capture_output=True, text=True
        )
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert len(docker_client.images.list(filters={"label": f"reconciler.package={name}"})) == 1
    finally:
        remove_package_objects(docker_client, name)
        docker_client.images.remove(remote, force=True)


@pytest.mark.docker
def test_a_build_that_fails_on_its_inputs_waits_for_a_change(repo, base_image, runtime_only_lock, docker_client):
    """A permanent failure is said once; resyncs do not rebuild it; the save that fixes it does."""
    import io

    name = f"w{uuid.uuid4().hex[:10]}"
    broken_base = f"reconciler-test/no-python-{name}:1"
    dockerfile = io.BytesIO(f"FROM {base_image}\nRUN rm -f /usr/bin/python3 /usr/bin/python3.11\n".encode())
    docker_client.images.build(fileobj=dockerfile, tag=broken_base, rm=True)
    package = engine_package(repo, broken_base, runtime_only_lock, name, mode="image")
    try:
        with WatchProcess(repo, cwd=repo, extra=["--resync", "1"]) as watch:
            failed = watch.wait_for(rf"^{name}: start: .*build FAILED after ", timeout=180)
            watch.wait_for(r"; waiting for a change to its inputs$", after=failed.start())
            time.sleep(4)  # three or four resyncs
            since = watch.output[failed.start() :]
            assert since.count("build FAILED") == 1, since
            assert "retrying" not in since, since
            mark = len(watch.output)
            manifest = package / "package.yaml"
            manifest.write_text(manifest.read_text().replace(broken_base, base_image))
            # the file event or a resync (one a second here), whichever comes first, builds it
            fixed = rf"^{name}: (package.yaml changed|resync: inputs changed: .*) -> write .*, build \d+\.\d s$"
            watch.wait_for(fixed, after=mark, timeout=180)
    finally:
        remove_package_objects(docker_client, name)
        docker_client.images.remove(broken_base, force=True)


def test_a_new_package_folder_is_picked_up_within_moments(package_dir, repo, runtime_only_lock):
    with WatchProcess(repo, cwd=repo, extra=["--resync", "600"]) as watch:
        watch.wait_for(r"^demo: start: ")
        mark = len(watch.output)
        started = time.monotonic()
        fresh = repo / "team" / "fresh"
        write_package(fresh, name="fresh")
        shutil.copy(runtime_only_lock, fresh / "package.lock")
        watch.wait_for(r"^fresh: .* -> write", after=mark, timeout=10)
        assert time.monotonic() - started < 5, "not left for the resync (600 s here)"


def test_a_package_a_rollback_holds_says_so_when_its_files_change(repo):
    """watch and sync say why nothing happened to a held package (its line, not `in sync`)."""
    from reconciler.loop.lines import outcome_line
    from reconciler.pipeline import Outcome
    from reconciler.plan import PackagePlan
    from reconciler.spec.package import load_package

    package = load_package(write_package(repo / "held"))
    note = "rolled back to eeeeeeeeeeee (1b7e0d4); held until the inputs change"
    outcome = Outcome(package, plan=PackagePlan(None, rolled_back=note))
    assert outcome_line(outcome, "README.md changed", "resync").text == f"demo: README.md changed -> {note}"
    assert outcome_line(outcome, None, "resync").text is None  # a resync says nothing new
