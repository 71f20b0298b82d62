"""Package locks: two reconcilers (a `watch` and a CI `apply`) never act on one package at once.

One lock file per package manifest, in a per-user folder under the system's temporary
directory (shared by every reconciler process of the user, whatever its cache folder),
locked with flock: the kernel releases it when the holder exits, so a crash leaves no
stale lock. The holder writes who it is into the file, so a waiter can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import blake3

from reconciler.core.errors import TemporaryError


class LockTimeout(TemporaryError):
    """Another reconciler held a package for longer than we were willing to wait."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder  # who holds it, as describe_holder says


def lock_directory() -> Path:
    folder = Path(tempfile.gettempdir()) / f"reconciler-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def _lock_path(manifest: Path) -> Path:
    return lock_directory() / f"{blake3.blake3(str(manifest).encode()).hexdigest()[:32]}.lock"


def describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        since = datetime.fromtimestamp(holder["since"]).strftime("%H:%M:%S")
        return f"pid {holder['pid']} ({holder['command']}) on {holder['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another reconciler"


class PackageLocks:
    """Exclusive locks on a set of packages, taken in a fixed order (no deadlock between
    two reconcilers locking overlapping sets), waiting at most `timeout` seconds."""

    def __init__(self, manifests: Iterable[Path], *, timeout: float, command: str | None = None):
        unique = sorted(
            {Path(os.path.realpath(m)) for m in manifests}, key=str
        )  # one lock per package, however reached
        self.paths = [(_lock_path(manifest), manifest) for manifest in unique]
        self.timeout = timeout
        self.command = command or " ".join(["reconciler", *sys.argv[1:2]])
        self.handles: list[int] = []

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            for lock_path, manifest in self.paths:
                handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            holder = describe_holder(lock_path)
                            os.close(handle)
                            raise LockTimeout(
                                f"{manifest} is being reconciled by {holder}; waited {self.timeout:g} s", holder
                            ) from None
                        time.sleep(0.1)
                os.ftruncate(handle, 0)
                os.pwrite(
                    handle,
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "command": self.command,
                            "host": socket.gethostname(),
                            "since": time.time(),
                        }
                    ).encode(),
                    0,
                )
                self.handles.append(handle)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for handle in self.handles:
            os.close(handle)  # closing the descriptor releases the flock
        self.handles = []

    def __enter__(self) -> PackageLocks:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
