"""Reading a request body within its limits: the per-request size (413), the budget of bytes
held by all requests at once (503, try again), and a deadline for slow senders (408). A body
is handed on only when it arrived whole, in any transfer encoding: a client that went away
mid-body, or a body shorter than its Content-Length, is a 400 that run() never sees."""

from __future__ import annotations

import asyncio

from .config import Settings


class BodyRefused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class BodyBudget:
    """The bytes of request bodies held right now, across the worker's requests."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.inflight = 0

    def release(self, body: bytes) -> None:
        self.inflight -= len(body)

    async def read(self, scope, receive) -> bytes:
        """The request body, counted in the budget until `release`."""
        limit = self.settings.max_body_bytes
        too_large = f"request body is larger than the {limit / (1024 * 1024):g} MB limit"
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                declared = int(value)
                if declared > limit:
                    raise BodyRefused(413, too_large)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":  # the client went away before the end
                        raise BodyRefused(400, f"the request body ended after {size} bytes, before its end")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    self.inflight += len(chunk)
                    if size > limit:
                        raise BodyRefused(413, too_large)
                    if self.inflight > self.settings.max_inflight_body_bytes:
                        raise BodyRefused(503, "too many large requests at once; try again")
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        if declared is not None and size != declared:
                            raise BodyRefused(400, f"the request body has {size} of its {declared} bytes")
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            self.inflight -= size
            raise BodyRefused(408, f"the request body did not arrive within {self.settings.body_timeout_s} s") from None
        except BodyRefused:
            self.inflight -= size
            raise
