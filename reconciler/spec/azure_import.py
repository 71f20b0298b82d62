"""`reconciler import azure`: a package.yaml from what an Azure ML project already has.

Two sources, as Azure projects come:

- a CLI v2 online deployment YAML: the manifest is written beside it (azure_deployment reads
  it with the pieces here: the names, the models, the variables, the typed fields);
- for SDK v1 projects, the arguments of `InferenceConfig` and `Model.package` given as
  flags: the entry script, its source folder, the conda or pip file, the model paths.

Everything that cannot be carried over (a registry reference to download, Azure's base
image, App Insights, probes, instance types) is listed in the result and as comments at
the top of the manifest, never dropped silently. Nothing existing is overwritten unless
asked.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reconciler.core.atomic import write_atomic
from reconciler.core.credentials import carries_credentials
from reconciler.core.errors import InvalidInput, Problem
from reconciler.spec.fields import ENV_NAME, RESERVED_VARIABLES
from reconciler.spec.yamldoc import MAX_MANIFEST_BYTES, YamlDocument, YamlError, load_yaml

# Names that say a secret is inside (DB_PASS, AUTH_HEADER, PRIVATE_PEM, STORAGE_SAS_URL...): such a
# variable becomes a runtime secret. A false positive costs a --secrets line; a miss, a leak.
SECRET_WORDS = re.compile(
    r"(KEY|TOKEN|SECRET|PASS|CONNECTION_?STRING|CREDENTIAL|SAS|AUTH|PEM|PRIVATE|SIGNATURE|COOKIE|SESSION|CERT)", re.I
)
IGNORED_FIELDS = frozenset({"$schema", "name", "endpoint_name", "type", "description", "tags"})
CARRIED_FIELDS = frozenset(
    {
        "model",
        "code_configuration",
        "environment",
        "environment_variables",
        "request_settings",
        "instance_count",
        "instance_type",
        "resources",
        "data_collector",
    }
)
EXPLAINED_FIELDS = {
    "app_insights_enabled": "Application Insights is not wired; requests are logged to stdout",
    "liveness_probe": "the probes are fixed: liveness GET /, readiness GET /ready (output.container.ready_timeout_s)",
    "readiness_probe": "the probes are fixed: liveness GET /, readiness GET /ready (output.container.ready_timeout_s)",
    "scale_settings": "Azure's own scaling; in kubernetes mode set output.kubernetes.autoscale (on CPU) instead",
    "egress_public_network_access": "network policy is the host's or the cluster's business",
    "private_network_connection": "network policy is the host's or the cluster's business",
    "model_mount_path": "models are copied into the image at azureml-models/<name>/<version>/",
}


@dataclass
class Imported:
    manifest: dict
    not_carried: list[str] = field(default_factory=list)

    def text(self, source: str) -> str:
        header = [f"# Imported from {source} by `reconciler import azure`."]
        if self.not_carried:
            header.append("# Not carried over:")
            header += [f"#   - {item}" for item in self.not_carried]
        body = yaml.safe_dump(self.manifest, sort_keys=False, default_flow_style=False, allow_unicode=True)
        return "\n".join(header) + "\n" + body


def package_name(text: str) -> str:
    """A package name (lower-case letters, digits, '-') from an endpoint or deployment name."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "imported"


def model_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")[:255]
    return name or "model"


def relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


@dataclass(frozen=True)
class ModelSource:
    path: Path
    name: str | None = None
    version: int | None = None
    mlflow: bool = False  # Azure's type: mlflow_model

    @classmethod
    def parse(cls, text: str, base: Path) -> ModelSource:
        """`PATH`, `PATH=NAME` or `PATH=NAME:VERSION` (the --model flag)."""
        path, _, label = text.partition("=")
        name, _, version = label.partition(":")
        if version and not re.fullmatch(r"[0-9]{1,9}", version):  # "²".isdigit() is True, int("²") fails
            raise InvalidInput([Problem("--model", f"version {version!r} of {text!r} is not a whole number")])
        return cls(Path(os.path.normpath(base / path)), name or None, int(version) if version else None)


def models_section(sources: list[ModelSource], directory: Path) -> list[dict]:
    models = []
    for source in sources:
        name = model_name(source.name or source.path.stem)
        model = {"name": name, "version": source.version or 1, "path": relative(source.path, directory)}
        if source.mlflow:
            model["type"] = "mlflow_model"
        models.append(model)
    return models


def variables_section(values: dict, not_carried: list[str], where: str) -> tuple[dict, list[str]]:
    """Environment variables into the image, except names reconciler sets and values that
    look like secrets: those become runtime secrets (names only; values never copied)."""
    variables: dict = {}
    secrets: list[str] = []
    for name, value in values.items():
        name = str(name)
        if not re.match(ENV_NAME, name):
            not_carried.append(f"{where}.{name}: not a valid environment variable name")
        elif name in RESERVED_VARIABLES:
            not_carried.append(f"{where}.{name}: reconciler sets it from the manifest")
        elif SECRET_WORDS.search(name) or carries_credentials(str(value)):
            secrets.append(name)
            not_carried.append(
                f"{where}.{name}: looks like a secret; now inference.secrets (pass its value with --secrets FILE), "
                "its value was not copied"
            )
        else:
            variables[name] = value if isinstance(value, bool | int | float) else str(value)
    return variables, secrets


def from_v1(
    directory: Path,
    *,
    entry_script: Path,
    source_directory: Path | None,
    conda_file: Path | None,
    requirements: Path | None,
    models: list[ModelSource],
    name: str,
    mode: str,
) -> Imported:
    """InferenceConfig(entry_script, source_directory, environment) and Model.package's models."""
    source = source_directory or entry_script.parent
    environment: dict = {}
    if conda_file:
        environment["conda_file"] = relative(conda_file, directory)
    elif requirements:
        environment["requirements"] = relative(requirements, directory)
    manifest = {
        "name": package_name(name),
        "models": models_section(models, directory),
        "inference": {
            "entry_script": relative(entry_script, source),
            "source_directory": relative(source, directory),
            "environment": environment,
        },
        "output": {"mode": mode},
    }
    return Imported(manifest)


MAX_AZURE_YAML_BYTES = MAX_MANIFEST_BYTES


def read_azure_yaml(path: Path) -> YamlDocument:
    """An Azure YAML file: a regular file (a FIFO would hang the read, a link to /dev/zero never
    end it), at most MAX_AZURE_YAML_BYTES, parsed safely with positions."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise InvalidInput([Problem(str(path), "is not a regular file")])
        if status.st_size > MAX_AZURE_YAML_BYTES:
            raise InvalidInput(
                [Problem(str(path), f"is over {MAX_AZURE_YAML_BYTES // 1024} KiB; is it an Azure YAML?")]
            )
        with open(path, "rb") as handle:
            raw = handle.read(MAX_AZURE_YAML_BYTES + 1)
        placeholders = template_placeholders(raw)
        if placeholders:
            raise InvalidInput([Problem(str(path), message, line) for line, message in placeholders])
        return load_yaml(raw)
    except OSError as error:
        raise InvalidInput([Problem(str(path), f"cannot read: {error.strerror}")]) from None
    except YamlError as error:
        line = error.position.line if error.position else None
        raise InvalidInput([Problem(str(path), error.message, line)]) from None


# what Azure's templates leave to fill in: <SCORING_SCRIPT>, {{ENDPOINT_NAME}}, {{ .Values.x }}
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_-]{2,}>|\{\{\s*[A-Za-z_.][\w.-]*\s*\}\}")


def template_placeholders(raw: bytes) -> list[tuple[int, str]]:
    """(line, message) for each line, comments aside, that still holds a template placeholder."""
    found = []
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        content = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for match in PLACEHOLDER.finditer(content):
            found.append((number, f"still holds the template placeholder {match[0]}: fill it in, then import"))
    return found


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


class Fields:
    """An Azure YAML's fields, read with their types checked: a value of the wrong type is one
    problem naming the file, the line and the field, never a traceback."""

    def __init__(self, path: Path, document: YamlDocument):
        self.path, self.document = path, document
        self.problems: list[Problem] = []

    def problem(self, loc: tuple, message: str) -> None:
        position = self.document.position_of(loc)
        self.problems.append(
            Problem(str(self.path), message, position.line if position else None, field=".".join(map(str, loc)))
        )

    def get(self, loc: tuple, kinds: type | tuple[type, ...], what: str, default: object = None) -> object:
        """The value at `loc` if it is of `kinds`; `default` when absent (or, with a problem, wrong)."""
        value: object = self.document.data
        for part in loc:
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            self.problem(loc, f"must be {what}, got {_kind(value)}")
            return default
        if not isinstance(value, kinds):
            self.problem(loc, f"must be {what}, got {_kind(value)}")
            return default
        return value

    def version(self, loc: tuple) -> int | None:
        """A model or asset version: a whole number, or a string of ASCII digits."""
        value = self.get(loc, (int, str), "a version number")
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
            return int(value)
        if isinstance(value, int) and value >= 1:
            return value
        if value is not None:
            self.problem(loc, f"must be a version number (1, 2, ...), got {str(value)[:40]!r}")
        return None


def write_manifest(target: Path, imported: Imported, source: str, *, replace: bool) -> None:
    """Write the manifest atomically; an existing file is left alone unless `replace`."""
    if target.exists() and not replace:
        raise InvalidInput(
            [Problem(str(target), "exists already; reconciler does not overwrite it (--force replaces it)")]
        )
    write_atomic(target, imported.text(source).encode())
