"""What a run gives back: one `Outcome` per package, in one `Reconciliation`, and the views
the reports and loops read from them (which container serves, which publishes the port)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.core.errors import Problem
from reconciler.desired.proxy import serving_name
from reconciler.desired.revision import Revision
from reconciler.desired.state import Desired
from reconciler.engine.endpoint import ServerCounts
from reconciler.observed.state import ContainerState, ImagesOnDisk, Observed
from reconciler.plan import Cleanup, PackagePlan
from reconciler.spec.package import Package

if TYPE_CHECKING:  # a plan that changes nothing never loads the executor
    from reconciler.execute import ActionResult


@dataclass(frozen=True)
class CanaryInProgress:
    """A canary serving its share beside the old container, with what the proxy counted for
    it so far (None when the proxy's stats did not answer)."""

    container: str
    weight: int
    max_error_rate: float  # its bound (output.container.canary.max_error_rate)
    counts: ServerCounts | None


@dataclass
class Outcome:
    """One package through the pipeline."""

    package: Package
    desired: Desired | None = None
    observed: Observed | None = None
    plan: PackagePlan | None = None
    problems: list[Problem] = field(default_factory=list)
    results: list[ActionResult] = field(default_factory=list)
    held: bool = False  # not executed: the caller is waiting for its inputs to change
    readiness: str | None = None  # the serving container's /ready, when status asked
    images_on_disk: ImagesOnDisk | None = None  # when status asked
    canary: CanaryInProgress | None = None  # when status asked

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(r.status == "failed" for r in self.results)

    @property
    def failure(self) -> ActionResult | None:
        """The action that failed, if one did."""
        return next((r for r in self.results if r.status == "failed"), None)

    def front_container(self) -> ContainerState | None:
        """What publishes the package's port: its proxy, or the container that serves directly."""
        if self.observed is None:
            return None
        containers = self.observed.containers
        return next((c for c in containers if c.role == "proxy"), None) or next(
            (c for c in containers if not c.role), None
        )

    def revision(self) -> Revision | None:
        """The commit what serves (or what was written) came from: the serving container's in
        modes that serve, the committed folder's in modes whose output is committed, else the image's."""
        observed, desired = self.observed, self.desired
        if observed is None or desired is None:
            return None
        mode = self.package.mode
        if mode.serves:
            serving = self.serving_container()
            return serving.revision if serving else None
        if mode.commits_output:
            folder = observed.manifests if mode.renders_manifests else observed.folder
            return folder.revision if folder else None
        image = next((i for i in observed.images if i.hash == desired.image_hash), None)
        return image.revision if image else None

    def serving_container(self) -> ContainerState | None:
        """The container that answers requests: the one named `<name>-serving` behind a proxy."""
        if self.observed is None:
            return None
        name = serving_name(self.package)
        containers = self.observed.containers
        return next((c for c in containers if c.role == "backend" and c.name == name), None) or next(
            (c for c in containers if not c.role), None
        )


@dataclass
class Reconciliation:
    outcomes: list[Outcome]
    problems: list[Problem]  # manifests that did not load, paths that do not exist
    manifests_found: int
    cleanup: Cleanup = field(default_factory=Cleanup)
    packages: list[Package] = field(default_factory=list)  # every package that loaded, planned or not
    cleanup_results: list[ActionResult] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return (
            bool(self.problems)
            or any(o.failed for o in self.outcomes)
            or any(r.status == "failed" for r in self.cleanup_results)
        )

    @property
    def has_changes(self) -> bool:
        return any(o.plan and o.plan.actions for o in self.outcomes) or bool(self.cleanup.actions)
