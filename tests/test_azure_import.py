"""`reconciler import azure`: a valid package.yaml from an Azure project, nothing lost silently."""

from __future__ import annotations

import re
import shutil
import textwrap

import pytest
import yaml

from reconciler.spec.package import load_package

from .conftest import EXAMPLES, run_cli

DEPLOYMENT = """\
    $schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
    name: blue
    endpoint_name: Credit-Scoring
    model:
      path: ../../model-1/model/
    code_configuration:
      code: ../../model-1/onlinescoring/
      scoring_script: score.py
    environment:
      conda_file: ../../model-1/environment/conda.yaml
      image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
    instance_type: Standard_DS3_v2
    instance_count: 2
    app_insights_enabled: true
    environment_variables:
      MODEL_MODE: fast
      STORAGE_ACCOUNT_KEY: do-not-copy-me
    request_settings:
      request_timeout_ms: 3000
      max_concurrent_requests_per_instance: 4
      max_queue_wait_ms: 500
"""

CONDA = """\
    name: model-env
    channels: [conda-forge]
    dependencies:
      - python=3.11
      - pip
      - pip:
          - azureml-defaults
          - joblib
"""


@pytest.fixture
def azure_project(repo):
    """The layout of Azure's own CLI v2 examples (azureml-examples/cli/endpoints/online)."""
    (repo / "model-1" / "model").mkdir(parents=True)
    shutil.copy(EXAMPLES / "sklearn-regression" / "model" / "sklearn_regression_model.pkl", repo / "model-1" / "model")
    (repo / "model-1" / "onlinescoring").mkdir()
    shutil.copy(EXAMPLES / "sklearn-regression" / "score.py", repo / "model-1" / "onlinescoring")
    (repo / "model-1" / "environment").mkdir()
    (repo / "model-1" / "environment" / "conda.yaml").write_text(textwrap.dedent(CONDA))
    (repo / "endpoints" / "online").mkdir(parents=True)
    deployment = repo / "endpoints" / "online" / "blue-deployment.yml"
    deployment.write_text(textwrap.dedent(DEPLOYMENT))
    return deployment


def test_a_v2_deployment_becomes_a_valid_package_and_every_loss_is_listed(azure_project):
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest_path = azure_project.parent / "package.yaml"
    text = manifest_path.read_text()
    assert "do-not-copy-me" not in text  # a secret's value never lands in the manifest
    for lost in (
        "environment.image mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
        "environment_variables.STORAGE_ACCOUNT_KEY: looks like a secret",
        "request_settings.max_queue_wait_ms",
        "instance_count 2",
        "app_insights_enabled",
        "instance_type",
    ):
        assert f"not carried over: {lost}" in result.stdout, lost
        assert lost in text, lost  # and as a comment in the manifest itself
    assert "1 package(s) valid" in result.stdout
    package = load_package(manifest_path)
    manifest = package.manifest
    assert manifest.name == "credit-scoring"
    assert [(m.name, m.version, m.path) for m in manifest.models] == [("model", 1, "../../model-1/model")]
    assert package.entry_script.read_text().startswith((EXAMPLES / "sklearn-regression" / "score.py").read_text()[:40])
    environment = manifest.inference.environment
    assert environment.conda_file == "../../model-1/environment/conda.yaml"
    assert environment.variables == {"MODEL_MODE": "fast", "MAX_CONCURRENT_REQUESTS_PER_INSTANCE": 4}
    assert manifest.inference.secrets == ["STORAGE_ACCOUNT_KEY"]
    assert manifest.inference.server.timeout_ms == 3000
    assert manifest.output.mode == "container"


def test_kubernetes_mode_carries_the_instance_count(azure_project):
    result = run_cli("import", "azure", str(azure_project), "--mode", "kubernetes")
    text = (azure_project.parent / "package.yaml").read_text()
    assert "replicas: 2" in text and "instance_count" not in result.stdout
    assert "output.mode kubernetes needs output.image.registry" in result.stderr  # validate says what is left to do
    assert result.returncode == 1


def test_an_existing_manifest_is_never_overwritten_without_force(azure_project):
    existing = azure_project.parent / "package.yaml"
    existing.write_text("# mine\n")
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 1 and "exists already" in result.stderr
    assert existing.read_text() == "# mine\n"
    assert run_cli("import", "azure", str(azure_project), "--force").returncode == 0
    assert existing.read_text().startswith("# Imported from blue-deployment.yml")


def test_a_registry_model_is_listed_and_a_local_copy_can_stand_in(azure_project):
    azure_project.write_text(
        azure_project.read_text().replace("model:\n  path: ../../model-1/model/", "model: azureml:credit-model:3")
    )
    result = run_cli("import", "azure", str(azure_project))
    assert "not carried over: model azureml:credit-model:3: a registry reference" in result.stdout
    assert result.returncode == 1 and "models" in result.stderr  # no model: validate says so
    downloaded = azure_project.parent.parent.parent / "model-1" / "model"
    result = run_cli("import", "azure", str(azure_project), "--force", "--model", f"{downloaded}=credit-model:3")
    assert result.returncode == 0, result.stdout + result.stderr
    [model] = load_package(azure_project.parent / "package.yaml").manifest.models
    assert (model.name, model.version) == ("credit-model", 3)


def test_sdk_v1_arguments_become_a_valid_package(repo):
    app = repo / "sklearn"
    shutil.copytree(EXAMPLES / "sklearn-regression", app, ignore=shutil.ignore_patterns("build", "package.*"))
    result = run_cli(
        "import",
        "azure",
        "--entry-script",
        str(app / "score.py"),
        "--requirements",
        str(app / "requirements.txt"),
        "--model",
        f"{app / 'model' / 'sklearn_regression_model.pkl'}=sklearn_regression_model:1",
        "--directory",
        str(app),
        "--mode",
        "dockerfile",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = load_package(app / "package.yaml").manifest
    assert manifest.name == "sklearn" and manifest.output.mode == "dockerfile"
    assert [(m.name, m.version, m.path) for m in manifest.models] == [
        ("sklearn_regression_model", 1, "model/sklearn_regression_model.pkl")
    ]
    assert manifest.inference.environment.requirements == "requirements.txt"
    assert (manifest.inference.entry_script, manifest.inference.source_directory) == ("score.py", ".")


def test_import_without_a_source_says_what_to_give(repo):
    result = run_cli("import", "azure", cwd=repo)
    assert result.returncode == 1
    assert "give a deployment YAML, or --entry-script and --model" in result.stderr


MODEL_ASSET = """\
    $schema: https://azuremlschemas.azureedge.net/latest/model.schema.json
    name: credit-model
    version: {version}
    path: ../model-1/model/
"""
ENVIRONMENT_ASSET = """\
    $schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json
    name: credit-env
    version: 4
    image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
    conda_file: ../model-1/environment/conda.yaml
"""


def test_references_resolve_through_the_asset_yamls_the_repository_defines(azure_project):
    assets = azure_project.parent.parent.parent / "assets"
    assets.mkdir()
    (assets / "model-2.yml").write_text(textwrap.dedent(MODEL_ASSET.format(version=2)))
    (assets / "model-1.yml").write_text(textwrap.dedent(MODEL_ASSET.format(version=1)))
    (assets / "environment.yml").write_text(textwrap.dedent(ENVIRONMENT_ASSET))
    text = azure_project.read_text()
    text = text.replace("model:\n  path: ../../model-1/model/", "model: azureml:credit-model@latest")
    text = text.replace(
        "environment:\n  conda_file: ../../model-1/environment/conda.yaml\n"
        "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
        "environment: azureml:credit-env:4",
    )
    azure_project.write_text(text)
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = load_package(azure_project.parent / "package.yaml").manifest
    assert [(m.name, m.version, m.path) for m in manifest.models] == [("credit-model", 2, "../../model-1/model")]
    assert manifest.inference.environment.conda_file == "../../model-1/environment/conda.yaml"
    assert "not carried over: environment.image mcr.microsoft.com/azureml" in result.stdout

    azure_project.write_text(text.replace("azureml:credit-model@latest", "azureml:credit-model:7"))
    result = run_cli("import", "azure", str(azure_project), "--force")
    assert result.returncode == 1
    assert (
        "blue-deployment.yml:4: model: no model asset in this repository is azureml:credit-model:7 "
        "(defined here: azureml:credit-model:1, azureml:credit-model:2)" in result.stderr
    )


def test_a_kubernetes_deployment_becomes_kubernetes_mode_with_its_resources(azure_project):
    text = azure_project.read_text().replace("instance_type: Standard_DS3_v2\n", "")
    azure_project.write_text(
        "type: kubernetes\n"
        + text
        + "resources:\n  requests: {cpu: '0.1', memory: 0.5Gi}\n  limits: {cpu: '0.5', memory: 1Gi}\n"
    )
    result = run_cli("import", "azure", str(azure_project))
    manifest = (azure_project.parent / "package.yaml").read_text()
    assert "mode: kubernetes" in manifest and "replicas: 2" in manifest
    assert "resources:\n    cpu: '0.5'\n    memory: 1Gi" in manifest
    assert "not carried over: resources" not in result.stdout


def test_a_known_instance_type_becomes_the_resources_it_gives(azure_project):
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 0, result.stdout + result.stderr
    resources = load_package(azure_project.parent / "package.yaml").manifest.output.resources
    assert (resources.cpu, resources.memory) == ("4", "14Gi")  # Standard_DS3_v2: 4 vCPUs, 14 GiB
    azure_project.write_text(azure_project.read_text().replace("Standard_DS3_v2", "Standard_Made_Up"))
    result = run_cli("import", "azure", str(azure_project), "--force")
    assert "not carried over: instance_type Standard_Made_Up: not a type reconciler knows" in result.stdout


def test_a_template_placeholder_is_named_with_its_line(azure_project):
    text = azure_project.read_text().replace("scoring_script: score.py", "scoring_script: <SCORING_SCRIPT>")
    azure_project.write_text(text.replace("endpoint_name: Credit-Scoring", "endpoint_name: {{ENDPOINT_NAME}}"))
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 1
    assert "blue-deployment.yml:3: still holds the template placeholder {{ENDPOINT_NAME}}" in result.stderr
    assert "blue-deployment.yml:8: still holds the template placeholder <SCORING_SCRIPT>" in result.stderr
    assert not (azure_project.parent / "package.yaml").exists()


def test_an_mlflow_model_without_a_scoring_script_imports_as_a_no_code_package(azure_project):
    """Azure's no-code deployment: the model is served by MLflow's loader, with its own environment."""
    text = azure_project.read_text().replace(
        "model:\n  path: ../../model-1/model/", "model:\n  type: mlflow_model\n  path: ../../model-1/model/"
    )
    text = text.replace("  scoring_script: score.py\n", "")
    azure_project.write_text(text.replace("  conda_file: ../../model-1/environment/conda.yaml\n", ""))
    model = azure_project.parents[2] / "model-1" / "model"
    (model / "MLmodel").write_text("flavors:\n  python_function: {loader_module: mlflow.sklearn}\n")
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = yaml.safe_load((azure_project.parent / "package.yaml").read_text())
    assert manifest["models"][0]["type"] == "mlflow_model"
    assert "entry_script" not in manifest["inference"] and "1 package(s) valid" in result.stdout


def test_a_data_collector_becomes_data_collection(azure_project):
    azure_project.write_text(
        azure_project.read_text()
        + textwrap.dedent(
            """\
            data_collector:
              collections:
                model_inputs: {enabled: 'True'}
                model_outputs: {enabled: 'True'}
                request: {enabled: 'True'}
              sampling_rate: 1.0
            """
        )
    )
    result = run_cli("import", "azure", str(azure_project))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = yaml.safe_load((azure_project.parent / "package.yaml").read_text())
    assert manifest["inference"]["data_collection"] == {"payload": True}
    assert "not carried over: data_collector: collected to data-collection/" in result.stdout
    assert load_package(azure_project.parent / "package.yaml").data_collection_directory.name == "data-collection"


def test_a_registered_mlflow_model_passed_with_model_is_served_with_no_code(azure_project):
    """Azure's deploy-with-packages/mlflow-model: `model: azureml:NAME@latest`, registered from a
    folder with an MLmodel by `az ml model create --type mlflow_model`, and no scoring script."""
    text = azure_project.read_text().replace("model:\n  path: ../../model-1/model/\n", "model: azureml:heart@latest\n")
    text = text.replace("  scoring_script: score.py\n", "")
    azure_project.write_text(text.replace("  conda_file: ../../model-1/environment/conda.yaml\n", ""))
    model = azure_project.parents[2] / "model-1" / "model"
    (model / "MLmodel").write_text("flavors:\n  python_function: {loader_module: mlflow.sklearn}\n")
    result = run_cli("import", "azure", str(azure_project), "--model", f"{model}=heart:3")
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = yaml.safe_load((azure_project.parent / "package.yaml").read_text())
    assert manifest["models"] == [
        {"name": "heart", "version": 3, "path": "../../model-1/model", "type": "mlflow_model"}
    ]


def test_conda_file_stands_in_for_an_environment_registered_elsewhere(azure_project):
    """Azure's managed/sample/*-with-registered-assets.yml: `environment: azureml:my-env:1`,
    registered by the example's script, while the repository defines another environment."""
    (azure_project.parents[2] / "env.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\n"
        "name: other-env\nconda_file: model-1/environment/conda.yaml\n"
    )
    text = re.sub(r"environment:\n(  .*\n)+", "environment: azureml:my-env:1\n", azure_project.read_text(), count=1)
    azure_project.write_text(text)
    refused = run_cli("import", "azure", str(azure_project))
    assert refused.returncode == 1 and "no environment asset in this repository is azureml:my-env:1" in refused.stderr
    conda = azure_project.parents[2] / "model-1" / "environment" / "conda.yaml"
    result = run_cli("import", "azure", str(azure_project), "--conda-file", str(conda))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = yaml.safe_load((azure_project.parent / "package.yaml").read_text())
    assert manifest["inference"]["environment"]["conda_file"] == "../../model-1/environment/conda.yaml"
    assert "not carried over: environment: --conda-file stands in for it" in result.stdout
