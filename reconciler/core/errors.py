"""Every failure reconciler reports, and whether trying again could help.

The taxonomy (after kopf's TemporaryError / PermanentError):

- `PermanentError`: the same inputs fail the same way: a manifest that does not load, a
  build that failed, a container whose init() fails. Retrying changes nothing, so a
  watcher waits for the next change to those inputs (and says so once).
- `TemporaryError`: the world may change under us: no engine answers, another
  reconciler holds a lock, a registry hiccups, the disk is full. Retried with backoff;
  `delay` is a hint in seconds.

Every error is a `ReconcilerError` whose message is meant for a person: no traceback.
Problems in the user's files are `Problem`s, reported as `file:line:column: field: message`,
so all of them can be collected and printed at once instead of stopping at the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.paths import display_path


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = display_path(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"

    def to_json(self) -> dict:
        return {
            "file": display_path(self.file),
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class ReconcilerError(Exception):
    """A failure with a message meant for the user. Raise one of the two kinds below."""

    temporary = False
    delay: float | None = None  # when to try again, if the failure knows (temporary ones only)


class PermanentError(ReconcilerError):
    """The same inputs give the same failure: wait for them to change."""


class TemporaryError(ReconcilerError):
    """May succeed later without any change: retry with backoff (`delay`: a hint in seconds)."""

    temporary = True

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class InvalidInput(PermanentError):
    """One or more problems in the user's files."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
