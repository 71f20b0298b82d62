"""What a base image reference stands for on this engine and its registry: the pin that
package.lock records, and whether the tag still points where the pin says.

A pin comes, in order of preference, from the registry (the manifest digest the tag has
there), from the engine's copy (its repo digest: where it was pulled from), or, for an
image that was never pushed, from its local image ID, which only this machine can build.
"""

from __future__ import annotations

from reconciler.core.errors import ReconcilerError
from reconciler.desired.pins import BasePin
from reconciler.engine.docker import Engine, EngineUnavailable


def repository_of(reference: str) -> str:
    """`python:3.11-slim` -> `python`; `host:5000/team/base:1@sha256:...` -> `host:5000/team/base`,
    with Docker Hub's implicit `docker.io/library/` taken off so both spellings compare equal."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name.removeprefix("library/")


def repo_digest(details: dict, reference: str) -> str | None:
    """The digest the engine's copy of `reference` was pulled (or pushed) as, if any."""
    repository = repository_of(reference)
    for entry in details.get("RepoDigests") or ():
        name, _, digest = entry.partition("@")
        if repository_of(name) == repository and digest:
            return digest
    return None


def pin_from_engine(reference: str, details: dict | None) -> BasePin:
    """The pin the engine's copy of `reference` gives: its repo digest, else its local ID."""
    if details is None:
        return BasePin(reference, None, None)
    digest = repo_digest(details, reference)
    if digest:
        return BasePin(reference, digest, "engine")
    return BasePin(reference, details["Id"], "image id")


def pin_base_image(engine: Engine, reference: str, *, ask_registry: bool) -> BasePin:
    """The pin for `reference`: from the registry when asked and one answers, else from the
    engine's copy; unpinned (None) when neither has it."""
    if ask_registry:
        try:
            digest = engine.registry_digest(reference)
        except EngineUnavailable:
            raise
        except ReconcilerError:
            digest = None  # no registry answers (offline, a private one): the engine's copy may do
        if digest:
            return BasePin(reference, digest, "registry")
    return pin_from_engine(reference, engine.inspect_image(reference))


def moved_from_pin(tag_details: dict | None, pin: BasePin | None) -> str:
    """Why the tag no longer points at the pinned image ("" when it does, or cannot tell)."""
    if pin is None or pin.pin is None or pin.by == "manifest" or tag_details is None:
        return ""
    if pin.by == "image id":
        current = tag_details["Id"]
    else:
        current = repo_digest(tag_details, pin.reference) or tag_details["Id"]
    if current == pin.pin:
        return ""
    return (
        f"base image {pin.reference} now points to {current[:19]}, package.lock pins {pin.pin[:19]}; "
        "run `reconciler lock --upgrade` to move the pin"
    )
