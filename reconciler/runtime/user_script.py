"""The user's Azure ML entry script: load it, inspect run(), and call it as Azure does.

Azure's server (azureml-inference-server-http) decides how to call run() from its
signature, and existing scripts depend on that, so we follow it exactly:

- run(raw_data): POST body as a UTF-8 string; GET query parameters as a JSON string;
- run decorated with inference-schema's @input_schema: the JSON object's keys become
  keyword arguments (415 for a non-JSON content type, 400 for a missing parameter);
- a `request_headers` parameter receives the request's headers;
- run decorated with @rawhttp: the request object itself (azure_http.AMLRequest), any method.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from . import azure_imports

# where a @rawhttp decorator may have left its mark: ours, or Azure's own server if the image installs it
RAW_HTTP_FLAGS = (
    (f"{__package__}.azure_http", "_raw_http_requested"),
    ("azureml_inference_server_http.api.aml_request", "_rawHttpRequested"),
)


class ScriptError(Exception):
    """The entry script cannot be served (missing function, bad signature)."""


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _schema_util():
    try:
        from inference_schema import schema_util
    except ImportError:
        return None
    return schema_util


def is_schema_decorated(function: Callable) -> bool:
    schema_util = _schema_util()
    return bool(schema_util and schema_util.is_schema_decorated(function))


def raw_http_requested() -> bool:
    return any(getattr(sys.modules.get(module), flag, False) for module, flag in RAW_HTTP_FLAGS)


def is_http_response(value: object) -> bool:
    """A response object (AMLResponse, Flask's, werkzeug's): only a script that imported
    werkzeug can return one, so plain scripts pay no import for the check."""
    wrappers = sys.modules.get("werkzeug.wrappers")
    return wrappers is not None and isinstance(value, wrappers.Response)


def load_module(path: str, source_directory: str | None = None):
    """Import the entry script from its file, with its folder (and AZUREML_SOURCE_DIRECTORY)
    importable and Azure's own import names answered, as Azure's server does."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if source_directory and source_directory not in sys.path:
        sys.path.append(source_directory)
    azure_imports.install()
    azure_http = sys.modules.get(RAW_HTTP_FLAGS[0][0])
    if azure_http is not None:
        azure_http.forget_rawhttp()  # the script is imported again: its decorators run again
    spec = importlib.util.spec_from_file_location("entry_module", path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["entry_module"] = module
    spec.loader.exec_module(module)
    return module


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def query_parameters(query_string: bytes) -> dict[str, Any]:
    """Azure's reading of GET parameters: JSON values where they parse, repeated keys as lists."""
    values: dict[str, list[Any]] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        values.setdefault(key, []).append(_parse_value(value))
    return {key: found[0] if len(found) == 1 else found for key, found in values.items()}


def flask_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as Azure's (Flask) server hands them to run(): `Content-Type`, `X-Request-Id`."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").title()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


@dataclass
class Request:
    scope: dict  # the ASGI scope
    body: bytes

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def query_string(self) -> bytes:
        return self.scope["query_string"]

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        return flask_headers(self.scope["headers"])


class EntryScript:
    """A loaded entry script and the way its run() must be called."""

    def __init__(self, path: str, source_directory: str | None = None):
        self.path = path
        module = load_module(path, source_directory)
        for name in ("init", "run"):
            if not callable(getattr(module, name, None)):
                raise ScriptError(f"{path} does not define {name}()")
        self.init: Callable[[], Any] = module.init
        self.own_schemas = getattr(module, "__reconciler_schemas__", None)  # runtime/mlflow_score.py's
        driver = getattr(module, "driver_module", None)  # Azure SDK driver scripts forward to it
        self.run: Callable[..., Any] = driver.run if hasattr(driver, "run") else module.run
        self.decorated = is_schema_decorated(self.run)
        self.raw_http = raw_http_requested()
        if self.raw_http and self.decorated:
            raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema")
        parameters = list(inspect.signature(self.run).parameters.values())
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in parameters):
            raise ScriptError("run() cannot take positional-only parameters, *args or **kwargs")
        self.wants_headers = any(p.name == "request_headers" for p in parameters)
        self.parameters = [p for p in parameters if p.name != "request_headers"]
        if not self.parameters:
            raise ScriptError("run() needs a parameter for the input data")

    def arguments(self, request: Request) -> dict[str, Any]:
        """What run() is called with; BadRequest for what Azure's server would refuse."""
        try:
            return self._arguments(request)
        except RecursionError:
            raise BadRequest(400, "the request's JSON is nested too deeply") from None

    def _arguments(self, request: Request) -> dict[str, Any]:
        """run()'s keyword arguments for a request, or BadRequest."""
        if self.raw_http:
            from .azure_http import build_request

            arguments = {self.parameters[0].name: build_request(request.scope, request.body)}
        elif self.decorated:
            arguments = self._object_arguments(request)
        elif request.method == "GET":
            arguments = {self.parameters[0].name: json.dumps(query_parameters(request.query_string))}
        else:
            try:
                arguments = {self.parameters[0].name: request.body.decode("utf-8")}
            except UnicodeDecodeError as error:
                raise BadRequest(400, f"Input cannot be decoded as UTF-8: {error}") from None
        if self.wants_headers:
            arguments["request_headers"] = request.headers
        return arguments

    def _object_arguments(self, request: Request) -> dict[str, Any]:
        if request.method == "GET":
            body = query_parameters(request.query_string)
        else:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type != "application/json" and not content_type.endswith("+json"):
                raise BadRequest(415, "Expects Content-Type to be application/json")
            if not request.body:
                raise BadRequest(400, "POST body is empty. Expecting a JSON dictionary.")
            try:
                body = json.loads(request.body)
            except ValueError as error:
                raise BadRequest(400, f"POST body could not be decoded as JSON: {error}") from None
            if not isinstance(body, dict):
                raise BadRequest(400, "POST body should be a JSON dictionary.")
        arguments = {}
        for parameter in self.parameters:
            value = body.get(parameter.name, parameter.default)
            if value is inspect.Parameter.empty:
                raise BadRequest(400, f"A value is not provided for the {parameter.name!r} parameter.")
            arguments[parameter.name] = value
        return arguments

    def schemas(self) -> tuple[dict, dict, list[str]] | None:
        """Input schema, output schema and swagger versions from inference-schema, if decorated
        (or from the scripts reconciler writes itself, which say them)."""
        if callable(self.own_schemas):
            given = self.own_schemas()
            return (*given, ["2.0", "3.0"]) if given else None
        schema_util = _schema_util()
        if not self.decorated or schema_util is None:
            return None
        versions = list(schema_util.get_supported_versions(self.run))
        return schema_util.get_input_schema(self.run), schema_util.get_output_schema(self.run), versions
