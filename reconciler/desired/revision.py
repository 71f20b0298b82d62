"""Which commit a package's artifacts come from: provenance, never part of a hash.

When a manifest is inside a git work tree, the commit of the last change to the package's
inputs (and whether they differ from it) goes onto its stamp, image and container, so
`status` can say what is running. A new commit that changes nothing of a package changes
nothing of its hash: nothing is rebuilt, and the artifacts keep the revision they were made
from.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from reconciler.core import labels
from reconciler.core.credentials import without_credentials
from reconciler.spec.package import Package

GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Revision:
    commit: str  # the last commit that touched the package's inputs
    dirty: bool  # the inputs differ from it (uncommitted edits or new files)
    branch: str  # "" when detached
    source: str  # the origin remote, credentials taken out; "" when there is none

    @property
    def short(self) -> str:
        return self.commit[:7] + ("-dirty" if self.dirty else "")

    def describe(self) -> str:
        """`3f2a9c1 (main)`, `3f2a9c1-dirty`."""
        return self.short + (f" ({self.branch})" if self.branch else "")

    def labels(self) -> dict[str, str]:
        """OCI annotations as image and container labels, and ours."""
        found = {labels.OCI_REVISION: self.commit, labels.REVISION: self.short}
        if self.branch:
            found[labels.BRANCH] = self.branch
        if self.source:
            found[labels.OCI_SOURCE] = self.source
        return found

    def to_json(self) -> dict:
        return {"commit": self.commit, "dirty": self.dirty, "branch": self.branch, "source": self.source}

    @classmethod
    def from_labels(cls, found: dict[str, str]) -> Revision | None:
        commit = found.get(labels.OCI_REVISION, "")
        if not commit:
            return None
        dirty = found.get(labels.REVISION, "").endswith("-dirty")
        return cls(commit, dirty, found.get(labels.BRANCH, ""), found.get(labels.OCI_SOURCE, ""))

    @classmethod
    def from_json(cls, data: object) -> Revision | None:
        if not isinstance(data, dict) or not isinstance(data.get("commit"), str):
            return None
        return cls(
            data["commit"], bool(data.get("dirty")), str(data.get("branch") or ""), str(data.get("source") or "")
        )


def _git(root: str, *arguments: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", root, *arguments],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def package_inputs(package: Package) -> list[str]:
    paths = [package.manifest_path, package.lock_path, package.source_directory, *package.model_paths]
    if package.dependencies_file:
        paths.append(package.dependencies_file)
    return [os.path.relpath(path, package.root) for path in paths]


def revision_of(package: Package) -> Revision | None:
    """The revision of the package's inputs, or None outside a git work tree (or before the
    package's first commit)."""
    root = str(package.root)
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    inputs = package_inputs(package)
    commit = (_git(root, "log", "-1", "--format=%H", "--", *inputs) or "").strip()
    if not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        return None
    outputs = [f":(exclude){os.path.relpath(folder, package.root)}" for folder, _ in package.output_directories]
    status = _git(root, "status", "--porcelain", "--", *inputs, *outputs)
    branch = (_git(root, "symbolic-ref", "--quiet", "--short", "HEAD") or "").strip()
    remote = (_git(root, "remote", "get-url", "origin") or "").strip()
    return Revision(commit, bool(status and status.strip()), branch, without_credentials(remote) if remote else "")
