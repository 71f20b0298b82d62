"""Push webhooks from GitHub, GitLab and Gitea: whether a hook is signed with the agent's
secret, and which ref it says was pushed. Pure functions of headers and body.

- GitHub: `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>`, event `X-GitHub-Event: push`;
- GitLab: `X-Gitlab-Token: <the secret itself>`, event `X-Gitlab-Event: Push Hook` (or `Tag Push Hook`);
- Gitea (and Forgejo): `X-Gitea-Signature: <HMAC-SHA256 of the body>`, event `X-Gitea-Event: push`.

Signatures and tokens are compared in constant time. A hook is never trusted for what it
says about the commit: it only wakes the agent, which fetches the ref itself (as Flux's and
Argo CD's receivers do), so a replayed hook costs one round and nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

PROVIDERS = ("github", "gitlab", "gitea")
MAX_HOOK_BYTES = 1024 * 1024  # a push event is a few kilobytes; GitHub caps payloads at 25 MB


@dataclass(frozen=True)
class Hook:
    """What a hook asked of the agent: `status` for the sender, and whether to start a round."""

    status: int
    message: str
    wake: bool = False


def _signed(provider: str, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    if provider == "gitlab":
        token = headers.get("x-gitlab-token", "")
        return bool(token) and hmac.compare_digest(token.encode(), secret)
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if provider == "github":
        given = headers.get("x-hub-signature-256", "")
        return given.startswith("sha256=") and hmac.compare_digest(given[len("sha256=") :], expected)
    given = headers.get("x-gitea-signature", "")
    return bool(given) and hmac.compare_digest(given, expected)


def _event(provider: str, headers: Mapping[str, str]) -> str:
    name = {"github": "x-github-event", "gitlab": "x-gitlab-event", "gitea": "x-gitea-event"}[provider]
    return headers.get(name, "")


def watched(ref: str, pushed: str) -> bool:
    """Whether a pushed ref (`refs/heads/main`) is the agent's (`main`, or a full ref)."""
    if ref.startswith("refs/"):
        return pushed == ref
    return pushed in (f"refs/heads/{ref}", f"refs/tags/{ref}")


def receive(provider: str, headers: Mapping[str, str], body: bytes, secret: bytes, ref: str) -> Hook:
    """The answer to one hook. `headers` have lower-case names."""
    if provider not in PROVIDERS:
        return Hook(404, f"no such hook; use /hooks/{', /hooks/'.join(PROVIDERS)}")
    if not _signed(provider, headers, body, secret):
        return Hook(401, "the signature does not match the agent's webhook secret")
    event = _event(provider, headers).lower()
    if event == "ping":  # GitHub's first hook, when it is set up
        return Hook(200, "pong")
    if event not in ("push", "push hook", "tag push hook"):
        return Hook(202, f"{event or 'an event'} is not a push: ignored")
    try:
        payload = json.loads(body)
        pushed = payload.get("ref") if isinstance(payload, dict) else None
    except ValueError:
        return Hook(400, "the body is not JSON")
    if not isinstance(pushed, str):
        return Hook(400, "the push names no ref")
    if not watched(ref, pushed):
        return Hook(202, f"a push to {pushed[:200]}, not {ref}: ignored")
    return Hook(202, f"a push to {pushed}: a round starts", wake=True)
