"""The thread that runs the user's init() and run(), one call at a time.

Azure's server runs each worker's calls one after another (a synchronous gunicorn
worker), and entry scripts rely on that (a global model, no locks). We keep that
promise with one dedicated thread per worker process, fed by a FIFO queue, so the
event loop stays free to answer liveness and readiness probes while a long run()
is in progress. Under load the thread takes queued calls back to back without
waiting for the event loop, which is where most of the throughput comes from.

A call that overruns its deadline is answered with a 500 at the deadline (within
the watchdog's tick); the thread gets a TimeoutError raised at its next Python
instruction (as Azure's SIGALRM does) and a fresh thread takes over the queue, so
later requests are not stuck behind it.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

WATCHDOG_TICK_S = 0.05


class ScoringTimeout(TimeoutError):
    """Raised inside a run() call that overran SCORING_TIMEOUT_MS."""


def _raise_in_thread(thread: threading.Thread, exception: type[BaseException]) -> None:
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception))


def _settle(future: asyncio.Future, outcome: tuple) -> None:
    if not future.done():  # it may have timed out already
        future.set_result(outcome)


class _Job:
    __slots__ = ("future", "function", "arguments", "timeout_s", "started", "context")

    def __init__(self, future: asyncio.Future, function: Callable, arguments: dict, timeout_s: float | None):
        self.context = contextvars.copy_context()  # the request's (its id, for data collection)
        self.future = future
        self.function = function
        self.arguments = arguments
        self.timeout_s = timeout_s
        self.started = 0.0  # perf_counter when the thread began the call; 0 while queued


class RunThread:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._state = threading.Lock()  # guards _current and _generation between thread and watchdog
        self._generation = 0
        self._current: _Job | None = None
        self._start()
        self._watchdog = loop.create_task(self._watch())

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._work, args=(self._generation,), name="entry-script", daemon=True)
        self._thread.start()

    def _work(self, generation: int) -> None:
        settle = self.loop.call_soon_threadsafe
        try:
            while True:
                job = self._jobs.get()
                with self._state:
                    self._current = job
                    job.started = time.perf_counter()
                try:
                    outcome = (True, job.context.run(job.function, **job.arguments))
                except BaseException as error:  # the user's code may raise anything
                    outcome = (False, error)
                seconds = time.perf_counter() - job.started
                with self._state:
                    if generation != self._generation:
                        return  # abandoned: the watchdog has answered this call already
                    self._current = None
                settle(_settle, job.future, (*outcome, seconds))
        except BaseException:  # a late ScoringTimeout, or the loop closed under an abandoned thread
            return

    def close(self) -> None:
        self._watchdog.cancel()

    @property
    def busy(self) -> bool:
        """A call in progress or queued (read without the lock: a hint, for batching)."""
        return self._current is not None or not self._jobs.empty()

    def call(self, function: Callable[..., Any], arguments: dict[str, Any], timeout_s: float | None) -> asyncio.Future:
        """A future of (ok, result or exception, seconds); it raises ScoringTimeout past the deadline."""
        future = self.loop.create_future()
        self._jobs.put(_Job(future, function, arguments, timeout_s))
        return future

    async def _watch(self) -> None:
        """Time out the call in progress once it overruns: checked every tick, so
        requests pay for no timer of their own."""
        while True:
            await asyncio.sleep(WATCHDOG_TICK_S)
            with self._state:
                job = self._current
                if job is None or job.timeout_s is None or time.perf_counter() - job.started <= job.timeout_s:
                    continue
                stuck = self._thread
                self._generation += 1
                self._current = None
                self._start()
                _raise_in_thread(stuck, ScoringTimeout)
            if not job.future.done():
                job.future.set_exception(ScoringTimeout())
