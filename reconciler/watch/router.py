"""The router: which package a changed path belongs to, and what the change calls for.

After Skaffold's filemon and ChangeSet: a batch of paths becomes a change set that says,
per package, whether the change is app code only (a dev container can reload it in
place) or anything else (rebuild), and whether manifests appeared or vanished (rescan
the whole tree). It also knows which folders hold inputs, so only those are watched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from reconciler.core.paths import inside
from reconciler.core.stamp import STAMP_NAME
from reconciler.desired.sources import IGNORE_FILE, ignore_spec
from reconciler.spec.discovery import MANIFEST_NAME, never_searched
from reconciler.spec.package import Package


@dataclass(frozen=True)
class WatchedPackage:
    """Where one package's inputs live, to tell which package an event is about."""

    package: Package
    spec: pathspec.PathSpec

    @classmethod
    def of(cls, package: Package) -> WatchedPackage:
        return cls(package, ignore_spec(package.source_directory))

    def classify(self, path: str) -> str | None:
        """'app', 'input' (manifest, lock, requirements, models) or None (not an input)."""
        package = self.package
        if inside(path, package.output_directory):
            return None
        if package.data_collection_directory and inside(path, package.data_collection_directory):
            return None
        if path in (str(package.manifest_path), str(package.lock_path), str(package.dependencies_file)):
            return "input"
        if any(inside(path, model) for model in package.model_paths):
            return "input"
        source = str(package.source_directory)
        if not inside(path, source) or path == source:
            return None
        relative = os.path.relpath(path, source)
        if relative == IGNORE_FILE:
            return "input"
        # the path may be a folder, or gone: a folder pattern (`__pycache__/`) must match it too
        ignored = self.spec.match_file(relative) or self.spec.match_file(relative + "/")
        return None if ignored else "app"


@dataclass
class ChangeSet:
    """What one batch of file events means."""

    touched: dict[Path, set[str]] = field(default_factory=dict)  # manifest -> the files that changed
    reload: set[Path] = field(default_factory=set)  # app code only, in a dev container: reload in place
    rescan: bool = False  # a manifest appeared or vanished: look at the whole tree

    @property
    def empty(self) -> bool:
        return not self.touched and not self.rescan

    def triggers(self, watched: Mapping[Path, WatchedPackage]) -> dict[Path, str]:
        """'score.py changed', '200 files changed': what each package's line starts with."""
        triggers = {}
        for manifest, files in self.touched.items():
            names = sorted(os.path.relpath(f, watched[manifest].package.directory) for f in files)
            triggers[manifest] = f"{len(names)} files changed" if len(names) > 3 else ", ".join(names) + " changed"
        return triggers


def route(batch: set[str], watched: Mapping[Path, WatchedPackage], roots: list[str], *, dev: bool) -> ChangeSet:
    changes = ChangeSet()
    app_only: dict[Path, bool] = {}
    for path in batch:
        if os.path.basename(path) == MANIFEST_NAME and Path(path) not in watched:
            changes.rescan = changes.rescan or any(inside(path, root) for root in roots)
            continue
        belongs = False
        for manifest, package in watched.items():
            kind = package.classify(path)
            if kind is None:
                continue
            belongs = True
            changes.touched.setdefault(manifest, set()).add(path)
            app_only[manifest] = app_only.get(manifest, True) and kind == "app"
            if path == str(manifest) and not os.path.exists(path):
                changes.rescan = True
        if (
            not belongs
            and not never_searched(os.path.basename(path))
            and os.path.isdir(path)
            and any(inside(path, root) for root in roots)
        ):
            changes.rescan = True  # a new folder: it may become a package; watch it from now on
    if dev:
        changes.reload = {
            manifest for manifest, only_app in app_only.items() if only_app and watched[manifest].package.mode.serves
        }
    return changes


def folders_to_watch(roots: list[str], watched: Mapping[Path, WatchedPackage]) -> set[str]:
    """Every folder to watch, each on its own (not recursively): below the paths given,
    the folders discovery looks in; for each package, its source tree minus what is
    ignored, its model folders, and the folders of its manifest and model files.
    Build folders are never watched, so reconciler's own writes raise no events."""
    outputs = {str(w.package.output_directory) for w in watched.values()} | {
        str(w.package.data_collection_directory) for w in watched.values() if w.package.data_collection_directory
    }
    folders: set[str] = set()

    def walk(top: str, keep) -> None:
        pending = [top]
        while pending:
            folder = pending.pop()
            if folder in folders or folder in outputs or not os.path.isdir(folder):
                continue
            folders.add(folder)
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            if any(e.name == STAMP_NAME for e in entries):
                folders.discard(folder)  # a build folder
                continue
            pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False) and keep(e))

    for path in roots:
        walk(
            path if os.path.isdir(path) else os.path.dirname(path),
            lambda e: not never_searched(e.name),
        )
    for package_watch in watched.values():
        package, spec = package_watch.package, package_watch.spec
        source = str(package.source_directory)
        walk(source, lambda e, s=source, sp=spec: not sp.match_file(os.path.relpath(e.path, s) + "/"))
        folders.add(str(package.directory))
        for model in package.model_paths:
            if model.is_dir():
                walk(str(model), lambda e: e.name != ".git")
            folders.add(str(model.parent))
    return folders
