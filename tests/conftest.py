"""Shared fixtures: real files in temporary repositories, the real CLI in a subprocess,
a real Docker engine where a test is marked `docker`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SKLEARN_MODEL = EXAMPLES / "sklearn-regression" / "model" / "sklearn_regression_model.pkl"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BASE_IMAGE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "reconciler-test/python:3.11-bookworm")
PROXY_IMAGE = os.environ.get("RECONCILER_TEST_PROXY_IMAGE", "reconciler-test/haproxy:bookworm")


def missing(message: str) -> NoReturn:
    """What a test needs is not on this machine: a failure in CI (where it must be), a skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


SIMPLE_SCORE = textwrap.dedent(
    """\
    import json
    import os


    def init():
        global scale
        with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.txt")) as handle:
            scale = float(handle.read())


    def run(raw_data):
        return [scale * sum(row) for row in json.loads(raw_data)["data"]]
    """
)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """One reconciler cache (stat cache, wheel cache) for the whole session."""
    return tmp_path_factory.mktemp("reconciler-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(cache_root, monkeypatch):
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(cache_root))


def run_cli(*arguments: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """The real `reconciler` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *arguments],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_package(
    directory: Path, manifest: str | None = None, *, score: str = SIMPLE_SCORE, model: str = "2.0", name: str = "demo"
) -> Path:
    """A small package: a text 'model', an Azure-style score.py, and a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model").mkdir(exist_ok=True)
    (directory / "model" / "model.txt").write_text(model)
    (directory / "score.py").write_text(score)
    if manifest is None:
        manifest = f"""\
            name: {name}
            models:
              - name: demo_model
                version: 1
                path: model/model.txt
            inference:
              environment:
                pip: []
            """
    (directory / "package.yaml").write_text(textwrap.dedent(manifest))
    return directory / "package.yaml"


@pytest.fixture(scope="session")
def runtime_only_lock(tmp_path_factory, cache_root) -> Path:
    """package.lock for a package with no requirements of its own (only the runtime's):
    resolved once with the real pip, then copied into packages that need it."""
    repo = tmp_path_factory.mktemp("lock-repo")
    (repo / ".git").mkdir()
    write_package(repo / "pkg")
    result = run_cli("lock", str(repo / "pkg"), env={"RECONCILER_CACHE_DIR": str(cache_root)})
    assert result.returncode == 0, result.stderr
    return repo / "pkg" / "package.lock"


@pytest.fixture
def repo(tmp_path) -> Path:
    """An empty repository root (a folder with .git)."""
    (tmp_path / ".git").mkdir()
    return tmp_path


@pytest.fixture
def package_dir(repo, runtime_only_lock) -> Path:
    """A valid, locked package at repo/demo."""
    write_package(repo / "demo")
    shutil.copy(runtime_only_lock, repo / "demo" / "package.lock")
    return repo / "demo"


# -- Docker ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    """A real Docker engine. In CI a missing engine fails the run instead of skipping."""
    import docker

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means no usable engine
        missing(f"no Docker engine answers ({error}); run scripts/test, which starts one")
    return client


def engine_package(repo, base_image, runtime_only_lock, name, *, mode="container", port=None, container=""):
    """A small package for image or container mode on the test base image, on a free port
    (`container`: more settings of output.container, as flow-mapping entries)."""
    from .runtime_helpers import free_port

    package = repo / name
    write_package(
        package,
        f"""\
        name: {name}
        models: [{{name: demo_model, version: 1, path: model/model.txt}}]
        inference:
          environment: {{base_image: {base_image}, pip: []}}
        output:
          mode: {mode}
          container: {{port: {port or free_port()}, proxy_image: "{PROXY_IMAGE}"{", " + container if container else ""}}}
        """,
    )
    shutil.copy(runtime_only_lock, package / "package.lock")
    return package


def with_cpus(package: Path, cpu: str) -> None:
    """An engine_package's output.resources.cpu set to `cpu`."""
    manifest = package / "package.yaml"
    text = re.sub(r"  resources: .*\n", "", manifest.read_text())
    manifest.write_text(text.replace("  mode: container\n", f"  mode: container\n  resources: {{cpu: '{cpu}'}}\n"))


@pytest.fixture
def served(repo, base_image, runtime_only_lock, docker_client):
    """A container-mode package of its own name on a free port: (folder, name, port); its
    containers, network and images go after the test."""
    name = f"z{uuid.uuid4().hex[:10]}"
    package = engine_package(repo, base_image, runtime_only_lock, name)
    port = int(re.search(r"port: (\d+)", (package / "package.yaml").read_text()).group(1))
    yield package, name, port
    remove_package_objects(docker_client, name)


def serving_container(docker_client, name: str):
    """The container that answers package `name`'s requests: `<name>-serving` behind the
    proxy, or the one container when it publishes the port itself."""
    containers = docker_client.containers.list(all=True, filters={"label": f"reconciler.package={name}"})
    [container] = [c for c in containers if c.name == f"{name}-serving" or not c.labels.get("reconciler.role")]
    return container


def remove_package_objects(docker_client, name: str) -> None:
    """Remove every container (ours or started by hand) and image of package `name`."""
    for container in docker_client.containers.list(all=True, filters={"label": f"reconciler.package={name}"}):
        container.remove(force=True)
    for network in docker_client.networks.list(names=[f"reconciler-{name}"]):
        network.remove()
    for image in docker_client.images.list(filters={"label": f"reconciler.package={name}"}):
        docker_client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The local Python 3.11 base image (scripts/build-test-base-image), with the proxy
    image that container-mode packages use (scripts/build-test-proxy-image)."""
    import docker

    for image, script in ((BASE_IMAGE, "build-test-base-image"), (PROXY_IMAGE, "build-test-proxy-image")):
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            missing(f"{image} is missing; run scripts/{script}")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def buildkit_cli(docker_client):
    """The docker CLI reconciler builds with by default here. In CI a missing one fails the
    run: the suite must not silently test only the legacy fallback."""
    from reconciler.engine.builders import find_buildkit_cli

    cli, why = find_buildkit_cli()
    if cli is None:
        missing(f"no docker CLI can build with BuildKit: {why}")
    return cli


@pytest.fixture(params=["buildkit", "legacy"])
def builder(request) -> str:
    """Run the test with each builder (RECONCILER_BUILDER)."""
    if request.param == "buildkit":
        request.getfixturevalue("buildkit_cli")
    return request.param


@pytest.fixture
def fake(monkeypatch):
    """The fake engine (tests/fake_engine.py) in place of Docker, with the base and proxy
    images present: the tier between the pure planner and the real engine."""
    from .fake_engine import FakeEngine, connect_to

    engine = FakeEngine()
    engine.add_image(BASE_IMAGE)
    engine.add_image(PROXY_IMAGE)
    connect_to(monkeypatch, engine)
    return engine
