"""Runtime secrets mounted as files (kubernetes mode): one file per secret, named as the
variable, in RECONCILER_SECRETS_DIR. They are put into the process environment before the
entry script loads, so an Azure script that reads os.environ runs unchanged, while the pod's
spec carries no secret as an environment variable (a `kubectl describe` shows none)."""

from __future__ import annotations

import os
import re

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SECRET_BYTES = 1024 * 1024  # what a Kubernetes Secret holds at most


def export_secret_files(environ: dict[str, str] | None = None) -> list[str]:
    """Read every secret file into `environ` (os.environ); the names read, never the values.
    Kubernetes' own `..data` entries and anything not named as a variable are left alone."""
    environ = os.environ if environ is None else environ
    folder = environ.get("RECONCILER_SECRETS_DIR")
    if not folder or not os.path.isdir(folder):
        return []
    names = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not ENV_NAME.match(entry.name) or not entry.is_file():  # follows Kubernetes' links to ..data
            continue
        with open(entry.path, "rb") as handle:
            environ[entry.name] = handle.read(MAX_SECRET_BYTES).decode("utf-8", "replace")
        names.append(entry.name)
    return names
