"""Logging: one line per event, grep-friendly, and a fast path for the per-request line.

    2026-11-24T14:32:10.146Z INFO pid=7 worker=0 reconciler.runtime.requests: method=POST path=/score status=200 ms=0.412 request_id=...

Every line has the same shape. The request line is the one written thousands of times
a second, so it bypasses the logging module (which costs as much as scoring a small
model): lines are formatted directly and written once per event-loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

REQUESTS_LOGGER = "reconciler.runtime.requests"
_worker_field = ""


def configure(level: str, worker: int | None = None) -> None:
    global _worker_field
    _worker_field = f" worker={worker}" if worker is not None else ""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stdout,
        format=f"%(asctime)s.%(msecs)03dZ %(levelname)s pid=%(process)d{_worker_field} %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        force=True,
    )
    logging.Formatter.converter = time.gmtime


class RequestLog:
    """Request lines, batched per event-loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream=None):
        self.loop = loop
        self.stream = stream or sys.stdout
        self.enabled = logging.getLogger(REQUESTS_LOGGER).isEnabledFor(logging.INFO)
        self.lines: list[str] = []
        self.second = -1
        self.stamp = ""
        self.suffix = f" INFO pid={os.getpid()}{_worker_field} {REQUESTS_LOGGER}: "

    def write(self, method: str, path: str, status: int, milliseconds: float, request_id: str) -> None:
        if not self.enabled:
            return
        now = time.time()
        second = int(now)
        if second != self.second:
            self.second = second
            self.stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        if not self.lines:
            self.loop.call_soon(self.flush)
        self.lines.append(
            f"{self.stamp}.{int((now - second) * 1000):03d}Z{self.suffix}"
            f"method={method} path={path} status={status} ms={milliseconds:.3f} request_id={request_id}\n"
        )

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            self.stream.write("".join(lines))
            self.stream.flush()


def model_dir_listing(model_dir: str | None, limit: int = 200) -> str:
    """What is in AZUREML_MODEL_DIR, for the log when init() fails."""
    if not model_dir:
        return "AZUREML_MODEL_DIR is not set"
    if not os.path.isdir(model_dir):
        return f"AZUREML_MODEL_DIR={model_dir} does not exist"
    lines = [f"AZUREML_MODEL_DIR={model_dir} contains:"]

    def visit(folder: str, depth: int) -> None:
        for name in sorted(os.listdir(folder)):
            if len(lines) > limit:
                lines.append("  " * depth + "...")
                return
            path = os.path.join(folder, name)
            lines.append("  " * depth + name + ("/" if os.path.isdir(path) else ""))
            if os.path.isdir(path):
                visit(path, depth + 1)

    visit(model_dir, 1)
    return "\n".join(lines)
