"""Model data collection, as Azure's `azureml-ai-monitoring` does it.

`from azureml.ai.monitoring import Collector` works unchanged (azure_imports answers it):
`Collector(name="model_inputs").collect(df, context)` returns a correlation context, so that
a script correlates its outputs with its inputs, and the rows land as JSON Lines at
`<folder>/<collector name>/YYYY/MM/DD/HH/<host>-<pid>.jsonl` (UTC hours), one line per call
with the request's id and the correlation id. With payload logging, `/score` request and
response bodies land the same way, as the collections `request` and `response` (capped).

RECONCILER_DATA_COLLECTION is the folder (a writable mount in container mode), or `stdout`
(kubernetes mode: the cluster's log collector takes the lines). Unset, a Collector collects
nothing and says so once.

Collecting never blocks or fails a request: lines go through a bounded queue to one writer
thread per process, and a full queue, a full disk or a missing folder drops data with one
warning per cause.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import queue
import socket
import sys
import threading
import uuid

DESTINATION_VARIABLE = "RECONCILER_DATA_COLLECTION"  # a folder, or "stdout"
PAYLOAD_VARIABLE = "RECONCILER_DATA_COLLECTION_PAYLOAD"  # "1": request and response bodies too
MAX_PAYLOAD_VARIABLE = "RECONCILER_DATA_COLLECTION_MAX_PAYLOAD_BYTES"
QUEUED_LINES = 10_000
# the request a call of run() serves: set by the app per request, carried to the entry-script thread
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("reconciler_request_id", default="")

log = logging.getLogger("reconciler.runtime.data_collection")


class BasicCorrelationContext:
    """Azure's correlation context: what ties a collection of outputs to its inputs."""

    def __init__(self, id: str | None = None, headers: dict | None = None):  # noqa: A002 - Azure's parameter name
        self.id = id or str(uuid.uuid4())
        self.headers = headers or {}

    def get_id(self) -> str:
        return self.id

    def get_headers(self) -> dict:
        return self.headers


class _Writer:
    """One thread writing queued lines; each cause of lost data is warned about once."""

    def __init__(self, destination: str):
        self.destination = destination
        self.lines: queue.Queue[tuple[str, dict]] = queue.Queue(QUEUED_LINES)
        self.warned: set[str] = set()
        self.origin = f"{socket.gethostname()}-{os.getpid()}"
        threading.Thread(target=self._run, name="data-collection", daemon=True).start()

    def warn_once(self, cause: str, message: str, *arguments) -> None:
        if cause not in self.warned:
            self.warned.add(cause)
            log.warning(message + "; data is dropped, requests are served as usual", *arguments)

    def put(self, collection: str, line: dict) -> None:
        try:
            self.lines.put_nowait((collection, line))
        except queue.Full:
            self.warn_once("full", "data collection cannot keep up (%d lines waiting)", QUEUED_LINES)

    def _run(self) -> None:
        while True:
            collection, line = self.lines.get()
            try:
                self._write(collection, line)
            except OSError as error:
                self.warn_once(f"{collection}:{error.errno}", "cannot write %s data: %s", collection, error.strerror)
            except (TypeError, ValueError) as error:
                self.warn_once(f"{collection}:json", "%s data is not JSON: %s", collection, error)

    def _write(self, collection: str, line: dict) -> None:
        text = json.dumps(line, default=str) + "\n"
        if self.destination == "stdout":
            sys.stdout.write(json.dumps({"data_collection": collection, **line}, default=str) + "\n")
            sys.stdout.flush()
            return
        hour = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d/%H")
        folder = os.path.join(self.destination, collection, hour)
        if not os.path.isdir(self.destination):  # never made here: it is the mount, or serve's folder
            raise FileNotFoundError(2, f"no folder {self.destination}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{self.origin}.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(text)


_writer: _Writer | None = None
_writer_made = threading.Lock()


def writer() -> _Writer | None:
    """The process's writer, when data collection is on (made on first use, then taken as it is)."""
    global _writer
    if _writer is not None:
        return _writer
    destination = os.environ.get(DESTINATION_VARIABLE, "")
    if not destination:
        return None
    with _writer_made:
        if _writer is None:
            _writer = _Writer(destination)
    return _writer


def line(collection: str, data: object, correlation_id: str, kind: str) -> dict:
    """A collected line, in the shape of Azure's (CloudEvents fields)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/reconciler/{collection}",
        "type": f"azureml.inference.{collection}",
        "datacontenttype": "application/json",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "data": data,
        "correlationid": correlation_id,
        "xrequestid": REQUEST_ID.get(),
        "collectdatatype": kind,
    }


def _rows(data: object) -> tuple[object, str]:
    """A DataFrame as its records (with JSON's types), anything else as it is; and its type,
    as Azure names it (whatever module pandas says its DataFrame is in)."""
    to_json = getattr(data, "to_json", None)
    if callable(to_json) and hasattr(data, "columns"):
        return json.loads(to_json(orient="records", date_format="iso")), "pandas.core.frame.DataFrame"
    return data, f"{type(data).__module__}.{type(data).__qualname__}"


class Collector:
    """Azure's Collector: `collect(data, correlation_context=None)` returns the context."""

    def __init__(self, *, name: str, on_error=None, **_azure_options):
        self.name = name
        self.on_error = on_error
        if writer() is None:
            log.warning("data collection is off (inference.data_collection): Collector %r collects nothing", name)

    def collect(self, data, correlation_context: BasicCorrelationContext | None = None) -> BasicCorrelationContext:
        context = correlation_context or BasicCorrelationContext()
        target = writer()
        if target is None:
            return context
        try:
            rows, kind = _rows(data)
        except Exception as error:  # noqa: BLE001 - collecting must never fail the request
            if self.on_error is not None:
                self.on_error(error)
            else:
                target.warn_once(f"{self.name}:rows", "cannot collect %s data: %s", self.name, error)
            return context
        target.put(self.name, line(self.name, rows, context.get_id(), kind))
        return context


class Payloads:
    """`/score` request and response bodies (inference.data_collection.payload), capped."""

    def __init__(self, environ: dict[str, str]):
        self.on = environ.get(PAYLOAD_VARIABLE) == "1"
        self.max_bytes = int(environ.get(MAX_PAYLOAD_VARIABLE) or 65536)

    def log(self, request_body: bytes, response_body: object) -> None:
        target = writer() if self.on else None
        if target is None:
            return
        correlation = REQUEST_ID.get()
        for collection, body in (("request", request_body), ("response", response_body)):
            if not isinstance(body, bytes):  # a streamed response: not held, so not logged
                body, truncated = b"", True
            else:
                truncated = len(body) > self.max_bytes
            text = body[: self.max_bytes].decode("utf-8", "replace")
            entry = line(collection, text, correlation, "bytes")
            entry["truncated"] = truncated
            target.put(collection, entry)
