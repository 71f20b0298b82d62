"""The serving container's plan (modes that serve): behind the proxy, or publishing the port
itself. Every state an interrupted update can leave is recognised here, from the containers'
labels and names, and finished by one action.

Names of new containers are chosen here too, as the first free one among those the package's
containers hold (containers being removed included), so a plan says everything that will
happen and the same state always gives the same plan.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.core import labels
from reconciler.desired.proxy import BACKEND_ENVIRONMENT
from reconciler.desired.revision import Revision
from reconciler.engine.specs import ContainerSpec
from reconciler.observed.state import ContainerState, Observed
from reconciler.plan.actions import (
    Action,
    ActionKind,
    CanaryRun,
    CreateDirect,
    CreateProxy,
    Published,
    RecreateDirect,
    Reload,
    Retire,
    Start,
    StartProxy,
    Swap,
    remove_container,
)
from reconciler.plan.intent import Intent


def fresh_name(base: str, taken: frozenset[str]) -> str:
    """`base-1`, or the next number no container of the package holds."""
    number = 1
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _published(intent: Intent) -> Published:
    return Published(intent.container, intent.host, intent.port)


def _remove(intent: Intent, container: ContainerState, cause: str) -> Action:
    return remove_container(intent.name, container.name, container.id, cause)


def _replace_cause(intent: Intent, current: ContainerState, build_cause: str) -> str:
    if current.image_hash != intent.image_hash:
        return f"new image ({build_cause})" if build_cause else "image changed"
    if not current.container_inputs:  # made before containers recorded their settings
        return "container settings changed"
    names = sorted(set(intent.container_inputs) | set(current.container_inputs))
    changed = [n for n in names if intent.container_inputs.get(n) != current.container_inputs.get(n)]
    return f"container settings changed: {', '.join(changed) or 'how they are hashed'}"


def plan_serving(
    intent: Intent, observed: Observed, actions: list[Action], build_cause: str, *, reload: bool
) -> str | None:
    """Append the serving container's actions. `reload` (watch --dev): when nothing else is
    needed, the running container loads the new code in place. Returns an error instead when
    a name the package's containers take is held by a container that is not the package's."""
    wanted = [intent.container, intent.serving] if intent.proxy else [intent.container]
    if intent.canary:
        wanted.append(intent.canary_name)
    taken = [name for name in wanted if name in observed.names_elsewhere]
    if taken:
        return (
            f"container name {taken[0]} is held by a container that is not this package's; remove it "
            "(docker rm) or choose another output.container.name"
        )
    if intent.proxy:
        _plan_proxied(intent, observed, actions, build_cause)
    else:
        _plan_direct(intent, observed, actions, build_cause)
    if reload and not actions:
        actions.append(Action(ActionKind.RELOAD, intent.name, "code changed (dev)", Reload(_published(intent))))
    return None


def rolled_back(intent: Intent, observed: Observed) -> ContainerState | None:
    """The serving container, when a rollback made it while the inputs were what they are now
    (its hold is the container hash of these inputs): the package is left alone."""
    if intent.proxy:
        serving = next((c for c in observed.containers if c.role == "backend" and c.name == intent.serving), None)
    else:
        serving = next((c for c in observed.containers if not c.role), None)
    return serving if serving is not None and serving.hold == intent.container_hash else None


def plan_leftovers(intent: Intent, observed: Observed, serving: ContainerState) -> list[Action]:
    """Beside a rolled-back container that serves: what an interrupted rollback left (the
    container it replaced, still draining or renamed aside) goes, so that never two versions
    run unattended."""
    actions = []
    proxy = next((c for c in observed.containers if c.role == "proxy"), None)
    for other in observed.containers:
        if other is serving or other.role == "proxy":
            continue
        if other.role == "backend":
            retire = Retire(other.name, other.id, proxy.id if proxy else "", intent.drain_s)
            actions.append(Action(ActionKind.RETIRE, intent.name, "left by an interrupted rollback", retire))
        else:
            actions.append(_remove(intent, other, "left by an interrupted rollback"))
    return actions


def rollback_target(image_hash: str, revision: Revision | None) -> str:
    """The image a rollback goes to, as `rollback` and the plans that hold it name it."""
    return f"{image_hash[:12]} ({revision.short if revision else 'no commit recorded'})"


def rollback_summary(image_hash: str, revision: Revision | None) -> str:
    """How a rollback is told, by `rollback` and by each plan while it holds."""
    return f"rolled back to {rollback_target(image_hash, revision)}; held until the inputs change"


def held_note(serving: ContainerState) -> str:
    return (
        rollback_summary(serving.image_hash, serving.revision) + " (reconciler rollback --release deploys them again)"
    )


def plan_restarts(
    intent: Intent, observed: Observed, why: str = "what served before the failing inputs is kept serving"
) -> list[Action]:
    """For a package held (at inputs that fail, a commit whose build fails; or by a rollback):
    what serves is kept serving, whatever its hash: a serving container or proxy that stopped
    is started."""
    if not intent.mode.serves:
        return []
    actions = []
    at = _published(intent)
    cause = "{state}: " + why
    if intent.proxy:
        serving = next((c for c in observed.containers if c.role == "backend" and c.name == intent.serving), None)
        proxy = next((c for c in observed.containers if c.role == "proxy"), None)
        if serving is not None and serving.state != "running":
            start = Start(at, serving.id, behind_proxy=True, ready_timeout_s=intent.ready_timeout_s)
            actions.append(
                Action(ActionKind.START, intent.name, cause.format(state=f"container {serving.state}"), start)
            )
        if proxy is not None and proxy.state != "running":
            start_proxy = StartProxy(at, proxy.id, intent.ready_timeout_s)
            actions.append(
                Action(ActionKind.START_PROXY, intent.name, cause.format(state=f"proxy {proxy.state}"), start_proxy)
            )
        return actions
    direct = next((c for c in observed.containers if not c.role), None)
    if direct is not None and direct.state != "running":
        start = Start(at, direct.id, behind_proxy=False, ready_timeout_s=intent.ready_timeout_s)
        actions.append(Action(ActionKind.START, intent.name, cause.format(state=f"container {direct.state}"), start))
    return actions


def _backend(intent: Intent, taken: frozenset[str]) -> ContainerSpec:
    """A new container that may serve behind the proxy: on the package's network, with only
    an ephemeral loopback port (for its readiness probe); its name says which settings it runs."""
    return replace(
        intent.run.labelled({labels.ROLE: "backend"}),
        name=fresh_name(f"{intent.container}-{intent.container_hash[:8]}", taken),
        host="127.0.0.1",
        port=0,
        network=intent.network.name,
        environment={**intent.run.environment, **BACKEND_ENVIRONMENT},
    )


def _retiring_name(intent: Intent, taken: set[str]) -> str:
    """A fresh `<name>-retiring-N`, taken for the rest of this plan (one plan may need several)."""
    name = fresh_name(f"{intent.container}-retiring", frozenset(taken))
    taken.add(name)
    return name


def _canary_applies(
    intent: Intent,
    observed: Observed,
    serving: ContainerState | None,
    proxy: ContainerState | None,
    direct: list[ContainerState],
) -> bool:
    """A canary needs something serving now to compare against, and the proxy that splits the
    traffic running with this configuration (with a new proxy, the update is a plain swap)."""
    return bool(
        intent.canary
        and serving is not None
        and serving.state == "running"
        and proxy is not None
        and proxy.state == "running"
        and not direct
        and not observed.network_gone
    )


def _plan_proxied(intent: Intent, observed: Observed, actions: list[Action], build_cause: str) -> None:
    """Behind a proxy. The container named `<name>-serving` is the one the proxy serves."""
    name, at = intent.name, _published(intent)
    proxies = [c for c in observed.containers if c.role == "proxy"]
    backends = [c for c in observed.containers if c.role == "backend"]
    direct = [c for c in observed.containers if c.role == ""]  # from proxy: false; they hold the port
    serving = next((b for b in backends if b.name == intent.serving), None)
    proxy = proxies[0] if proxies else None
    good_proxy = proxy if proxy is not None and proxy.proxy_hash == intent.proxy_hash else None
    if observed.network_gone:  # the proxy cannot reach what serves: a new one of each, on a new network
        good_proxy = None
    for leftover in [c for c in observed.containers if c.role == "canary"] + proxies[1:]:
        actions.append(_remove(intent, leftover, f"{leftover.role} left by an interrupted replacement"))
    if serving is None or serving.container_hash != intent.container_hash or observed.network_gone:
        ready = next((b for b in backends if b.container_hash == intent.container_hash and b.state == "running"), None)
        if observed.network_gone:
            ready, cause = None, f"the network {intent.network.name} is gone (removed by hand?)"
        elif serving is not None:
            cause = _replace_cause(intent, serving, build_cause)
        elif ready is not None or backends:
            cause = "an interrupted update"
        else:
            cause = "no container"
        taken = set(observed.names)
        retiring_name = _retiring_name(intent, taken)
        canary = None
        if _canary_applies(intent, observed, serving, good_proxy, direct):
            stale = next((b for b in backends if b.name == intent.canary_name), None)
            if stale is not None and (stale is not ready or not stale.canary):  # it holds the name the canary needs
                unname = _retiring_name(intent, taken)
                retire = Retire(stale.name, stale.id, good_proxy.id, intent.drain_s, unname=unname)
                actions.append(Action(ActionKind.RETIRE, name, "a canary left by an interrupted update", retire))
                backends = [b for b in backends if b is not stale]
                ready = None if stale is ready else ready
            resumed = ready.canary if ready is not None and ready.name == intent.canary_name else ""
            canary = CanaryRun(
                name=intent.canary_name,
                weight=intent.canary.weight,
                duration_s=intent.canary.duration_s,
                max_error_rate=intent.canary.max_error_rate,
                min_requests=intent.canary.min_requests,
                abort_name=_retiring_name(intent, taken),
                resumed=resumed,
            )
            cause += f"; {canary}" + (" (resumed: it was interrupted)" if resumed else "")
        swap = Swap(
            at=at,
            network=intent.network,
            backend=None if ready else _backend(intent, frozenset(taken)),
            reuse=ready.id if ready else "",
            current=serving.id if serving else "",
            retiring_name=retiring_name,
            serving_name=intent.serving,
            clear=tuple(c.id for c in direct),
            proxy=good_proxy.id if good_proxy else "",
            replace_proxy=proxy.id if proxy is not None and proxy is not good_proxy else "",
            new_proxy=None if good_proxy else intent.proxy_run,
            retire=tuple(b.id for b in backends if b is not ready and b is not serving),
            ready_timeout_s=intent.ready_timeout_s,
            drain_s=intent.drain_s,
            canary=canary,
        )
        actions.append(Action(ActionKind.CREATE if serving is None else ActionKind.RECREATE, name, cause, swap))
        return
    if serving.state != "running":
        start = Start(at, serving.id, behind_proxy=True, ready_timeout_s=intent.ready_timeout_s)
        actions.append(Action(ActionKind.START, name, f"container {serving.state}", start))
    for container in direct:
        actions.append(_remove(intent, container, "output.container.proxy is on: the proxy publishes the port"))
    if proxy is None:
        create = CreateProxy(at, intent.network, intent.proxy_run, intent.ready_timeout_s)
        actions.append(Action(ActionKind.CREATE_PROXY, name, "no proxy", create))
    elif proxy is good_proxy and proxy.state == "running" and observed.port_refused:
        cause = f"{proxy.host_ip}:{proxy.host_port} refuses connections (Docker's port forwarder gone?)"
        recreate = CreateProxy(at, intent.network, intent.proxy_run, intent.ready_timeout_s, proxy.id, intent.drain_s)
        actions.append(Action(ActionKind.RECREATE_PROXY, name, cause, recreate))
    elif proxy is not good_proxy:
        was = f"was on {proxy.host_ip}:{proxy.host_port}"
        recreate = CreateProxy(at, intent.network, intent.proxy_run, intent.ready_timeout_s, proxy.id, intent.drain_s)
        actions.append(Action(ActionKind.RECREATE_PROXY, name, f"proxy settings changed ({was})", recreate))
    elif proxy.state != "running":
        start = StartProxy(at, proxy.id, intent.ready_timeout_s)
        actions.append(Action(ActionKind.START_PROXY, name, f"proxy {proxy.state}", start))
    taken = set(observed.names)
    for backend in backends:
        if backend is not serving:
            unname = ""  # a canary's name still gets a share of the requests: it is given up first
            if backend.name == intent.canary_name:
                unname = _retiring_name(intent, taken)
            retire = Retire(backend.name, backend.id, proxy.id if proxy else "", intent.drain_s, unname=unname)
            actions.append(Action(ActionKind.RETIRE, name, "left by an interrupted update", retire))


def _plan_direct(intent: Intent, observed: Observed, actions: list[Action], build_cause: str) -> None:
    """No proxy: the serving container publishes the port itself (replaced after a canary)."""
    at = _published(intent)
    for container in [c for c in observed.containers if c.role in ("proxy", "backend")]:
        # they hold the port: gone before a container can publish it
        actions.append(
            _remove(intent, container, "output.container.proxy is off: the container publishes the port itself")
        )
    serving = [c for c in observed.containers if not c.role]
    leftovers = [c for c in observed.containers if c.role == "canary"]
    current = next((c for c in serving if c.container_hash == intent.container_hash), None) or (
        serving[0] if serving else None
    )
    for other in serving:  # it holds the port (an update killed midway leaves two): it goes first
        if other is not current:
            actions.append(_remove(intent, other, "a second container for this package"))
    spec = replace(intent.run, name=intent.container, host=intent.host, port=intent.port)
    if current is None:
        create = CreateDirect(at, spec, intent.ready_timeout_s)
        actions.append(Action(ActionKind.CREATE, intent.name, "no container", create))
    elif current.container_hash != intent.container_hash or (current.state == "running" and observed.port_refused):
        if current.container_hash == intent.container_hash:
            cause = f"{current.host_ip}:{current.host_port} refuses connections (Docker's port forwarder gone?)"
        else:
            cause = _replace_cause(intent, current, build_cause)
            if current.image_hash == intent.image_hash:
                cause += f" (was {current.name} on {current.host_ip}:{current.host_port})"
        canary = replace(
            intent.run.labelled({labels.ROLE: "canary"}),
            name=fresh_name(f"{intent.container}-canary-{intent.container_hash[:8]}", observed.names),
            host="127.0.0.1",
            port=0,
            restart=False,  # a failing canary stays failed
        )
        previous = fresh_name(f"{intent.container}-previous", observed.names)
        recreate = RecreateDirect(at, current.id, canary, spec, previous, intent.ready_timeout_s)
        actions.append(Action(ActionKind.RECREATE, intent.name, cause, recreate))
    elif current.state != "running":
        start = Start(at, current.id, behind_proxy=False, ready_timeout_s=intent.ready_timeout_s)
        actions.append(Action(ActionKind.START, intent.name, f"container {current.state}", start))
    for leftover in leftovers:
        actions.append(_remove(intent, leftover, f"{leftover.role} left by an interrupted replacement"))
