"""Plans for the commands around apply: `down`, `pull` and `lock`. They run through the same
executor as apply's plans, so every engine call goes through one path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.desired.pins import BasePin, Lock
from reconciler.desired.proxy import network_name
from reconciler.desired.state import image_reference
from reconciler.observed.state import ContainerState
from reconciler.plan.actions import Action, ActionKind, FetchImage, Relock, RemoveNetwork, remove_container
from reconciler.spec.package import Package


@dataclass
class Teardown:
    """`down` for one package: its containers, then its network once they are all gone."""

    package: Package
    containers: list[Action] = field(default_factory=list)
    network: Action | None = None


def plan_down(packages: Sequence[Package], containers: Sequence[ContainerState]) -> list[Teardown]:
    """Stop (in-flight requests finish) and remove the packages' containers; images stay."""
    plans = []
    for package in packages:
        teardown = Teardown(package)
        for container in containers:
            if container.manifest == package.owner:
                teardown.containers.append(
                    remove_container(package.name, container.name, container.id, "reconciler down")
                )
        if teardown.containers and package.mode.serves and package.manifest.output.container.proxy:
            network = RemoveNetwork(network_name(package))
            teardown.network = Action(ActionKind.REMOVE_NETWORK, package.name, "reconciler down", network)
        plans.append(teardown)
    return plans


def plan_fetch(package: Package, image_hash: str) -> Action:
    """`pull`: `<registry>/<repository>:<hash12>`, checked to carry the hash, tagged as the
    local image (Azure's package.pull())."""
    manifest = package.manifest
    remote = image_reference(manifest.image_repository, image_hash, manifest.output.image.registry)
    local = image_reference(manifest.image_repository, image_hash)
    return Action(ActionKind.FETCH, package.name, "reconciler pull", FetchImage(remote, local, image_hash))


def plan_relock(package: Package, old: Lock | None, *, upgrade: bool) -> Action:
    """`lock`: resolve again; pin the base image unless the manifest pins it itself or the
    old lock's pin of the same reference stands (without `upgrade`)."""
    reference = package.manifest.inference.environment.resolved_base_image
    keep = old.base if old is not None and old.base is not None and old.base.reference == reference else None
    pin = ""
    if BasePin.from_manifest(reference) is not None:
        keep = None  # the manifest pins it itself
    elif upgrade or keep is None or keep.pin is None:
        keep, pin = None, reference
    return Action(ActionKind.LOCK, package.name, "reconciler lock", Relock(package, old, keep, pin))
