"""HTTP connections that cannot be held open for nothing, nor fill memory with a head.

uvicorn closes a keep-alive connection that stays idle after a response, but never one
that is idle from the start or that sends its request head byte by byte: a slow client
could hold every socket of a worker. This protocol gives every request head a deadline,
from the moment the connection opens or the next request begins until its headers are in.
And httptools keeps a head's headers however many there are: past `head_limit` bytes a
head gets Azure's JSON error, 431, and the connection is closed (where the runtime faces
clients itself: `proxy: false`, Kubernetes, `reconciler serve`). (A body that arrives too
slowly is the 408 of `bodies`.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def head_too_large(limit: int) -> bytes:
    body = json.dumps({"message": f"the request head is larger than {limit // 1024} KiB"}).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"x-ms-run-function-failed: False\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def guarded_protocol(
    head_timeout_s: float,
    head_limit: int,
    refused: Callable[[int], None] = lambda status: None,
    drain_idle_s: float = 0,
) -> type[HttpToolsProtocol]:
    """The httptools protocol, closing connections whose request head takes over `head_timeout_s`
    or `head_limit` bytes; `refused(status)` is told of each (a log line and a metric).

    With `drain_idle_s` (behind reconciler's proxy), a shutdown never closes an idle connection
    first: the proxy may be sending a request on it at that very moment, and it must not resend
    a request that reached a container. An idle connection stays open that long; a request that
    comes on it is served and answered with `Connection: close`."""

    class HeadDeadlineProtocol(HttpToolsProtocol):
        head_deadline: asyncio.TimerHandle | None = None
        head_bytes = 0  # bytes received since the current head began, until it is complete
        draining = False

        def _arm_head_deadline(self) -> None:
            if self.head_deadline is None:
                self.head_deadline = self.loop.call_later(head_timeout_s, self._head_too_slow)

        def _head_too_slow(self) -> None:
            self.head_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def _disarm_head_deadline(self) -> None:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None

        def data_received(self, data: bytes) -> None:
            if self.head_deadline is not None:  # a head is coming in
                self.head_bytes += len(data)
            super().data_received(data)
            if self.head_deadline is not None and self.head_bytes > head_limit and not self.transport.is_closing():
                self.transport.write(head_too_large(head_limit))
                self.transport.close()
                refused(431)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_head_deadline()

        def on_headers_complete(self) -> None:
            self._disarm_head_deadline()
            self.head_bytes = 0
            super().on_headers_complete()
            if self.draining and self.cycle is not None:
                self.cycle.keep_alive = False  # served, then closed by us: after a response, never before

        def shutdown(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if not (drain_idle_s and idle):
                super().shutdown()
                return
            self.draining = True
            self.loop.call_later(drain_idle_s, self._drained)

        def _drained(self) -> None:
            """Still idle after the drain: the proxy has let it go (it purges idle connections
            far sooner than this)."""
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

    return HeadDeadlineProtocol
