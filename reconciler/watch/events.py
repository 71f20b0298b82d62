"""The event source: file events from watchdog, coalesced into batches.

Each folder is watched on its own (not recursively), so only the folders that hold
inputs raise events and reconciler's own writes never do. A batch closes after a
quiet period (200 ms) or at a cap (2 s), so a branch switch that touches a thousand
files is one batch.
"""

from __future__ import annotations

import os
import queue
import threading
import time


class _Handler:
    """watchdog handler: every path an event names, into a queue."""

    def __init__(self, sink: queue.SimpleQueue):
        self.sink = sink

    def dispatch(self, event) -> None:
        if event.is_directory and event.event_type in ("modified", "opened", "closed", "closed_no_write"):
            return  # a folder's own metadata: the files inside report themselves
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.sink.put(os.path.abspath(event.src_path))
        if getattr(event, "dest_path", ""):
            self.sink.put(os.path.abspath(event.dest_path))


class FileEvents:
    def __init__(self, stop: threading.Event, *, quiet_s: float = 0.2, cap_s: float = 2.0):
        self.stop = stop
        self.quiet_s, self.cap_s = quiet_s, cap_s
        self.queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.handler = _Handler(self.queue)
        self.scheduled: dict[str, object] = {}
        self.observer = None

    def start(self) -> None:
        from watchdog.observers import Observer

        self.observer = Observer()
        self.observer.daemon = True
        self.observer.start()

    def close(self) -> None:
        if self.observer is not None:
            self.observer.stop()

    def watch_folders(self, wanted: set[str]) -> None:
        """Watch exactly these folders from now on."""
        for folder in wanted - self.scheduled.keys():
            try:
                self.scheduled[folder] = self.observer.schedule(self.handler, folder, recursive=False)
            except OSError:
                pass  # vanished since it was listed: the next run looks again
        for folder in set(self.scheduled) - wanted:
            self.observer.unschedule(self.scheduled.pop(folder))

    def next_batch(self, timeout: float) -> set[str]:
        """Wait up to `timeout` for a first event, then until a quiet period or the cap."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stop.is_set():
                return set()
            try:
                first = self.queue.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                break
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return set()
        batch = {first}
        cap = time.monotonic() + self.cap_s
        quiet_until = time.monotonic() + self.quiet_s
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= quiet_until or now >= cap:
                break
            try:
                batch.add(self.queue.get(timeout=min(quiet_until, cap) - now))
                quiet_until = time.monotonic() + self.quiet_s
            except queue.Empty:
                break
        return batch
