"""The manifest's `output` block: what to produce (the mode) and how: the image, the
serving container, the Kubernetes manifests, and the resources a serving container gets."""

from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from reconciler.spec.fields import (
    BIND_ADDRESS,
    CONTAINER_NAME,
    CPU_QUANTITY,
    DEFAULT_CONTAINER_MEMORY,
    DNS_LABEL,
    IMAGE_REFERENCE,
    KUBERNETES_DEFAULT_CPU,
    KUBERNETES_DEFAULT_MEMORY,
    LABEL_KEY,
    LABEL_VALUE,
    LOG_SIZE,
    MEMORY_QUANTITY,
    REGISTRY,
    RELATIVE_PATH,
    REPOSITORY,
    Strict,
    pattern,
)
from reconciler.spec.modes import MODE_NAMES, Mode

# The labels every object and pod carries from reconciler: two of them are the selector.
RESERVED_KUBERNETES_LABELS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
    }
)


class ImageOutput(Strict):
    repository: pattern(REPOSITORY, description="Image repository. Default: the package name.") | None = None
    registry: pattern(REGISTRY, description="Registry HOST:PORT to push to.") | None = None
    push: bool = Field(False, description="Push after a successful build (needs `registry`).")
    keep: int = Field(
        3,
        ge=1,
        le=1000,
        description="Images of this package kept after a build: those built or served from most recently; "
        "the others are removed unless a container runs them.",
    )

    @model_validator(mode="after")
    def _push_needs_registry(self) -> Self:
        if self.push and not self.registry:
            raise ValueError("`push: true` needs `registry: HOST:PORT`")
        return self


class Resources(Strict):
    """What one serving container may use: limits on the container in container mode,
    requests and limits on the pod in kubernetes mode (where a pod with none gets requests of
    KUBERNETES_DEFAULT_CPU and KUBERNETES_DEFAULT_MEMORY, and that memory as its limit: a pod
    without requests is placed anywhere, and one without a memory limit can take its node's)."""

    cpu: (
        pattern(
            CPU_QUANTITY,
            description=f'CPU cores, "1", "0.5" or "500m". kubernetes mode: a {KUBERNETES_DEFAULT_CPU} request '
            "unless set (and no CPU limit).",
        )
        | None
    ) = None
    memory: (
        pattern(
            MEMORY_QUANTITY,
            description=f"Memory, such as 512Mi or 2Gi. container mode: {DEFAULT_CONTAINER_MEMORY} unless set; "
            f"kubernetes mode: {KUBERNETES_DEFAULT_MEMORY} (request and limit) unless set.",
        )
        | None
    ) = None
    gpus: int = Field(0, ge=0, le=64, description="NVIDIA GPUs (kubernetes: nvidia.com/gpu limits).")

    @property
    def cpu_cores(self) -> float | None:
        if self.cpu is None:
            return None
        return int(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else memory_bytes(self.memory)


def memory_bytes(quantity: str) -> int:
    """512Mi, 2Gi, 1G or plain bytes, in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


class Autoscale(Strict):
    min: int = Field(1, ge=1, le=1000, description="Fewest replicas.")
    max: int = Field(ge=1, le=1000, description="Most replicas.")
    cpu_percent: int = Field(80, ge=1, le=1000, description="Average CPU use, in percent of the request, to aim for.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


KubernetesLabels = dict[
    Annotated[str, StringConstraints(pattern=LABEL_KEY)], Annotated[str, StringConstraints(pattern=LABEL_VALUE)]
]


class Peer(Strict):
    """Who may reach the model: pods with these labels, in namespaces with these labels (or in
    the package's own namespace when `namespace_labels` is not given)."""

    pod_labels: KubernetesLabels | None = Field(None, description="Pods with these labels; absent: any pod.")
    namespace_labels: KubernetesLabels | None = Field(
        None, description="In namespaces with these labels; absent: the package's own namespace."
    )


class NetworkPolicy(Strict):
    """A NetworkPolicy beside the Deployment: ingress to the serving port only, from `allow_from`."""

    enabled: bool = Field(True, description="Render the NetworkPolicy (false: the cluster's own policy applies).")
    allow_from: list[Peer] = Field(
        default_factory=lambda: [Peer()],
        min_length=1,
        max_length=64,
        description="Who may reach the serving port. Default: every pod in the package's namespace.",
    )


class KubernetesOutput(Strict):
    """kubernetes mode: a folder of manifests that Argo CD, Flux or `kubectl apply -k` deploy."""

    directory: (
        pattern(RELATIVE_PATH, description="Manifests folder, relative to the manifest. Default: deploy/<name>.") | None
    ) = None
    namespace: pattern(DNS_LABEL, description="Namespace of every object. Default: none (the sync tool's).") | None = (
        None
    )
    replicas: int = Field(1, ge=0, le=1000, description="Pods serving the model (without autoscale).")
    autoscale: Autoscale | None = Field(None, description="A HorizontalPodAutoscaler on CPU instead of replicas.")
    service_port: int = Field(80, ge=1, le=65535, description="The Service's port, forwarded to the container's 5001.")
    image_pull_secret: pattern(DNS_LABEL, description="A Secret (you manage it) to pull the image with.") | None = None
    secret_name: (
        pattern(DNS_LABEL, description="The Secret (you manage it) holding inference.secrets. Default: <name>-secrets.")
        | None
    ) = None
    labels: KubernetesLabels = Field(default_factory=dict, description="Labels added to every object and pod.")
    annotations: dict[
        Annotated[str, StringConstraints(pattern=LABEL_KEY)], Annotated[str, StringConstraints(max_length=4096)]
    ] = Field(default_factory=dict, description="Annotations added to every object and pod.")
    network_policy: NetworkPolicy = Field(default_factory=NetworkPolicy)

    @field_validator("labels")
    @classmethod
    def _not_the_selector(cls, labels: dict) -> dict:
        reserved = sorted(RESERVED_KUBERNETES_LABELS.intersection(labels))
        if reserved:  # a Deployment whose pods carry another name selects none of them
            raise ValueError(f"{', '.join(reserved)} is set by reconciler (it selects the pods) and cannot be set here")
        return labels


class Security(Strict):
    """How tightly a serving container is confined. Every default is the safe one: relax only
    what the model needs, by name."""

    read_only_root: bool = Field(
        True, description="The root filesystem is read-only and /tmp a tmpfs. false: the model may write anywhere."
    )
    tmp_size: pattern(MEMORY_QUANTITY, description="Size of the /tmp tmpfs (it counts as memory).") = "1Gi"
    drop_capabilities: bool = Field(True, description="Drop every Linux capability. false: keep Docker's defaults.")
    no_new_privileges: bool = Field(True, description="No process can gain privileges (setuid, file capabilities).")
    pids_limit: int = Field(1024, ge=0, le=4_194_304, description="Most processes and threads at once; 0: no limit.")


class Logs(Strict):
    """Container logs rotate: a busy model logs a line per request."""

    max_size: pattern(LOG_SIZE, description="Size of one log file before it rotates, such as 20m.") = "20m"
    max_files: int = Field(5, ge=1, le=100, description="Log files kept per container.")


class Canary(Strict):
    """An update first serves a share of the requests from the new container, beside the old
    one, while the proxy counts its answers; promoted if its errors stay within bounds."""

    weight: int = Field(..., ge=1, le=99, description="Per cent of the requests the new container gets meanwhile.")
    duration_s: float = Field(..., gt=0, le=86_400, description="How long the canary runs before it is judged.")
    max_error_rate: float = Field(
        ..., ge=0, le=1, description="The most errors (5xx answers and failed connections) per request it may have."
    )
    min_requests: int = Field(
        20, ge=1, le=1_000_000, description="Fewer requests than this in duration_s are too few to judge: promoted."
    )


class ContainerOutput(Strict):
    name: pattern(CONTAINER_NAME, description="Container name. Default: the package name.") | None = None
    port: int = Field(6789, ge=1, le=65535, description="Host port published for the container's 5001.")
    host: pattern(BIND_ADDRESS, description="Host address the port is published on.") = "127.0.0.1"
    ready_timeout_s: int = Field(
        120, ge=1, le=3600, description="How long a new container may take to become ready (init() to return)."
    )
    proxy: bool = Field(
        True,
        description="A reverse proxy owns the published port: an update moves traffic to the new container once "
        "it is ready and drains the old one, so no request is refused. false: the container publishes the port "
        "itself, and an update has a gap of about one init().",
    )
    proxy_image: pattern(IMAGE_REFERENCE, description="The reverse proxy's image (HAProxy).") = "haproxy:3.0-alpine"
    canary: Canary | None = Field(
        None, description="Updates go through a canary: a share of the traffic first, judged by its error rate."
    )
    security: Security = Field(default_factory=Security)
    logs: Logs = Field(default_factory=Logs)

    @model_validator(mode="after")
    def _canary_needs_the_proxy(self) -> Self:
        if self.canary and not self.proxy:
            raise ValueError("canary needs proxy: true: the proxy is what splits the traffic and counts the errors")
        return self


# The rules of Output._kubernetes_needs, for editors and CI that validate with the JSON schema.
_OUTPUT_RULES = {
    "allOf": [
        {
            "if": {"properties": {"mode": {"const": "kubernetes"}}, "required": ["mode"]},
            "then": {"properties": {"image": {"required": ["registry"]}}, "required": ["image"]},
        },
        {
            "if": {
                "properties": {
                    "mode": {"const": "kubernetes"},
                    "kubernetes": {"required": ["autoscale"], "properties": {"autoscale": {"type": "object"}}},
                },
                "required": ["mode", "kubernetes"],
            },
            "then": {"properties": {"resources": {"required": ["cpu"]}}, "required": ["resources"]},
        },
    ]
}


class Output(Strict):
    model_config = ConfigDict(json_schema_extra=_OUTPUT_RULES)

    mode: Literal[MODE_NAMES] = Field(
        "dockerfile",
        description="dockerfile: write a build folder; image: also build it; container: also run it; "
        "kubernetes: build, push, and write Kubernetes manifests that pin the pushed digest.",
    )
    directory: (
        pattern(RELATIVE_PATH, description="Build folder, relative to the manifest. Default: build/<name>.") | None
    ) = None
    image: ImageOutput = Field(default_factory=ImageOutput)
    container: ContainerOutput = Field(default_factory=ContainerOutput)
    kubernetes: KubernetesOutput = Field(default_factory=KubernetesOutput)
    resources: Resources = Field(default_factory=Resources)

    @property
    def kind(self) -> Mode:
        """The mode as the table of capabilities (spec.modes): ask it, never the name."""
        return Mode(self.mode)

    @property
    def container_memory_bytes(self) -> int:
        """A serving container's memory limit in container mode: there is always one."""
        return memory_bytes(self.resources.memory or DEFAULT_CONTAINER_MEMORY)

    @model_validator(mode="after")
    def _kubernetes_needs(self) -> Self:
        if self.kind.pushes and not self.image.registry:
            raise ValueError(
                f"output.mode {self.mode} needs output.image.registry: the cluster pulls the image from it"
            )
        if self.kind.renders_manifests and self.container.canary:
            raise ValueError(
                "container.canary is for container mode; on Kubernetes, Argo Rollouts or Flagger run canaries "
                "(docs/kubernetes.md, section Canary)"
            )
        if self.kind.renders_manifests and self.kubernetes.autoscale and not self.resources.cpu:
            raise ValueError("kubernetes.autoscale scales on CPU use relative to a request: set resources.cpu")
        return self
