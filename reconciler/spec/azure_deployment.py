"""`reconciler import azure DEPLOYMENT.yml`: a CLI v2 online deployment as a package.yaml.

Managed and kubernetes deployments alike (`type: kubernetes` becomes kubernetes mode): the
model, `code_configuration`, the environment (inline, or an `azureml:` reference to an asset
YAML in the repository, see azure_assets), `environment_variables` (secret-looking ones
become runtime secrets), `request_settings`, `instance_count`, and `resources` or a known
`instance_type` as output.resources. What has no equivalent is listed, never dropped silently.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from reconciler.core.credentials import without_credentials
from reconciler.core.errors import InvalidInput, Problem
from reconciler.spec.azure_assets import (
    REFERENCE,
    Asset,
    Unresolved,
    find_assets,
    instance_resources,
    repository_root,
    resolve,
)
from reconciler.spec.azure_import import (
    CARRIED_FIELDS,
    EXPLAINED_FIELDS,
    IGNORED_FIELDS,
    Fields,
    Imported,
    ModelSource,
    model_name,
    models_section,
    package_name,
    read_azure_yaml,
    relative,
    variables_section,
)
from reconciler.spec.fields import CPU_QUANTITY, MEMORY_QUANTITY
from reconciler.spec.mlflow_model import MLMODEL
from reconciler.spec.modes import Mode
from reconciler.spec.yamldoc import YamlDocument


def from_deployment(
    path: Path,
    *,
    name: str | None,
    mode: str | None,
    extra_models: list[ModelSource],
    conda_file: Path | None = None,
) -> Imported:
    """A CLI v2 managed (or kubernetes) online deployment YAML; the manifest goes beside it.
    `azureml:` references resolve through the asset YAMLs of the repository it is in; `--model`
    and `--conda-file` (`extra_models`, `conda_file`) stand in for those registered elsewhere."""
    document = read_azure_yaml(path)
    if not isinstance(document.data, dict):
        raise InvalidInput([Problem(str(path), "a deployment YAML is a mapping (model, code_configuration, ...)", 1)])
    deployment = Deployment(path, document, extra_models, conda_file)
    data = deployment.data
    endpoint = deployment.get(("endpoint_name",), str, "a string") or deployment.get(("name",), str, "a string")
    mode = mode or ("kubernetes" if data.get("type") == "kubernetes" else "container")
    manifest: dict = {"name": package_name(name or endpoint or path.stem)}
    mlflow = deployment.models()
    manifest["models"] = models_section(deployment.sources, deployment.directory)
    inference = deployment.code(mlflow)
    if mlflow and not inference:  # no-code: the manifest's model says what serves it
        manifest["models"][0]["type"] = "mlflow_model"
    environment = deployment.environment()
    variables, secrets = variables_section(
        deployment.get(("environment_variables",), dict, "a mapping of names to values") or {},
        deployment.not_carried,
        "environment_variables",
    )
    settings = deployment.get(("request_settings",), dict, "a mapping") or {}
    timeout = deployment.get(("request_settings", "request_timeout_ms"), int, "a whole number of milliseconds")
    if timeout is not None:
        inference["server"] = {"timeout_ms": timeout}
    concurrency = deployment.get(("request_settings", "max_concurrent_requests_per_instance"), int, "a whole number")
    if concurrency is not None:
        variables["MAX_CONCURRENT_REQUESTS_PER_INSTANCE"] = concurrency
    for key in sorted(set(settings) - {"request_timeout_ms", "max_concurrent_requests_per_instance"}):
        deployment.not_carried.append(f"request_settings.{key}: no equivalent")
    if variables:
        environment["variables"] = variables
    inference["environment"] = environment
    if secrets:
        inference["secrets"] = secrets
    collection = deployment.data_collection()
    if collection is not None:
        inference["data_collection"] = collection
    manifest["inference"] = inference
    manifest["output"] = deployment.output(mode)
    for key in sorted(set(data) - IGNORED_FIELDS - CARRIED_FIELDS):
        deployment.not_carried.append(f"{key}: {EXPLAINED_FIELDS.get(key, 'no equivalent')}")
    if deployment.problems:
        raise InvalidInput(deployment.problems)
    return Imported(manifest, deployment.not_carried)


class Deployment(Fields):
    """A deployment YAML's parts, each read with its references resolved."""

    def __init__(
        self, path: Path, document: YamlDocument, extra_models: list[ModelSource], conda_file: Path | None = None
    ):
        super().__init__(path, document)
        self.conda_file = conda_file  # --conda-file: stands in for the deployment's environment
        self.data, self.directory = document.data, path.parent
        self.sources = list(extra_models)
        self.not_carried: list[str] = []
        self._assets: list[Asset] | None = None

    def assets(self) -> list[Asset]:
        if self._assets is None:
            self._assets = find_assets(repository_root(self.directory))
        return self._assets

    def asset(self, loc: tuple, reference: str, kind: str, hint: str) -> Asset | None:
        """The asset a reference names; a problem when assets of that kind exist and none is it,
        a line of what was not carried when the repository defines none (it lives in Azure)."""
        try:
            return resolve(reference, kind, self.assets())
        except Unresolved as unresolved:
            if any(a.kind == kind for a in self.assets()):
                self.problem(loc, f"{unresolved}; {hint}")
            else:
                self.not_carried.append(f"{kind} {without_credentials(reference)}: a registry reference; {hint}")
            return None

    def models(self) -> bool:
        """The deployment's model into self.sources; whether it is an MLflow model."""
        model = self.get(("model",), (str, dict), "a registry reference or a mapping with a path")
        hint = "download it (az ml model download) and pass --model PATH"
        given = bool(self.sources)  # --model: stands in for a registry reference
        if isinstance(model, str) and given:  # an MLflow model, as `az ml model create --type mlflow_model` made it
            return (self.sources[0].path / MLMODEL).is_file()
        if isinstance(model, str):
            asset = self.asset(("model",), model, "model", hint)
            if asset is not None and asset.path("path"):
                self.sources.insert(0, ModelSource(asset.path("path"), model_name(asset.name), asset.version))
                return asset.data.get("type") == "mlflow_model"
            if asset is None and REFERENCE.match(model) is None:
                self.not_carried.append(f"model {without_credentials(model)}: a registry reference; {hint}")
            return False
        if isinstance(model, dict):
            model_path = self.get(("model", "path"), str, "a path")
            if model_path and "://" not in model_path:
                source = Path(os.path.normpath(self.directory / model_path))
                self.sources.insert(
                    0,
                    ModelSource(
                        source, self.get(("model", "name"), str, "a string"), self.version(("model", "version"))
                    ),
                )
            elif model_path and not given:
                self.not_carried.append(f"model {without_credentials(model_path)}: a registry reference; {hint}")
            return model.get("type") == "mlflow_model"
        if not given and "model" not in self.data:
            self.problem(("model",), "the deployment names no model; pass --model PATH")
        return False

    def code(self, mlflow: bool) -> dict:
        """inference.entry_script and source_directory, from code_configuration; none for an
        MLflow model with no scoring script (Azure's no-code deployment: MLflow's loader serves it)."""
        code = self.get(("code_configuration",), dict, "a mapping with code and scoring_script") or {}
        script = self.get(("code_configuration", "scoring_script"), str, "a path") if code else None
        if script is None and mlflow:
            return {}
        if script is None:
            self.problem(("code_configuration",), "code_configuration.scoring_script is missing")
        code_path = self.get(("code_configuration", "code"), str, "a path") or "."
        source = Path(os.path.normpath(self.directory / code_path))
        if code_path.startswith("azureml:"):
            asset = self.asset(("code_configuration", "code"), code_path, "code", "give the folder's path instead")
            source = (asset.path("path") if asset else None) or self.directory
        return {
            "entry_script": Path(script or "score.py").as_posix(),
            "source_directory": relative(source, self.directory),
        }

    def data_collection(self) -> dict | None:
        """data_collector: its enabled collections (the script's Collector names, and `request` /
        `response` for payloads) as inference.data_collection, collected to a folder here."""
        collections = self.get(("data_collector", "collections"), dict, "a mapping of collection names")
        if not collections:
            return None
        enabled = {
            str(name)
            for name, settings in collections.items()
            if isinstance(settings, dict) and str(settings.get("enabled", "")).lower() == "true"
        }
        if not enabled:
            return None
        self.not_carried.append(
            "data_collector: collected to data-collection/ beside the manifest (inference.data_collection), "
            "not to Azure's blob storage; sampling_rate and rolling_rate are not carried"
        )
        return {"payload": True} if enabled & {"request", "response"} else {}

    def environment(self) -> dict:
        """inference.environment from an inline environment or an environment asset."""
        loc = ("environment",)
        azure_environment = self.get(loc, (str, dict), "a registry reference or a mapping")
        environment: dict = {}
        if self.conda_file is not None:
            if azure_environment is not None:
                self.not_carried.append("environment: --conda-file stands in for it")
            return {"conda_file": relative(self.conda_file, self.directory)}
        if isinstance(azure_environment, str):
            hint = "export its conda file and set environment.conda_file"
            asset = self.asset(loc, azure_environment, "environment", hint)
            if asset is None and REFERENCE.match(azure_environment) is None:
                self.not_carried.append(
                    f"environment {without_credentials(azure_environment)}: a registry reference; {hint}"
                )
            if asset is None:
                return environment
            conda_file, image, definition = asset.path("conda_file"), asset.data.get("image"), asset.data
        elif isinstance(azure_environment, dict):
            conda = self.get((*loc, "conda_file"), str, "a path")
            conda_file = Path(os.path.normpath(self.directory / conda)) if conda else None
            image, definition = self.get((*loc, "image"), str, "an image reference"), azure_environment
        else:
            return environment
        if conda_file:
            environment["conda_file"] = relative(conda_file, self.directory)
        if image:
            self.not_carried.append(
                f"environment.image {image}: Azure's base image; the package builds on "
                "python:<version>-slim (set environment.base_image for another)"
            )
        if definition.get("build"):
            self.not_carried.append("environment.build: a Docker build context; reconciler writes its own Dockerfile")
        known = {"conda_file", "image", "build", "name", "version", "description", "$schema", "tags"}
        for key in sorted(set(definition) - known):
            self.not_carried.append(f"environment.{key}: no equivalent")
        return environment

    def output(self, mode: str) -> dict:
        """output.mode, replicas, and resources from `resources` or a known instance type."""
        output: dict = {"mode": mode}
        count = self.get(("instance_count",), int, "a whole number")
        if count is not None and count != 1:
            if Mode(mode).renders_manifests:
                output["kubernetes"] = {"replicas": count}
            else:
                self.not_carried.append(
                    f"instance_count {count}: one container in {mode} mode (kubernetes mode has replicas)"
                )
        resources = self.resources()
        instance_type = self.get(("instance_type",), str, "an instance type name")
        if instance_type:
            sized = instance_resources(instance_type)
            if sized is None:
                self.not_carried.append(
                    f"instance_type {instance_type}: not a type reconciler knows the size of; "
                    "choose output.resources (cpu, memory, gpus)"
                )
            elif not resources:
                resources = sized
                self.not_carried.append(
                    f"instance_type {instance_type}: its size became output.resources {sized} "
                    "(Azure keeps part of it for its own agents: lower it if the model needs less)"
                )
        if resources:
            output["resources"] = resources
        return output

    def resources(self) -> dict:
        """A kubernetes deployment's resources.requests/limits as output.resources."""
        if self.get(("resources",), dict, "a mapping with requests and limits") is None:
            return {}
        found: dict = {}
        for part in ("limits", "requests"):  # a request where no limit is given
            values = self.get(("resources", part), dict, "a mapping of cpu and memory") or {}
            for key in ("cpu", "memory"):
                value = values.get(key)
                if value is not None and key not in found:
                    quantity = cpu_quantity(value) if key == "cpu" else memory_from_azure(value)
                    if quantity is None:
                        self.problem(("resources", part, key), f"{value!r} is not a {key} quantity")
                    else:
                        found[key] = quantity
            gpus = values.get("nvidia.com/gpu")
            if gpus is not None and "gpus" not in found:
                found["gpus"] = int(gpus) if str(gpus).isdigit() else 0
        return found


def cpu_quantity(value: object) -> str | None:
    text = str(value).strip()
    return text if re.fullmatch(CPU_QUANTITY, text) else None


def memory_from_azure(value: object) -> str | None:
    """Azure's memory quantities, fractions included ("0.5Gi"), as whole Mi when needed."""
    text = str(value).strip()
    if re.fullmatch(MEMORY_QUANTITY, text):
        return text
    match = re.fullmatch(r"([0-9]*\.[0-9]+)(Gi|Mi)", text)
    if match is None:
        return None
    mib = float(match[1]) * (1024 if match[2] == "Gi" else 1)
    return f"{max(1, math.ceil(mib))}Mi"
