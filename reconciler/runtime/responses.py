"""Azure's response shapes: content types, Flask's wording for 404 and 405, and the JSON
error with its `x-ms-run-function-failed` flag that Azure's server always sends."""

from __future__ import annotations

import json


class StreamFailed(Exception):
    """A streamed body failed after its headers went out: the connection must not look complete."""


JSON = [(b"content-type", b"application/json")]
TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
HTML = [(b"content-type", b"text/html; charset=utf-8")]  # what Flask, so Azure's server, calls "Healthy"
# Flask's wording, which Azure's server answers with
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling "
    "and try again."
)


def json_body(value: object) -> bytes:
    return json.dumps(value).encode()


def error_response(status: int, message: str, run_failed: bool = False) -> tuple[int, list, bytes]:
    """Azure's error response: a JSON message, and whether run() itself failed (always said)."""
    flag = (b"x-ms-run-function-failed", b"True" if run_failed else b"False")
    return status, [JSON[0], flag], json_body({"message": message})
