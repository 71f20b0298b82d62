"""The sync agent's status file: what it fetched, what it applied, what failed, when it runs next.

`<state folder>/status.json`, written atomically after every round, so `reconciler sync
--status` (or a monitoring script) can read it at any moment, even while a round runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from reconciler.core.atomic import write_atomic

STATUS_NAME = "status.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Event:
    commit: str
    at: str
    message: str = ""


@dataclass
class SyncStatus:
    repository: str  # without credentials
    ref: str
    path: str
    last_fetched: Event | None = None
    last_applied: Event | None = None  # the last round that applied its commit with no error
    last_error: Event | None = None  # cleared by a round with no error
    next_round: str = ""
    agent: dict = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        write_atomic(folder / STATUS_NAME, (json.dumps(asdict(self), indent=2) + "\n").encode())

    @classmethod
    def read(cls, folder: Path) -> SyncStatus | None:
        try:
            data = json.loads((folder / STATUS_NAME).read_text(encoding="utf-8"))
            events = {
                key: Event(**data[key]) if data.get(key) else None
                for key in ("last_fetched", "last_applied", "last_error")
            }
            return cls(
                repository=data["repository"],
                ref=data["ref"],
                path=data["path"],
                next_round=data.get("next_round", ""),
                agent=data.get("agent") or {},
                **events,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def text(self) -> str:
        def event(label: str, value: Event | None) -> str:
            if value is None:
                return f"{label:<13} -"
            message = f": {value.message}" if value.message else ""
            return f"{label:<13} {value.commit[:7]} at {value.at}{message}"

        lines = [
            f"repository    {self.repository} ({self.ref}, {self.path})",
            event("last fetched", self.last_fetched),
            event("last applied", self.last_applied),
            event("last error", self.last_error),
            f"next round    {self.next_round or '-'}",
        ]
        if self.agent:
            lines.append(
                f"agent         pid {self.agent.get('pid')} on {self.agent.get('host')} since {self.agent.get('since')}"
            )
        return "\n".join(lines) + "\n"


def in_seconds(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).isoformat(timespec="seconds")
