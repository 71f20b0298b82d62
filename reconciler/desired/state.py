"""Desired state: from a package's files to its content hashes.

The hash contract (see DESIGN.md): canonical JSON of every input that changes the
image, each input named so that "why did it rebuild?" has an answer.

- `app/<path>`, `models/<name>/<version>/<path>`: file digests (`+x` when executable);
- `package.lock`: the exact wheels; `runtime`: the serving runtime's files;
- `Dockerfile`: the rendered Dockerfile (so a template change rebuilds, and only
  when the output really differs);
- `inference.environment.python`, ...: each setting that reaches the image;
- `inference.environment.base_image (pinned)`: the base image's digest (or local ID) as
  package.lock pins it. The hash reads the lock only, so the same commit gives the same
  hash on every machine, with or without a Docker engine; a re-pulled tag changes nothing
  until `reconciler lock --upgrade` moves the pin.

The image hash covers what is inside the image; the container hash adds how the
container runs it (port, address, name, limits and confinement, keyed digests of its
secrets, and the source mount of a dev container), so a port change never rebuilds. Labels and description, comments, key order and
the output folder change nothing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.core.credentials import without_credentials
from reconciler.core.errors import InvalidInput, Problem
from reconciler.desired.digest import Digester, value_digest, with_mode
from reconciler.desired.dockerfile import MODELS_ROOT, DockerfileSettings, ModelLayout, render_dockerfile
from reconciler.desired.entry_imports import import_check
from reconciler.desired.kubernetes import render_kubernetes
from reconciler.desired.pins import BasePin, Lock, base_stale_reason, read_lock, resolve, stale_reason, write_lock
from reconciler.desired.proxy import (
    BACKEND_ENVIRONMENT,
    PROXY_CONFINEMENT,
    PROXY_MEMORY_BYTES,
    PROXY_USER,
    proxy_command,
    render_proxy_config,
)
from reconciler.desired.secrets import SecretSource, SecretValues
from reconciler.desired.sources import RUNTIME_DIRECTORY, InputFile, model_files, source_files
from reconciler.desired.wheels import WheelCache
from reconciler.spec.manifest import Batching
from reconciler.spec.mlflow_model import MODEL_VARIABLE
from reconciler.spec.package import Package

HASH_SCHEMA = 2
PENDING_DIGEST = "sha256:" + "0" * 64
BASE_PIN = "inference.environment.base_image (pinned)"

PinBase = Callable[[str], BasePin]  # a base image reference -> its pin, asked of an engine or registry


@dataclass(frozen=True)
class Desired:
    package: Package
    lock: Lock
    files: tuple[InputFile, ...]
    file_digests: dict[str, str]  # every file copied into the build folder
    dockerfile: str
    inputs: dict[str, str]  # what the image hash covers
    image_hash: str
    container_hash: str
    container_settings: dict[str, object] = field(default_factory=dict)  # what the container hash covers
    secrets: SecretValues = field(default_factory=SecretValues)  # container mode: given at run time
    proxy_hash: str = ""  # container mode with a proxy: what the proxy container is made of
    manifests_hash: str = ""  # kubernetes mode: what the manifests folder is rendered for
    manifests_inputs: dict[str, str] = field(default_factory=dict)
    locked: str | None = None  # why the lock was resolved during this run, if it was
    dev: bool = False  # watch --dev: the container mounts the source folder and reloads code
    notes: tuple[str, ...] = ()  # worth saying in a plan, changing nothing
    collected_data: Path | None = None  # the host folder collected data lands in (inference.data_collection)

    @property
    def short_hash(self) -> str:
        return self.image_hash[:12]

    @property
    def container_inputs(self) -> dict[str, str]:
        """A short digest per container setting (one per secret), so a plan can say which changed."""
        return container_input_digests(self.container_settings)

    @property
    def base(self) -> BasePin | None:
        return current_base(self.package, self.lock)

    @property
    def image_ref(self) -> str:
        """The local tag of the image for this hash."""
        return image_reference(self.package.manifest.image_repository, self.image_hash)

    @property
    def registry_ref(self) -> str:
        """The tag in `output.image.registry`, or "" when no registry is set."""
        registry = self.package.manifest.output.image.registry
        return image_reference(self.package.manifest.image_repository, self.image_hash, registry) if registry else ""

    @property
    def push_ref(self) -> str:
        """The registry tag when the image is pushed (`output.image.push`, or kubernetes mode), else ""."""
        output = self.package.manifest.output
        return self.registry_ref if output.image.push or self.package.mode.pushes else ""


def by_digest(tag_reference: str, digest: str) -> str:
    """`registry/repository:tag` -> `registry/repository@sha256:...`."""
    return f"{tag_reference.rpartition(':')[0]}@{digest}"


def image_reference(repository: str, image_hash: str, registry: str | None = None) -> str:
    """`[registry/]repository:hash12`: how every image reconciler builds is tagged."""
    return f"{registry + '/' if registry else ''}{repository}:{image_hash[:12]}"


def current_base(package: Package, lock: Lock | None) -> BasePin | None:
    """The base image pin that applies to the package as its manifest stands now."""
    reference = package.manifest.inference.environment.resolved_base_image
    pinned = BasePin.from_manifest(reference)
    if pinned is None and lock is not None and lock.base is not None and lock.base.reference == reference:
        pinned = lock.base
    return pinned


def dockerfile_settings(package: Package, base: BasePin | None = None, *, dev: bool = False) -> DockerfileSettings:
    manifest = package.manifest
    environment = manifest.inference.environment
    return DockerfileSettings(
        base_image=base.from_reference if base else environment.resolved_base_image,
        python=environment.python,
        system_packages=tuple(sorted(set(environment.system_packages))),
        models=tuple(ModelLayout(m.name, m.version) for m in manifest.models),
        entry_script=package.entry_script_relative,
        variables=tuple(environment.variables_as_strings.items()) + mlflow_variables(package, MODELS_ROOT),
        workers=manifest.inference.server.workers,
        timeout_ms=manifest.inference.server.timeout_ms,
        batching=batching_settings(manifest.inference.batching),
        data_collection=data_collection_settings(package),
        import_check=import_check(package, dev=dev),
    )


def collected_data_folder(package: Package, data_root: Path | None) -> Path | None:
    """Where the package's collected data lands on this host: its folder, or under sync's data root."""
    folder = package.data_collection_directory
    if folder is None or data_root is None:
        return folder
    return data_root / package.name / folder.relative_to(package.directory)


def mlflow_variables(package: Package, models_root: str) -> tuple[tuple[str, str], ...]:
    """Where a no-code MLflow package's scoring script finds the model (below `models_root`)."""
    if package.mlflow is None:
        return ()
    model = package.manifest.models[package.mlflow.index]
    return ((MODEL_VARIABLE, f"{models_root}/{model.name}/{model.version}/{package.mlflow.folder.name}"),)


def container_hash_of(image_hash: str, container: dict[str, object]) -> str:
    """A container's hash: its image and how it runs. A rollback runs an older image with the
    settings of now, and hashes it the same way."""
    return value_digest({"hash_schema": HASH_SCHEMA, "image": image_hash, "container": container})


def data_collection_settings(package: Package) -> tuple[bool, int] | None:
    """inference.data_collection as the image has it: (payload, max payload bytes)."""
    collection = package.manifest.inference.data_collection
    return (collection.payload, collection.max_payload_bytes) if collection else None


def batching_settings(batching: Batching | None) -> tuple[int, int] | None:
    """inference.batching as the runtime reads it: (RECONCILER_BATCH_MAX_SIZE, ..._MAX_LATENCY_MS)."""
    return (batching.max_batch_size, batching.max_latency_ms) if batching else None


def image_settings(package: Package) -> dict[str, object]:
    """The manifest settings that change the image, by field name."""
    manifest = package.manifest
    environment = manifest.inference.environment
    settings: dict[str, object] = {
        "inference.entry_script": package.entry_script_relative,
        "inference.environment.base_image": environment.resolved_base_image,
        "inference.environment.platform": environment.platform,
        "inference.environment.python": environment.python,
        "inference.environment.system_packages": sorted(set(environment.system_packages)),
        "inference.environment.variables": environment.variables_as_strings,
        "inference.server": {
            "timeout_ms": manifest.inference.server.timeout_ms,
            "workers": manifest.inference.server.workers,
        },
        "models": [[m.name, m.version, Path(m.path).name] for m in manifest.models],
    }
    if manifest.inference.batching:  # only when set: images built before batching existed keep their hash
        settings["inference.batching"] = manifest.inference.batching.model_dump()
    if manifest.inference.data_collection:
        settings["inference.data_collection"] = data_collection_settings(package)
    return settings


def container_settings(package: Package) -> dict[str, object]:
    """How the serving container runs. Behind a proxy the address is the proxy's, so a port
    change replaces the proxy and never the container that serves."""
    manifest = package.manifest
    settings: dict[str, object] = {
        "name": manifest.container_name,
        "resources": manifest.output.resources.model_dump(exclude_defaults=True),
        "memory_limit": manifest.output.container_memory_bytes,
        "security": manifest.output.container.security.model_dump(),
        "logs": manifest.output.container.logs.model_dump(),
    }
    if manifest.output.container.proxy:
        settings["proxy"] = BACKEND_ENVIRONMENT  # how the runtime runs behind it
    else:
        settings["host"] = manifest.output.container.host
        settings["port"] = manifest.output.container.port
    return settings


def container_input_digests(settings: dict[str, object]) -> dict[str, str]:
    digests = {}
    for name, value in settings.items():
        if name == "secrets":
            digests.update({f"secret {secret}": keyed[:16] for secret, keyed in value.items()})
        else:
            digests[name] = value_digest(value)[:16]
    return digests


def proxy_settings(package: Package) -> dict[str, object]:
    """What the proxy container is made of; a change recreates it (the serving container stays)."""
    container = package.manifest.output.container
    return {
        "image": container.proxy_image,
        "host": container.host,
        "port": container.port,
        "config": value_digest(render_proxy_config(package)),
        "confinement": {
            **PROXY_CONFINEMENT,
            "memory": PROXY_MEMORY_BYTES,
            "command": proxy_command(),
            "user": PROXY_USER,
        },
        "logs": container.logs.model_dump(),
    }


def manifests_inputs(package: Package, image_hash: str, push_ref: str) -> dict[str, str]:
    """What the Kubernetes folder is rendered from: the image hash, and the rendering itself
    with a placeholder for the digest the push will give (so every setting and every change
    to the renderer counts, and the digest, known only after a push, does not)."""
    files = render_kubernetes(package, image_hash=image_hash, image=by_digest(push_ref, PENDING_DIGEST), tag=push_ref)
    return {"image": image_hash, "kubernetes manifests (rendered)": value_digest(files)}


@functools.lru_cache(maxsize=1)
def runtime_files() -> tuple[str, ...]:
    return tuple(
        sorted(
            str(path)
            for path in RUNTIME_DIRECTORY.iterdir()
            if path.is_file() and (path.suffix == ".py" or path.name == "requirements.txt")
        )
    )


def runtime_digest(digester: Digester) -> str:
    return value_digest({os.path.basename(path): digester.file(path) for path in runtime_files()})


def file_input(file: InputFile, digester: Digester) -> str:
    return with_mode(digester.file(file.path, file.stat), file.executable)


def ensure_lock(
    package: Package, wheel_cache: WheelCache, *, frozen: bool, pin_base: PinBase | None = None
) -> tuple[Lock, str | None, tuple[str, ...]]:
    """The package's current lock (resolving it first when it is missing or stale), why it
    was resolved, and notes. With `pin_base` (an engine is there), a base image the lock
    does not pin yet is pinned; with `frozen` the lock is never written, and an unpinned
    base is a note: the hash still reads the lock alone, so it is the same everywhere."""
    old = read_lock(package)
    lock, reason = old, stale_reason(package, old)
    if reason is not None:
        if frozen:
            raise InvalidInput(
                [Problem(str(package.lock_path), f"{reason}; run `reconciler lock` and commit package.lock (--frozen)")]
            )
        lock = replace(resolve(package, wheel_cache), base=old.base if old else None)
    notes: tuple[str, ...] = lock.notes if lock is not None else ()  # what resolving decided (numpy<2)
    reference = package.manifest.inference.environment.resolved_base_image
    if pin_base is not None and BasePin.from_manifest(reference) is None:
        base_reason = base_stale_reason(package, lock, can_pin=True)
        if base_reason is not None and frozen:
            notes += (f"{base_reason}; `reconciler lock` pins it in package.lock (--frozen: built from the tag)",)
        elif base_reason is not None:
            lock = replace(lock, base=pin_base(reference))
            reason = reason or base_reason
    if lock != old:
        write_lock(package, lock)
    return lock, reason, notes


def _check_contents(package: Package, files: tuple[InputFile, ...]) -> None:
    """The image must get the entry script and at least one file per model."""
    destinations = {file.destination for file in files}
    problems = []
    entry = "app/" + package.entry_script_relative
    if entry not in destinations:
        problems.append(
            package.problem(
                ("inference", "entry_script"),
                "the entry script is left out of the image (hidden, or listed in .reconcilerignore)",
            )
        )
    for index, model in enumerate(package.manifest.models):
        prefix = f"models/{model.name}/{model.version}/"
        if not any(d.startswith(prefix) for d in destinations):
            problems.append(package.problem(("models", index, "path"), "the model folder holds no files"))
    if problems:
        raise InvalidInput(problems)


def is_dev(package: Package, dev: bool) -> bool:
    """Dev mode applies to serving containers: their code is mounted, not baked in."""
    return dev and package.mode.serves


def mlflow_notes(package: Package) -> tuple[str, ...]:
    """What the plan says of a no-code MLflow model: how it is served, and a Python that is not
    the one it was saved with (MLflow warns at load; a pickle may not load)."""
    model = package.manifest.models[package.mlflow.index]
    skinny = " (mlflow installed as mlflow-skinny)" if package.declares_models_environment else ""
    notes = (f"model {model.name} is served by MLflow's pyfunc loader, with no entry script{skinny}",)
    environment = package.manifest.inference.environment
    saved_with = package.mlflow.python
    if saved_with is None or saved_with == environment.python:
        return notes
    chosen = package.python_chosen_by
    why = f"as inference.environment.{chosen} says" if chosen else "the runtime needs 3.9 or newer"
    return notes + (
        f"model {model.name} was saved with Python {saved_with} and is served with Python {environment.python} "
        f"({why}): MLflow warns at load, and a model pickled under one Python may not load under another",
    )


def desire(
    package: Package,
    digester: Digester,
    wheel_cache: WheelCache,
    *,
    frozen: bool,
    secrets: SecretSource,
    pin_base: PinBase | None = None,
    dev: bool = False,
    runtime: str | None = None,
    data_root: Path | None = None,
) -> Desired:
    """The package's desired state.

    `pin_base` pins a base image the lock does not pin yet (image and container modes,
    where an engine is there to ask). With `dev` (watch --dev), a container's code is
    mounted from the source folder and reloaded in place, so app files leave the image
    hash and the mount enters the container hash. A container's secrets enter its hash as
    keyed digests (see desired.secrets). `runtime`: the runtime's digest, when the caller
    has it already (it is the same for every package). `data_root` (sync): collected data is
    kept under `<data_root>/<package>/`, out of the clone."""
    dev = is_dev(package, dev)
    lock, locked, notes = ensure_lock(package, wheel_cache, frozen=frozen, pin_base=pin_base)
    index_url = package.manifest.inference.environment.index_url
    if index_url:
        notes += (f"dependencies resolve from {without_credentials(index_url)} (environment.index_url)",)
    if package.mlflow is not None:
        notes += mlflow_notes(package)
    if package.conda is not None and package.conda.replaced:
        conda_file = os.path.relpath(package.conda_file, package.directory)
        notes += (
            f"{', '.join(package.conda.replaced)} (in {conda_file}) left out: reconciler's runtime serves "
            "the entry script in their place",
        )
    files = tuple(source_files(package) + model_files(package))
    _check_contents(package, files)
    base = current_base(package, lock)
    dockerfile = render_dockerfile(dockerfile_settings(package, base, dev=dev))
    file_digests = {file.destination: file_input(file, digester) for file in files}
    inputs = {name: digest for name, digest in file_digests.items() if not (dev and name.startswith("app/"))}
    inputs["package.lock"] = lock.digest
    inputs["runtime"] = runtime or runtime_digest(digester)
    inputs["Dockerfile"] = value_digest(dockerfile)
    for name, value in image_settings(package).items():
        inputs[name] = value_digest(value)
    inputs[BASE_PIN] = base.hash_input if base else "not pinned"
    inputs = dict(sorted(inputs.items()))
    image_hash = value_digest({"hash_schema": HASH_SCHEMA, "inputs": inputs})
    output = package.manifest.output
    container = container_settings(package)
    if dev:
        container["dev"] = {"source": str(package.source_directory)}
    secret_values = secrets.for_package(package) if package.mode.serves else SecretValues()
    if secret_values.digests:
        container["secrets"] = secret_values.digests
    collected = collected_data_folder(package, data_root)
    if collected is not None:
        container["data_collection"] = str(collected)
    container_hash = container_hash_of(image_hash, container)
    desired = Desired(
        package, lock, files, file_digests, dockerfile, inputs, image_hash, container_hash, container, secret_values
    )
    proxy_hash = ""
    if package.mode.serves and output.container.proxy:
        proxy_hash = value_digest({"hash_schema": HASH_SCHEMA, "proxy": proxy_settings(package)})
    rendered: dict[str, str] = {}
    if package.mode.renders_manifests:
        rendered = manifests_inputs(package, image_hash, desired.push_ref)
    return replace(
        desired,
        proxy_hash=proxy_hash,
        manifests_hash=value_digest({"hash_schema": HASH_SCHEMA, "inputs": rendered}) if rendered else "",
        manifests_inputs=rendered,
        locked=locked,
        dev=dev,
        notes=notes,
        collected_data=collected,
    )
