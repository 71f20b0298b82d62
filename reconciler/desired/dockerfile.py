"""The generated Dockerfile: a pure function of the package's settings.

Layers go from slowest- to fastest-changing, so a code edit rebuilds one small
layer (the last one: nothing after it makes a layer, with either builder) and a model
edit never reinstalls dependencies:

    base -> system packages -> Python dependencies (from wheels/, no network)
         -> serving runtime -> each model -> application code -> settings

The import check (runtime/import_check.py) imports what the entry script imports and every
locked distribution's modules, so an environment that cannot import fails the build with one
line saying why, not the container in a crash loop. It runs in a stage of its own on the
environment, and the image takes only its constant mark: a model or code edit never runs it
again, and a new import runs it again without copying the models again.

Dependencies are installed in a first stage and only the virtual environment is
copied on, so the wheels never weigh on the final image (the legacy builder,
which the Docker API uses, has no `RUN --mount`).

Every manifest value written here is either constrained by the manifest's
patterns or quoted by `_quote`, and files are copied with the JSON form of COPY,
so no value can add an instruction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

APP_ROOT = "/var/azureml-app"
DEV_APP_ROOT = "/var/azureml-app-dev"  # where watch --dev mounts the source folder (models stay in APP_ROOT)
MODELS_ROOT = f"{APP_ROOT}/azureml-models"
VENV = "/opt/venv"
RUNTIME_ROOT = "/opt/reconciler"
DATA_COLLECTION_ROOT = "/var/reconciler/data-collection"  # inference.data_collection: mounted writable
RUNTIME_PACKAGE = "reconciler_runtime"
RUNTIME_ARCHIVE = f"runtime/{RUNTIME_PACKAGE}.zip"  # in the build folder: imported from the zip as it is
CONTAINER_PORT = 5001
APP_USER_ID = 10001
IMPORT_CHECK_MARK = f"{RUNTIME_ROOT}/import-check-passed"  # the same bytes whenever the check passes


@dataclass(frozen=True)
class ImportCheck:
    """What the build's import check is asked (desired/entry_imports.py decides it)."""

    entry: str  # the entry script, as its messages name it
    environment: str  # the file that declares the dependencies, as its fixes name it
    modules: tuple[str, ...]  # what the entry script imports

    @property
    def command(self) -> list[str]:
        module = f"{RUNTIME_PACKAGE}.import_check"
        options = ["--entry", self.entry, "--environment", self.environment, "--passed", IMPORT_CHECK_MARK]
        return ["python", "-m", module, *options, "--", *self.modules]


@dataclass(frozen=True)
class ModelLayout:
    name: str
    version: int

    @property
    def folder(self) -> str:
        return f"models/{self.name}/{self.version}/"

    @property
    def image_folder(self) -> str:
        return f"{MODELS_ROOT}/{self.name}/{self.version}/"


@dataclass(frozen=True)
class DockerfileSettings:
    base_image: str
    python: str
    system_packages: tuple[str, ...]
    models: tuple[ModelLayout, ...]
    entry_script: str
    variables: tuple[tuple[str, str], ...]
    workers: int
    timeout_ms: int
    import_check: ImportCheck
    batching: tuple[int, int] | None = None  # (max rows, max latency ms): inference.batching
    data_collection: tuple[bool, int] | None = None  # (payload, max payload bytes): inference.data_collection


def batching_environment(max_rows: int, max_latency_ms: int) -> dict[str, str]:
    """How the runtime is told to batch (runtime/config.py reads these)."""
    return {"RECONCILER_BATCH_MAX_SIZE": str(max_rows), "RECONCILER_BATCH_MAX_LATENCY_MS": str(max_latency_ms)}


def data_collection_environment(destination: str, payload: bool, max_payload_bytes: int) -> dict[str, str]:
    """How the runtime is told to collect data (runtime/data_collection.py reads these)."""
    return {
        "RECONCILER_DATA_COLLECTION": destination,
        "RECONCILER_DATA_COLLECTION_PAYLOAD": str(int(payload)),
        "RECONCILER_DATA_COLLECTION_MAX_PAYLOAD_BYTES": str(max_payload_bytes),
    }


def model_dir(models: tuple[ModelLayout, ...], root: str = MODELS_ROOT) -> str:
    """AZUREML_MODEL_DIR as Azure sets it: the model's own folder when there is one
    model, the parent of the <name>/<version>/ folders when there are several."""
    return f"{root}/{models[0].name}/{models[0].version}" if len(models) == 1 else root


def _quote(value: str) -> str:
    """A double-quoted Dockerfile word: no variable expansion, no escapes left open."""
    if any(c in value for c in "\n\r\x00"):
        raise ValueError(f"{value!r} cannot be written into a Dockerfile")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _env_line(variables: dict[str, str]) -> str:
    return "ENV " + " ".join(f"{key}={value}" for key, value in variables.items())


def _copy(source: str, destination: str) -> str:
    return f"COPY {json.dumps([source, destination])}"


def render_dockerfile(settings: DockerfileSettings) -> str:
    s = settings
    python_check = (
        "import sys; v = '%d.%d' % sys.version_info[:2]; "
        f"sys.exit(0 if v == '{s.python}' else 'reconciler: the base image has Python ' + v + "
        f"', the manifest asks for {s.python}')"
    )
    lines = [
        "# Generated by reconciler. Edits here are drift: `reconciler plan` reports them and",
        "# `reconciler apply` writes this folder again. Change package.yaml instead.",
        "# Build with no network:  docker build --network none -t NAME .",
        f"# Run:                    docker run -p 6789:{CONTAINER_PORT} NAME   then POST http://localhost:6789/score",
        "",
        f"FROM {s.base_image} AS dependencies",
        f"RUN python3 -c {_quote(python_check)}",
        _copy("requirements.lock.txt", "/tmp/reconciler/requirements.lock.txt"),
        _copy("wheels/", "/tmp/reconciler/wheels/"),
        f"RUN python3 -m venv {VENV} \\",
        f" && {VENV}/bin/python -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \\",
        "      --find-links /tmp/reconciler/wheels --require-hashes -r /tmp/reconciler/requirements.lock.txt \\",
        f" && {VENV}/bin/python -m pip uninstall --quiet --yes pip",
        "",
        f"FROM {s.base_image} AS environment",
    ]
    if s.system_packages:
        lines += [
            "RUN apt-get update \\",
            " && apt-get install --yes --no-install-recommends " + " ".join(s.system_packages) + " \\",
            " && rm -rf /var/lib/apt/lists/*",
        ]
    lines += [
        f"RUN groupadd --system --gid {APP_USER_ID} azureml \\",
        f" && useradd --system --uid {APP_USER_ID} --gid {APP_USER_ID} --no-create-home --home-dir {APP_ROOT} azureml",
        f"WORKDIR {APP_ROOT}",
        f"COPY --from=dependencies {VENV} {VENV}",
        f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\",
        f"    VIRTUAL_ENV={VENV} PYTHONPATH={RUNTIME_ROOT}/{RUNTIME_PACKAGE}.zip PYTHONUNBUFFERED=1 "
        "PYTHONDONTWRITEBYTECODE=1",
        _copy(RUNTIME_ARCHIVE, f"{RUNTIME_ROOT}/{RUNTIME_PACKAGE}.zip"),
        "",
    ]
    lines += [
        "FROM environment AS import-check",
        f"RUN {json.dumps(s.import_check.command)}",
        "",
        "FROM environment",
        f"COPY --from=import-check {IMPORT_CHECK_MARK} {IMPORT_CHECK_MARK}",
    ]
    lines += [_copy(model.folder, model.image_folder) for model in s.models]
    lines += [
        _copy("app/", f"{APP_ROOT}/"),
        f"ENV AML_APP_ROOT={APP_ROOT} \\",
        f"    AZUREML_MODEL_DIR={model_dir(s.models)} \\",
        f"    AZUREML_ENTRY_SCRIPT={_quote(s.entry_script)} \\",
        f"    WORKER_COUNT={s.workers} \\",
        f"    SCORING_TIMEOUT_MS={s.timeout_ms}",
    ]
    if s.batching:
        lines.append(_env_line(batching_environment(*s.batching)))
    if s.data_collection:
        lines.append(_env_line(data_collection_environment(DATA_COLLECTION_ROOT, *s.data_collection)))
    for key, value in s.variables:
        lines.append(f"ENV {key}={_quote(value)}")
    lines += [
        f"USER {APP_USER_ID}:{APP_USER_ID}",
        f"EXPOSE {CONTAINER_PORT}",
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \\",
        f'  CMD ["python", "-m", "{RUNTIME_PACKAGE}.probe"]',
        f'CMD ["python", "-m", "{RUNTIME_PACKAGE}"]',
        "",
    ]
    return "\n".join(lines)
