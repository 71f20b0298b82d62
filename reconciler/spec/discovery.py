"""Find every `package.yaml` under the given paths and load them all.

One bad manifest never hides the others: its problems are collected and the rest
are loaded. Checks that span packages (a name used twice, two packages writing one
folder or publishing one port) are made here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.errors import InvalidInput, Problem
from reconciler.core.paths import RealPaths, display_path
from reconciler.core.stamp import STAMP_NAME
from reconciler.spec.package import MANIFEST_NAME, Package, load_package

SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules"})


def never_searched(folder_name: str) -> bool:
    """Hidden and tool folders never hold a package, so discovery does not look inside."""
    return folder_name.startswith(".") or folder_name in SKIPPED_FOLDERS


@dataclass
class Workspace:
    packages: list[Package] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    manifests_found: int = 0

    @property
    def complete(self) -> bool:
        """Every manifest found was loaded: only then may anything be pruned."""
        return not self.problems and self.manifests_found > 0


def discover(paths: list[str | os.PathLike[str]]) -> tuple[list[Path], list[Problem]]:
    """Manifest paths below `paths`, skipping hidden folders and reconciler's own outputs."""
    found: set[Path] = set()
    problems: list[Problem] = []
    for given in paths:
        path = Path(os.path.abspath(given))
        if path.is_file():
            if path.name != MANIFEST_NAME:
                problems.append(Problem(str(path), f"is not a {MANIFEST_NAME}"))
            else:
                found.add(path)
        elif path.is_dir():
            found.update(_walk(path))
        else:
            problems.append(Problem(str(path), "no such file or folder"))
    return sorted(found), problems


def _walk(top: Path) -> list[Path]:
    manifests: list[Path] = []
    pending = [str(top)]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        names = {entry.name for entry in entries}
        if STAMP_NAME in names:
            continue  # a folder reconciler wrote
        if MANIFEST_NAME in names:
            manifests.append(Path(directory, MANIFEST_NAME))
        for entry in entries:
            if never_searched(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return manifests


def load_workspace(paths: list[str | os.PathLike[str]]) -> Workspace:
    manifests, problems = discover(paths)
    workspace = Workspace(problems=problems, manifests_found=len(manifests))
    real_paths = RealPaths()  # the repository's folders, resolved once for every package
    for manifest_path in manifests:
        try:
            workspace.packages.append(load_package(manifest_path, real_paths))
        except InvalidInput as error:
            workspace.problems.extend(error.problems)
    _check_conflicts(workspace)
    return workspace


def _check_conflicts(workspace: Workspace) -> None:
    """Refuse packages that would fight over a name, a folder, a container or a port."""
    claims: dict[tuple[str, str], list[tuple[Package, tuple]]] = defaultdict(list)
    for package in workspace.packages:
        manifest = package.manifest
        claims[("name", manifest.name)].append((package, ("name",)))
        for folder, loc in package.output_directories:
            claims[("output folder", str(folder))].append((package, loc))
        if package.mode.serves:
            container = manifest.output.container
            claims[("container name", manifest.container_name)].append((package, ("output", "container", "name")))
            claims[("port", f"{container.port}")].append((package, ("output", "container", "port")))
    conflicted: set[Path] = set()
    for (what, value), holders in claims.items():
        if len(holders) < 2:
            continue
        for package, loc in holders:
            others = ", ".join(display_path(p.manifest_path) for p, _ in holders if p is not package)
            workspace.problems.append(package.problem(loc, f"{what} {value!r} is also used by {others}"))
            conflicted.add(package.manifest_path)
    if conflicted:
        workspace.packages = [p for p in workspace.packages if p.manifest_path not in conflicted]
