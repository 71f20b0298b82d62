"""A long-running `python -m reconciler ...` (watch, sync) with its output in a file, for tests
that wait for lines and then stop it as a service manager would (SIGTERM)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class CliProcess:
    wait_timeout = 60  # seconds wait_for waits by default
    stop_timeout = 10  # seconds SIGTERM gets before SIGKILL

    def __init__(self, *arguments: str, cwd=None, env: dict | None = None):
        self.log = tempfile.NamedTemporaryFile(prefix=f"{arguments[0]}-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *arguments],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    @property
    def output(self) -> str:
        return Path(self.log.name).read_text()

    def wait_for(self, pattern: str, timeout: float | None = None, after: int = 0) -> re.Match:
        timeout = timeout or self.wait_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.compile(pattern, re.M).search(self.output, after)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.stop_timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        os.unlink(self.log.name)
