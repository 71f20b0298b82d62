"""The thread that runs the user's init() and run(), one call at a time.

Azure's server runs each worker's calls one after another (a synchronous gunicorn
worker), and entry scripts rely on that (a global model, no locks). We keep that
promise with one dedicated thread per worker process, so the event loop stays free
to answer liveness and readiness probes while a long run() is in progress.

A call that overruns its deadline is answered with a 500 at the deadline; the
thread then gets a TimeoutError raised at its next Python instruction (as
Azure's SIGALRM does) and is replaced by a fresh thread, so later requests are
not stuck behind it.
"""

from __future__ import annotations

import asyncio
import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class ScoringTimeout(TimeoutError):
    """Raised inside a run() call that overran SCORING_TIMEOUT_MS."""


def _raise_in_thread(thread: threading.Thread, exception: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception))


def _settle(future: asyncio.Future, ok: bool, value: Any, seconds: float) -> None:
    if not future.done():  # it may have timed out already
        future.set_result((ok, value, seconds))


class RunThread:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.lock = asyncio.Lock()  # one call at a time, in arrival order
        self._start()

    def _start(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, args=(self._jobs,), name="entry-script", daemon=True)
        self._thread.start()

    def _work(self, jobs: queue.SimpleQueue) -> None:
        try:
            while (job := jobs.get()) is not None:
                future, function, arguments = job
                started = time.perf_counter()
                try:
                    outcome = (True, function(**arguments))
                except BaseException as error:  # the user's code may raise anything
                    outcome = (False, error)
                self.loop.call_soon_threadsafe(_settle, future, *outcome, time.perf_counter() - started)
        except BaseException:  # a late ScoringTimeout, or the loop closed under an abandoned thread
            return

    async def call(self, function: Callable[..., Any], arguments: dict[str, Any], timeout_s: float | None):
        """(ok, result or exception, seconds); raises ScoringTimeout at the deadline."""
        async with self.lock:
            future = self.loop.create_future()
            self._jobs.put((future, function, arguments))
            try:
                return await asyncio.wait_for(future, timeout_s)
            except asyncio.TimeoutError:
                self._abandon()
                raise ScoringTimeout() from None

    def _abandon(self) -> None:
        """Interrupt the overrunning call and carry on with a fresh thread."""
        old_thread, old_jobs = self._thread, self._jobs
        self._start()
        old_jobs.put(None)
        _raise_in_thread(old_thread, ScoringTimeout)
