"""The planner: pure functions from (desired, observed) to typed actions, each with a cause.

No I/O happens here, so plans are tested as golden strings without Docker or files. After
docker compose v2's plan.go: an enum of kinds, actions whose payloads carry everything the
executor needs (`actions`), decided from the package's `Intent` (`intent`); `str(action)`
is the one printed form. `package` plans one package, `serving` its serving container,
`cleanup` what no manifest wants, `upkeep` the commands around apply (down, pull, lock).
"""

from reconciler.plan.actions import Action, ActionKind, Payload, Published
from reconciler.plan.cleanup import Cleanup, plan_cleanup
from reconciler.plan.intent import Intent
from reconciler.plan.package import PackagePlan, changed_inputs, plan_folder, plan_manifests, plan_package
from reconciler.plan.serving import plan_restarts
from reconciler.plan.upkeep import Teardown, plan_down, plan_fetch, plan_relock

__all__ = [
    "Action",
    "ActionKind",
    "Cleanup",
    "Intent",
    "PackagePlan",
    "Payload",
    "Published",
    "Teardown",
    "changed_inputs",
    "plan_cleanup",
    "plan_down",
    "plan_fetch",
    "plan_folder",
    "plan_manifests",
    "plan_package",
    "plan_relock",
    "plan_restarts",
]
