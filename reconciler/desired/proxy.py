"""The reverse proxy in front of a serving container: names, and its HAProxy configuration.

In container mode a small HAProxy owns the published port and forwards to the serving
container, so an update never refuses a request: a new container is started beside the old
one, traffic moves to it only once it is ready, and the old one drains before it stops (no
second init(), whatever init() costs). HAProxy is a well-kept proxy packaged both as an
official image and in Debian.

The configuration is a pure function of the package, and never changes for an update: it
names the serving container by a fixed alias, `<name>-serving`, which HAProxy resolves
through Docker's DNS every 100 ms. A rename moves traffic, with no reload: client
connections stay open (a reload would close idle keep-alive ones, and a request sent on one
at that instant would fail); new connections to the container go where the name points now;
requests in flight to the old container finish there. Connections to the container are kept
alive and reused (a new one per request cost 46% of requests/s, see docs/performance.md).

No request that reached a container is ever sent again (a run() that crashed its worker would
run twice): HAProxy retries only a connection that failed to open. So an idle connection must
never be closed by the container while HAProxy may send on it: HAProxy purges its idle
connections within seconds (`pool-purge-delay`), the runtime behind it keeps them far longer
(`BACKEND_ENVIRONMENT`), and a draining runtime serves what still comes on one, then closes it.
Which container serves shows in the container list, by its name.

With `output.container.canary`, the backend has a second server, `<name>-canary`, weighted
to get the canary's share while a container holds that name (and nothing while none does),
and a stats page on a loopback-only port gives each server's counts (answers by class,
failed connections): what the canary is judged by.
"""

from __future__ import annotations

import math

from reconciler.desired.dockerfile import CONTAINER_PORT
from reconciler.spec.package import Package

PROXY_PORT = 8080  # what the proxy listens on inside its container
STATS_PORT = 8404  # its stats page (canary packages): published on an ephemeral 127.0.0.1 port only
STATS_PATH = "/stats"
BACKEND = "serving"  # the backend's name in the configuration
CANARY_SERVER = "canary"  # the canary's server in it
CONFIG_PATH = "/tmp/haproxy.cfg"  # the root filesystem is read-only: the configuration arrives by environment
CONFIG_VARIABLE = "RECONCILER_PROXY_CONFIG"
PROXY_MEMORY_BYTES = 256 * 2**20
# The proxy runs as this user whatever its image declares (an image built from Debian's haproxy
# runs as root): it needs no privilege at all, it binds 8080 and writes only its tmpfs /tmp.
PROXY_USER = "10002:10002"
# As tightly confined as a serving container by default (see engine.specs.Confinement).
PROXY_CONFINEMENT = {
    "read_only_root": True,
    "tmp_bytes": 2**20,
    "drop_capabilities": True,
    "no_new_privileges": True,
    "pids_limit": 256,
}
RESOLVE_INTERVAL_MS = 100
SWITCH_WAIT_S = 1.0  # ten resolutions: after a rename, the proxy opens no new connection to the old container
# How the runtime runs behind the proxy: the proxy is its only client, and closes idle connections itself.
BACKEND_ENVIRONMENT = {"RECONCILER_BEHIND_PROXY": "1"}


def network_name(package: Package) -> str:
    """The package's own Docker network: its proxy and its containers, no one else."""
    return f"reconciler-{package.manifest.container_name}"


def serving_name(package: Package) -> str:
    return f"{package.manifest.container_name}-serving"


def canary_name(package: Package) -> str:
    """The name a new container takes while it is the canary (the proxy's second server)."""
    return f"{package.manifest.container_name}-canary"


def backend_name(package: Package, container_hash: str) -> str:
    """A container that may serve: its name says which settings it runs."""
    return f"{package.manifest.container_name}-{container_hash[:8]}"


def proxy_command() -> list[str]:
    """Write the configuration from the environment into the tmpfs /tmp, then become HAProxy
    (so a restart after a reboot writes it again)."""
    return ["sh", "-c", f'printf "%s" "${CONFIG_VARIABLE}" > {CONFIG_PATH} && exec haproxy -db -f {CONFIG_PATH}']


def render_proxy_config(package: Package) -> str:
    timeout_s = math.ceil(package.manifest.inference.server.timeout_ms / 1000) + 10
    canary = package.manifest.output.container.canary
    options = "resolvers docker init-addr last,libc,none pool-purge-delay 500ms"
    servers = [f"server serving {serving_name(package)}:{CONTAINER_PORT} {options}"]
    stats = ""
    if canary:
        servers = [
            f"{servers[0]} weight {100 - canary.weight}",
            f"server {CANARY_SERVER} {canary_name(package)}:{CONTAINER_PORT} {options} weight {canary.weight}",
        ]
        stats = f"""
frontend stats
    # read-only counts per server, published on 127.0.0.1 only: what a canary is judged by
    bind :{STATS_PORT}
    stats enable
    stats uri {STATS_PATH}
"""
    server_lines = "".join(f"    {line}\n" for line in servers)
    return f"""\
# Generated by reconciler for {package.name}: the proxy in front of {serving_name(package)}.
global
    log stdout format raw daemon warning
    pidfile /tmp/haproxy.pid
    maxconn 4096
    nbthread 1  # one thread forwards far more than one model container serves, and leaves the cores to it

defaults
    mode http
    log global
    option dontlognull
    timeout connect 5s
    timeout client {timeout_s}s
    timeout server {timeout_s}s
    timeout http-request 60s
    timeout http-keep-alive 60s
    retries 3
    option redispatch
    http-reuse safe           # keep-alive to the container; a client's first request gets its own
    option http-buffer-request
    retry-on conn-failure     # only a connection that failed to open: nothing of a request is ever sent twice

resolvers docker
    nameserver embedded 127.0.0.11:53
    resolve_retries 3
    timeout resolve {RESOLVE_INTERVAL_MS}ms
    timeout retry {RESOLVE_INTERVAL_MS}ms
    hold valid {RESOLVE_INTERVAL_MS}ms
    hold obsolete 0s

frontend serving
    bind :{PROXY_PORT}
    default_backend {BACKEND}

backend {BACKEND}
    # idle connections purged quickly, so those to a container that no longer serves go soon after
    # the switch; the runtime behind the proxy never closes an idle one first (BACKEND_ENVIRONMENT)
{server_lines}{stats}"""
