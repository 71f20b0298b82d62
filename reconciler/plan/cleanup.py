"""What no manifest wants any more: orphans (our labels, no manifest left below the paths
given: containers, images, networks) and superseded images, planned for removal only with
--prune."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.observed.state import ContainerState, ImageState, NetworkState
from reconciler.plan.actions import Action, ActionKind, RemoveNetwork, remove_container, remove_image


@dataclass
class Cleanup:
    """Engine objects no manifest wants: removed only with --prune."""

    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _in_scope(manifest: str, scope: Sequence[str]) -> bool:
    return any(manifest == root or manifest.startswith(root.rstrip("/") + "/") for root in scope)


def plan_cleanup(
    images: Sequence[ImageState],
    containers: Sequence[ContainerState],
    wanted: Mapping[str, tuple[str, str]],  # owner (manifest real path) -> (image hash, container hash)
    container_images: Mapping[str, str],  # every container on the engine (ours or not) -> its image id
    scope: Sequence[str],
    *,
    prune: bool,
    complete: bool,
    networks: Sequence[NetworkState] = (),
    package_names: frozenset[str] = frozenset(),  # every package loaded: a network made before it recorded its manifest
) -> Cleanup:
    """Nothing is planned for removal unless `prune`, and never when a manifest failed to
    load or none was found (`complete` is False): a manifest that did not parse must not
    look like a package that was deleted."""
    cleanup = Cleanup()
    orphans: list[Action] = []
    superseded: list[Action] = []
    for container in containers:
        if container.manifest not in wanted and _in_scope(container.manifest, scope):
            cause = "orphan: its manifest is gone"
            orphans.append(remove_container(container.package, container.name, container.id, cause))
    leaving = {action.subject for action in orphans}
    in_use = {image for container, image in container_images.items() if container not in leaving}
    for image in images:
        if image.id in in_use:
            continue  # someone runs it, perhaps by hand: not ours to take away
        if image.manifest not in wanted:
            if _in_scope(image.manifest, scope):
                orphans.append(remove_image(image.package, image.tags, image.id, "orphan: its manifest is gone"))
        elif image.hash != wanted[image.manifest][0]:
            superseded.append(remove_image(image.package, image.tags, image.id, "superseded by a newer build"))
    for network in networks:  # after the containers on it: a network still in use is refused by the engine
        orphan = (
            network.manifest not in wanted and _in_scope(network.manifest, scope)
            if network.manifest
            else (network.package not in package_names and not any(c.package == network.package for c in containers))
        )
        if orphan:
            cause = "orphan: its manifest is gone"
            removal = Action(ActionKind.REMOVE_NETWORK, network.package, cause, RemoveNetwork(network.name))
            orphans.append(removal)
    if prune and complete:
        cleanup.actions = orphans + superseded
    elif orphans:  # superseded images are routine after every build: only --prune mentions them
        why = "apply --prune removes" if complete else "not pruned while a manifest has errors or none was found:"
        cleanup.notes = [f"{why} {a.target} ({a.package}: {a.cause})" for a in orphans]
    return cleanup
