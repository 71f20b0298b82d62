"""Where reconciler keeps what it can always rebuild: the stat cache and the wheel cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$RECONCILER_CACHE_DIR, else $XDG_CACHE_HOME/reconciler, else ~/.cache/reconciler."""
    explicit = os.environ.get("RECONCILER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reconciler"
