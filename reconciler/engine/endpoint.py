"""Reaching a serving container from this machine: only ever through its published port on
the loopback address that matches the address it was published on."""

from __future__ import annotations

import http.client


def loopback_for(bind_address: str | None) -> str:
    """Where to connect for a port published on `bind_address` (0.0.0.0 and localhost included)."""
    return "::1" if bind_address in ("::", "::1") else "127.0.0.1"


def score_url(bind_address: str | None, port: int) -> str:
    host = loopback_for(bind_address)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/score"


def is_ready(bind_address: str | None, port: int, timeout: float) -> bool:
    """GET /ready answered 200; OSError when nothing answers at all."""
    connection = http.client.HTTPConnection(loopback_for(bind_address), port, timeout=timeout)
    try:
        connection.request("GET", "/ready")
        return connection.getresponse().status == 200
    finally:
        connection.close()
