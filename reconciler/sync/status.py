"""The sync agent's status: what it fetched, what it applied, what failed, when it runs next,
each package's state and the last rounds. Its JSON is the status file, `GET /status` and what
the status page shows.

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
ROUNDS_KEPT = 20


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Event:
    commit: str
    at: str
    message: str = ""


@dataclass
class PackageState:
    name: str
    state: str  # in sync | failed | held
    revision: str = ""  # the commit what it runs (or wrote) came from, as `status` describes it
    error: str = ""  # the last failure (held: the one it is held for)


@dataclass
class Round:
    commit: str
    at: str
    outcome: str  # applied | failed | error (the round could not run)
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)  # what each package did


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
    packages: list[PackageState] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)  # the last ROUNDS_KEPT, newest first

    def add_round(self, finished: Round) -> None:
        self.rounds = [finished, *self.rounds][:ROUNDS_KEPT]

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> None:
        write_atomic(folder / STATUS_NAME, (json.dumps(self.to_json(), indent=2) + "\n").encode())

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
                packages=[PackageState(**entry) for entry in data.get("packages") or ()],
                rounds=[Round(**entry) for entry in data.get("rounds") or ()],
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
        for package in self.packages:
            runs = f" ({package.revision})" if package.revision else ""
            error = f": {package.error}" if package.error else ""
            lines.append(f"  {package.name}: {package.state}{runs}{error}")
        return "\n".join(lines) + "\n"


def in_seconds(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).isoformat(timespec="seconds")
