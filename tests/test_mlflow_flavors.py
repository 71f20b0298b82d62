"""MLflow's LightGBM and XGBoost flavors with no entry script, in their images: models saved
by `mlflow.lightgbm` and `mlflow.xgboost` themselves, locked from their own requirements.txt,
built, and asked in Azure's format. LightGBM's wheel needs the system's OpenMP (libgomp.so.1),
which python:3.11-slim (and the test base image) lacks: the build's import check says so and
names the Debian package, and with it in `system_packages` the model serves."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from .conftest import PROXY_IMAGE, remove_package_objects, run_cli
from .runtime_helpers import free_port
from .test_mlflow import mlflow_package

pytestmark = pytest.mark.docker

COLUMNS = ["age", "bmi", "sex"]
ROWS = [[0.2, 0.5, 1.0], [0.9, 0.1, 0.0]]


def training_frame() -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.DataFrame(np.random.default_rng(0).uniform(0, 1, size=(200, 3)), columns=COLUMNS)
    return frame, frame.age * 2 + frame.bmi


@pytest.fixture(scope="module")
def lightgbm_model(tmp_path_factory) -> tuple[Path, list[float]]:
    """A LightGBM booster saved by mlflow.lightgbm, and what it predicts for ROWS here."""
    import lightgbm
    import mlflow
    from mlflow.models import infer_signature

    frame, target = training_frame()
    booster = lightgbm.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 7}, lightgbm.Dataset(frame, target), 20
    )
    folder = tmp_path_factory.mktemp("lightgbm") / "model"
    mlflow.lightgbm.save_model(booster, str(folder), signature=infer_signature(frame, booster.predict(frame)))
    return folder, booster.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()


@pytest.fixture(scope="module")
def xgboost_model(tmp_path_factory) -> tuple[Path, list[float]]:
    """An XGBoost regressor saved by mlflow.xgboost, and what it predicts for ROWS here."""
    import mlflow
    import xgboost
    from mlflow.models import infer_signature

    frame, target = training_frame()
    model = xgboost.XGBRegressor(n_estimators=20).fit(frame, target)
    folder = tmp_path_factory.mktemp("xgboost") / "model"
    mlflow.xgboost.save_model(model, str(folder), signature=infer_signature(frame, model.predict(frame)))
    # MLflow lists both the CPU build installed here and `xgboost`, which provide the same
    # module; the full one brings 200 MB of CUDA libraries. A CPU host keeps the CPU build.
    requirements = folder / "requirements.txt"
    lines = requirements.read_text().splitlines()
    requirements.write_text("".join(f"{line}\n" for line in lines if not line.startswith("xgboost==")))
    return folder, model.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()


def flavored_package(repo, model: Path, base_image: str) -> tuple[Path, str, int]:
    port, name = free_port(), f"fl{uuid.uuid4().hex[:10]}"
    manifest = mlflow_package(
        repo,
        model,
        f"""inference: {{environment: {{base_image: {base_image}}}}}
        output: {{mode: container, container: {{port: {port}, proxy_image: "{PROXY_IMAGE}"}}}}""",
        name=name,
    )
    return manifest, name, port


def azure_request(port: int) -> requests.Response:
    body = {"input_data": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}}
    return requests.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)


def test_a_lightgbm_model_needs_openmp_the_check_says_so_and_with_it_serves(
    repo, lightgbm_model, base_image, docker_client
):
    folder, predicted = lightgbm_model
    manifest, name, port = flavored_package(repo, folder, base_image)
    try:
        failed = run_cli("apply", str(manifest.parent), cwd=repo, timeout=900)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert (
            "the MLflow model diabetes imports lightgbm, which needs the system library libgomp.so.1, which the image "
            "does not have: add libgomp1 to inference.environment.system_packages" in failed.stdout + failed.stderr
        )
        text = manifest.read_text()
        manifest.write_text(
            text.replace(f"base_image: {base_image}", f"base_image: {base_image}, system_packages: [libgomp1]")
        )
        applied = run_cli("apply", str(manifest.parent), cwd=repo, timeout=900)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        answer = azure_request(port)
        assert answer.status_code == 200, answer.text
        assert answer.json() == pytest.approx(predicted)
    finally:
        remove_package_objects(docker_client, name)


def test_an_xgboost_model_serves(repo, xgboost_model, base_image, docker_client):
    folder, predicted = xgboost_model
    manifest, name, port = flavored_package(repo, folder, base_image)
    try:
        applied = run_cli("apply", str(manifest.parent), cwd=repo, timeout=900)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        answer = azure_request(port)
        assert answer.status_code == 200, answer.text
        assert answer.json() == pytest.approx(predicted, rel=1e-5)
    finally:
        remove_package_objects(docker_client, name)
