"""The ASGI application: Azure ML's scoring routes, served by uvicorn.

Routes:
    GET  /              liveness: 200 "Healthy", always (also during init() and long run() calls)
    GET  /ready         readiness: 503 until init() has returned, then 200 "Ready"
    POST|GET /score     calls run(), once init() has returned (a request sent during init()
                        waits for it, as with Azure's server); OPTIONS /score -> 200
    GET  /swagger.json  ?version=2 (default) or 3
    GET  /metrics       Prometheus text format (see metrics)
    POST /-/reload      only with RECONCILER_DEV=1 (reconciler watch --dev): import the
                        entry script again and call init(); on failure the old code keeps serving

A plain ASGI callable rather than a web framework: the scoring path is the whole
product, and each layer between the socket and run() costs requests per second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, quote

from . import swagger
from .batching import Batcher
from .bodies import BodyBudget, BodyRefused
from .config import Settings
from .data_collection import REQUEST_ID, Payloads
from .logs import RequestLog, model_dir_listing
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import Metrics
from .responses import HTML, JSON, METHOD_NOT_ALLOWED, NOT_FOUND, TEXT, StreamFailed, error_response, json_body
from .runner import RunThread, ScoringTimeout
from .user_script import BadRequest, EntryScript, Request, is_http_response

log = logging.getLogger("reconciler.runtime")
probes_log = logging.getLogger("reconciler.runtime.requests")

PROBE_PATHS = frozenset({"/", "/ready", "/metrics"})  # polled: logged at DEBUG only when they succeed
CLIENT_ERRORS = frozenset({400, 413, 415, 431})  # werkzeug's refusals of a request, answered as Flask does
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")  # latin-1, no control character (\r, \n, NUL)


def header_pair(name: str, value: str) -> tuple[bytes, bytes]:
    """A response header as sent; ValueError saying which one HTTP cannot carry (never its value)."""
    if not HEADER_NAME.match(name):
        raise ValueError("a header whose name is not an HTTP token")
    if not HEADER_VALUE.match(value):
        raise ValueError(
            f"a {name} header holding a character HTTP cannot carry (a control character, or beyond latin-1)"
        )
    return name.lower().encode("latin-1"), value.encode("latin-1")


REQUEST_ID_LIMIT = 100
SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]+$")  # what a request id may hold to be echoed and logged


class ScoringApp:
    """`on_ready` is called once init() has returned; `service_ready` says whether the whole
    service is (with several workers: all of them), which is what /ready reports."""

    def __init__(
        self,
        settings: Settings,
        on_fatal: Callable[[int], None],
        on_ready: Callable[[], None] = lambda: None,
        service_ready: Callable[[], bool] | None = None,
    ):
        self.settings = settings
        self.on_fatal = on_fatal
        self.on_ready = on_ready
        self.service_ready = service_ready or (lambda: self.ready)
        self.script: EntryScript | None = None
        self.ready = False
        self.bodies = BodyBudget(self.settings)
        self.runner: RunThread | None = None
        self.batcher: Batcher | None = None  # inference.batching: concurrent requests, one run()
        self.request_log: RequestLog | None = None
        self.swagger: dict[str, bytes] = {}
        self.initialised: asyncio.Event | None = None  # set once init() returned or failed
        self.scoring = 0  # /score requests held right now, for MAX_CONCURRENT_REQUESTS_PER_INSTANCE
        self.metrics = Metrics()
        self.payloads = Payloads(dict(os.environ))  # inference.data_collection.payload
        self.timeout_s = settings.scoring_timeout_ms / 1000
        self.cors = set(settings.cors_origins)

    # -- lifecycle -----------------------------------------------------------------

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.runner = RunThread(asyncio.get_running_loop())
                self.batcher = self._batcher() if self.settings.batch_max_rows else None
                self.request_log = RequestLog(asyncio.get_running_loop())
                self.initialised = asyncio.Event()
                asyncio.get_running_loop().create_task(self._initialise())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.runner.close()
                self.request_log.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _batcher(self) -> Batcher:
        s = self.settings
        return Batcher(
            self.runner,
            s.batch_max_rows,
            s.batch_max_latency_ms,
            self.timeout_s,
            lambda: self.scoring,
            self.metrics.batched,
        )

    def _load_and_init(self) -> float:
        """Runs on the entry-script thread: import the script, then call init()."""
        started = time.perf_counter()
        self.script = EntryScript(self.settings.entry_script, self.settings.source_directory)
        self.script.init()
        return time.perf_counter() - started

    async def _initialise(self) -> None:
        log.info("loading entry script %s", self.settings.entry_script)
        ok, value, seconds = await self.runner.call(self._load_and_init, {}, None)
        if not ok:
            self.initialised.set()  # the requests waiting for init() get the failure
            self._init_failed(value)
            return
        self.swagger = swagger.documents(
            self.settings.app_root,
            self.settings.service_name,
            self.settings.service_version,
            self.script.schemas(),
            self.settings.service_path_prefix,
        )
        self.ready = True
        self.initialised.set()
        self.on_ready()
        self.metrics.init_seconds.set(seconds)
        log.info("init() returned in %.2f s; ready", seconds)

    def _init_failed(self, error: BaseException) -> None:
        if isinstance(error, ModuleNotFoundError):
            log.error(
                "the entry script imports %r, which is not installed in %s; add it to the package's requirements",
                error.name,
                sys.executable,
            )
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        log.error("the entry script failed to start:\n%s%s", details, model_dir_listing(self.settings.model_dir))
        self.on_fatal(3)

    # -- requests ------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope, receive, send) -> None:
        started = time.perf_counter()
        method, path, raw_headers = scope["method"], scope["path"], scope["headers"]
        request_id = client_request_id = origin = trace_id = None
        for name, value in raw_headers:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-ms-client-request-id":
                client_request_id = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"traceid":
                trace_id = value.decode("latin-1")
        too_long = len(request_id or "") > REQUEST_ID_LIMIT or len(client_request_id or "") > REQUEST_ID_LIMIT
        if request_id is None or too_long or not SAFE_ID.match(request_id):
            request_id = str(uuid.uuid4())  # never echo or log what could forge a header or a log field
        if client_request_id is not None and (too_long or not SAFE_ID.match(client_request_id)):
            client_request_id = None
        REQUEST_ID.set(request_id)  # this request's task: what data collection records run() served
        try:
            status, headers, body = await self._route(method, path, scope, receive, too_long)
        except Exception:  # noqa: BLE001 - whatever breaks, the request gets Azure's error, a log line, a metric
            log.error(
                "the server failed on %s %s (request %s):\n%s", method, quote(path), request_id, traceback.format_exc()
            )
            status, headers, body = error_response(500, "the server failed on this request; its log says why")
        if request_id:
            headers.append((b"x-request-id", request_id.encode("latin-1")))
            headers.append((b"x-ms-request-id", (client_request_id or request_id).encode("latin-1")))
        if client_request_id:
            headers.append((b"x-ms-client-request-id", client_request_id.encode("latin-1")))
        if trace_id is not None and len(trace_id) <= REQUEST_ID_LIMIT and SAFE_ID.match(trace_id):
            headers.append((b"traceid", trace_id.encode("latin-1")))  # Office's tracing header, as Azure echoes it
        if origin is not None and self.cors and (origin in self.cors or "*" in self.cors):
            allowed = "*" if "*" in self.cors else origin  # only ever a configured value, never the client's
            headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
            if method == "OPTIONS":
                headers.append((b"access-control-allow-methods", b"GET, POST, OPTIONS"))
                headers.append((b"access-control-allow-headers", b"*"))
        if isinstance(body, bytes):
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        else:  # a streamed body: chunked transfer encoding
            await send({"type": "http.response.start", "status": status, "headers": headers})
            try:
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except StreamFailed:
                pass  # left incomplete on purpose: the server closes the connection, the client sees a cut
        self.metrics.observe(path, status, time.perf_counter() - started)
        if path not in PROBE_PATHS or status != 200:
            shown = quote(path, safe="/:@!$&'()*+,;=-._~")  # a decoded path may hold spaces: never a new field
            self.request_log.write(method, shown, status, (time.perf_counter() - started) * 1000, request_id)
        elif probes_log.isEnabledFor(logging.DEBUG):
            probes_log.debug("method=%s path=%s status=%d", method, path, status)

    def refused_connection(self, status: int) -> None:
        """A request the connection refused before the app saw it (a head too large): its log
        line and its metric, as any other request's."""
        self.metrics.observe("other", status, 0.0)
        self.request_log.write("-", "-", status, 0.0, "-")

    async def _route(self, method: str, path: str, scope, receive, too_long: bool) -> tuple:
        """The route's answer: (status, headers, body), the body bytes or chunks to stream."""
        if too_long:
            return error_response(431, f"x-request-id must not exceed {REQUEST_ID_LIMIT} characters")
        if path == "/score":
            return await self._score(method, scope, receive)
        if path == "/":
            return (
                (200, list(HTML), b"Healthy") if method in ("GET", "HEAD") else error_response(405, METHOD_NOT_ALLOWED)
            )
        if path == "/ready":
            if method not in ("GET", "HEAD"):
                return error_response(405, METHOD_NOT_ALLOWED)
            if self.ready and self.service_ready():
                return 200, list(TEXT), b"Ready"
            return error_response(503, "init() has not returned yet")
        if path == "/metrics" and method == "GET":
            return 200, [(b"content-type", METRICS_TYPE)], self.metrics.exposition()
        if path == "/swagger.json" and method == "GET":
            return self._swagger(scope)
        if path == "/-/reload" and method == "POST" and self.settings.dev_reload:
            return await self._reload()
        return error_response(404, NOT_FOUND)

    async def _score(self, method: str, scope, receive) -> tuple[int, list, bytes | AsyncIterator[bytes]]:
        if method not in ("GET", "POST", "OPTIONS"):
            return error_response(405, METHOD_NOT_ALLOWED)
        limit = self.settings.max_concurrent_requests
        if limit and self.scoring >= limit:
            status, headers, payload = error_response(429, f"more than {limit} requests at once; try again")
            headers.append((b"retry-after", b"1"))
            return status, headers, payload
        self.scoring += 1
        self.metrics.waiting.inc()
        try:
            return await self._score_when_ready(method, scope, receive)
        finally:
            self.scoring -= 1
            self.metrics.waiting.dec()

    async def _score_when_ready(self, method: str, scope, receive) -> tuple[int, list, bytes | AsyncIterator[bytes]]:
        if not self.ready:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self.initialised.wait()
            except TimeoutError:
                return error_response(503, f"init() did not return within the scoring timeout ({self.timeout_s:g} s)")
            if not self.ready:
                return error_response(503, "the entry script failed to start; the service's log says why")
        raw_http = self.script.raw_http
        if method == "OPTIONS" and not raw_http:  # a @rawhttp run() answers OPTIONS itself, as with Azure
            return 200, [(b"content-type", b"text/html; charset=utf-8"), (b"x-ms-run-function-failed", b"False")], b""
        try:
            body = await self.bodies.read(scope, receive) if method == "POST" or raw_http else b""
        except BodyRefused as refused:
            status, headers, payload = error_response(refused.status, refused.message)
            if refused.status == 503:
                headers.append((b"retry-after", b"1"))
            return status, headers, payload
        try:
            answer = await self._score_body(scope, body)
            self.payloads.log(body, answer[2])
            return answer
        finally:
            self.bodies.release(body)

    async def _score_body(self, scope, body: bytes) -> tuple[int, list, bytes | AsyncIterator[bytes]]:
        script = self.script
        request = Request(scope, body)
        try:
            arguments = script.arguments(request)
        except BadRequest as error:
            return error_response(error.status, error.message)
        try:
            if self.batcher is not None:
                ok, result, seconds = await self.batcher.call(script, request, arguments)
            else:
                ok, result, seconds = await self.runner.call(script.run, arguments, self.timeout_s)
        except ScoringTimeout:
            log.error(
                "run() did not return within %d ms (request %s)",
                self.settings.scoring_timeout_ms,
                request.headers.get("X-Request-Id", ""),
            )
            self.metrics.run_failures.inc()
            return error_response(500, f"Scoring timeout after {self.settings.scoring_timeout_ms} ms", run_failed=True)
        timing = (b"x-ms-run-fn-exec-ms", f"{seconds * 1000:.3f}".encode())
        if ok and is_http_response(result):
            return self._script_response(result, timing)
        if not ok and script.raw_http and getattr(result, "code", None) in CLIENT_ERRORS:
            # werkzeug refusing the request while run() read it (a multipart form over its limits):
            # what Flask, so Azure's server, answers, not a failure of run()
            return error_response(result.code, getattr(result, "description", None) or "the request was refused")
        if ok:
            try:
                return 200, [JSON[0], (b"x-ms-run-function-failed", b"False"), timing], json_body(result)
            except (TypeError, ValueError) as error:
                log.error("run() returned a value that is not JSON-serialisable: %s", error)
                message = f"run() returned a value that is not JSON-serialisable ({type(result).__name__})"
        else:
            log.error(
                "run() raised an exception:\n%s",
                "".join(traceback.format_exception(type(result), result, result.__traceback__)),
            )
            message = "An unexpected error occurred in scoring script. Check the logs for more info."
        self.metrics.run_failures.inc()
        status, headers, body = error_response(500, message, run_failed=True)
        return status, headers + [timing], body

    def _script_response(self, response, timing: tuple[bytes, bytes]) -> tuple[int, list, bytes | AsyncIterator[bytes]]:
        """A response object run() returned (AMLResponse, Flask's, werkzeug's) goes out as it is,
        flagged as failed when its status is 5xx, as Azure's server does."""
        failed = response.status_code >= 500
        try:
            headers = [
                header_pair(name, value)
                for name, value in response.headers.to_wsgi_list()
                if name.lower() != "content-length" and not (failed and name.lower() == "x-ms-run-function-failed")
            ]
        except ValueError as error:
            log.error("run() returned a response with a header HTTP cannot carry: %s", error)
            self.metrics.run_failures.inc()
            status, headers, body = error_response(500, f"run() returned a response with {error}", run_failed=True)
            return status, headers + [timing], body
        if failed:
            headers.append((b"x-ms-run-function-failed", b"True"))
        headers.append(timing)
        if not response.is_streamed:
            return response.status_code, headers, response.get_data()
        return response.status_code, headers, self._stream(response)

    async def _stream(self, response) -> AsyncIterator[bytes]:
        """The chunks of a streamed body, each produced on the entry-script thread (the
        script's generator is its code, and its calls stay one at a time)."""
        chunks = response.iter_encoded()
        try:
            while True:
                ok, chunk, _ = await self.runner.call(functools.partial(next, chunks), {}, self.timeout_s)
                if not ok and isinstance(chunk, StopIteration):
                    return
                if not ok:
                    log.error(
                        "the streamed response failed after its headers were sent:\n%s",
                        "".join(traceback.format_exception(type(chunk), chunk, chunk.__traceback__)),
                    )
                    raise StreamFailed
                if chunk:
                    yield chunk
        except ScoringTimeout:
            log.error("the streamed response did not finish within %d ms", self.settings.scoring_timeout_ms)
            raise StreamFailed from None
        finally:
            await self.runner.call(response.close, {}, None)

    def _load_again(self) -> tuple[EntryScript, dict[str, bytes]]:
        """Runs on the entry-script thread, after the calls queued before it: forget the app's
        own modules (so edited helpers are read again), import the script, call init()."""
        root = os.path.abspath(self.settings.app_root) + os.sep
        previous = {
            name: module
            for name, module in sys.modules.items()
            if (getattr(module, "__file__", None) or "").startswith(root)
        }
        for name in previous:
            del sys.modules[name]
        try:
            script = EntryScript(self.settings.entry_script, self.settings.source_directory)
            script.init()
        except BaseException:
            sys.modules.update(previous)  # the old code goes on serving, with its own modules
            raise
        documents = swagger.documents(
            self.settings.app_root,
            self.settings.service_name,
            self.settings.service_version,
            script.schemas(),
            self.settings.service_path_prefix,
        )
        return script, documents

    async def _reload(self) -> tuple[int, list, bytes]:
        if not self.ready:
            return error_response(503, "init() has not returned yet")
        ok, value, seconds = await self.runner.call(self._load_again, {}, None)
        if not ok:
            log.error(
                "reload failed; the previous code keeps serving:\n%s",
                "".join(traceback.format_exception(type(value), value, value.__traceback__)),
            )
            reason = traceback.format_exception_only(type(value), value)[-1].strip()
            return error_response(500, f"reload failed: {reason}; the previous code keeps serving")
        self.script, self.swagger = value
        log.info("entry script reloaded in %.3f s", seconds)
        return 200, list(JSON), json_body({"reloaded": True, "seconds": round(seconds, 3)})

    def _swagger(self, scope) -> tuple[int, list, bytes]:
        requested = parse_qs(scope["query_string"].decode("latin-1")).get("version", ["2"])[0]
        version = swagger.VERSION_ALIASES.get(requested)
        if version is None:
            return error_response(404, f"Swagger version [{requested}] is not valid. Supported versions: [2, 3].")
        if not self.ready:
            return error_response(503, "init() has not returned yet")
        document = self.swagger.get(version)
        if document is None:
            supported = ", ".join(sorted(self.swagger))
            return error_response(
                404,
                f"Swagger version [{requested}] is not supported for the scoring script. "
                f"Supported swagger versions: [{supported}].",
            )
        return 200, list(JSON), document
