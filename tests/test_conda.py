"""`environment.conda_file`: Azure projects' conda files, read as data and locked as wheels."""

from __future__ import annotations

import json
import textwrap

import pytest
import requests

from reconciler.core.errors import InvalidInput
from reconciler.desired.requirements import read_requirements
from reconciler.spec.package import load_package

from .conftest import engine_package, remove_package_objects, run_cli, serving_container, write_package

AZURE_CONDA = """\
    name: project_environment
    channels:
      - conda-forge
      - defaults
    dependencies:
      - python=3.12.4
      - pip=24
      - conda-forge::scikit-learn=1.5
      - py-xgboost==2.1.1
      - numpy 1.26.*
      - pip:
          - azureml-defaults
          - inference-schema[numpy-support]==1.8
          - joblib>=1.4
"""


def conda_package(repo, conda: str, manifest_extra: str = "", name: str = "demo"):
    manifest = write_package(
        repo / name,
        f"""\
        name: {name}
        models: [{{name: demo_model, version: 1, path: model/model.txt}}]
        inference:
          environment:
            conda_file: env.yml
            {manifest_extra}
        """,
    )
    (repo / name / "env.yml").write_text(textwrap.dedent(conda))
    return manifest


def test_a_conda_file_sets_python_and_maps_packages_to_pypi(repo):
    package = load_package(conda_package(repo, AZURE_CONDA))
    assert package.manifest.inference.environment.python == "3.12"
    assert package.manifest.inference.environment.resolved_base_image == "python:3.12-slim"
    read = read_requirements(package)
    assert read.requirements == (
        "scikit-learn==1.5.*",
        "xgboost==2.1.1",
        "numpy==1.26.*",
        "inference-schema[numpy-support]==1.8",
        "joblib>=1.4",
    )
    assert package.conda.replaced == ("azureml-defaults",)


@pytest.mark.parametrize(
    ("conda", "extra", "expected"),
    [
        (
            "dependencies:\n  - python=3.11\n  - cudatoolkit=11.8\n",
            "",
            "env.yml:3: conda_file: conda package cudatoolkit has no PyPI equivalent",
        ),
        (
            "dependencies:\n  - pip:\n      - --extra-index-url https://example.org/simple\n      - numpy\n",
            "",
            "env.yml:3: requirements: pip option --extra-index-url is not allowed",
        ),
        (
            "dependencies:\n  - pip:\n      - evil @ git+file:///tmp/evil\n",
            "",
            "env.yml:3: requirements: evil is a direct reference",
        ),
        (
            "dependencies:\n  - python=3.10\n",
            'python: "3.11"',
            "package.yaml:6:13: inference.environment.python: python '3.11' differs from python=3.10 in ",
        ),
        ("dependencies: [python>=3.9]\n", "", "env.yml:1: conda_file: python>=3.9 is not a Python version"),
        ("dependencies: {numpy: 1}\n", "", "env.yml:1: conda_file: a conda file is a mapping with a `dependencies:`"),
    ],
)
def test_conda_file_problems_name_the_file_and_line(repo, conda, extra, expected):
    manifest = conda_package(repo, conda, extra)
    with pytest.raises(InvalidInput) as raised:
        read_requirements(load_package(manifest))
    shown = "\n".join(str(problem) for problem in raised.value.problems)
    assert expected in shown, shown


def test_conda_file_with_requirements_is_refused(repo):
    manifest = conda_package(repo, "dependencies: []\n", "requirements: requirements.txt")
    result = run_cli("validate", str(manifest))
    assert result.returncode != 0
    assert "set one of `requirements` (a file), `pip` (a list) or `conda_file`, not requirements and conda_file" in (
        result.stdout + result.stderr
    )


@pytest.mark.docker
@pytest.mark.network
def test_an_azure_conda_package_locks_builds_and_serves(repo, base_image, docker_client, runtime_only_lock):
    """Azure's serving packages are left out with one note; the rest is locked as wheels, built
    offline and served."""
    package = engine_package(repo, base_image, runtime_only_lock, "conda-demo")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "conda_file: env.yml"))
    (package / "package.lock").unlink()
    (package / "env.yml").write_text(
        "dependencies:\n  - python=3.11\n  - pip\n  - pip:\n      - azureml-defaults\n      - six==1.16.0\n"
    )
    (package / "score.py").write_text(
        "import six\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return six.__version__\n"
    )
    try:
        planned = run_cli("plan", str(package))
        assert planned.returncode == 2, planned.stdout + planned.stderr  # 2: there is work to do
        assert "note: azureml-defaults (in env.yml) left out: reconciler's runtime serves" in planned.stdout
        applied = run_cli("apply", str(package), timeout=600)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        lock = json.loads((package / "package.lock").read_text())
        assert "six==1.16.0" in lock["requirements"] and "azureml-defaults" not in lock["requirements"]
        assert serving_container(docker_client, "conda-demo").status == "running"
        answer = requests.post(f"http://127.0.0.1:{_published_port(package)}/score", data="{}", timeout=30)
        assert answer.json() == "1.16.0"
    finally:
        remove_package_objects(docker_client, "conda-demo")


def _published_port(package) -> str:
    return (package / "package.yaml").read_text().split("port: ")[1].split(",")[0]


OLD_PIN_CONDA = """\
    name: inference-schema-env
    channels: [conda-forge]
    dependencies:
      - python=3.11
      - scikit-learn=1.2.2
      - pip
      - pip:
          - joblib
"""


def test_a_pin_built_for_numpy_1_keeps_numpy_below_2_as_conda_would(repo):
    """Azure's managed/inference-schema env.yml pins scikit-learn=1.2.2 and leaves numpy open:
    NumPy 2 would crash its import, so the lock keeps NumPy 1.x and says why; a pin built for
    NumPy 2 (scikit-learn 1.5.2, in AZURE_CONDA above) leaves NumPy 2 alone."""
    manifest = conda_package(repo, OLD_PIN_CONDA)
    result = run_cli("lock", str(manifest.parent), cwd=repo, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "note: scikit-learn 1.2.2 was built for NumPy 1.x; numpy 2." in result.stdout
    lock = json.loads((manifest.parent / "package.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["packages"]}
    assert versions["scikit-learn"] == "1.2.2" and versions["numpy"].startswith("1.")
    assert "numpy<2  # added by reconciler: scikit-learn 1.2.2 was built for NumPy 1.x" in lock["requirements"]
    manifest = conda_package(repo, OLD_PIN_CONDA.replace("scikit-learn=1.2.2", "scikit-learn=1.5.2"), name="current")
    result = run_cli("lock", str(manifest.parent), cwd=repo, timeout=600)
    assert result.returncode == 0 and "NumPy 1.x" not in result.stdout
    versions = {p["name"]: p["version"] for p in json.loads((manifest.parent / "package.lock").read_text())["packages"]}
    assert versions["numpy"].startswith("2.")


@pytest.mark.docker
@pytest.mark.network
def test_an_old_pin_built_for_numpy_1_builds_and_serves(repo, base_image, docker_client, runtime_only_lock):
    """The inference-schema example's environment, in its image: scikit-learn 1.2.2 imports
    (with NumPy 2 it crashed at import) and serves."""
    package = engine_package(repo, base_image, runtime_only_lock, "numpy-one")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "conda_file: env.yml"))
    (package / "package.lock").unlink()
    (package / "env.yml").write_text(textwrap.dedent(OLD_PIN_CONDA))
    (package / "score.py").write_text(
        textwrap.dedent(
            """\
            import json
            import numpy as np
            import sklearn
            from sklearn.linear_model import Ridge

            def init():
                global model
                model = Ridge().fit(np.array([[0.0], [1.0], [2.0]]), np.array([0.0, 1.0, 2.0]))

            def run(raw_data):
                rows = np.array(json.loads(raw_data)["data"])
                return {"numpy": np.__version__, "sklearn": sklearn.__version__, "p": model.predict(rows).tolist()}
            """
        )
    )
    try:
        applied = run_cli("apply", str(package), timeout=900)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        answer = requests.post(
            f"http://127.0.0.1:{_published_port(package)}/score", json={"data": [[3.0]]}, timeout=30
        ).json()
        assert answer["sklearn"] == "1.2.2" and answer["numpy"].startswith("1.") and len(answer["p"]) == 1
    finally:
        remove_package_objects(docker_client, "numpy-one")
