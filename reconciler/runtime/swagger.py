"""GET /swagger.json: the service's API document, as Azure's server serves it.

A swagger file shipped with the app (swagger.json or swagger2.json for version 2,
swagger3.json for 3) is served as it is. Otherwise the document is generated: with
the input and output schemas of inference-schema's decorators when run() has
them, and a generic object schema when it does not.
"""

from __future__ import annotations

import json
import os

GENERIC_SCHEMA = {"type": "object", "example": {}}
ERROR_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}
VERSION_ALIASES = {"2": "2", "2.0": "2", "3": "3", "3.0": "3"}
USER_FILES = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",)}


def _paths(input_ref: str, output_ref: str, error_ref: str, version: str) -> dict:
    def body(ref: str) -> dict:
        return (
            {"schema": {"$ref": ref}}
            if version == "2"
            else {"content": {"application/json": {"schema": {"$ref": ref}}}}
        )

    score_post = {
        "summary": "Score the model: calls the entry script's run()",
        "operationId": "RunMLService",
        "responses": {
            "200": {"description": "Success", **body(output_ref)},
            "default": {"description": "Failed", **body(error_ref)},
        },
    }
    if version == "2":
        score_post["parameters"] = [
            {
                "name": "serviceInputPayload",
                "in": "body",
                "description": "The input payload",
                "required": True,
                "schema": {"$ref": input_ref},
            }
        ]
    else:
        score_post["requestBody"] = {"description": "The input payload", "required": True, **body(input_ref)}
    return {
        "/": {
            "get": {
                "summary": "Liveness probe",
                "operationId": "ServiceHealthCheck",
                "responses": {"200": {"description": "Healthy"}},
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness probe: 200 once init() has returned",
                "operationId": "ServiceReadiness",
                "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            }
        },
        "/score": {"post": score_post},
    }


def _prefixed(paths: dict, path_prefix: str) -> dict:
    """SERVICE_PATH_PREFIX, as Azure's server puts it in front of every documented path
    (a gateway in front of the service adds it; the service itself still answers at /)."""
    prefix = f"/{path_prefix.strip('/')}" if path_prefix.strip("/") else ""
    return {prefix + path: operations for path, operations in paths.items()}


def generate(
    version: str, title: str, service_version: str, input_schema: dict, output_schema: dict, path_prefix: str = ""
) -> dict:
    info = {"title": title, "description": "API of a model package served by reconciler", "version": service_version}
    if version == "2":
        return {
            "swagger": "2.0",
            "info": info,
            "schemes": ["http"],
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "paths": _prefixed(
                _paths("#/definitions/ServiceInput", "#/definitions/ServiceOutput", "#/definitions/ErrorResponse", "2"),
                path_prefix,
            ),
            "definitions": {
                "ServiceInput": input_schema,
                "ServiceOutput": output_schema,
                "ErrorResponse": ERROR_SCHEMA,
            },
        }
    return {
        "openapi": "3.0.1",
        "info": info,
        "paths": _prefixed(
            _paths(
                "#/components/schemas/ServiceInput",
                "#/components/schemas/ServiceOutput",
                "#/components/schemas/ErrorResponse",
                "3",
            ),
            path_prefix,
        ),
        "components": {
            "schemas": {"ServiceInput": input_schema, "ServiceOutput": output_schema, "ErrorResponse": ERROR_SCHEMA}
        },
    }


def documents(
    app_root: str,
    title: str,
    service_version: str,
    schemas: tuple[dict, dict, list[str]] | None,
    path_prefix: str = "",
) -> dict[str, bytes]:
    """Swagger documents by version ("2", "3"), rendered once at start-up."""
    rendered: dict[str, bytes] = {}
    for version, names in USER_FILES.items():
        for name in names:
            path = os.path.join(app_root, name)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    rendered[version] = handle.read()
                break
    if schemas is None:
        input_schema, output_schema, supported = GENERIC_SCHEMA, GENERIC_SCHEMA, ["2.0", "3.0"]
    else:
        input_schema, output_schema, supported = schemas
    for version in ("2", "3"):
        if version not in rendered and f"{version}.0" in supported:
            rendered[version] = json.dumps(
                generate(version, title, service_version, input_schema, output_schema, path_prefix)
            ).encode()
    return rendered
