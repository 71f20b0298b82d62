"""A rollback's plan: the package's serving container replaced by one of an older image it
keeps, through the same protocols as an update (behind the proxy, no refused request; with
`proxy: false`, that mode's gap), and no build. The new container carries the hold (the
container hash of the inputs of now), so later plans leave the package alone until its
inputs change.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.core import labels
from reconciler.desired.state import image_reference
from reconciler.observed.state import Observed
from reconciler.plan.actions import Action
from reconciler.plan.intent import Intent
from reconciler.plan.serving import plan_serving


def plan_rollback(
    intent: Intent, observed: Observed, image_hash: str, container_hash: str
) -> tuple[list[Action], str | None]:
    """Serve the image `image_hash` (kept by the package) as `container_hash`, held at the
    inputs `intent` stands for; or the error that stops it. The container's revision labels
    come from the image itself, as for any container."""
    reference = image_reference(intent.image.rpartition(":")[0], image_hash)
    hold = {labels.IMAGE_HASH: image_hash, labels.CONTAINER_HASH: container_hash, labels.HOLD: intent.container_hash}
    target = replace(
        intent,
        image_hash=image_hash,
        image=reference,
        container_hash=container_hash,
        run=intent.run.labelled(hold).with_image(reference),
    )
    actions: list[Action] = []
    taken = plan_serving(target, observed, actions, "rollback", reload=False)
    return [replace(action, cause=f"rollback to {image_hash[:12]}") for action in actions], taken
