"""@rawhttp, AMLRequest and AMLResponse: the raw-HTTP half of Azure's entry-script API.

Azure's server hands a @rawhttp run() its Flask request, and returns any Flask response
run() gives back as it is. Flask's request and response classes are werkzeug's with an
application around them, so werkzeug alone gives scripts the same objects: `method`,
`headers`, `args`, `form`, `files`, `get_data()`, `get_json()`, streaming bodies. This
module is imported only by scripts that use it (through the import names in
azure_imports), so a plain entry script pays nothing for it.
"""

from __future__ import annotations

import json
import sys
from io import BytesIO

from werkzeug.wrappers import Request, Response

_raw_http_requested = False  # as Azure does: any @rawhttp in the entry script switches run() to raw requests


def rawhttp(function):
    """Mark run() as wanting the request object itself rather than its body."""
    global _raw_http_requested
    _raw_http_requested = True
    return function


def forget_rawhttp() -> None:
    """Before the entry script is imported again (a dev reload): its decorators run again."""
    global _raw_http_requested
    _raw_http_requested = False


class AMLRequest(Request):
    """The request a @rawhttp run() receives: werkzeug's, as Flask's is."""


class AMLResponse(Response):
    """Azure's response class, same arguments and same headers: `response_headers` values
    holding commas become repeated headers, `x-ms-run-function-failed` is always set."""

    default_mimetype = "text/html"  # Flask's default, which Azure's class inherits

    def __init__(self, message, status_code, response_headers=None, json_str=False, run_function_failed=False):
        response_headers = response_headers or {}
        if message is None:
            super().__init__(json.dumps({}), status=status_code, mimetype="application/json")
        elif json_str:
            super().__init__(json.dumps(message), status=status_code, mimetype="application/json")
        else:
            super().__init__(message, status=status_code)
            if any(name.lower() == "content-type" for name in response_headers):
                del self.headers["Content-Type"]  # the script's own goes in below, once
        self.headers["x-ms-run-function-failed"] = str(run_function_failed)
        for name, value in response_headers.items():
            for part in str(value).split(","):
                self.headers.add_header(name, part.strip())


def build_request(scope: dict, body: bytes) -> AMLRequest:
    """A werkzeug request from an ASGI scope and the body already read (WSGI's environ, PEP 3333)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0] if client else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,  # whole and de-chunked: read it to its end, whatever the headers say
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole already: its real length stands, and it is chunked no more
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return AMLRequest(environ)
