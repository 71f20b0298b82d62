"""`reconciler serve`: the package's runtime on the host, with the image's model layout."""

from __future__ import annotations

import shutil
import signal

import requests

from .conftest import EXAMPLES, run_cli, write_package
from .runtime_helpers import ServeProcess, free_port

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


def test_serve_runs_the_example_with_azures_layout(repo):
    package = repo / "multi-model"
    shutil.copytree(EXAMPLES / "multi-model", package, ignore=shutil.ignore_patterns("build"))
    with ServeProcess(package) as server:
        server.wait_ready(timeout=120)
        response = requests.post(server.url + "/score", json=SEED_REQUEST, timeout=30)
        assert response.status_code == 200
        body = response.json()
        assert len(body["ridge"]) == 2 and len(body["lasso"]) == 2 and body["lasso_alpha"] == 0.05
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(30) == 0
        assert f"serving multi-model at http://127.0.0.1:{server.port}/score" in server.logs


def test_serve_names_the_missing_requirement_before_starting(repo):
    package = write_package(
        repo / "needs",
        score="import not_installed_module_xyz\n\ndef init():\n    pass\n\ndef run(raw):\n    return raw\n",
    ).parent
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "pip: [not-installed-module-xyz==1.0]"))
    result = run_cli("serve", str(package), "--port", str(free_port()), timeout=60)
    assert result.returncode == 1
    assert "score.py imports not_installed_module_xyz, not installed in" in result.stderr
    assert "The package requires: not-installed-module-xyz==1.0" in result.stderr


def test_serve_wants_exactly_one_package(repo):
    write_package(repo / "a", name="a")
    write_package(repo / "b", name="b")
    result = run_cli("serve", str(repo))
    assert result.returncode == 1 and "holds 2 packages; serve takes one" in result.stderr


RAWHTTP_SCORE = """\
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request: AMLRequest):
    return AMLResponse(request.get_data()[::-1], 200)
"""


def test_serve_gives_the_entry_script_azures_import_names_as_the_image_does(repo):
    package = write_package(repo / "raw", score=RAWHTTP_SCORE).parent
    with ServeProcess(package) as server:
        server.wait_ready(timeout=60)
        answer = requests.post(server.url + "/score", data=b"abc", timeout=30)
        assert answer.status_code == 200 and answer.content == b"cba"
