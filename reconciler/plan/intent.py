"""What the planner knows of a package's desired state, every setting already decided.

`Intent.of(desired)` is where tags, labels, networks, platforms, confinement and limits are
decided from the manifest: the payloads the planner builds from it are complete, and the
executor applies them as they are. Golden tests build Intents by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core import labels
from reconciler.core.paths import display_path
from reconciler.desired.dockerfile import DATA_COLLECTION_ROOT, DEV_APP_ROOT
from reconciler.desired.proxy import (
    CONFIG_VARIABLE,
    PROXY_CONFINEMENT,
    PROXY_MEMORY_BYTES,
    PROXY_PORT,
    PROXY_USER,
    STATS_PORT,
    canary_name,
    network_name,
    proxy_command,
    render_proxy_config,
    serving_name,
)
from reconciler.desired.state import Desired
from reconciler.engine.specs import BuildSpec, Confinement, ContainerSpec, NetworkSpec
from reconciler.spec.modes import Mode
from reconciler.spec.output import Canary, ContainerOutput, memory_bytes

NO_CONTAINER = ContainerSpec("", "", {})


@dataclass(frozen=True)
class Intent:
    name: str
    mode: Mode
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
    canary: Canary | None = None  # updates go through a canary first
    canary_name: str = ""  # the name the proxy sends the canary's share to
    manifests_folder: str = ""  # kubernetes mode: the manifests folder, as displayed
    manifests_hash: str = ""
    manifests_inputs: Mapping[str, str] = field(default_factory=dict)
    # what the payloads are made of
    desired: Desired | None = None  # what a write renders
    build: BuildSpec = BuildSpec("", (), {})
    run: ContainerSpec = NO_CONTAINER  # the serving container, but for its name and address
    proxy_run: ContainerSpec = NO_CONTAINER  # the proxy, complete
    network: NetworkSpec = NetworkSpec("", {})
    ready_timeout_s: float = 120.0
    drain_s: int = 70  # how long a container being replaced may take to finish what it serves

    @classmethod
    def of(cls, desired: Desired) -> Intent:
        package = desired.package
        manifest = package.manifest
        output = manifest.output
        settings = output.container
        return cls(
            name=package.name,
            mode=package.mode,
            folder=display_path(package.output_directory),
            image_hash=desired.image_hash,
            container_hash=desired.container_hash,
            inputs=desired.inputs,
            container_inputs=desired.container_inputs if package.mode.serves else {},
            base_image=desired.base.from_reference
            if desired.base
            else manifest.inference.environment.resolved_base_image,
            base_pinned_by=(desired.base.by or "") if desired.base else "",
            image=desired.image_ref,
            push_to=desired.push_ref,
            container=manifest.container_name,
            host=settings.host,
            port=settings.port,
            manifest=package.owner,
            keep=output.image.keep,
            proxy=settings.proxy,
            proxy_hash=desired.proxy_hash,
            proxy_image=settings.proxy_image,
            serving=serving_name(package),
            canary=settings.canary if settings.proxy else None,
            canary_name=canary_name(package),
            manifests_folder=display_path(package.kubernetes_directory) if package.kubernetes_directory else "",
            manifests_hash=desired.manifests_hash,
            manifests_inputs=desired.manifests_inputs,
            desired=desired,
            build=build_spec(desired),
            run=serving_spec(desired) if package.mode.serves else NO_CONTAINER,
            proxy_run=proxy_spec(desired) if package.mode.serves and settings.proxy else NO_CONTAINER,
            network=NetworkSpec(
                network_name(package),
                {labels.MANAGED: "true", labels.PACKAGE: package.name, labels.MANIFEST: package.owner},
            ),
            ready_timeout_s=settings.ready_timeout_s,
            drain_s=manifest.inference.server.timeout_ms // 1000 + 10,
        )


def build_spec(desired: Desired) -> BuildSpec:
    """The image's tags (by hash, `latest`, and the registry's), its labels (the manifest's for
    people, ours for state), and how it builds: with network only for system packages."""
    package = desired.package
    manifest = package.manifest
    tags = [desired.image_ref, f"{manifest.image_repository}:latest"]
    if desired.registry_ref:
        tags.append(desired.registry_ref)
    image_labels = {k: v for k, v in manifest.labels.items() if not k.startswith("reconciler.")}
    image_labels.update(
        {labels.PACKAGE: package.name, labels.IMAGE_HASH: desired.image_hash, labels.MANIFEST: package.owner}
    )
    environment = manifest.inference.environment
    return BuildSpec(
        folder=str(package.output_directory),
        tags=tuple(tags),
        labels=image_labels,
        network=bool(environment.system_packages),
        platform=None if environment.platform == "linux/amd64" else environment.platform,
    )


def container_labels(desired: Desired, role: str = "") -> dict[str, str]:
    """What a container records of itself: the state the next plan reads."""
    container_labels_ = {
        labels.MANAGED: "true",
        labels.PACKAGE: desired.package.name,
        labels.IMAGE_HASH: desired.image_hash,
        labels.CONTAINER_HASH: desired.container_hash,
        labels.CONTAINER_INPUTS: json.dumps(desired.container_inputs, sort_keys=True, separators=(",", ":")),
        labels.MANIFEST: desired.package.owner,
    }
    if role:
        container_labels_[labels.ROLE] = role
    return container_labels_


def confinement(settings: ContainerOutput) -> Confinement:
    """output.container.security and .logs, as the engine applies them."""
    security, logs_ = settings.security, settings.logs
    return Confinement(
        read_only_root=security.read_only_root,
        tmp_bytes=memory_bytes(security.tmp_size),
        drop_capabilities=security.drop_capabilities,
        no_new_privileges=security.no_new_privileges,
        pids_limit=security.pids_limit,
        log_max_size=logs_.max_size,
        log_max_files=logs_.max_files,
    )


def serving_spec(desired: Desired) -> ContainerSpec:
    """How the package's containers run: confined (output.container.security, .logs), within
    output.resources (a memory limit always), with their secrets in the environment; in dev
    mode (watch --dev) the source folder mounted read-only, one worker, reloads on request; the
    collected-data folder mounted writable (inference.data_collection).
    Name, address and role are the planner's to fill in per container."""
    output = desired.package.manifest.output
    environment: dict[str, str] = {}
    mounts: dict[str, str] = {}
    if desired.dev:
        mounts = {str(desired.package.source_directory): DEV_APP_ROOT}
        environment = {"RECONCILER_DEV": "1", "AML_APP_ROOT": DEV_APP_ROOT, "WORKER_COUNT": "1"}
    return ContainerSpec(
        image=desired.image_ref,
        name="",
        labels=container_labels(desired),
        environment=environment,
        secrets=desired.secrets.environment,
        mounts=mounts,
        writable_mounts={str(desired.collected_data): DATA_COLLECTION_ROOT} if desired.collected_data else {},
        cpus=output.resources.cpu_cores,
        memory=output.container_memory_bytes,
        gpus=output.resources.gpus,
        confinement=confinement(output.container),
    )


def proxy_spec(desired: Desired) -> ContainerSpec:
    """The proxy: HAProxy on the package's network, publishing the package's port, its
    configuration by environment, confined, and small."""
    package = desired.package
    settings = package.manifest.output.container
    logs_ = settings.logs
    return ContainerSpec(
        image=settings.proxy_image,
        name=package.manifest.container_name,
        labels={**container_labels(desired, "proxy"), labels.PROXY_HASH: desired.proxy_hash},
        host=settings.host,
        port=settings.port,
        container_port=PROXY_PORT,
        loopback_ports=(STATS_PORT,) if settings.canary else (),
        network=network_name(package),
        command=tuple(proxy_command()),
        environment={CONFIG_VARIABLE: render_proxy_config(package)},
        memory=PROXY_MEMORY_BYTES,
        confinement=Confinement(**PROXY_CONFINEMENT, log_max_size=logs_.max_size, log_max_files=logs_.max_files),
        user=PROXY_USER,
    )
