"""The sync agent's own clone of the repository it deploys: fetch a ref, check out its commit.

The clone lives in the agent's state folder and is never a person's checkout. A checkout
forces the work tree to the commit (tracked files exactly as committed) but leaves untracked
files alone: those are reconciler's own outputs (build folders), which keeps their files for
the next rewrite to link instead of copy.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from reconciler.core.credentials import without_credentials
from reconciler.core.errors import PermanentError, TemporaryError

GIT_TIMEOUT_S = 300


class Clone:
    def __init__(self, url: str, folder: Path):
        self.url = url
        self.folder = folder

    @property
    def shown_url(self) -> str:
        return without_credentials(self.url)

    def _git(self, *arguments: str, temporary: bool = True, cwd: Path | None = None) -> str:
        """Run git; a failure is temporary (a remote that does not answer) unless said otherwise.
        Messages never show the URL's credentials."""
        command = ["git", *arguments]
        try:
            result = subprocess.run(
                command,
                cwd=cwd or self.folder,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired:
            raise TemporaryError(f"git {arguments[0]} did not finish within {GIT_TIMEOUT_S} s") from None
        except OSError as error:
            raise PermanentError(f"cannot run git: {error}") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().replace(self.url, self.shown_url)
            kind = TemporaryError if temporary else PermanentError
            raise kind(f"git {arguments[0]}: {detail.splitlines()[-1] if detail else f'exit {result.returncode}'}")
        return result.stdout

    def ensure(self) -> None:
        """Clone the repository (no checkout yet) unless the state folder already has it."""
        if (self.folder / ".git").is_dir():
            current = self._git("remote", "get-url", "origin").strip()
            if current != self.url:
                raise PermanentError(
                    f"{self.folder} holds a clone of {without_credentials(current)}, not {self.shown_url}; "
                    "use another --state folder"
                )
            return
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._git("clone", "--quiet", "--no-checkout", self.url, str(self.folder), cwd=self.folder.parent)

    def fetch(self, ref: str) -> str:
        """The commit `ref` (a branch or a tag) points to on the remote now."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", ref) or ".." in ref:
            raise PermanentError(f"--ref {ref!r} is not a branch or tag name")
        self._git("fetch", "--quiet", "--force", "--prune", "origin", ref)
        return self._git("rev-parse", "--verify", "FETCH_HEAD^{commit}", temporary=False).strip()

    def checkout(self, commit: str, ref: str) -> None:
        """The work tree at `commit`, on a local branch named after the ref (so revisions say it)."""
        self._git("checkout", "--quiet", "--force", "-B", ref, commit, temporary=False)

    def verify(self, commit: str) -> str:
        """Why git cannot verify the commit's signature with the configured keys ("" when it can)."""
        try:
            self._git("verify-commit", commit, temporary=False)
        except PermanentError as error:
            return str(error).removeprefix("git verify-commit: ") or "no valid signature"
        return ""

    def subject(self, commit: str) -> str:
        return self._git("log", "-1", "--format=%s", commit, temporary=False).strip()

    def contains(self, commit: str) -> bool:
        try:
            self._git("cat-file", "-e", f"{commit}^{{commit}}", temporary=False)
            return True
        except PermanentError:
            return False
