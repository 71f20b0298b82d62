"""The planner: a pure function from (desired, observed) to actions, each with a cause.

No I/O happens here, so plans are tested as golden strings without Docker or
files. The executor carries out actions and decides nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .observe import FolderState

MAX_NAMED_INPUTS = 4


@dataclass(frozen=True)
class Intent:
    """What the planner needs to know about a package's desired state."""

    name: str
    mode: str
    folder: str  # as displayed
    image_hash: str
    container_hash: str
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class Action:
    kind: str  # write | build | push | create | recreate | start | remove
    package: str
    target: str
    cause: str


@dataclass
class PackagePlan:
    intent: Intent
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.actions and not self.errors


def _input_label(name: str) -> str:
    return name.removeprefix("app/")


def _cause_order(name: str) -> tuple[int, str]:
    """What a person edited comes first: code, models, the lock, settings; generated inputs last."""
    for rank, prefix in enumerate(("app/", "models/", "package.lock", "inference.", "models")):
        if name.startswith(prefix):
            return rank, name
    return 9, name


def changed_inputs(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """'score.py, package.lock, 3 more': which inputs differ between two hashes."""
    names = sorted((name for name in old.keys() | new.keys() if old.get(name) != new.get(name)), key=_cause_order)
    if not names:
        return "reconciler's hash schema changed"
    shown = [_input_label(n) + (" (new)" if n not in old else " (gone)" if n not in new else "") for n in names]
    if len(shown) > MAX_NAMED_INPUTS:
        shown = shown[:MAX_NAMED_INPUTS] + [f"{len(names) - MAX_NAMED_INPUTS} more"]
    return "inputs changed: " + ", ".join(shown)


def _drift(drift: tuple[str, ...]) -> str:
    shown = list(drift[:MAX_NAMED_INPUTS])
    if len(drift) > MAX_NAMED_INPUTS:
        shown.append(f"{len(drift) - MAX_NAMED_INPUTS} more")
    return "drift: " + ", ".join(shown)


def plan_folder(intent: Intent, folder: FolderState) -> PackagePlan:
    """Write the Dockerfile folder when it is missing, out of date, or edited by hand."""
    plan = PackagePlan(intent)
    if folder.status in ("foreign", "damaged", "other"):
        plan.errors.append(folder.detail)
        return plan
    if folder.status == "missing":
        cause = "not written yet"
    elif folder.image_hash != intent.image_hash:
        cause = changed_inputs(folder.inputs, intent.inputs)
    elif folder.drift:
        cause = _drift(folder.drift)
    else:
        return plan
    plan.actions.append(Action("write", intent.name, intent.folder, cause))
    return plan
