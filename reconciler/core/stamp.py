"""The stamp file that marks a Dockerfile folder as reconciler's and records what it holds.

The stamp is how the folder carries its own state (no central state file): the
image hash it was rendered for, the inputs behind that hash (so a plan can say
*which* input changed), and the digest of every file written (so hand edits show
up as drift). A folder without a stamp is not ours and is never touched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import PermanentError
from reconciler.core.paths import display_path

STAMP_NAME = ".reconciler-stamp.json"
STAMP_VERSION = 1


class StampUnreadable(PermanentError):
    """A stamp that is there but cannot be read: someone must look at the folder."""


@dataclass(frozen=True)
class Stamp:
    package: str
    image_hash: str
    inputs: dict[str, str]
    files: dict[str, str]
    generator: str
    revision: dict | None = None  # the commit the inputs came from (provenance, not compared)

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "stamp_version": STAMP_VERSION,
                    "generator": self.generator,
                    "package": self.package,
                    "image_hash": self.image_hash,
                    "inputs": self.inputs,
                    "files": self.files,
                    **({"revision": self.revision} if self.revision else {}),
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )


def read_stamp(folder: Path) -> Stamp | None:
    """The folder's stamp; None when there is none; StampUnreadable when it is damaged."""
    path = folder / STAMP_NAME
    try:
        text = path.read_bytes().decode("utf-8")  # no TextIOWrapper: JSON reads CRLF alike
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StampUnreadable(f"{path}: {error}") from None
    try:
        data = json.loads(text)
        if data.get("stamp_version") != STAMP_VERSION:
            raise ValueError(f"stamp_version {data.get('stamp_version')!r}")
        stamp = Stamp(
            package=data["package"],
            image_hash=data["image_hash"],
            inputs=dict(data["inputs"]),
            files=dict(data["files"]),
            generator=data["generator"],
            revision=data.get("revision") if isinstance(data.get("revision"), dict) else None,
        )
        if not all(isinstance(v, str) for v in (*stamp.inputs.values(), *stamp.files.values())):
            raise ValueError("digests must be strings")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StampUnreadable(f"{path}: {error}") from None
    return stamp


@dataclass(frozen=True)
class Ownership:
    """Whose a folder is: missing | ours | foreign (no stamp) | damaged (unreadable stamp) |
    other (another package's). Only a missing folder or one that is `ours` may be written."""

    status: str
    stamp: Stamp | None = None
    detail: str = ""  # why reconciler will not touch it


def ownership(folder: Path, package_name: str) -> Ownership:
    """The one place that decides whether reconciler may replace `folder` for this package."""
    if not os.path.lexists(folder):
        return Ownership("missing")
    shown = display_path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return Ownership("foreign", detail=f"{shown} exists and is not a folder; reconciler will not replace it")
    try:
        stamp = read_stamp(folder)
    except StampUnreadable as error:
        return Ownership(
            "damaged",
            detail=f"{shown} has a damaged {STAMP_NAME} ({error}); "
            "if the folder is reconciler's, delete it and apply again",
        )
    if stamp is None:
        return Ownership(
            "foreign",
            detail=f"{shown} exists and was not written by reconciler (no {STAMP_NAME}); "
            "move it away or choose another output.directory",
        )
    if stamp.package != package_name:
        return Ownership("other", stamp, f"{shown} belongs to package {stamp.package!r}, not {package_name!r}")
    return Ownership("ours", stamp)
