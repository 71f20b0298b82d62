"""Azure's import names for its entry-script API, answered by this runtime.

Entry scripts import `rawhttp`, `AMLRequest` and `AMLResponse` from
`azureml.contrib.services.aml_request` / `aml_response` (SDK v1) or from
`azureml_inference_server_http.api.aml_request` / `aml_response` (the server's own), and
`Model` from `azureml.core.model`, and `Collector` from `azureml.ai.monitoring` (data
collection, `data_collection`). A finder placed last on `sys.meta_path` answers those
names only when nothing installed does, so a package the script really installs (say,
azureml-core) still wins, and nothing is imported until a script asks for it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

_REQUEST = ("azure_http", ("rawhttp", "AMLRequest"))
_RESPONSE = ("azure_http", ("AMLResponse",))
_MODEL = ("azure_models", ("Model",))
_COLLECTOR = ("data_collection", ("Collector", "BasicCorrelationContext"))

# import name -> (our module, the names it offers); packages offer what their scripts use from them
SHIMS: dict[str, tuple[str, tuple[str, ...]] | None] = {
    "azureml": None,
    "azureml.contrib": None,
    "azureml.contrib.services": None,
    "azureml.contrib.services.aml_request": _REQUEST,
    "azureml.contrib.services.aml_response": _RESPONSE,
    "azureml.core": _MODEL,
    "azureml.core.model": _MODEL,
    "azureml.ai": None,
    "azureml.ai.monitoring": _COLLECTOR,
    "azureml.ai.monitoring.context": _COLLECTOR,
    "azureml_inference_server_http": None,
    "azureml_inference_server_http.api": None,
    "azureml_inference_server_http.api.aml_request": _REQUEST,
    "azureml_inference_server_http.api.aml_response": _RESPONSE,
}
_PACKAGES = {name.rpartition(".")[0] for name in SHIMS} - {""}


class AzureImports(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in SHIMS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname in _PACKAGES)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        offered = SHIMS[module.__name__]
        if offered is None:
            return
        source_name, names = offered
        source = importlib.import_module(f"{__package__}.{source_name}")
        for name in names:
            setattr(module, name, getattr(source, name))


def install() -> None:
    """Once per process, before the entry script is imported."""
    if not any(isinstance(finder, AzureImports) for finder in sys.meta_path):
        sys.meta_path.append(AzureImports())
