"""Problems found in user input, reported as `file:line:column: field: message`.

Every error a user can fix by editing a file is a Problem, so all of them can be
collected and printed at once instead of stopping at the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person wants to read it: relative to the working directory when below it."""
    path = os.fspath(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith(os.pardir) else relative


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
    """A failure with a message meant for the user (no traceback)."""


class InvalidInput(ReconcilerError):
    """One or more problems in the user's files."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
