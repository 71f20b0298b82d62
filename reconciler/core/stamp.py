"""The stamp file that marks a Dockerfile folder as reconciler's and records what it holds.

The stamp is how the folder carries its own state (no central state file): the
image hash it was rendered for, the inputs behind that hash (so a plan can say
*which* input changed), and the digest of every file written (so hand edits show
up as drift). A folder without a stamp is not ours and is never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import PermanentError

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
        text = path.read_text(encoding="utf-8")
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
        )
        if not all(isinstance(v, str) for v in (*stamp.inputs.values(), *stamp.files.values())):
            raise ValueError("digests must be strings")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StampUnreadable(f"{path}: {error}") from None
    return stamp
