"""Reaching a serving container from this machine: only ever through its published port on
the loopback address that matches the address it was published on."""

from __future__ import annotations

import json
from dataclasses import dataclass

from reconciler.core.errors import PermanentError, TemporaryError


def loopback_for(bind_address: str | None) -> str:
    """Where to connect for a port published on `bind_address` (0.0.0.0 and localhost included)."""
    return "::1" if bind_address in ("::", "::1") else "127.0.0.1"


def score_url(bind_address: str | None, port: int) -> str:
    host = loopback_for(bind_address)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/score"


def port_refuses(bind_address: str | None, port: int, timeout: float = 0.5) -> bool:
    """Whether a connection to the published port is refused: nothing listens on it (Docker's
    port forwarder died). A slow or full listener is not refused: only a refusal counts."""
    import socket

    try:
        with socket.create_connection((loopback_for(bind_address), port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def is_ready(bind_address: str | None, port: int, timeout: float) -> bool:
    """GET /ready answered 200; OSError when nothing answers at all."""
    import http.client  # here: a plan that probes no container never loads it (nor ssl)

    connection = http.client.HTTPConnection(loopback_for(bind_address), port, timeout=timeout)
    try:
        connection.request("GET", "/ready")
        return connection.getresponse().status == 200
    finally:
        connection.close()


def request_reload(bind_address: str | None, port: int, timeout: float = 60) -> None:
    """Ask a dev container's runtime (watch --dev) to import the entry script again.

    PermanentError with the runtime's own message when the new code fails (the old code
    keeps serving); TemporaryError when nothing answers."""
    import http.client

    host = loopback_for(bind_address)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", "/-/reload")
        response = connection.getresponse()
        body = response.read()
    except OSError as error:
        raise TemporaryError(f"no answer from {host}:{port}: {error}") from None
    finally:
        connection.close()
    if response.status != 200:
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status}"
        raise PermanentError(message)


@dataclass(frozen=True)
class ServerCounts:
    """What the proxy counted for one of its servers since it started: every request it sent
    there, and the errors among them (5xx answers, connections that failed to open, answers
    that broke off)."""

    requests: int = 0
    errors: int = 0

    def since(self, earlier: ServerCounts) -> ServerCounts:
        """The counts after `earlier` (the proxy restarted, and counts from 0 again, when lower)."""
        if self.requests < earlier.requests or self.errors < earlier.errors:
            return self
        return ServerCounts(self.requests - earlier.requests, self.errors - earlier.errors)

    def label(self) -> str:
        return f"{self.requests},{self.errors}"

    @classmethod
    def of_label(cls, text: str) -> ServerCounts:
        requests, _, errors = text.partition(",")
        try:
            return cls(int(requests), int(errors))
        except ValueError:
            return cls()


def proxy_counts(port: int, path: str, backend: str, server: str, timeout: float = 5) -> ServerCounts:
    """One server's counts from HAProxy's stats page (CSV) on a loopback port; TemporaryError
    when the proxy does not answer."""
    import csv
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", f"{path};csv")
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    except OSError as error:
        raise TemporaryError(f"the proxy's stats on 127.0.0.1:{port} do not answer: {error}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise TemporaryError(f"the proxy's stats on 127.0.0.1:{port} answered HTTP {response.status}")
    rows = csv.DictReader(text.removeprefix("# ").splitlines())
    row = next((r for r in rows if r.get("pxname") == backend and r.get("svname") == server), None)
    if row is None:
        raise TemporaryError(f"the proxy counts nothing for {backend}/{server}")

    def count(*names: str) -> int:
        return sum(int(row.get(name) or 0) for name in names)

    answers = count("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
    failed = count("econ", "eresp")
    return ServerCounts(answers + failed, count("hrsp_5xx") + failed)
