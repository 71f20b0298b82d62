"""The generated Dockerfile folder builds with no network and serves the seed's request."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import requests

from .conftest import EXAMPLES, run_cli

pytestmark = pytest.mark.docker

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def wait_ready(url: str, container, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ready", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or listening while init() still loads the model
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.2)
    raise AssertionError("not ready:\n" + container.logs().decode()[-3000:])


def build(client, folder, tag, builder="legacy"):
    """`docker build --network none FOLDER`, by the SDK's legacy builder or the BuildKit CLI."""
    if builder == "legacy":
        image, _ = client.images.build(path=str(folder), tag=tag, network_mode="none", rm=True, forcerm=True)
        return image
    from reconciler.engine.builders import find_buildkit_cli

    cli, _ = find_buildkit_cli()
    command = [cli.path, "buildx", "build", "--load"] if cli.buildx else [cli.path, "build"]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    result = subprocess.run(command + ["--network", "none", "-t", tag, str(folder)], env=env, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return client.images.get(tag)


@pytest.fixture
def sklearn_example(repo, base_image):
    package = repo / "sklearn-regression"
    shutil.copytree(EXAMPLES / "sklearn-regression", package, ignore=shutil.ignore_patterns("build"))
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("base_image: python:3.11-slim", f"base_image: {base_image}"))
    return package


def test_folder_builds_offline_and_serves_the_seed_request(docker_client, sklearn_example, repo, builder):
    assert run_cli("apply", "--frozen", str(sklearn_example), cwd=repo).returncode == 0
    folder = sklearn_example / "build" / "sklearn-regression"
    image = build(docker_client, folder, f"reconciler-test/dockerfile-mode:{builder}", builder)
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001" and "5001/tcp" in config["ExposedPorts"] and config["Healthcheck"]
    assert "LOG_LEVEL=info" in config["Env"]
    container = docker_client.containers.run(image.id, detach=True, ports={"5001/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.ports["5001/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, container)
        response = requests.post(url + "/score", json=SEED_REQUEST, timeout=10)
        assert response.status_code == 200, response.text
        predictions = response.json()
        assert len(predictions) == 2 and all(isinstance(p, float) for p in predictions)
        assert predictions[0] != predictions[1]
    finally:
        container.remove(force=True)


def test_code_edit_rebuilds_only_the_code_layers(docker_client, sklearn_example, repo):
    folder = sklearn_example / "build" / "sklearn-regression"
    assert run_cli("apply", "--frozen", str(sklearn_example), cwd=repo).returncode == 0
    first = build(docker_client, folder, "reconciler-test/layers:1")
    with open(sklearn_example / "score.py", "a") as handle:
        handle.write("\n# a code edit\n")
    assert run_cli("apply", "--frozen", str(sklearn_example), cwd=repo).returncode == 0
    second = build(docker_client, folder, "reconciler-test/layers:2")
    old_layers, new_layers = first.attrs["RootFS"]["Layers"], second.attrs["RootFS"]["Layers"]
    # everything up to and including the models is shared; only the app layer differs
    assert old_layers[:-1] == new_layers[:-1]
    assert old_layers[-1] != new_layers[-1]


def test_variables_reach_the_process_exactly(docker_client, repo, base_image, runtime_only_lock):
    from .conftest import write_package

    package = repo / "vars"
    write_package(
        package,
        f"""\
        name: vars
        models: [{{name: m, version: 1, path: model/model.txt}}]
        inference:
          environment:
            base_image: {base_image}
            pip: []
            variables:
              QUOTED: 'say "hi" $HOME ${{PATH}} back\\slash'
              NUMBER: 4
              FLAG: true
        """,
    )
    shutil.copy(runtime_only_lock, package / "package.lock")
    assert run_cli("apply", "--frozen", str(package), cwd=repo).returncode == 0
    image = build(docker_client, package / "build" / "vars", "reconciler-test/vars:1")
    output = docker_client.containers.run(
        image.id,
        ["python", "-c", "import os; print(os.environ['QUOTED']); print(os.environ['NUMBER'], os.environ['FLAG'])"],
        remove=True,
    ).decode()
    assert output == 'say "hi" $HOME ${PATH} back\\slash\n4 true\n'
