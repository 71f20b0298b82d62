"""SIGINT and SIGTERM stop a long-running loop: they set its stop event, and the loop
finishes the step it is in (the executor skips the rest with `interrupted`)."""

from __future__ import annotations

import signal
import threading


def stop_on_signals(*events: threading.Event) -> None:
    """Set the events (a stop, and what the loop waits on) on SIGINT or SIGTERM. Only the main
    thread may install handlers; a loop run from another thread (a test) is stopped through
    its events alone."""
    if threading.current_thread() is threading.main_thread():
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda *_: [event.set() for event in events])
