"""MLflow models served with no entry script: Azure's no-code deployment of a `type:
mlflow_model` model.

A model of that type is a folder with an `MLmodel` file. When the package has no entry script
(`inference.entry_script` unset and no score.py in the source folder), the image serves it
through MLflow's own pyfunc loader, with reconciler's scoring script (`runtime/mlflow_score.py`)
as the app. Its environment is the model's own `requirements.txt` (or `conda.yaml`) when the
manifest declares none, and its Python the one the model was saved with (MLmodel's
`python_version`) when the manifest names no Python, base image or conda file. `mlflow` there
is installed as `mlflow-skinny` of the same version: the pyfunc loader without the tracking
server and its UI, as in Azure's MLflow images.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import Problem
from reconciler.core.paths import display_path
from reconciler.spec.yamldoc import YamlError, load_yaml

MLMODEL = "MLmodel"
SCORING_SCRIPT = "mlflow_score.py"  # the app of a no-code package: runtime/mlflow_score.py
MODEL_VARIABLE = "RECONCILER_MLFLOW_MODEL"  # where the scoring script finds the model folder
PYFUNC = "python_function"
SERVED_AS = {"mlflow": "mlflow-skinny"}  # a no-code image needs only the loader
# what a flavor's model needs imported to load, where the name differs or matters (the build's import check)
FLAVOR_MODULES = {
    "catboost": "catboost",
    "keras": "keras",
    "lightgbm": "lightgbm",
    "onnx": "onnxruntime",
    "prophet": "prophet",
    "pytorch": "torch",
    "sklearn": "sklearn",
    "spacy": "spacy",
    "statsmodels": "statsmodels",
    "tensorflow": "tensorflow",
    "transformers": "transformers",
    "xgboost": "xgboost",
}


@dataclass(frozen=True)
class MlflowModel:
    """The MLflow model a no-code package serves."""

    index: int  # in the manifest's models
    folder: Path
    flavors: tuple[str, ...]
    loader_module: str  # the pyfunc flavor's, such as mlflow.sklearn
    requirements: Path | None  # the model's requirements.txt, if it has one
    conda: Path | None  # its conda.yaml, if it has one
    python: str | None  # "3.11": the Python it was saved with, from python_function's python_version

    @property
    def environment_file(self) -> Path | None:
        return self.requirements or self.conda

    @property
    def imports(self) -> tuple[str, ...]:
        """What loading it imports: MLflow's loader, pandas, and the flavor's own library."""
        flavored = (FLAVOR_MODULES[flavor] for flavor in self.flavors if flavor in FLAVOR_MODULES)
        return tuple(dict.fromkeys(("mlflow.pyfunc", "pandas", self.loader_module, *flavored)))


def read_mlmodel(folder: Path, index: int, at_path: Callable[[str], Problem]) -> MlflowModel | Problem:
    """The model in `folder`, or the problem that keeps MLflow's pyfunc loader from serving it:
    in the MLmodel file where there is one, else at the manifest's model path (`at_path`)."""
    path = folder / MLMODEL
    if not folder.is_dir():
        return at_path(f"{display_path(folder)} is a file; an MLflow model is a folder with an {MLMODEL} file")
    try:
        document = load_yaml(path.read_bytes())
    except FileNotFoundError:
        return at_path(f"{display_path(folder)} has no {MLMODEL} file: MLflow's save_model() and log_model() write one")
    except OSError as error:
        return Problem(str(path), f"cannot read: {error.strerror}")
    except YamlError as error:
        where = error.position
        return Problem(str(path), error.message, where.line if where else None, where.column if where else None)
    data = document.data
    flavors = data.get("flavors") if isinstance(data, dict) else None
    if not isinstance(flavors, dict) or not flavors:
        position = document.position_of(())
        return Problem(str(path), "lists no flavors: not an MLflow model file", position.line if position else None)
    pyfunc = flavors.get(PYFUNC)
    if not isinstance(pyfunc, dict) or not isinstance(pyfunc.get("loader_module"), str):
        position = document.position_of(("flavors",))
        return Problem(
            str(path),
            f"flavors: {', '.join(sorted(map(str, flavors)))} has no {PYFUNC} flavor with a loader_module, so MLflow's "
            "pyfunc loader cannot serve it with no code; write an entry script (inference.entry_script) that loads it",
            position.line if position else None,
        )
    requirements, conda = folder / "requirements.txt", folder / "conda.yaml"
    saved_with = re.match(r"(\d+\.\d+)(\.|$)", str(pyfunc.get("python_version", "")))
    return MlflowModel(
        index,
        folder,
        tuple(sorted(map(str, flavors))),
        pyfunc["loader_module"],
        requirements if requirements.is_file() else None,
        conda if conda.is_file() else None,
        saved_with.group(1) if saved_with else None,
    )
