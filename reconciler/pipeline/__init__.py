"""The one pipeline every caller uses: `run` (lock -> plan -> pull -> re-plan -> execute),
`session` (what a run keeps: caches, secrets, the engine), `outcome` (what a run gives
back), `upkeep` (down, pull and lock, as plans the same executor runs)."""

from reconciler.pipeline.outcome import Outcome, Reconciliation
from reconciler.pipeline.run import Options, check, desire_packages, reconcile, run, status
from reconciler.pipeline.session import Session
from reconciler.pipeline.upkeep import down, pull, relock

__all__ = [
    "Options",
    "Outcome",
    "Reconciliation",
    "Session",
    "check",
    "desire_packages",
    "down",
    "pull",
    "reconcile",
    "relock",
    "run",
    "status",
]
