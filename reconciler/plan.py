"""The planner: a pure function from (desired, observed) to typed actions, each with a cause.

No I/O happens here, so plans are tested as golden strings without Docker or files.
After docker compose v2's plan.go: an enum of kinds, actions that carry the data the
executor needs (image reference, container name, address, the engine object), and
`str(action)` as the one printed form. The executor carries out actions and decides
nothing.

Per package, in order:
    pull      the base image is not on the engine (image and container modes)
    write     the Dockerfile folder is missing, out of date, or edited by hand
    build     no image carries the desired image hash
    push      `image.push` is on and the registry lacks the tag
    create    no serving container                      (container mode)
    recreate  the serving container runs another container hash
    start     the serving container has the right hash but is not running
    reload    watch --dev asked for it and nothing else needs doing: new code, same container
    remove    leftovers of an interrupted replacement, duplicates, and with --prune
              orphans (labels with no manifest left) and superseded images
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.core.paths import display_path
from reconciler.desired.proxy import serving_name
from reconciler.desired.state import Desired
from reconciler.observed.state import ContainerState, FolderState, ImageState, Observed

MAX_NAMED_INPUTS = 4


@dataclass(frozen=True)
class Intent:
    """What the planner needs to know about a package's desired state."""

    name: str
    mode: str
    folder: str  # as displayed
    image_hash: str
    container_hash: str
    inputs: Mapping[str, str]
    container_inputs: Mapping[str, str] = field(default_factory=dict)  # a short digest per container setting
    base_image: str = ""  # what the Dockerfile's FROM names (pinned by digest where package.lock says)
    base_pinned_by: str = ""  # "image id" when the pin is a local image that can only be built from here
    image: str = ""  # repository:hash12
    push_to: str = ""  # registry/repository:hash12 when pushing
    container: str = ""  # container name
    host: str = ""  # the address the container's port is published on
    port: int = 0
    manifest: str = ""  # the package's owner: its manifest's real path, as labels record it
    keep: int = 0  # images of the package kept after a build (output.image.keep); 0: no limit
    proxy: bool = False  # container mode: a reverse proxy owns the published port
    proxy_hash: str = ""
    proxy_image: str = ""
    serving: str = ""  # the name of the container the proxy serves
    manifests_folder: str = ""  # kubernetes mode: the manifests folder, as displayed
    manifests_hash: str = ""
    manifests_inputs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, desired: Desired) -> Intent:
        package = desired.package
        manifest = package.manifest
        return cls(
            name=package.name,
            mode=manifest.output.mode,
            folder=display_path(package.output_directory),
            image_hash=desired.image_hash,
            container_hash=desired.container_hash,
            inputs=desired.inputs,
            container_inputs=desired.container_inputs,
            base_image=desired.base.from_reference
            if desired.base
            else manifest.inference.environment.resolved_base_image,
            base_pinned_by=(desired.base.by or "") if desired.base else "",
            image=desired.image_ref,
            push_to=desired.push_ref,
            container=manifest.container_name,
            host=manifest.output.container.host,
            port=manifest.output.container.port,
            manifest=package.owner,
            keep=manifest.output.image.keep,
            proxy=manifest.output.container.proxy,
            proxy_hash=desired.proxy_hash,
            proxy_image=manifest.output.container.proxy_image,
            serving=serving_name(package),
            manifests_folder=display_path(package.kubernetes_directory) if package.kubernetes_directory else "",
            manifests_hash=desired.manifests_hash,
            manifests_inputs=desired.manifests_inputs,
        )


class ActionKind(enum.Enum):
    PULL = "pull"
    WRITE = "write"
    BUILD = "build"
    WRITE_MANIFESTS = "write manifests"
    PUSH = "push"
    CREATE = "create"
    RECREATE = "recreate"
    START = "start"
    RELOAD = "reload"
    REMOVE_CONTAINER = "remove container"
    REMOVE_IMAGE = "remove image"
    CREATE_PROXY = "create proxy"  # the proxy is missing while the serving container is fine
    RECREATE_PROXY = "recreate proxy"
    START_PROXY = "start proxy"
    RETIRE = "remove retired"  # a container the proxy served: reload the proxy, let it drain, then remove it

    @property
    def verb(self) -> str:
        """The word people and JSON documents see (both removals are `remove`)."""
        return self.value.split()[0]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    package: str
    cause: str
    image: str = ""  # pull: the base image; build, create, recreate: the local tag; push: the registry tag
    folder: str = ""  # write: the folder, as displayed
    container: str = ""  # the container's name
    host: str = ""  # create, recreate, start, reload: where the container is published
    port: int = 0
    subject: str = ""  # the engine object acted on (the container or image id), when there is one
    # behind a proxy (create, recreate): what the executor does, in this order
    proxied: bool = False
    reuse: str = ""  # a running container with the desired settings to serve, instead of creating one
    clear: tuple[str, ...] = ()  # containers holding the published port, removed before the proxy binds it
    proxy: str = ""  # the proxy to reload; "" when one must be created
    replace_proxy: str = ""  # a proxy with other settings, removed before the new one is created
    retire: tuple[str, ...] = ()  # containers the proxy no longer serves: drained, then removed

    @property
    def target(self) -> str:
        kind = self.kind
        if kind in (ActionKind.PULL, ActionKind.BUILD, ActionKind.PUSH):
            return self.image
        if kind in (ActionKind.WRITE, ActionKind.WRITE_MANIFESTS):
            return self.folder
        if kind in (ActionKind.REMOVE_CONTAINER, ActionKind.RETIRE):
            return f"container {self.container}"
        if kind in (ActionKind.CREATE_PROXY, ActionKind.RECREATE_PROXY, ActionKind.START_PROXY):
            return f"proxy {self.container} on {self.host}:{self.port}"
        if kind is ActionKind.REMOVE_IMAGE:
            return f"image {self.image}"
        return f"{self.container} on {self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.kind.verb} {self.target}  <- {self.cause}"


def remove_container(package: str, container: ContainerState, cause: str) -> Action:
    return Action(ActionKind.REMOVE_CONTAINER, package, cause, container=container.name, subject=container.id)


def remove_image(package: str, image: ImageState, cause: str) -> Action:
    label = ", ".join(image.tags) or image.id[7:19]
    return Action(ActionKind.REMOVE_IMAGE, package, cause, image=label, subject=image.id)


def _at(intent: Intent, kind: ActionKind, cause: str, subject: str = "") -> Action:
    """An action on the package's serving container."""
    return Action(
        kind,
        intent.name,
        cause,
        image=intent.image,
        container=intent.container,
        host=intent.host,
        port=intent.port,
        subject=subject,
    )


@dataclass
class PackagePlan:
    intent: Intent
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, changing nothing

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
        plan.actions.append(Action(ActionKind.WRITE, intent.name, cause, folder=intent.folder))
    return plan


def plan_manifests(intent: Intent, folder: FolderState) -> PackagePlan:
    """Write the Kubernetes folder when it is missing, rendered for another image or other
    settings, or edited by hand."""
    plan = PackagePlan(intent)
    if folder.status == "ours" and folder.image_hash != intent.manifests_hash:
        old_image = folder.inputs.get("image", "")
        new_image = intent.manifests_inputs.get("image", "")
        if old_image != new_image:
            cause = f"rendered for image {old_image[:12]}, inputs give {new_image[:12]}"
            plan.actions.append(Action(ActionKind.WRITE_MANIFESTS, intent.name, cause, folder=intent.manifests_folder))
            return plan
    cause = _folder_cause(folder, intent.manifests_hash, intent.manifests_inputs, plan)
    if cause:
        plan.actions.append(Action(ActionKind.WRITE_MANIFESTS, intent.name, cause, folder=intent.manifests_folder))
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


def plan_package(intent: Intent, observed: Observed, *, reload: bool = False) -> PackagePlan:
    """The package's actions. `reload` (watch --dev after a code edit): when nothing else is
    needed, ask the serving container to load the new code in place."""
    plan = plan_folder(intent, observed.folder)
    if plan.errors:
        return plan
    name = intent.name
    if intent.mode != "container":
        for container in observed.containers:
            plan.actions.append(remove_container(name, container, f"output.mode is {intent.mode}: no container wanted"))
    if intent.mode == "dockerfile":
        return plan
    if intent.mode == "container" and observed.foreign:
        other = observed.foreign[0]
        plan.errors.append(
            f"container {other.name} belongs to a package {intent.name} in another checkout ({other.manifest}); "
            "reconciler will not take it over: run `reconciler down` there, or rename this package"
        )
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
        pull = Action(ActionKind.PULL, name, "base image not present on the engine", image=intent.base_image)
        plan.actions.insert(0, pull)
    if intent.mode == "container" and intent.proxy and not observed.proxy_image_present:
        pull = Action(ActionKind.PULL, name, "proxy image not present on the engine", image=intent.proxy_image)
        plan.actions.insert(0, pull)
    build_cause = ""
    if image is None:
        build_cause = _build_cause(intent, observed)
        plan.actions.append(Action(ActionKind.BUILD, name, build_cause, image=intent.image))
    if intent.push_to and (image is None or observed.registry_has is False):
        cause = "new image" if image is None else "registry lacks the tag"
        plan.actions.append(Action(ActionKind.PUSH, name, cause, image=intent.push_to))
    if intent.mode == "container":
        _plan_container(intent, observed, plan, build_cause)
        if reload and not plan.actions:
            plan.actions.append(_at(intent, ActionKind.RELOAD, "code changed (dev)"))
    if intent.mode == "kubernetes" and observed.manifests is not None:
        manifests = plan_manifests(intent, observed.manifests)
        plan.actions += manifests.actions
        plan.errors += manifests.errors
    if image is None and intent.keep:
        _plan_retention(intent, observed, plan)
    return plan


def _plan_retention(intent: Intent, observed: Observed, plan: PackagePlan) -> None:
    """After a build, keep the `keep` images of the package used last (the new one counts:
    built or served from most recently) and remove the others: never one a container still runs (other than the one being replaced),
    never one reconciler did not build (tagged `repository:hash12` for its own hash, from
    this manifest)."""
    repository = intent.image.rpartition(":")[0]
    replaced = {c.image_id for c in observed.containers if any(a.subject == c.id for a in plan.actions)}
    in_use = observed.images_in_use - replaced
    ours = [
        image
        for image in observed.images
        if image.hash != intent.image_hash
        and image.manifest == intent.manifest
        and f"{repository}:{image.hash[:12]}" in image.tags
    ]
    ours.sort(key=lambda image: max(image.created, image.last_used), reverse=True)
    cause = f"not among the {intent.keep} used last (output.image.keep)"
    for image in ours[intent.keep - 1 :]:
        if image.id not in in_use:
            plan.actions.append(remove_image(intent.name, image, cause))


def _replace_cause(intent: Intent, current: ContainerState, build_cause: str) -> str:
    if current.image_hash != intent.image_hash:
        return f"new image ({build_cause})" if build_cause else "image changed"
    if not current.container_inputs:  # made before containers recorded their settings
        return "container settings changed"
    names = sorted(set(intent.container_inputs) | set(current.container_inputs))
    changed = [n for n in names if intent.container_inputs.get(n) != current.container_inputs.get(n)]
    return f"container settings changed: {', '.join(changed) or 'how they are hashed'}"


def _plan_container(intent: Intent, observed: Observed, plan: PackagePlan, build_cause: str) -> None:
    if intent.proxy:
        _plan_proxied(intent, observed, plan, build_cause)
    else:
        _plan_direct(intent, observed, plan, build_cause)


def _plan_proxied(intent: Intent, observed: Observed, plan: PackagePlan, build_cause: str) -> None:
    """Behind a proxy. The container named `<name>-serving` is the one the proxy serves; every
    state an interrupted update can leave is recognised here and finished by one action."""
    name = intent.name
    proxies = [c for c in observed.containers if c.role == "proxy"]
    backends = [c for c in observed.containers if c.role == "backend"]
    direct = [c for c in observed.containers if c.role == ""]  # from proxy: false; they hold the port
    serving = next((b for b in backends if b.name == intent.serving), None)
    proxy = proxies[0] if proxies else None
    good_proxy = proxy if proxy is not None and proxy.proxy_hash == intent.proxy_hash else None
    for leftover in [c for c in observed.containers if c.role == "canary"] + proxies[1:]:
        plan.actions.append(remove_container(name, leftover, f"{leftover.role} left by an interrupted replacement"))
    if serving is None or serving.container_hash != intent.container_hash:
        ready = next((b for b in backends if b.container_hash == intent.container_hash and b.state == "running"), None)
        if serving is not None:
            cause = _replace_cause(intent, serving, build_cause)
        elif ready is not None or backends:
            cause = "an interrupted update"
        else:
            cause = "no container"
        kind = ActionKind.CREATE if serving is None else ActionKind.RECREATE
        plan.actions.append(
            replace(
                _at(intent, kind, cause, serving.id if serving else ""),
                proxied=True,
                reuse=ready.id if ready else "",
                clear=tuple(c.id for c in direct),
                proxy=good_proxy.id if good_proxy else "",
                replace_proxy=proxy.id if proxy is not None and proxy is not good_proxy else "",
                retire=tuple(b.id for b in backends if b is not ready and b is not serving),
            )
        )
        return
    if serving.state != "running":
        plan.actions.append(_at(intent, ActionKind.START, f"container {serving.state}", serving.id))
    for container in direct:
        cause = "output.container.proxy is on: the proxy publishes the port"
        plan.actions.append(remove_container(name, container, cause))
    if proxy is None:
        plan.actions.append(_at(intent, ActionKind.CREATE_PROXY, "no proxy"))
    elif proxy is not good_proxy:
        was = f"was on {proxy.host_ip}:{proxy.host_port}"
        plan.actions.append(_at(intent, ActionKind.RECREATE_PROXY, f"proxy settings changed ({was})", proxy.id))
    elif proxy.state != "running":
        plan.actions.append(_at(intent, ActionKind.START_PROXY, f"proxy {proxy.state}", proxy.id))
    for backend in backends:
        if backend is not serving:
            retired = replace(remove_container(name, backend, "left by an interrupted update"), kind=ActionKind.RETIRE)
            plan.actions.append(replace(retired, proxy=proxy.id if proxy else ""))


def _plan_direct(intent: Intent, observed: Observed, plan: PackagePlan, build_cause: str) -> None:
    """No proxy: the serving container publishes the port itself (replaced after a canary)."""
    name = intent.name
    proxied = [c for c in observed.containers if c.role in ("proxy", "backend")]
    for container in proxied:  # they hold the port: gone before a container can publish it
        cause = "output.container.proxy is off: the container publishes the port itself"
        plan.actions.append(remove_container(name, container, cause))
    serving = [c for c in observed.containers if not c.role]
    leftovers = [c for c in observed.containers if c.role == "canary"]
    current = next((c for c in serving if c.container_hash == intent.container_hash), None) or (
        serving[0] if serving else None
    )
    if current is None:
        plan.actions.append(_at(intent, ActionKind.CREATE, "no container"))
    elif current.container_hash != intent.container_hash:
        cause = _replace_cause(intent, current, build_cause)
        if current.image_hash == intent.image_hash:
            cause += f" (was {current.name} on {current.host_ip}:{current.host_port})"
        plan.actions.append(_at(intent, ActionKind.RECREATE, cause, current.id))
    elif current.state != "running":
        plan.actions.append(_at(intent, ActionKind.START, f"container {current.state}", current.id))
    for other in serving:
        if other is not current:
            plan.actions.append(remove_container(name, other, "a second container for this package"))
    for leftover in leftovers:
        plan.actions.append(remove_container(name, leftover, f"{leftover.role} left by an interrupted replacement"))


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
) -> Cleanup:
    """Orphans (our labels, no manifest left below the paths given) and superseded images.

    Nothing is planned for removal unless `prune`, and never when a manifest failed
    to load or none was found (`complete` is False): a manifest that did not parse
    must not look like a package that was deleted.
    """
    cleanup = Cleanup()
    orphans: list[Action] = []
    superseded: list[Action] = []
    for container in containers:
        if container.manifest not in wanted and _in_scope(container.manifest, scope):
            orphans.append(remove_container(container.package, container, "orphan: its manifest is gone"))
    leaving = {action.subject for action in orphans}
    in_use = {image for container, image in container_images.items() if container not in leaving}
    for image in images:
        if image.id in in_use:
            continue  # someone runs it, perhaps by hand: not ours to take away
        if image.manifest not in wanted:
            if _in_scope(image.manifest, scope):
                orphans.append(remove_image(image.package, image, "orphan: its manifest is gone"))
        elif image.hash != wanted[image.manifest][0]:
            superseded.append(remove_image(image.package, image, "superseded by a newer build"))
    if prune and complete:
        cleanup.actions = orphans + superseded
    elif orphans:  # superseded images are routine after every build: only --prune mentions them
        why = "apply --prune removes" if complete else "not pruned while a manifest has errors or none was found:"
        cleanup.notes = [f"{why} {a.target} ({a.package}: {a.cause})" for a in orphans]
    return cleanup
