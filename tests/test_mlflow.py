"""MLflow models with no entry script (Azure's no-code deployment): a model saved by MLflow
itself, loaded by MLflow's own pyfunc loader behind the real runtime, asked in Azure's and
MLflow's request formats; and the manifest checks of `type: mlflow_model`."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests

from reconciler.core.errors import InvalidInput
from reconciler.desired.requirements import read_requirements
from reconciler.desired.sources import RUNTIME_DIRECTORY, source_files
from reconciler.desired.state import mlflow_notes
from reconciler.spec.package import load_package

from .conftest import PROXY_IMAGE, remove_package_objects, run_cli, write_package
from .runtime_helpers import RuntimeProcess, ServeProcess, free_port

ROWS = [[59.0, 32.1, 1.0], [48.0, 21.6, 0.0]]
COLUMNS = ["age", "bmi", "sex"]


def save_sklearn_model(folder: Path, *, signature: bool = True) -> Path:
    """A regression saved with mlflow.sklearn.save_model, as a training job would log it."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    grid = [[age, bmi, sex] for age in (30.0, 45.0, 60.0) for bmi in (20.0, 30.0) for sex in (0.0, 1.0)]
    frame = pd.DataFrame(grid, columns=COLUMNS)
    target = frame.age * 2 + frame.bmi - frame.sex
    model = LinearRegression().fit(frame, target)
    mlflow.sklearn.save_model(
        model,
        str(folder),
        signature=infer_signature(frame, model.predict(frame)) if signature else None,
        serialization_format="cloudpickle",
    )
    return folder


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> Path:
    return save_sklearn_model(tmp_path_factory.mktemp("mlflow") / "model")


def expected(rows: list[list[float]]) -> list[float]:
    return [row[0] * 2 + row[1] - row[2] for row in rows]


@pytest.fixture(scope="module")
def server(saved_model, tmp_path_factory):
    app = tmp_path_factory.mktemp("mlflow-app")
    shutil.copy(RUNTIME_DIRECTORY / "mlflow_score.py", app / "mlflow_score.py")
    env = {"AZUREML_ENTRY_SCRIPT": "mlflow_score.py", "RECONCILER_MLFLOW_MODEL": str(saved_model)}
    with RuntimeProcess(app, env=env) as process:
        process.wait_ready(timeout=120)
        yield process


def score(server, body) -> requests.Response:
    return requests.post(f"{server.url}/score", json=body, timeout=30)


@pytest.mark.parametrize(
    "body",
    [
        {"input_data": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}},  # Azure's pandas split orient
        {"input_data": ROWS},  # rows, named by the signature
        {"input_data": {"age": [59.0, 48.0], "bmi": [32.1, 21.6], "sex": [1.0, 0.0]}},  # named inputs
    ],
    ids=["split", "rows", "named"],
)
def test_azure_request_formats_get_the_predictions(server, body):
    response = score(server, body)
    assert response.status_code == 200, response.text
    assert response.json() == pytest.approx(expected(ROWS))


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        {"dataframe_records": [dict(zip(COLUMNS, row)) for row in ROWS]},
        {"inputs": {"age": [59.0, 48.0], "bmi": [32.1, 21.6], "sex": [1.0, 0.0]}},
    ],
    ids=["dataframe_split", "dataframe_records", "inputs"],
)
def test_mlflow_request_formats_get_mlflows_answer(server, body):
    response = score(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == pytest.approx(expected(ROWS))


def test_input_the_signature_refuses_is_a_400_naming_the_column(server):
    missing = score(server, {"input_data": {"columns": ["age", "bmi"], "data": [[59.0, 32.1]]}})
    assert missing.status_code == 400 and "sex" in missing.json()["message"], missing.text
    mistyped = score(server, {"input_data": {"columns": COLUMNS, "data": [["old", 32.1, 1.0]]}})
    assert mistyped.status_code == 400 and "age" in mistyped.json()["message"], mistyped.text


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "the request body is not JSON"),
        ([1, 2], "the request must be a JSON object with input_data"),
        ({"rows": ROWS}, "expected input_data (Azure's format) or one of dataframe_split"),
    ],
)
def test_requests_in_no_format_are_400s_that_say_which_formats_there_are(server, body, message):
    response = requests.post(
        f"{server.url}/score", data=body if isinstance(body, str) else json.dumps(body), timeout=30
    )
    assert response.status_code == 400 and message in response.json()["message"], response.text


def test_swagger_describes_the_signatures_columns(server):
    document = requests.get(f"{server.url}/swagger.json", timeout=30).json()
    frame = document["definitions"]["ServiceInput"]["properties"]["input_data"]
    assert frame["properties"]["columns"]["items"]["enum"] == COLUMNS
    assert frame["x-columns"] == {name: {"type": "number"} for name in COLUMNS}


# -- the manifest ---------------------------------------------------------------------


def mlflow_package(repo: Path, saved_model: Path, extra: str = "", name: str = "pkg") -> Path:
    """A package whose only model is an MLflow model folder, with no entry script."""
    manifest = write_package(
        repo / name,
        f"""\
        name: {name}
        models: [{{name: diabetes, version: 1, path: model, type: mlflow_model}}]
        {extra}
        """,
    )
    (manifest.parent / "score.py").unlink()
    shutil.rmtree(manifest.parent / "model")
    shutil.copytree(saved_model, manifest.parent / "model")
    return manifest


def test_no_entry_script_serves_the_model_with_its_own_requirements(repo, saved_model):
    package = load_package(mlflow_package(repo, saved_model))
    assert package.mlflow is not None and "sklearn" in package.mlflow.flavors
    assert package.entry_script_relative == "mlflow_score.py"
    assert [f.destination for f in source_files(package)] == ["app/mlflow_score.py"]
    requirements = read_requirements(package).requirements
    assert any(r.startswith("mlflow-skinny==") for r in requirements), requirements
    assert not any(r.startswith("mlflow==") for r in requirements)
    assert any(r.startswith("scikit-learn==") for r in requirements)


def test_an_entry_script_beside_an_mlflow_model_is_served_as_today(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
    package = load_package(manifest)
    assert package.mlflow is None and package.entry_script_relative == "score.py"


def problems_of(manifest: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_package(manifest)
    return [str(problem) for problem in caught.value.problems]


def test_an_mlmodel_that_does_not_parse_is_named_with_its_line(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "model" / "MLmodel").write_text("flavors:\n  python_function: [unclosed\n")
    [problem] = problems_of(manifest)
    assert "pkg/model/MLmodel:3" in problem and "invalid YAML" in problem


def test_a_flavor_without_a_pyfunc_loader_says_what_to_do(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "model" / "MLmodel").write_text(
        textwrap.dedent(
            """\
            artifact_path: model
            flavors:
              spark: {pyspark_version: 3.5.0}
            """
        )
    )
    [problem] = problems_of(manifest)
    assert "pkg/model/MLmodel:3" in problem
    assert "flavors: spark has no python_function flavor" in problem and "write an entry script" in problem


def test_a_folder_with_no_mlmodel_is_an_error_at_the_models_path(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "model" / "MLmodel").unlink()
    [problem] = problems_of(manifest)
    assert "package.yaml:2" in problem and "models[0].path" in problem and "has no MLmodel file" in problem


def test_serve_runs_a_no_code_model_on_the_host(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    with ServeProcess(manifest.parent) as served:
        served.wait_ready(timeout=120)
        response = requests.post(f"{served.url}/score", json={"input_data": ROWS}, timeout=30)
    assert response.status_code == 200, response.text + served.logs
    assert response.json() == pytest.approx(expected(ROWS))


@pytest.mark.docker
@pytest.mark.parametrize("environment", ["requirements.txt", "conda.yaml"])
def test_a_no_code_mlflow_model_serves_in_its_image(repo, saved_model, base_image, docker_client, environment):
    """Locked from the model's own requirements.txt, or from its conda.yaml where an older MLflow
    wrote no requirements.txt (mlflow as mlflow-skinny), built, run confined behind the proxy,
    and asked in Azure's format."""
    port, name = free_port(), f"ml{uuid.uuid4().hex[:10]}"
    manifest = mlflow_package(
        repo,
        saved_model,
        f"""inference: {{environment: {{base_image: {base_image}}}}}
        output: {{mode: container, container: {{port: {port}, proxy_image: "{PROXY_IMAGE}"}}}}""",
        name=name,
    )
    if environment == "conda.yaml":
        (manifest.parent / "model" / "requirements.txt").unlink()
    try:
        applied = run_cli("apply", str(manifest.parent), cwd=repo, timeout=900)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "served by MLflow's pyfunc loader, with no entry script (mlflow installed as mlflow-skinny)" in (
            applied.stdout
        )
        body = {"input_data": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}}
        answer = requests.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json() == pytest.approx(expected(ROWS))
        refused = requests.post(f"http://127.0.0.1:{port}/score", json={"input_data": [[1.0]]}, timeout=60)
        assert refused.status_code == 400 and "bmi" in refused.json()["message"], refused.text
        assert run_cli("plan", str(manifest.parent), cwd=repo).returncode == 0
    finally:
        remove_package_objects(docker_client, name)


def test_an_older_models_requirements_get_the_pandas_full_mlflow_brought(repo, saved_model):
    """Azure's ncd/sklearn-diabetes model lists `mlflow` and no pandas, which full mlflow
    depends on and the pyfunc loader needs."""
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "model" / "requirements.txt").write_text("mlflow\ncloudpickle==2.0.0\nscikit-learn==1.2.2\n")
    requirements = read_requirements(load_package(manifest)).requirements
    assert requirements == ("mlflow-skinny", "cloudpickle==2.0.0", "scikit-learn==1.2.2", "pandas")


def saved_with_python(manifest: Path, version: str) -> None:
    """Make the package's model one MLflow saved under another Python (MLmodel's python_version)."""
    mlmodel = manifest.parent / "model" / "MLmodel"
    mlmodel.write_text(re.sub(r"python_version: \S+", f"python_version: {version}", mlmodel.read_text()))


def test_the_model_is_served_with_the_python_it_was_saved_with(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    saved_with_python(manifest, "3.12.4")
    package = load_package(manifest)
    assert package.manifest.inference.environment.python == "3.12"
    assert package.manifest.inference.environment.resolved_base_image == "python:3.12-slim"


@pytest.mark.parametrize(
    "environment",
    ['{python: "3.11"}', "{base_image: registry.example/python:3.11}"],
    ids=["python", "base_image"],
)
def test_a_python_or_base_image_the_manifest_names_wins_and_the_plan_says_so(repo, saved_model, environment):
    manifest = mlflow_package(repo, saved_model, f"inference: {{environment: {environment}}}")
    saved_with_python(manifest, "3.12.4")
    package = load_package(manifest)
    assert package.manifest.inference.environment.python == "3.11"
    [_, mismatch] = mlflow_notes(package)
    field = environment.split(":")[0].strip("{")
    assert (
        f"model diabetes was saved with Python 3.12 and is served with Python 3.11 (as inference.environment.{field} says)"
        in mismatch
    )


def test_a_python_the_runtime_cannot_run_keeps_the_default_and_the_plan_says_so(repo, saved_model):
    manifest = mlflow_package(repo, saved_model)
    saved_with_python(manifest, "3.8.18")
    package = load_package(manifest)
    assert package.manifest.inference.environment.python == "3.11"
    assert (
        "saved with Python 3.8 and is served with Python 3.11 (the runtime needs 3.9 or newer)"
        in mlflow_notes(package)[1]
    )


def test_a_model_with_only_a_conda_file_is_locked_from_it(repo, saved_model):
    """MLflow before 1.20 wrote conda.yaml and no requirements.txt; Azure built its environment from it."""
    manifest = mlflow_package(repo, saved_model)
    (manifest.parent / "model" / "requirements.txt").unlink()
    package = load_package(manifest)
    assert package.conda_file == manifest.parent / "model" / "conda.yaml"
    assert package.declares_models_environment
    requirements = read_requirements(package).requirements
    assert any(r.startswith("mlflow-skinny==") for r in requirements), requirements
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert not any(r.startswith(("mlflow==", "python", "pip")) for r in requirements), requirements
    assert "(mlflow installed as mlflow-skinny)" in mlflow_notes(package)[0]
