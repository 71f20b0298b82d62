"""Azure ML assets a repository defines itself, for `reconciler import azure`.

Azure's examples register their model, environment and code from YAML files beside the
deployment (`model.yml`: `name`, `version`, `path`; `environment.yml`: `image`,
`conda_file`), and the deployment then refers to them as `azureml:NAME:VERSION` or
`azureml:NAME@latest`. Those references resolve here to the files the assets point at,
relative to each asset's own YAML. An asset is known by its `$schema` (`model.schema.json`,
`environment.schema.json`, `code.schema.json`), as Azure's CLI knows it.

Also Azure's instance types as the CPU and memory they give a deployment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.spec.yamldoc import YamlError, load_yaml

KINDS = {"model.schema.json": "model", "environment.schema.json": "environment", "code.schema.json": "code"}
REFERENCE = re.compile(r"^azureml:(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[0-9]+)|@(?P<label>latest))$")
SKIPPED_FOLDERS = frozenset({".git", "node_modules", "build", "__pycache__", ".venv", "venv"})
MAX_FILES = 5000  # YAML files read while looking for assets: a repository, not a disk
MAX_ASSET_BYTES = 256 * 1024

# vCPUs, memory in GiB, GPUs: Azure's published sizes of the instance types managed online
# endpoints offer (the VM sizes of the same names)
INSTANCE_TYPES: dict[str, tuple[int, float, int]] = {
    "Standard_DS1_v2": (1, 3.5, 0),
    "Standard_DS2_v2": (2, 7, 0),
    "Standard_DS3_v2": (4, 14, 0),
    "Standard_DS4_v2": (8, 28, 0),
    "Standard_DS5_v2": (16, 56, 0),
    "Standard_F2s_v2": (2, 4, 0),
    "Standard_F4s_v2": (4, 8, 0),
    "Standard_F8s_v2": (8, 16, 0),
    "Standard_F16s_v2": (16, 32, 0),
    "Standard_F32s_v2": (32, 64, 0),
    "Standard_F48s_v2": (48, 96, 0),
    "Standard_F64s_v2": (64, 128, 0),
    "Standard_F72s_v2": (72, 144, 0),
    "Standard_E2s_v3": (2, 16, 0),
    "Standard_E4s_v3": (4, 32, 0),
    "Standard_E8s_v3": (8, 64, 0),
    "Standard_E16s_v3": (16, 128, 0),
    "Standard_E32s_v3": (32, 256, 0),
    "Standard_E48s_v3": (48, 384, 0),
    "Standard_E64s_v3": (64, 432, 0),
    "Standard_NC4as_T4_v3": (4, 28, 1),
    "Standard_NC8as_T4_v3": (8, 56, 1),
    "Standard_NC16as_T4_v3": (16, 110, 1),
    "Standard_NC64as_T4_v3": (64, 440, 4),
    "Standard_NC6s_v3": (6, 112, 1),
    "Standard_NC12s_v3": (12, 224, 2),
    "Standard_NC24s_v3": (24, 448, 4),
}


def instance_resources(instance_type: str) -> dict | None:
    """output.resources for an Azure instance type, or None for one not in the table."""
    known = {name.lower(): size for name, size in INSTANCE_TYPES.items()}.get(instance_type.lower())
    if known is None:
        return None
    cpus, memory_gib, gpus = known
    resources: dict = {"cpu": str(cpus), "memory": memory_quantity(memory_gib)}
    if gpus:
        resources["gpus"] = gpus
    return resources


def memory_quantity(gib: float) -> str:
    """A whole quantity for `gib` GiB: 14Gi, or 3584Mi for 3.5 (output.resources takes whole numbers)."""
    return f"{int(gib)}Gi" if gib == int(gib) else f"{int(-(-gib * 1024 // 1))}Mi"


@dataclass(frozen=True)
class Asset:
    kind: str  # model | environment | code
    name: str
    version: int | None
    file: Path  # the asset's YAML
    data: dict

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}" if self.version is not None else f"azureml:{self.name}"

    def path(self, key: str) -> Path | None:
        """A path the asset gives (`path`, `conda_file`), resolved from its own folder."""
        value = self.data.get(key)
        return Path(os.path.normpath(self.file.parent / value)) if isinstance(value, str) and value else None


def _kind(data: dict) -> str | None:
    schema = data.get("$schema")
    if not isinstance(schema, str):
        return None
    return next((kind for suffix, kind in KINDS.items() if schema.endswith(suffix)), None)


def _version(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    return None


def find_assets(root: Path) -> list[Asset]:
    """Every model, environment and code asset YAML below `root` (bounded; unreadable or
    foreign YAML is not an asset and is passed over)."""
    found: list[Asset] = []
    read = 0
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith((".yml", ".yaml")) or read >= MAX_FILES:
                continue
            read += 1
            path = Path(folder) / name
            try:
                if path.is_symlink() or path.stat().st_size > MAX_ASSET_BYTES:
                    continue
                data = load_yaml(path.read_bytes()).data
            except (OSError, YamlError):
                continue
            kind = _kind(data) if isinstance(data, dict) else None
            if kind and isinstance(data.get("name"), str):
                found.append(Asset(kind, data["name"], _version(data.get("version")), path, data))
    return found


def repository_root(start: Path) -> Path:
    """The git work tree `start` is in, else `start` itself: where assets are looked for."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


class Unresolved(Exception):
    """An azureml: reference no asset here defines; the message names those that exist."""


def resolve(reference: str, kind: str, assets: list[Asset]) -> Asset | None:
    """The asset `azureml:NAME:VERSION` or `azureml:NAME@latest` names; None when the reference
    is not of that form (a registry path, a URL); Unresolved when no asset matches."""
    match = REFERENCE.match(reference)
    if match is None:
        return None
    candidates = [a for a in assets if a.kind == kind and a.name == match["name"]]
    if match["version"]:
        candidates = [a for a in candidates if a.version == int(match["version"])]
    if candidates:
        return max(candidates, key=lambda a: a.version or 0)
    defined = sorted({a.reference for a in assets if a.kind == kind})
    shown = ", ".join(defined) if defined else f"no {kind} asset YAML at all"
    raise Unresolved(f"no {kind} asset in this repository is {reference} (defined here: {shown})")
