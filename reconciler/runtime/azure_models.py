"""`azureml.core.model.Model.get_model_path`, as Azure's SDK answers it inside a deployment.

Models sit at `azureml-models/<name>/<version>/<file or folder>`; AZUREML_MODEL_DIR is the
`<name>/<version>` folder of a single model, or `azureml-models` itself with several. The
rest of azureml-core's Model (registering, downloading) needs a workspace, which a
deployment has no business calling: those say so clearly instead.
"""

from __future__ import annotations

import os


class ModelNotFoundException(Exception):
    """Azure's name for it: scripts catch it."""


def _models_root() -> str:
    model_dir = os.environ.get("AZUREML_MODEL_DIR", "")
    if model_dir and os.path.isdir(model_dir):
        version_folder = os.path.abspath(model_dir)
        parent = os.path.dirname(os.path.dirname(version_folder))
        if os.path.basename(version_folder).isdigit() and os.path.basename(parent) == "azureml-models":
            return parent  # one model: AZUREML_MODEL_DIR is its <name>/<version> folder
        return version_folder
    return "azureml-models"  # relative to the working directory, as Azure's SDK falls back to


def _latest(versions: list[str]) -> str:
    numbered = [v for v in versions if v.isdigit()]
    if not numbered:
        raise ModelNotFoundException(f"no numbered version folder among {sorted(versions)}")
    return max(numbered, key=int)


class Model:
    """Only the part of azureml-core's Model that runs inside a deployment."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "azureml.core.model.Model here is reconciler's stand-in, which offers get_model_path() only; "
            "add azureml-core to the package's requirements to use the rest of it"
        )

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace=None) -> str:
        """The path of the model's file or folder: `<root>/<name>/<version>/<its one entry>`,
        the newest version when none is given; `./<name>` when the model is not under the root."""
        if version is not None and not isinstance(version, int):
            raise ValueError("version should be an int")
        root = _models_root()
        folder = os.path.join(root, model_name)
        if os.path.isdir(folder):
            chosen = str(version) if version is not None else _latest(os.listdir(folder))
            version_folder = os.path.join(folder, chosen)
            if os.path.isdir(version_folder):
                entries = os.listdir(version_folder)
                if len(entries) != 1:
                    raise ModelNotFoundException(
                        f"Dir {version_folder} can contain only 1 file or folder. Found {sorted(entries)}"
                    )
                return os.path.join(version_folder, entries[0])
        if os.path.exists(model_name):
            return model_name
        raise ModelNotFoundException(
            f"Model {model_name} not found in cache at {root} or in current working directory {os.getcwd()}."
        )
