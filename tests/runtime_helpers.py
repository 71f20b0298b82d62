"""Start the real scoring runtime in a subprocess on a loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RuntimeProcess:
    """`python -m reconciler.runtime` serving `score` from `app_root` on 127.0.0.1."""

    def __init__(
        self,
        app_root: Path,
        *,
        model_dir: Path | None = None,
        env: dict | None = None,
        python: str = sys.executable,
        module: str = "reconciler.runtime",
        launcher: tuple = (),
    ):
        environment = {
            "AML_APP_ROOT": str(app_root),
            "AZUREML_ENTRY_SCRIPT": "score.py",
            **({"AZUREML_MODEL_DIR": str(model_dir)} if model_dir else {}),
            **(env or {}),
        }
        self._start([*launcher, python, "-m", module, "--host", "127.0.0.1"], environment, app_root)

    def _start(self, command: list[str], env: dict, cwd: Path) -> None:
        """`command --port PORT` on a free port, its output in a file (a pipe nobody reads
        would fill, and stall the server)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix="runtime-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def logs(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def request_log_lines(self, count: int, timeout: float = 10) -> list[str]:
        """The request log lines of the test's own requests, once there are `count` of them (they
        are written after the response, so a client may see its answer first). The readiness
        probes `wait_ready` sends are left out: one that meets a 503 before init() returns is
        logged, and whether it does is a race."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                line
                for line in self.logs.splitlines()
                if "reconciler.runtime.requests" in line and " path=/ready " not in line
            ]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def wait_alive(self, timeout: float = 30) -> None:
        self._wait("/", timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        self._wait("/ready", timeout)

    def _wait(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"runtime exited with {self.process.returncode}:\n{self.logs}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or (Azure's server) listening but not answering before init()
            time.sleep(0.05)
        raise AssertionError(f"{path} did not answer 200 within {timeout} s:\n{self.logs}")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RuntimeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        os.unlink(self.log_file.name)


class ServeProcess(RuntimeProcess):
    """`reconciler serve PACKAGE` on a free loopback port."""

    def __init__(self, package: Path):
        self._start([sys.executable, "-m", "reconciler", "serve", str(package)], {}, package)


def write_app(folder: Path, score: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(textwrap.dedent(score))
    return folder
