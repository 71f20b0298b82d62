"""The executor: carries out a plan's typed actions and decides nothing.

`executor` runs actions (a dispatch table, a bounded pool, results); `serving` holds the
protocols that replace a serving container: directly after a canary, or behind the proxy
with no refused request.
"""

from reconciler.execute.executor import ActionResult, Executor, Progress, printing_progress
from reconciler.execute.serving import ContainerNotReady

__all__ = ["ActionResult", "ContainerNotReady", "Executor", "Progress", "printing_progress"]
