"""Every call reconciler makes to the Docker engine, in one place, and nothing else.

Answers come back as the engine gives them (summaries, IDs); `observed` turns them
into state. What to create comes in as `specs`, every setting decided by the planner.
Builds are `builders`' choice: BuildKit through the docker CLI, or the legacy builder here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reconciler.core.errors import PermanentError, TemporaryError
from reconciler.core.labels import MANAGED
from reconciler.desired.dockerfile import CONTAINER_PORT
from reconciler.desired.proxy import BACKEND, STATS_PATH, STATS_PORT
from reconciler.engine.endpoint import ServerCounts, is_ready, proxy_counts
from reconciler.engine.specs import BuildSpec, Confinement, ContainerSpec, NetworkSpec

READY_POLL_S = 0.03  # between two GET /ready while a container starts
INSPECT_EVERY_S = 0.25  # between two looks at whether it exited (or ran out of memory) meanwhile


class EngineError(TemporaryError):
    """The engine refused or failed an operation; the message says which and why."""


class EngineUnavailable(EngineError):
    """No engine answers, or the one we talked to went away."""


class NotOnEngine(PermanentError):
    """The engine or registry has no such image or container (asking again will not create it)."""


EXPLAINED = "reconciler: "  # a build step's own account of its failure (runtime/import_check.py, the Python check)


class BuildFailed(PermanentError):
    """A build that failed on these inputs fails again on the same inputs. Where a step of
    reconciler's said why, that is the error, rather than the engine's exit code."""

    def __init__(self, step: str, tail: list[str], error: str):
        explained = [line.split(EXPLAINED, 1)[1].strip() for line in tail if EXPLAINED in line]
        if explained:  # the step's own words say more than its long command line
            error = "; ".join(dict.fromkeys(explained))
            tail = [line for line in tail if EXPLAINED not in line]
            step = step.split("] ", 1)[0] + "]" if step.startswith("[") else step.split(" : ", 1)[0]
        self.step, self.tail, self.error = step, tail, error
        detail = "\n    ".join(tail)
        super().__init__(f"build failed at {step or 'the start'}: {error}\n    {detail}")


@contextmanager
def engine_call(what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Turn whatever the Docker SDK raises into a reconciler error that says `what` failed.

    With `missing_ok`, an object that is not there is no failure (removing what is
    already gone); the block is left and the caller goes on."""
    import docker
    import requests

    try:
        yield
    except docker.errors.NotFound as error:
        if not missing_ok:
            raise NotOnEngine(f"{what}: {_explain(error)}") from None
    except docker.errors.APIError as error:
        raise EngineError(f"{what}: {_explain(error)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        reason = str(error).split("\n")[0][:200]
        raise EngineUnavailable(f"{what}: the Docker engine at {engine_address()} went away ({reason})") from None
    except docker.errors.DockerException as error:
        raise EngineError(f"{what}: {error}") from None


def _explain(error) -> str:
    return str(getattr(error, "explanation", None) or error)


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is not set)"


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    steps: int
    cached: int


def host_options(confinement: Confinement) -> dict:
    """A container's confinement as keyword arguments of docker's create_host_config."""
    import docker

    options: dict = {
        "log_config": docker.types.LogConfig(
            type="json-file",
            config={"max-size": confinement.log_max_size, "max-file": str(confinement.log_max_files)},
        )
    }
    if confinement.read_only_root:
        options["read_only"] = True
        options["tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={confinement.tmp_bytes}"}
    if confinement.drop_capabilities:
        options["cap_drop"] = ["ALL"]
    if confinement.no_new_privileges:
        options["security_opt"] = ["no-new-privileges:true"]
    if confinement.pids_limit:
        options["pids_limit"] = confinement.pids_limit
    return options


class Engine:
    def __init__(self, client):
        self.client = client
        self.api = client.api

    @classmethod
    def connect(cls) -> Engine:
        """The engine DOCKER_HOST (or the default socket) points at, or EngineUnavailable."""
        import docker

        try:
            client = docker.from_env(timeout=10)  # asks the engine its API version: reachable or not
        except Exception as error:  # noqa: BLE001 - the SDK raises many kinds; all mean "not reachable"
            reason = str(error).split("\n")[0]
            raise EngineUnavailable(f"no Docker engine answers at {engine_address()}: {reason}") from None
        client.api.timeout = 600  # builds and pushes may take a while once connected
        return cls(client)

    # -- observing --------------------------------------------------------------------

    def containers(self, *, managed_only: bool) -> list[dict]:
        """Container summaries: those reconciler manages, or every container on the engine."""
        with engine_call("cannot list containers"):
            return self.api.containers(all=True, filters={"label": f"{MANAGED}=true"} if managed_only else None)

    def networks(self, *, label: str) -> list[dict]:
        """Summaries of the networks that carry `label` (name, id, labels)."""
        with engine_call("cannot list networks"):
            return self.api.networks(filters={"label": label})

    def network_in_use(self, name: str) -> bool:
        """Whether any container is attached to the network (a prune never takes one in use)."""
        with engine_call(f"cannot inspect network {name}"):
            try:
                return bool(self.api.inspect_network(name).get("Containers"))
            except Exception as error:  # noqa: BLE001 - gone meanwhile: not in use
                if "not found" in str(error).lower():
                    return False
                raise

    def images(self, *, label: str) -> list[dict]:
        """Summaries of the images that carry `label`."""
        with engine_call("cannot list images"):
            return self.api.images(filters={"label": label})

    def inspect_image(self, reference: str) -> dict | None:
        """What the engine knows of the image `reference` names, or None when it does not have it."""
        details = None
        with engine_call(f"cannot inspect {reference}", missing_ok=True):
            details = self.api.inspect_image(reference)
        return details

    def cpus(self) -> int:
        """How many CPUs the engine's host has: it refuses a container given more."""
        with engine_call("cannot ask the engine how many CPUs it has"):
            return int(self.api.info()["NCPU"])

    def disk_usage(self) -> dict:
        """What `docker system df -v` reports: images with their own and shared sizes."""
        with engine_call("cannot ask the engine for its disk usage"):
            return self.api.df()

    def registry_digest(self, reference: str) -> str | None:
        """The manifest digest the registry in `reference` has for it (asked through the engine)."""
        with engine_call(f"cannot ask the registry about {reference}"):
            return (self.api.inspect_distribution(reference).get("Descriptor") or {}).get("digest")

    def registry_has(self, reference: str) -> bool:
        """Whether the registry in `reference` holds that tag (asked through the engine)."""
        import docker

        try:
            with engine_call(f"cannot ask the registry about {reference}"):
                try:
                    self.api.inspect_distribution(reference)
                except docker.errors.APIError as error:
                    text = _explain(error)
                    if "manifest unknown" in text or "not found" in text.lower():
                        return False
                    raise
        except NotOnEngine:
            return False
        return True

    # -- images -----------------------------------------------------------------------

    def pull(self, reference: str) -> str:
        """Pull by tag or by digest (`name@sha256:...`); the local image ID."""
        with engine_call(f"cannot pull {reference}"):
            for chunk in self.api.pull(reference, stream=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"cannot pull {reference}: {chunk['error']}")
            return self.api.inspect_image(reference)["Id"]

    def build(self, spec: BuildSpec, progress: Callable[[str], None]) -> BuildResult:
        """Build with the engine's legacy builder (what the Docker SDK speaks) and tag it;
        each step is reported through `progress` as it starts."""
        import docker

        tags = spec.tags
        step = ""
        tail: list[str] = []
        image_id = None
        steps = cached = 0
        with engine_call(f"build {tags[0]}"):
            try:
                stream = self.api.build(
                    path=spec.folder,
                    tag=tags[0],
                    labels=dict(spec.labels),
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode=None if spec.network else "none",
                    platform=spec.platform,
                )
                for chunk in stream:
                    if "error" in chunk:
                        raise BuildFailed(step, tail[-20:], chunk["error"].strip())
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
                    for line in chunk.get("stream", "").splitlines():
                        if not line.strip():
                            continue
                        tail.append(line.rstrip())
                        if line.startswith("Step "):
                            step = " ".join(line.split())
                            steps += 1
                            progress(step if len(step) <= 110 else step[:107] + "...")
                        elif line.strip() == "---> Using cache":
                            cached += 1
                        match = re.match(r"Successfully built ([0-9a-f]+)", line)
                        if match and image_id is None:
                            image_id = match.group(1)
            except docker.errors.APIError as error:  # the engine refused this build context
                raise BuildFailed(step, tail[-20:], _explain(error)) from None
            if image_id is None:
                raise BuildFailed(step, tail[-20:], "the engine reported no image")
            for tag in tags[1:]:
                self.tag(image_id, tag)
            return BuildResult(self.api.inspect_image(image_id)["Id"], steps, cached)

    def tag(self, image_id: str, reference: str) -> None:
        repository, tag = reference.rsplit(":", 1)
        with engine_call(f"cannot tag {reference}"):
            self.api.tag(image_id, repository, tag=tag, force=True)

    def push(self, reference: str) -> str:
        """Push a tag; return the digest the registry gave it."""
        repository, tag = reference.rsplit(":", 1)
        digest = ""
        with engine_call(f"push {reference} failed"):
            for chunk in self.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"push {reference} failed: {chunk['error']}")
                digest = (chunk.get("aux") or {}).get("Digest", digest)
        return digest

    def remove_image(self, image_id: str) -> None:
        with engine_call(f"cannot remove image {image_id[:19]}", missing_ok=True):
            self.api.remove_image(image_id, force=True, noprune=False)

    # -- containers -------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) the container `spec` describes; its ID."""
        import docker

        limits: dict = host_options(spec.confinement) if spec.confinement else {}
        if spec.cpus:
            limits["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.memory:
            limits["mem_limit"] = spec.memory
        if spec.gpus:
            limits["device_requests"] = [
                docker.types.DeviceRequest(driver="nvidia", count=spec.gpus, capabilities=[["gpu"]])
            ]
        with engine_call(f"cannot create container {spec.name}"):
            host_config = self.api.create_host_config(
                port_bindings={
                    spec.container_port: (spec.host, spec.port or None),
                    **{port: ("127.0.0.1", None) for port in spec.loopback_ports},
                },
                restart_policy={"Name": "unless-stopped" if spec.restart else "no"},
                init=True,
                binds={
                    **{source: {"bind": target, "mode": "ro"} for source, target in spec.mounts.items()},
                    **{source: {"bind": target, "mode": "rw"} for source, target in spec.writable_mounts.items()},
                },
                network_mode=spec.network,
                **limits,
            )
            created = self.api.create_container(
                spec.image,
                name=spec.name,
                labels=dict(spec.labels),
                ports=[spec.container_port, *spec.loopback_ports],
                host_config=host_config,
                detach=True,
                environment={**spec.environment, **spec.secrets} or None,
                user=spec.user,
                command=list(spec.command) if spec.command else None,
            )
        return created["Id"]

    def ensure_network(self, network: NetworkSpec) -> None:
        """A bridge network of that name, created when missing (containers on it reach each
        other by name; nothing else is on it)."""
        name = network.name
        with engine_call(f"cannot list networks named {name}"):
            if any(n.get("Name") == name for n in self.api.networks(names=[name])):
                return
        with engine_call(f"cannot create network {name}"):
            try:
                self.api.create_network(name, driver="bridge", labels=dict(network.labels), check_duplicate=True)
            except Exception as error:  # noqa: BLE001 - created meanwhile by another reconciler: fine
                if "already exists" not in str(error):
                    raise

    def remove_network(self, name: str) -> None:
        with engine_call(f"cannot remove network {name}", missing_ok=True):
            self.api.remove_network(name)

    def start(self, container_id: str) -> None:
        with engine_call(f"cannot start container {container_id[:12]}"):
            self.api.start(container_id)

    def published_port(self, container_id: str, container_port: int = CONTAINER_PORT) -> int:
        with engine_call(f"cannot inspect container {container_id[:12]}"):
            ports = self.api.inspect_container(container_id)["NetworkSettings"]["Ports"]
        bindings = ports.get(f"{container_port}/tcp") or []
        if not bindings:
            raise EngineError(f"container {container_id[:12]} publishes no port")
        return int(bindings[0]["HostPort"])

    def proxy_counts(self, proxy_id: str, server: str) -> ServerCounts:
        """What a package's proxy counted for one server of its backend (a canary's)."""
        return proxy_counts(self.published_port(proxy_id, STATS_PORT), STATS_PATH, BACKEND, server)

    def logs(self, container_id: str, lines: int = 30) -> list[str]:
        try:
            text = self.api.logs(container_id, tail=lines).decode(errors="replace")
        except Exception:  # noqa: BLE001 - logs are a courtesy in an error message
            return []
        return text.splitlines()

    def stop(self, container_id: str, timeout: int = 30) -> None:
        with engine_call(f"cannot stop container {container_id[:12]}", missing_ok=True):
            self.api.stop(container_id, timeout=timeout)

    def rename(self, container_id: str, name: str) -> None:
        with engine_call(f"cannot rename container {container_id[:12]} to {name}"):
            self.api.rename(container_id, name)

    def remove_container(self, container_id: str) -> None:
        with engine_call(f"cannot remove container {container_id[:12]}", missing_ok=True):
            self.api.remove_container(container_id, force=True)

    def wait_ready(self, container_id: str, host: str, port: int, timeout: float) -> str | None:
        """Poll GET /ready on the published port; None when ready, else why not (exit, timeout).
        /ready is asked often (the new container serves as soon as it answers), the engine only
        every INSPECT_EVERY_S: on two cores each call takes CPU from the init() being waited for."""
        deadline = time.monotonic() + timeout
        inspected = 0.0
        while time.monotonic() < deadline:
            try:
                if is_ready(host, port, timeout=2):
                    return None
            except OSError:
                pass
            if time.monotonic() - inspected < INSPECT_EVERY_S:
                time.sleep(READY_POLL_S)
                continue
            inspected = time.monotonic()
            with engine_call(f"cannot inspect container {container_id[:12]}"):
                details = self.api.inspect_container(container_id)
            state = details["State"]
            if state.get("OOMKilled"):
                limit = details["HostConfig"].get("Memory") or 0
                return f"the container ran out of memory at its {limit / 2**30:g} GiB limit (output.resources.memory)"
            if state["Status"] in ("exited", "dead"):
                return f"the container exited with code {state.get('ExitCode')}"
            if state["Status"] == "restarting" or details.get("RestartCount"):  # its exit code is gone
                return "the container exited, and is being restarted"
            time.sleep(READY_POLL_S)
        return f"not ready after {timeout:g} s"
