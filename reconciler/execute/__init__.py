"""The executor: carries out a plan's typed actions and decides nothing.

`executor` runs actions (a dispatch table by payload type, a bounded pool, results);
`serving` holds the protocols that replace a serving container: directly after a canary, or
behind the proxy with no refused request; `upkeep` the handlers of `pull` and `lock`.
"""

from reconciler.execute.executor import ActionResult, Executor, Progress, printing_progress
from reconciler.execute.serving import ContainerNotReady
from reconciler.execute.upkeep import Fetched, Relocked

__all__ = ["ActionResult", "ContainerNotReady", "Executor", "Fetched", "Progress", "Relocked", "printing_progress"]
