"""The reconcile loop: discover -> load -> desire -> observe -> plan.

Every run re-reads desired and observed state (level-triggered). A package that
fails at any stage carries its problems and the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cachedir import cache_dir
from .desired import Desired, desire
from .digest import Digester
from .loader import Package
from .lock import WheelCache
from .observe import observe_folder
from .plan import Intent, PackagePlan, plan_folder
from .problems import InvalidInput, Problem, ReconcilerError, display_path
from .statcache import StatCache
from .workspace import load_workspace


class Session:
    """What one command keeps for its whole run: the caches."""

    def __init__(self, root: Path | None = None):
        self.cache_root = root or cache_dir()
        self.stat_cache = StatCache(self.cache_root / "statcache.sqlite")
        self.digester = Digester(self.stat_cache)
        self.wheels = WheelCache(self.cache_root / "wheels")

    def close(self) -> None:
        self.stat_cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ActionResult:
    kind: str
    target: str
    cause: str
    status: str  # done | failed | skipped
    seconds: float
    detail: str = ""


@dataclass
class Outcome:
    """One package through the loop."""

    package: Package
    desired: Desired | None = None
    plan: PackagePlan | None = None
    problems: list[Problem] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(r.status == "failed" for r in self.results)


@dataclass
class Reconciliation:
    outcomes: list[Outcome]
    problems: list[Problem]  # manifests that did not load, paths that do not exist
    manifests_found: int

    @property
    def has_errors(self) -> bool:
        return bool(self.problems) or any(o.failed for o in self.outcomes)

    @property
    def has_changes(self) -> bool:
        return any(o.plan and o.plan.actions for o in self.outcomes)


def intent_of(desired: Desired) -> Intent:
    package = desired.package
    return Intent(
        name=package.name,
        mode=package.manifest.output.mode,
        folder=display_path(package.output_directory),
        image_hash=desired.image_hash,
        container_hash=desired.container_hash,
        inputs=desired.inputs,
    )


def desire_package(package: Package, session: Session, *, frozen: bool) -> Outcome:
    outcome = Outcome(package)
    try:
        outcome.desired = desire(package, session.digester, session.wheels, frozen=frozen)
    except InvalidInput as error:
        outcome.problems.extend(error.problems)
    except ReconcilerError as error:
        outcome.problems.append(Problem(str(package.manifest_path), str(error)))
    return outcome


def reconcile(paths: list[str], session: Session, *, frozen: bool) -> Reconciliation:
    """Load every package below `paths`, compute desired and observed state, and plan."""
    workspace = load_workspace(paths)
    outcomes = []
    for package in workspace.packages:
        outcome = desire_package(package, session, frozen=frozen)
        if outcome.desired is not None:
            folder = observe_folder(package.output_directory, package.name, session.digester)
            outcome.plan = plan_folder(intent_of(outcome.desired), folder)
            outcome.problems.extend(Problem(str(package.manifest_path), e) for e in outcome.plan.errors)
        outcomes.append(outcome)
    session.stat_cache.flush()
    return Reconciliation(outcomes, workspace.problems, workspace.manifests_found)
