"""The sync agent's HTTP listener (`--listen HOST:PORT`, 127.0.0.1 unless a host is given):
push webhooks that start a round at once, `GET /status` (JSON), `GET /metrics` (Prometheus)
and `GET /` (the status page). Only the agent's own thread runs rounds: a hook only wakes it,
so a burst of hooks is one round, and a round in progress is followed by one more.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reconciler.core.errors import PermanentError
from reconciler.sync.metrics import CONTENT_TYPE, SyncMetrics
from reconciler.sync.page import render_page
from reconciler.sync.webhooks import MAX_HOOK_BYTES, PROVIDERS, receive

log = logging.getLogger("reconciler.sync")
BODY_TIMEOUT_S = 10  # a hook's body that takes longer is dropped
# the page runs its own inline script and style, and talks to nothing but this listener
PAGE_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"


def read_webhook_secret(path: Path) -> bytes:
    """The shared secret, from a file (never a flag: a command line is visible to every user)."""
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        raise PermanentError(f"--webhook-secret-file {path}: cannot read it: {error.strerror}") from None
    if len(secret) < 16:
        raise PermanentError(f"--webhook-secret-file {path}: a secret of at least 16 characters, please")
    return secret


def parse_listen(text: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[::1]:PORT`; 127.0.0.1 unless a host is given."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: use PORT or HOST:PORT, such as 127.0.0.1:8099")
    return host, int(port)


class Listener:
    def __init__(
        self,
        address: tuple[str, int],
        *,
        ref: str,
        secret: bytes | None,
        status: Callable[[], dict],
        wake: Callable[[], None],
        metrics: SyncMetrics,
        say: Callable[[str], None],
    ):
        self.ref, self.secret, self.status, self.wake, self.metrics, self.say = ref, secret, status, wake, metrics, say
        handler = type("Handler", (_Handler,), {"listener": self})
        self.server = ThreadingHTTPServer(address, handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="sync-listener", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    listener: Listener
    server_version = "reconciler-sync"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # the agent says what matters itself: never a request line with a payload

    def _answer(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, message: str) -> None:
        self._answer(status, json.dumps({"message": message}).encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/status":
            self._answer(200, json.dumps(self.listener.status(), indent=2).encode())
        elif path == "/metrics":
            self._answer(200, self.listener.metrics.exposition(), CONTENT_TYPE)
        elif path == "/":
            page = render_page(self.listener.status())
            self._answer(200, page, "text/html; charset=utf-8", Content_Security_Policy=PAGE_POLICY)
        elif path.startswith("/hooks/"):
            self._json(405, "hooks are POSTed")
        else:
            self._json(404, "no such page; try /, /status or /metrics")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        provider = self.path.split("?", 1)[0].removeprefix("/hooks/")
        if not self.path.startswith("/hooks/") or provider not in PROVIDERS:
            self._json(404, f"no such hook; use /hooks/{', /hooks/'.join(PROVIDERS)}")
            return
        if self.listener.secret is None:
            self._json(404, "webhooks are off: the agent was started without --webhook-secret-file")
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._json(411, "a hook needs a Content-Length")
            return
        if int(length) > MAX_HOOK_BYTES:
            self._count(provider, 413)
            self._json(413, f"a hook's body is at most {MAX_HOOK_BYTES // 1024} KiB")
            self.close_connection = True
            return
        self.connection.settimeout(BODY_TIMEOUT_S)
        try:
            body = self.rfile.read(int(length))
        except OSError:
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        hook = receive(provider, headers, body, self.listener.secret, self.listener.ref)
        self._count(provider, hook.status)
        if hook.status == 401:  # one line, with neither the payload nor what was sent as a signature
            self.listener.say(f"sync: a {provider} webhook from {self.client_address[0]} was refused: {hook.message}")
        if hook.wake:
            self.listener.say(f"sync: {provider} webhook: {hook.message}")
            self.listener.wake()
        self._json(hook.status, hook.message)

    def _count(self, provider: str, status: int) -> None:
        self.listener.metrics.webhooks.labels(provider, str(status)).inc()
