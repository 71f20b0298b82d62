"""HTTP connections that cannot be held open for nothing.

uvicorn closes a keep-alive connection that stays idle after a response, but never one
that is idle from the start or that sends its request head byte by byte: a slow client
could hold every socket of a worker. This protocol gives every request head a deadline,
from the moment the connection opens or the next request begins until its headers are in.
(A body that arrives too slowly is the 408 of `bodies`.)
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def guarded_protocol(head_timeout_s: float) -> type[HttpToolsProtocol]:
    """The httptools protocol, closing connections whose request head takes over `head_timeout_s`."""

    class HeadDeadlineProtocol(HttpToolsProtocol):
        head_deadline: asyncio.TimerHandle | None = None

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

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_head_deadline()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_head_deadline()

        def on_headers_complete(self) -> None:
            self._disarm_head_deadline()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm_head_deadline()
            super().connection_lost(exc)

    return HeadDeadlineProtocol
