"""Handlers for the commands around apply: `pull` (a pushed image by hash) and `lock`
(resolve the requirements, pin the base image). Each returns what it found, for the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from reconciler.core.errors import PermanentError
from reconciler.desired.pins import Lock, resolve, write_lock
from reconciler.desired.wheels import WheelCache
from reconciler.engine.docker import Engine, EngineUnavailable
from reconciler.observed.base_image import pin_base_image
from reconciler.observed.state import image_state
from reconciler.plan.actions import FetchImage, Relock


@dataclass(frozen=True)
class Fetched:
    remote: str
    local: str
    image_id: str

    @property
    def detail(self) -> str:
        return f"as {self.local} ({self.image_id[7:19]})"


def fetch(engine: Engine, payload: FetchImage) -> Fetched:
    """Pull, check that the image carries the hash it was asked for, tag it locally."""
    image_id = engine.pull(payload.remote)
    details = engine.inspect_image(image_id)
    pulled = image_state(details) if details else None
    if pulled is None or not pulled.hash.startswith(payload.image_hash):
        raise PermanentError(f"{payload.remote} carries hash {pulled and pulled.hash!r}, not {payload.image_hash}")
    engine.tag(image_id, payload.local)
    return Fetched(payload.remote, payload.local, image_id)


@dataclass(frozen=True)
class Relocked:
    old: Lock | None
    new: Lock
    seconds: float
    base_note: str = ""  # why the base image is not pinned, when it is not

    @property
    def detail(self) -> str:
        return f"{len(self.new.wheels)} wheels"


def relock(engine: Callable[[], Engine], wheels: WheelCache, payload: Relock) -> Relocked:
    """Resolve again and write package.lock; the base image pin is asked of the registry,
    then the engine, when the plan says to pin it."""
    started = time.perf_counter()
    new = resolve(payload.package, wheels)
    base, note = payload.keep, ""
    if payload.pin:
        try:
            base = pin_base_image(engine(), payload.pin, ask_registry=True)
        except EngineUnavailable as error:
            note = f"base image {payload.pin} not pinned: {error}"
        else:
            if base.pin is None:
                note = f"base image {payload.pin} not pinned: no registry answers for it and the engine has no copy"
    new = replace(new, base=base)
    write_lock(payload.package, new)
    return Relocked(payload.old, new, time.perf_counter() - started, note)
