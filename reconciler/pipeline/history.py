"""`reconciler history`: the images each package keeps (`output.image.keep`), newest first,
with where each came from and when it last served: what a rollback could go back to.

Read-only. The listing gives the package's images (those its manifest made); one inspect each
gives its size and its last tagging, which is when a container was last made from it
(serving tags its image again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.core import labels
from reconciler.observed.state import ImageState, image_state
from reconciler.pipeline.outcome import Outcome
from reconciler.pipeline.run import reconcile
from reconciler.pipeline.session import Session


@dataclass(frozen=True)
class Retained:
    """One image a package keeps."""

    image: ImageState
    bytes: int
    serving: bool  # the serving container runs it now


@dataclass
class PackageHistory:
    outcome: Outcome
    images: list[Retained]


def history(paths: Sequence[str], session: Session) -> tuple[list[PackageHistory], list]:
    """Each building package's retained images, newest first; and the run's problems."""
    reconciliation = reconcile(paths, session, frozen=True)
    found = [
        PackageHistory(outcome, retained_images(outcome, session))
        for outcome in reconciliation.outcomes
        if outcome.package.mode.builds and outcome.observed is not None
    ]
    problems = [*reconciliation.problems, *(p for o in reconciliation.outcomes for p in o.problems)]
    return found, problems


def retained_images(outcome: Outcome, session: Session) -> list[Retained]:
    """The images the package's manifest made that the engine keeps, newest built first."""
    serving = outcome.serving_container()
    listing = session.engine.images(label=f"{labels.PACKAGE}={outcome.package.name}")
    images = []
    for listed in (image_state(summary) for summary in listing):
        if listed.manifest != outcome.package.owner:  # a same-named package of another checkout
            continue
        details = session.engine.inspect_image(listed.id)
        image = image_state(details) if details else listed
        running = serving is not None and serving.image_hash == image.hash
        images.append(Retained(image, int((details or {}).get("Size") or 0), running))
    images.sort(key=lambda r: (r.image.created, r.image.last_used), reverse=True)
    return images
