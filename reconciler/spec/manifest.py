"""The `package.yaml` manifest: the user's contract, as pydantic models.

These models are the single source of truth for the manifest: the JSON schema in
`schemas/package.schema.json` is generated from them (`reconciler schema`), and a
test keeps the two in step. Validation here is about shape and values (`fields` holds the
patterns, `output` the output block); whether files exist and stay inside the repository
is checked by `package`.
"""

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from reconciler.spec.fields import (
    DEBIAN_PACKAGE,
    ENV_NAME,
    IMAGE_REFERENCE,
    INDEX_URL,
    MODEL_NAME,
    PACKAGE_NAME,
    PYTHON_SCRIPT,
    PYTHON_VERSION,
    RELATIVE_PATH,
    RESERVED_VARIABLES,
    PipRequirement,
    SecretName,
    Strict,
    VariableValue,
    pattern,
)
from reconciler.spec.output import Output


class ModelRef(Strict):
    """A trained model: a file or folder copied into the image in Azure's layout."""

    name: pattern(MODEL_NAME, description="Model name; the folder under azureml-models/.")
    version: int = Field(ge=1, le=1_000_000, description="Model version; the folder under the name.")
    path: pattern(RELATIVE_PATH, description="File or folder, relative to the manifest's folder.")
    type: Literal["custom_model", "mlflow_model"] = Field(
        "custom_model",
        description="Azure's model types. mlflow_model: a folder with an MLmodel file; with no entry script, it is "
        "served through MLflow's pyfunc loader (Azure's no-code deployment).",
    )


class Environment(Strict):
    """What the image is built from: Python, base image, dependencies."""

    python: pattern(PYTHON_VERSION, description='Python version of the base image, quoted: "3.11".') = "3.11"
    base_image: (
        pattern(IMAGE_REFERENCE, description="Base image with that Python. Default: python:<python>-slim.") | None
    ) = None
    platform: Literal["linux/amd64", "linux/arm64"] = Field(
        "linux/amd64", description="Target platform for dependencies and the image."
    )
    requirements: (
        pattern(RELATIVE_PATH, description="A pip requirements file, relative to the manifest's folder.") | None
    ) = None
    pip: list[PipRequirement] | None = Field(
        None, description="Requirements written inline; use this or `requirements`, not both."
    )
    conda_file: (
        pattern(
            RELATIVE_PATH,
            description="A conda environment file (Azure's conda_file), relative to the manifest's folder: its "
            "python=3.x sets the Python version, its pip: section and its conda packages (mapped to their PyPI "
            "names) are locked as wheels. Instead of `requirements` or `pip`.",
        )
        | None
    ) = None
    index_url: (
        pattern(INDEX_URL, description="A package index to resolve from instead of pip's own configuration.") | None
    ) = None
    system_packages: list[pattern(DEBIAN_PACKAGE)] = Field(
        default_factory=list, description="Debian packages installed with apt-get (needs network at build)."
    )
    variables: dict[Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=256)], VariableValue] = Field(
        default_factory=dict, description="Environment variables set in the image."
    )

    @field_validator("variables")
    @classmethod
    def _not_reserved(cls, variables: dict) -> dict:
        reserved = sorted(RESERVED_VARIABLES.intersection(variables))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by reconciler and cannot be overridden")
        return variables

    @model_validator(mode="after")
    def _one_requirements_source(self) -> Self:
        given = [name for name in ("requirements", "pip", "conda_file") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(
                f"set one of `requirements` (a file), `pip` (a list) or `conda_file`, not {' and '.join(given)}"
            )
        return self

    @property
    def resolved_base_image(self) -> str:
        return self.base_image or f"python:{self.python}-slim"

    @property
    def variables_as_strings(self) -> dict[str, str]:
        """Variables as the process sees them (YAML `true` -> "true", `4` -> "4")."""
        return {
            key: (str(value).lower() if isinstance(value, bool) else str(value))
            for key, value in sorted(self.variables.items())
        }


class Server(Strict):
    """Settings of the scoring server inside the image."""

    workers: int = Field(1, ge=1, le=64, description="Worker processes serving on one port.")
    timeout_ms: int = Field(60_000, ge=1, le=86_400_000, description="Longest a run() call may take before a 500.")


class Batching(Strict):
    """Adaptive batching: concurrent requests scored by one run() call (docs/runtime.md)."""

    max_batch_size: int = Field(
        32, ge=1, le=4096, description="Most rows one run() call gets; a request with more runs alone."
    )
    max_latency_ms: int = Field(
        5,
        ge=0,
        le=1000,
        description="Longest an idle worker waits for requests already arriving to join a batch; a lone "
        "request goes at once.",
    )


class DataCollection(Strict):
    """Model data collection (Azure's azureml-ai-monitoring): what `Collector.collect()` gets, and
    with `payload` the /score bodies, as JSON Lines (docs/runtime.md)."""

    directory: pattern(
        RELATIVE_PATH,
        description="Host folder the lines land in, relative to the manifest and inside its folder; mounted "
        "writable into the container (the root stays read-only). Never an input.",
    ) = "data-collection"
    payload: bool = Field(False, description="Also the request and response body of every /score call.")
    max_payload_bytes: int = Field(65536, ge=1, le=16 * 2**20, description="Longest body kept; longer ones are cut.")


class Inference(Strict):
    """The code that serves the models (an Azure ML entry script) and its environment."""

    entry_script: pattern(
        PYTHON_SCRIPT, description="Script with init() and run(raw_data), relative to source_directory."
    ) = "score.py"
    source_directory: pattern(
        RELATIVE_PATH, description="Folder copied into the image as the app, relative to the manifest."
    ) = "."
    environment: Environment = Field(default_factory=Environment)
    server: Server = Field(default_factory=Server)
    batching: Batching | None = Field(
        None,
        description="Score concurrent requests in one run() call, split back per request: plain run(raw_data) "
        'scripts given {"data": [rows]}, and @input_schema array inputs. Off when absent.',
    )
    data_collection: DataCollection | None = Field(
        None,
        description="Collect model inputs and outputs (Collector) and, with payload, request bodies. Off when absent.",
    )
    secrets: list[SecretName] | dict[SecretName, SecretName] = Field(
        default_factory=list,
        description="Environment variables the container gets at run time, never in the image: a list of names, "
        "or a mapping from the name in the container to the name it is read from. Values come from "
        "`--secrets FILE` or reconciler's environment when it applies; in kubernetes mode, from the Secret "
        "output.kubernetes.secret_name.",
    )

    @field_validator("secrets")
    @classmethod
    def _secrets_are_not_settings(cls, secrets: list | dict) -> list | dict:
        names = list(secrets)
        reserved = sorted(RESERVED_VARIABLES.intersection(names))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} is set by reconciler and cannot be a secret")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed twice")
        return secrets

    @model_validator(mode="after")
    def _secrets_are_not_variables(self) -> Self:
        both = sorted(set(self.secrets).intersection(self.environment.variables))
        if both:
            raise ValueError(f"{', '.join(both)} is both a secret and an environment variable of the image")
        return self

    @property
    def secret_sources(self) -> dict[str, str]:
        """Each secret's name in the container -> the name its value is read from."""
        return dict(self.secrets) if isinstance(self.secrets, dict) else {name: name for name in self.secrets}


class Manifest(Strict):
    """A model package: what to serve, how, and what to produce."""

    model_config = ConfigDict(
        title="reconciler package manifest (package.yaml)",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: pattern(PACKAGE_NAME, description="Package name, unique across the repository.")
    description: str = Field("", max_length=4096, description="For people; changes no hash.")
    labels: dict[str, Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict, description="For people; changes no hash."
    )
    models: list[ModelRef] = Field(min_length=1, max_length=256)
    inference: Inference = Field(default_factory=Inference)
    output: Output = Field(default_factory=Output)

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelRef]) -> list[ModelRef]:
        seen: set[tuple[str, int]] = set()
        for model in models:
            if (model.name, model.version) in seen:
                raise ValueError(f"model {model.name} version {model.version} is listed twice")
            seen.add((model.name, model.version))
        return models

    @property
    def output_directory(self) -> str:
        return self.output.directory or f"build/{self.name}"

    @property
    def image_repository(self) -> str:
        return self.output.image.repository or self.name

    @property
    def container_name(self) -> str:
        return self.output.container.name or self.name

    @property
    def kubernetes_directory(self) -> str:
        return self.output.kubernetes.directory or f"deploy/{self.name}"


def json_schema() -> dict:
    """The JSON schema editors and CI validate package.yaml with."""
    schema = Manifest.model_json_schema()
    schema["$id"] = "https://reconciler.dev/schemas/package.schema.json"
    _close_pattern_properties(schema)
    return schema


def _close_pattern_properties(node: object) -> None:
    """pydantic writes constrained dict keys as patternProperties, which alone still
    admits keys that do not match; the models refuse those, so the schema must too."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_properties(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_properties(value)
