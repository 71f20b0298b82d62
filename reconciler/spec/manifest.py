"""The `package.yaml` manifest: the user's contract, as pydantic models.

These models are the single source of truth for the manifest: the JSON schema in
`schemas/package.schema.json` is generated from them (`reconciler schema`), and a
test keeps the two in step. Validation here is about shape and values; whether
files exist and stay inside the repository is checked by `loader`.

Every string that reaches the generated Dockerfile is constrained by a pattern
(no newlines, quotes, `$` or leading `-` where they could change its meaning).
"""

from __future__ import annotations

from typing import Annotated, Literal

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

PACKAGE_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"
RELATIVE_PATH = r"^[^/\s][^\n\r\t]*$"
PYTHON_SCRIPT = r"^[^/\s][^\n\r\t]*\.py$"
PYTHON_VERSION = r"^3\.(9|1[0-9])$"
IMAGE_REFERENCE = r"^[a-z0-9][A-Za-z0-9._/:@-]{0,254}$"
REPOSITORY = r"^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$"
REGISTRY = r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"
DEBIAN_PACKAGE = r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_VALUE = r"^[^\n\r\x00]*$"
CONTAINER_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$"
BIND_ADDRESS = r"^(127\.0\.0\.1|0\.0\.0\.0|localhost|::1|::)$"
REQUIREMENT = r"^[A-Za-z0-9][^\n\r]*$"
DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
INDEX_URL = r"^https?://[^\s]+$"
CPU_QUANTITY = r"^([1-9][0-9]{0,5}m|[0-9]{1,4}(\.[0-9]{1,3})?)$"
MEMORY_QUANTITY = r"^[1-9][0-9]{0,9}(Ki|Mi|Gi|Ti|k|M|G|T)?$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
LOG_SIZE = r"^[1-9][0-9]{0,5}[kmg]$"

# What a person should read instead of a regular expression when a value is refused.
PATTERN_HINTS = {
    PACKAGE_NAME: "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    MODEL_NAME: "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    RELATIVE_PATH: "use a path relative to the manifest's folder, on one line",
    PYTHON_SCRIPT: "use a .py file relative to the source directory, on one line",
    PYTHON_VERSION: 'use a quoted Python version from "3.9" to "3.19", such as "3.11"',
    IMAGE_REFERENCE: "use an image reference such as python:3.11-slim or registry:5000/team/base:1",
    REPOSITORY: "use lowercase path components such as team/sklearn-regression",
    REGISTRY: "use HOST or HOST:PORT, such as 127.0.0.1:5000",
    DEBIAN_PACKAGE: "use a Debian package name such as libgomp1 (optionally =VERSION)",
    ENV_NAME: "use letters, digits and '_', not starting with a digit",
    ENV_VALUE: "values must fit on one line",
    CONTAINER_NAME: "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    BIND_ADDRESS: "use 127.0.0.1 (the default), ::1, localhost, or 0.0.0.0 to listen on every interface",
    REQUIREMENT: "use a requirement such as scikit-learn==1.5.2 (no pip options)",
    DNS_LABEL: "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
    INDEX_URL: "use an http(s) URL such as https://pypi.example.com/simple",
    CPU_QUANTITY: 'use cores such as "1", "0.5" or millicores such as "500m"',
    MEMORY_QUANTITY: "use bytes with a unit such as 512Mi or 2Gi",
    LABEL_KEY: "use a Kubernetes label key such as team or example.com/team",
    LABEL_VALUE: "use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    LOG_SIZE: "use a size with k, m or g, such as 20m",
}

DEFAULT_CONTAINER_MEMORY = "4Gi"  # a container-mode limit unless output.resources.memory says otherwise

# Set by reconciler from the manifest; a variable cannot override them.
RESERVED_VARIABLES = frozenset(
    {
        "AZUREML_MODEL_DIR",
        "AZUREML_ENTRY_SCRIPT",
        "AML_APP_ROOT",
        "WORKER_COUNT",
        "SCORING_TIMEOUT_MS",
        "PATH",
        "VIRTUAL_ENV",
        "PYTHONPATH",
    }
)


def _pattern(regex: str, **kwargs) -> type[str]:
    return Annotated[str, StringConstraints(pattern=regex), Field(**kwargs)]


def _valid_requirement(text: str) -> str:
    try:
        Requirement(text)
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"not a valid requirement: {reason}") from None
    return text


PipRequirement = Annotated[
    str, StringConstraints(pattern=REQUIREMENT, max_length=500), AfterValidator(_valid_requirement)
]
SecretName = Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=256)]
VariableValue = Annotated[str, StringConstraints(pattern=ENV_VALUE, max_length=32_768)] | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelRef(_Strict):
    """A trained model: a file or folder copied into the image in Azure's layout."""

    name: _pattern(MODEL_NAME, description="Model name; the folder under azureml-models/.")
    version: int = Field(ge=1, le=1_000_000, description="Model version; the folder under the name.")
    path: _pattern(RELATIVE_PATH, description="File or folder, relative to the manifest's folder.")


class Environment(_Strict):
    """What the image is built from: Python, base image, dependencies."""

    python: _pattern(PYTHON_VERSION, description='Python version of the base image, quoted: "3.11".') = "3.11"
    base_image: (
        _pattern(IMAGE_REFERENCE, description="Base image with that Python. Default: python:<python>-slim.") | None
    ) = None
    platform: Literal["linux/amd64", "linux/arm64"] = Field(
        "linux/amd64", description="Target platform for dependencies and the image."
    )
    requirements: (
        _pattern(RELATIVE_PATH, description="A pip requirements file, relative to the manifest's folder.") | None
    ) = None
    pip: list[PipRequirement] | None = Field(
        None, description="Requirements written inline; use this or `requirements`, not both."
    )
    conda_file: (
        _pattern(
            RELATIVE_PATH,
            description="A conda environment file (Azure's conda_file), relative to the manifest's folder: its "
            "python=3.x sets the Python version, its pip: section and its conda packages (mapped to their PyPI "
            "names) are locked as wheels. Instead of `requirements` or `pip`.",
        )
        | None
    ) = None
    index_url: (
        _pattern(INDEX_URL, description="A package index to resolve from instead of pip's own configuration.") | None
    ) = None
    system_packages: list[_pattern(DEBIAN_PACKAGE)] = Field(
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
    def _one_requirements_source(self) -> Environment:
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


class Server(_Strict):
    """Settings of the scoring server inside the image."""

    workers: int = Field(1, ge=1, le=64, description="Worker processes serving on one port.")
    timeout_ms: int = Field(60_000, ge=1, le=86_400_000, description="Longest a run() call may take before a 500.")


class Inference(_Strict):
    """The code that serves the models (an Azure ML entry script) and its environment."""

    entry_script: _pattern(
        PYTHON_SCRIPT, description="Script with init() and run(raw_data), relative to source_directory."
    ) = "score.py"
    source_directory: _pattern(
        RELATIVE_PATH, description="Folder copied into the image as the app, relative to the manifest."
    ) = "."
    environment: Environment = Field(default_factory=Environment)
    server: Server = Field(default_factory=Server)
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
    def _secrets_are_not_variables(self) -> Inference:
        both = sorted(set(self.secrets).intersection(self.environment.variables))
        if both:
            raise ValueError(f"{', '.join(both)} is both a secret and an environment variable of the image")
        return self

    @property
    def secret_sources(self) -> dict[str, str]:
        """Each secret's name in the container -> the name its value is read from."""
        return dict(self.secrets) if isinstance(self.secrets, dict) else {name: name for name in self.secrets}


class ImageOutput(_Strict):
    repository: _pattern(REPOSITORY, description="Image repository. Default: the package name.") | None = None
    registry: _pattern(REGISTRY, description="Registry HOST:PORT to push to.") | None = None
    push: bool = Field(False, description="Push after a successful build (needs `registry`).")
    keep: int = Field(
        3,
        ge=1,
        le=1000,
        description="Images of this package kept after a build: those built or served from most recently; "
        "the others are removed unless a container runs them.",
    )

    @model_validator(mode="after")
    def _push_needs_registry(self) -> ImageOutput:
        if self.push and not self.registry:
            raise ValueError("`push: true` needs `registry: HOST:PORT`")
        return self


class Resources(_Strict):
    """What one serving container may use: limits on the container in container mode,
    requests and limits on the pod in kubernetes mode."""

    cpu: _pattern(CPU_QUANTITY, description='CPU cores, "1", "0.5" or "500m".') | None = None
    memory: (
        _pattern(
            MEMORY_QUANTITY,
            description=f"Memory, such as 512Mi or 2Gi. container mode: {DEFAULT_CONTAINER_MEMORY} unless set.",
        )
        | None
    ) = None
    gpus: int = Field(0, ge=0, le=64, description="NVIDIA GPUs (kubernetes: nvidia.com/gpu limits).")

    @property
    def cpu_cores(self) -> float | None:
        if self.cpu is None:
            return None
        return int(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else memory_bytes(self.memory)


def memory_bytes(quantity: str) -> int:
    """512Mi, 2Gi, 1G or plain bytes, in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


class Autoscale(_Strict):
    min: int = Field(1, ge=1, le=1000, description="Fewest replicas.")
    max: int = Field(ge=1, le=1000, description="Most replicas.")
    cpu_percent: int = Field(80, ge=1, le=1000, description="Average CPU use, in percent of the request, to aim for.")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscale:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class KubernetesOutput(_Strict):
    """kubernetes mode: a folder of manifests that Argo CD, Flux or `kubectl apply -k` deploy."""

    directory: (
        _pattern(RELATIVE_PATH, description="Manifests folder, relative to the manifest. Default: deploy/<name>.")
        | None
    ) = None
    namespace: _pattern(DNS_LABEL, description="Namespace of every object. Default: none (the sync tool's).") | None = (
        None
    )
    replicas: int = Field(1, ge=0, le=1000, description="Pods serving the model (without autoscale).")
    autoscale: Autoscale | None = Field(None, description="A HorizontalPodAutoscaler on CPU instead of replicas.")
    service_port: int = Field(80, ge=1, le=65535, description="The Service's port, forwarded to the container's 5001.")
    image_pull_secret: _pattern(DNS_LABEL, description="A Secret (you manage it) to pull the image with.") | None = None
    secret_name: (
        _pattern(
            DNS_LABEL, description="The Secret (you manage it) holding inference.secrets. Default: <name>-secrets."
        )
        | None
    ) = None
    labels: dict[
        Annotated[str, StringConstraints(pattern=LABEL_KEY)], Annotated[str, StringConstraints(pattern=LABEL_VALUE)]
    ] = Field(default_factory=dict, description="Labels added to every object and pod.")
    annotations: dict[
        Annotated[str, StringConstraints(pattern=LABEL_KEY)], Annotated[str, StringConstraints(max_length=4096)]
    ] = Field(default_factory=dict, description="Annotations added to every object and pod.")


class Security(_Strict):
    """How tightly a serving container is confined. Every default is the safe one: relax only
    what the model needs, by name."""

    read_only_root: bool = Field(
        True, description="The root filesystem is read-only and /tmp a tmpfs. false: the model may write anywhere."
    )
    tmp_size: _pattern(MEMORY_QUANTITY, description="Size of the /tmp tmpfs (it counts as memory).") = "1Gi"
    drop_capabilities: bool = Field(True, description="Drop every Linux capability. false: keep Docker's defaults.")
    no_new_privileges: bool = Field(True, description="No process can gain privileges (setuid, file capabilities).")
    pids_limit: int = Field(1024, ge=0, le=4_194_304, description="Most processes and threads at once; 0: no limit.")


class Logs(_Strict):
    """Container logs rotate: a busy model logs a line per request."""

    max_size: _pattern(LOG_SIZE, description="Size of one log file before it rotates, such as 20m.") = "20m"
    max_files: int = Field(5, ge=1, le=100, description="Log files kept per container.")


class ContainerOutput(_Strict):
    name: _pattern(CONTAINER_NAME, description="Container name. Default: the package name.") | None = None
    port: int = Field(6789, ge=1, le=65535, description="Host port published for the container's 5001.")
    host: _pattern(BIND_ADDRESS, description="Host address the port is published on.") = "127.0.0.1"
    ready_timeout_s: int = Field(
        120, ge=1, le=3600, description="How long a new container may take to become ready (init() to return)."
    )
    proxy: bool = Field(
        True,
        description="A reverse proxy owns the published port: an update moves traffic to the new container once "
        "it is ready and drains the old one, so no request is refused. false: the container publishes the port "
        "itself, and an update has a gap of about one init().",
    )
    proxy_image: _pattern(IMAGE_REFERENCE, description="The reverse proxy's image (HAProxy).") = "haproxy:3.0-alpine"
    security: Security = Field(default_factory=Security)
    logs: Logs = Field(default_factory=Logs)


# The rules of Output._kubernetes_needs, for editors and CI that validate with the JSON schema.
_OUTPUT_RULES = {
    "allOf": [
        {
            "if": {"properties": {"mode": {"const": "kubernetes"}}, "required": ["mode"]},
            "then": {"properties": {"image": {"required": ["registry"]}}, "required": ["image"]},
        },
        {
            "if": {
                "properties": {
                    "mode": {"const": "kubernetes"},
                    "kubernetes": {"required": ["autoscale"], "properties": {"autoscale": {"type": "object"}}},
                },
                "required": ["mode", "kubernetes"],
            },
            "then": {"properties": {"resources": {"required": ["cpu"]}}, "required": ["resources"]},
        },
    ]
}


class Output(_Strict):
    model_config = ConfigDict(json_schema_extra=_OUTPUT_RULES)

    mode: Literal["dockerfile", "image", "container", "kubernetes"] = Field(
        "dockerfile",
        description="dockerfile: write a build folder; image: also build it; container: also run it; "
        "kubernetes: build, push, and write Kubernetes manifests that pin the pushed digest.",
    )
    directory: (
        _pattern(RELATIVE_PATH, description="Build folder, relative to the manifest. Default: build/<name>.") | None
    ) = None
    image: ImageOutput = Field(default_factory=ImageOutput)
    container: ContainerOutput = Field(default_factory=ContainerOutput)
    kubernetes: KubernetesOutput = Field(default_factory=KubernetesOutput)
    resources: Resources = Field(default_factory=Resources)

    @property
    def container_memory_bytes(self) -> int:
        """A serving container's memory limit in container mode: there is always one."""
        return memory_bytes(self.resources.memory or DEFAULT_CONTAINER_MEMORY)

    @model_validator(mode="after")
    def _kubernetes_needs(self) -> Output:
        if self.mode == "kubernetes" and not self.image.registry:
            raise ValueError("output.mode kubernetes needs output.image.registry: the cluster pulls the image from it")
        if self.mode == "kubernetes" and self.kubernetes.autoscale and not self.resources.cpu:
            raise ValueError("kubernetes.autoscale scales on CPU use relative to a request: set resources.cpu")
        return self


class Manifest(_Strict):
    """A model package: what to serve, how, and what to produce."""

    model_config = ConfigDict(
        title="reconciler package manifest (package.yaml)",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    name: _pattern(PACKAGE_NAME, description="Package name, unique across the repository.")
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
