"""`reconciler serve`: run one package's scoring runtime on the host, without Docker.

The runtime gets the same environment as in the image: the models laid out as
Azure does (here as symlinks in a temporary folder), AML_APP_ROOT at the source
folder, the manifest's variables and server settings, and its secrets (from `--secrets FILE`
or this environment). It runs in the current
Python, so the package's requirements must be installed there; a missing one is
named before the server starts.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from reconciler.core.cachedir import cache_dir
from reconciler.core.errors import PermanentError
from reconciler.core.paths import display_path
from reconciler.desired.dockerfile import ModelLayout, batching_environment, data_collection_environment, model_dir
from reconciler.desired.entry_imports import entry_imports
from reconciler.desired.pins import requirement_lines
from reconciler.desired.secrets import SecretSource
from reconciler.desired.sources import RUNTIME_DIRECTORY
from reconciler.desired.state import batching_settings, data_collection_settings, mlflow_variables
from reconciler.spec.mlflow_model import SCORING_SCRIPT
from reconciler.spec.package import Package


def link_models(package: Package, folder: Path) -> str:
    """Lay the models out as `<folder>/<name>/<version>/<file>` and return AZUREML_MODEL_DIR."""
    for model, path in zip(package.manifest.models, package.model_paths):
        target = folder / model.name / str(model.version)
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.realpath(path), target / path.name)
    return model_dir(tuple(ModelLayout(m.name, m.version) for m in package.manifest.models), str(folder))


def missing_modules(package: Package) -> list[str]:
    """Top-level modules the entry script imports that this Python cannot find, with Azure's
    import names (azureml.contrib.services, azureml.core.model, ...) answered by the runtime.
    A no-code MLflow model needs MLflow's loader, pandas and its flavor's library."""
    candidates = sorted({name.split(".")[0] for name in entry_imports(package)})
    if not candidates:
        return []
    # asked of the runtime in this Python, which answers Azure's import names as it does when serving
    asked = subprocess.run(
        [sys.executable, "-m", "reconciler.runtime", "--missing-imports", *candidates],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if asked.returncode != 0:
        raise PermanentError(f"cannot ask the runtime which modules it finds: {asked.stderr.strip()[-500:]}")
    return asked.stdout.split()


def runtime_environment(package: Package, model_folder: Path, port: int, secrets: SecretSource) -> dict[str, str]:
    manifest = package.manifest
    environment = dict(os.environ)
    environment.update(manifest.inference.environment.variables_as_strings)
    environment.update(secrets.for_package(package).environment)
    environment.update(
        {
            "AML_APP_ROOT": str(package.source_directory),
            "AZUREML_ENTRY_SCRIPT": str(RUNTIME_DIRECTORY / SCORING_SCRIPT)
            if package.mlflow is not None
            else package.entry_script_relative,
            "AZUREML_MODEL_DIR": link_models(package, model_folder),
            "WORKER_COUNT": str(manifest.inference.server.workers),
            "SCORING_TIMEOUT_MS": str(manifest.inference.server.timeout_ms),
            "PORT": str(port),
        }
    )
    environment.update(mlflow_variables(package, str(model_folder)))
    collection = data_collection_settings(package)
    if collection:  # written to the package's folder directly
        package.data_collection_directory.mkdir(parents=True, exist_ok=True)
        environment.update(data_collection_environment(str(package.data_collection_directory), *collection))
    batching = batching_settings(manifest.inference.batching)
    if batching:
        environment.update(batching_environment(*batching))
    return environment


def _what_imports(package: Package) -> str:
    if package.mlflow is not None:
        return f"serving the MLflow model {display_path(package.mlflow.folder)} with no entry script needs"
    return f"{display_path(package.entry_script)} imports"


def serve(package: Package, *, port: int, host: str, secrets_file: Path | None = None) -> int:
    """Run the runtime in the foreground until it stops; return its exit code."""
    if importlib.util.find_spec("uvicorn") is None:
        raise PermanentError(
            f"reconciler serve needs the runtime's dependencies in this Python ({sys.executable}): "
            "pip install 'reconciler[serve]'"
        )
    missing = missing_modules(package)
    if missing:
        requirements = ", ".join(requirement_lines(package)) or "(none listed)"
        raise PermanentError(
            f"{_what_imports(package)} {', '.join(missing)}, not installed in {sys.executable}. "
            f"The package requires: {requirements}. Install them into this Python, or use "
            "output.mode: container to run it in its image."
        )
    with tempfile.TemporaryDirectory(prefix=f"reconciler-serve-{package.name}-") as scratch:
        secrets = SecretSource(cache_dir(), secrets_file)
        environment = runtime_environment(package, Path(scratch) / "azureml-models", port, secrets)
        command = [sys.executable, "-m", "reconciler.runtime", "--port", str(port), "--host", host]
        print(f"serving {package.name} at http://{host}:{port}/score (Ctrl-C to stop)", file=sys.stderr, flush=True)
        process = subprocess.Popen(command, env=environment, cwd=package.source_directory)
        forward = lambda signum, _frame: process.send_signal(signum)  # noqa: E731
        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return process.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
