"""When the long-running loops try again after a temporary failure: one policy for both.

1 s, 2 s, 4 s, ... at most `cap_s` (60 s), per key: a manifest, or None for a whole run
that could not start (no engine, a lock held). A failure's own hint (`TemporaryError.delay`,
such as a registry's Retry-After) is taken instead of the doubling, within the same cap.
"""

from __future__ import annotations

import time
from pathlib import Path

MAX_BACKOFF_S = 60.0
_MAX_DOUBLINGS = 6  # 2**6 s = 64 s > MAX_BACKOFF_S: the exponent stops growing there

Key = Path | None


class Backoff:
    def __init__(self, cap_s: float = MAX_BACKOFF_S):
        self.cap_s = cap_s
        self.due: dict[Key, tuple[int, float]] = {}  # key -> (failures in a row, when)

    def failed(self, key: Key, hint: float | None = None) -> float:
        """Record a failure; the seconds until the key is due again."""
        failures = self.due.get(key, (0, 0.0))[0] + 1
        wait = hint if hint is not None and hint > 0 else 2.0 ** min(failures - 1, _MAX_DOUBLINGS)
        delay = min(self.cap_s, wait)
        self.due[key] = (failures, time.monotonic() + delay)
        return delay

    def succeeded(self, key: Key) -> None:
        self.due.pop(key, None)

    @property
    def whole_run_failing(self) -> bool:
        return None in self.due

    def next_due(self, default: float) -> float:
        """The monotonic time of the next retry, or `default` when none is due before it."""
        if None in self.due:  # the whole run failed: its retry covers every package
            return min(self.due[None][1], default)
        return min((when for _, when in self.due.values()), default=default)

    def take_due(self, now: float) -> tuple[bool, set[Path]]:
        """Whether the whole run is due, and which packages are (none while the whole run is
        failing: a package retry would fail the same way, and spin)."""
        if None in self.due:
            return self.due[None][1] <= now, set()
        return False, {key for key, (_, when) in self.due.items() if key is not None and when <= now}
