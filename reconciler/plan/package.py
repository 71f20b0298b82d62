"""One package's plan: a pure function from (Intent, Observed) to actions, each with a cause.

Per package, in order:
    pull      the base image (or the proxy's) is not on the engine
    write     the Dockerfile folder is missing, out of date, or edited by hand
    build     no image carries the desired image hash
    push      the mode pushes (or `image.push` is on) and the registry lacks the tag
    write manifests   the Kubernetes folder is missing, for another image, or edited by hand
    create, recreate, start, reload, ...   the serving container (`serving`)
    remove    containers a mode that serves nothing does not want; images past output.image.keep
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.desired.state import image_reference
from reconciler.observed.state import FolderState, Observed
from reconciler.plan.actions import (
    Action,
    ActionKind,
    Build,
    PullImage,
    Push,
    WriteFolder,
    WriteManifests,
    remove_container,
    remove_image,
)
from reconciler.plan.intent import Intent
from reconciler.plan.serving import held_note, plan_leftovers, plan_restarts, plan_serving, rolled_back

MAX_NAMED_INPUTS = 4


@dataclass
class PackagePlan:
    intent: Intent
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, changing nothing
    rolled_back: str = ""  # held by a rollback: what serves, and until when (also a note)

    @property
    def in_sync(self) -> bool:
        return not self.actions and not self.errors


def _input_label(name: str) -> str:
    return name.removeprefix("app/")


def _cause_order(name: str) -> tuple[int, str]:
    """What a person edited comes first: code, models, the lock, settings; generated inputs last."""
    for rank, prefix in enumerate(("app/", "models/", "package.lock", "inference.", "models")):
        if name.startswith(prefix):
            return rank, name
    return 9, name


def changed_inputs(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """'score.py, package.lock, 3 more': which inputs differ between two hashes."""
    names = sorted((name for name in old.keys() | new.keys() if old.get(name) != new.get(name)), key=_cause_order)
    if not names:
        return "reconciler's hash schema changed"
    shown = [_input_label(n) + (" (new)" if n not in old else " (gone)" if n not in new else "") for n in names]
    if len(shown) > MAX_NAMED_INPUTS:
        shown = shown[:MAX_NAMED_INPUTS] + [f"{len(names) - MAX_NAMED_INPUTS} more"]
    return "inputs changed: " + ", ".join(shown)


def _drift(drift: tuple[str, ...]) -> str:
    shown = list(drift[:MAX_NAMED_INPUTS])
    if len(drift) > MAX_NAMED_INPUTS:
        shown.append(f"{len(drift) - MAX_NAMED_INPUTS} more")
    return "drift: " + ", ".join(shown)


def plan_folder(intent: Intent, folder: FolderState) -> PackagePlan:
    """Write the Dockerfile folder when it is missing, out of date, or edited by hand."""
    plan = PackagePlan(intent)
    cause = _folder_cause(folder, intent.image_hash, intent.inputs, plan)
    if cause:
        plan.actions.append(Action(ActionKind.WRITE, intent.name, cause, WriteFolder(intent.folder, intent.desired)))
    return plan


def plan_manifests(intent: Intent, folder: FolderState) -> PackagePlan:
    """Write the Kubernetes folder when it is missing, rendered for another image or other
    settings, or edited by hand."""
    plan = PackagePlan(intent)
    write = WriteManifests(intent.manifests_folder, intent.desired)
    if folder.status == "ours" and folder.image_hash != intent.manifests_hash:
        old_image = folder.inputs.get("image", "")
        new_image = intent.manifests_inputs.get("image", "")
        if old_image != new_image:
            cause = f"rendered for image {old_image[:12]}, inputs give {new_image[:12]}"
            plan.actions.append(Action(ActionKind.WRITE_MANIFESTS, intent.name, cause, write))
            return plan
    cause = _folder_cause(folder, intent.manifests_hash, intent.manifests_inputs, plan)
    if cause:
        plan.actions.append(Action(ActionKind.WRITE_MANIFESTS, intent.name, cause, write))
    return plan


def _folder_cause(folder: FolderState, wanted_hash: str, inputs: Mapping[str, str], plan: PackagePlan) -> str:
    """Why a stamped folder must be written ("" when it need not be); a folder that is not
    ours is an error on the plan."""
    if folder.status in ("foreign", "damaged", "other"):
        plan.errors.append(folder.detail)
        return ""
    if folder.status == "missing":
        return "not written yet"
    if folder.image_hash != wanted_hash:
        return changed_inputs(folder.inputs, inputs)
    if folder.drift:
        return _drift(folder.drift)
    return ""


def _build_cause(intent: Intent, observed: Observed) -> str:
    folder = observed.folder
    if folder.status == "ours" and folder.image_hash != intent.image_hash and folder.inputs:
        return changed_inputs(folder.inputs, intent.inputs)
    if observed.images:
        return "no image for this hash"
    return "not built yet"


def plan_package(intent: Intent, observed: Observed, *, reload: bool = False, release: bool = False) -> PackagePlan:
    """The package's actions. `reload` (watch --dev after a code edit): when nothing else is
    needed, ask the serving container to load the new code in place. A package a rollback
    holds gets none but restarts of what serves, unless `release` (rollback --release)."""
    plan = plan_folder(intent, observed.folder)
    if plan.errors:
        return plan
    name, mode = intent.name, intent.mode
    if not mode.serves:
        for container in observed.containers:
            cause = f"output.mode is {mode}: no container wanted"
            plan.actions.append(remove_container(name, container.name, container.id, cause))
    if not mode.builds:
        return plan
    if mode.serves and observed.foreign:
        other = observed.foreign[0]
        plan.errors.append(
            f"container {other.name} belongs to a package {intent.name} in another checkout ({other.manifest}); "
            "reconciler will not take it over: run `reconciler down` there, or rename this package"
        )
        return plan
    held = rolled_back(intent, observed) if mode.serves and not release else None
    if held is not None:
        plan.rolled_back = held_note(held)
        plan.notes.append(plan.rolled_back)
        plan.actions += plan_restarts(intent, observed, "what the rollback put there is kept serving")
        plan.actions += plan_leftovers(intent, observed, held)
        return plan
    local_pin = intent.base_pinned_by == "image id"
    image = next((i for i in observed.images if i.hash == intent.image_hash), None)
    if not observed.base_present and local_pin and image is None:
        plan.errors.append(
            f"package.lock pins the base image {intent.base_image} by a local image ID that this engine does "
            "not have (an image that was never pushed); run `reconciler lock --upgrade` to pin what is here"
        )
        return plan
    if observed.base_moved and local_pin and image is None:
        plan.errors.append(f"cannot build: {observed.base_moved} (the build would use the tag's new image)")
        return plan
    if observed.base_moved:
        plan.notes.append(observed.base_moved)
    if not observed.base_present and not local_pin:
        pull = Action(ActionKind.PULL, name, "base image not present on the engine", PullImage(intent.base_image))
        plan.actions.insert(0, pull)
    if mode.serves and intent.proxy and not observed.proxy_image_present:
        pull = Action(ActionKind.PULL, name, "proxy image not present on the engine", PullImage(intent.proxy_image))
        plan.actions.insert(0, pull)
    build_cause = ""
    if image is None:
        build_cause = _build_cause(intent, observed)
        plan.actions.append(Action(ActionKind.BUILD, name, build_cause, Build(intent.image, intent.build)))
    if intent.push_to and (image is None or observed.registry_has is False):
        cause = "new image" if image is None else "registry lacks the tag"
        plan.actions.append(Action(ActionKind.PUSH, name, cause, Push(intent.push_to)))
    if mode.serves:
        taken = plan_serving(intent, observed, plan.actions, build_cause, reload=reload)
        if taken:
            plan.errors.append(taken)
            plan.actions.clear()
            return plan
    if mode.renders_manifests and observed.manifests is not None:
        manifests = plan_manifests(intent, observed.manifests)
        plan.actions += manifests.actions
        plan.errors += manifests.errors
    if image is None and intent.keep:
        _plan_retention(intent, observed, plan)
    return plan


def _plan_retention(intent: Intent, observed: Observed, plan: PackagePlan) -> None:
    """After a build, keep the `keep` images of the package used last (the new one counts:
    built or served from most recently) and remove the others: never one a container still
    runs (other than the one being replaced), never one reconciler did not build (tagged
    `repository:hash12` for its own hash, from this manifest)."""
    repository = intent.image.rpartition(":")[0]
    replaced = {c.image_id for c in observed.containers if any(a.subject == c.id for a in plan.actions)}
    in_use = observed.images_in_use - replaced
    ours = [
        image
        for image in observed.images
        if image.hash != intent.image_hash
        and image.manifest == intent.manifest
        and image_reference(repository, image.hash) in image.tags
    ]
    ours.sort(key=lambda image: max(image.created, image.last_used), reverse=True)
    cause = f"not among the {intent.keep} used last (output.image.keep)"
    for image in ours[intent.keep - 1 :]:
        if image.id not in in_use:
            plan.actions.append(remove_image(intent.name, image.tags, image.id, cause))
