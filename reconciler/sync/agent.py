"""`reconciler sync`: a pull-based agent that deploys what a branch says, like Argo CD and
Flux do for Kubernetes, for a Docker host.

Each round fetches the ref into the agent's own clone, checks out its commit, and runs the
one apply pipeline on it. Rounds are level-triggered: with no new commit the round still
observes and heals (a container removed by hand comes back). A commit whose manifests fail
to load or whose apply fails leaves what is serving as it is (a failed package keeps its last
good container), is reported with why, and is not tried again until the ref moves; temporary
failures (a remote or an engine that does not answer) are retried with capped backoff.
SIGTERM stops the agent between actions; one agent per state folder.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

from reconciler import pipeline
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.package_locks import LockTimeout, PackageLocks
from reconciler.loop import MAX_BACKOFF_S, Backoff, Holds, settle, stop_on_signals
from reconciler.pipeline import Options, Reconciliation
from reconciler.sync.listener import Listener
from reconciler.sync.metrics import SyncMetrics
from reconciler.sync.repository import Clone
from reconciler.sync.status import Event, PackageState, Round, SyncStatus, in_seconds, now


class SyncAgent:
    def __init__(
        self,
        url: str,
        *,
        ref: str,
        path: str,
        interval_s: float,
        state: Path,
        prune: bool,
        require_signed: bool,
        secrets_file: Path | None = None,
        out=sys.stdout,
        verbose: bool = False,
        listen: tuple[str, int] | None = None,
        webhook_secret: bytes | None = None,
    ):
        self.clone = Clone(url, state / "repository")
        self.ref, self.path, self.interval_s = ref, path.strip("/") or ".", interval_s
        self.state = state
        # frozen: the agent deploys what is committed and never writes into its checkout
        # (a stale package.lock is that package's error; commit the lock)
        self.options = Options(
            frozen=True,
            prune=prune,
            holder="reconciler sync",
            secrets_file=secrets_file,
            data_root=state / "data-collection",  # a new clone of the repository keeps it
        )
        self.require_signed = require_signed
        self.out, self.verbose = out, verbose
        self.stop = threading.Event()
        self.wake = threading.Event()  # a webhook, or a stop: the next round, or the end, at once
        self.status = SyncStatus(self.clone.shown_url, ref, self.path)
        self.published: dict = self.status.to_json()  # what /status and the page show: the last round's
        self.metrics = SyncMetrics()
        self.listen, self.webhook_secret = listen, webhook_secret
        self.round_lines: list[str] = []  # what each package did this round, for the round's record
        self.outcome = ""  # how the last round ended: applied | failed (its commit) | error (it could not run)
        self.checked_out = ""  # the commit in the work tree
        self.refused = ""  # a commit whose signature did not verify (said once)
        self.failed_commit = ""  # the commit whose round failed permanently
        self.holds = Holds()  # packages that failed permanently at failed_commit
        self.backoff = Backoff(cap_s=min(MAX_BACKOFF_S, interval_s))  # never later than the next round
        self.conclusions: list[str] = []  # the round's outcome lines, said after the status is written

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def conclude(self, line: str) -> None:
        """A line about the round's outcome: said once the status file records it, so whoever
        reads the line and then the file finds them in agreement."""
        self.conclusions.append(line)

    # -- one round ----------------------------------------------------------------------

    def round(self) -> bool:
        """Fetch, check out, apply. Whether the round ended with no error."""
        try:
            self.clone.ensure()
            commit = self.clone.fetch(self.ref)
        except ReconcilerError as error:
            return self._failed(self.status.last_fetched.commit if self.status.last_fetched else "", error)
        self.status.last_fetched = Event(commit, now())
        if self.require_signed:
            why = self.clone.verify(commit)
            if why:
                if commit != self.refused:
                    self.conclude(f"sync: {commit[:7]} not applied: its signature does not verify: {why}")
                    self.refused = commit
                self.status.last_error = Event(commit, now(), f"not applied: the signature does not verify: {why}")
                self.outcome = "failed"
                return False
        new = commit != self.checked_out
        if new:
            try:
                self.clone.checkout(commit, self.ref)
            except ReconcilerError as error:
                return self._failed(commit, error)
            self.checked_out = commit
            self.say(f"sync: {commit[:7]} ({self.ref}): {self.clone.subject(commit)}")
        if commit != self.failed_commit:
            self.holds.release_all()  # the ref moved: everything is worth trying again
        try:
            reconciliation = pipeline.run(
                [str(self.clone.folder / self.path)],
                self.options,
                hold=self.holds.hashes,
                should_stop=self.stop.is_set,
                progress=(lambda name, line: self.say(f"{name}: {line}")) if self.verbose else None,
            )
        except ReconcilerError as error:
            return self._failed(commit, error)
        self.backoff.succeeded(None)
        return self._report(commit, reconciliation, new)

    def _report(self, commit: str, reconciliation: Reconciliation, new: bool) -> bool:
        short = commit[:7]
        problems = [str(p) for p in reconciliation.problems] + [
            str(p) for o in reconciliation.outcomes for p in o.problems
        ]
        if new or commit != self.failed_commit:
            for problem in problems:
                self.conclude(f"error: {problem}")
        failures = list(problems)
        triggers = {o.package.manifest_path: short for o in reconciliation.outcomes} if new else None
        states = []
        for outcome, said in zip(
            reconciliation.outcomes, settle(reconciliation, self.backoff, self.holds, triggers=triggers)
        ):
            if said.line.text:
                self.conclude(said.line.text)
                self.round_lines.append(said.line.text)
            if said.line.failed:
                failures.append(said.line.error)
            elif said.still_failing:  # held at this commit: it has not applied, whatever else healed
                failures.append(said.still_failing)
            states.append(_package_state(outcome, said))
        self.status.packages = states
        for result in reconciliation.cleanup_results:
            self.conclude(f"prune: {result.kind} {result.target} {result.status} in {result.seconds:.1f} s")
        if reconciliation.manifests_found == 0:
            failures.append(f"no package.yaml found below {self.path}")
        self.outcome = "failed" if failures else "applied"
        if failures:
            self.failed_commit = commit
            self.status.last_error = Event(commit, now(), failures[0][:500])
            if new:
                self.conclude(f"sync: {short} failed; what served before keeps serving; waiting for the ref to move")
            return False
        self.failed_commit = ""
        self.status.last_applied = Event(commit, now())
        self.status.last_error = None
        return True

    def _failed(self, commit: str, error: ReconcilerError) -> bool:
        """A round that could not run; temporary failures are retried sooner (capped backoff)."""
        self.outcome = "error"
        if error.temporary:
            self.backoff.failed(None, error.delay)
        self.status.last_error = Event(commit, now(), str(error)[:500])
        self.conclude(f"sync: error: {error}")
        return False

    # -- the loop ---------------------------------------------------------------------

    def _next_wait(self) -> float:
        """The interval (with jitter), or sooner when a retry is due."""
        regular = self.interval_s * random.uniform(0.9, 1.1)
        return max(0.0, self.backoff.next_due(time.monotonic() + regular) - time.monotonic())

    def run(self, *, once: bool) -> int:
        """Rounds until SIGTERM/SIGINT (exit 0), or one round with --once (exit as apply)."""
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            lock = PackageLocks([self.state / "agent"], timeout=0, command="reconciler sync")
            lock.acquire()
        except LockTimeout as error:
            raise PermanentError(f"another sync agent uses the state folder {self.state}: {error.holder}") from None
        stop_on_signals(self.stop, self.wake)
        previous = SyncStatus.read(self.state)
        if previous is not None and (previous.repository, previous.ref, previous.path) == (
            self.status.repository,
            self.ref,
            self.path,
        ):
            self.status = previous  # an agent that restarts carries on its record
        self.status.agent = {"pid": os.getpid(), "host": socket.gethostname(), "since": now()}
        self.published = self.status.to_json()
        listener = self._listener() if self.listen and not once else None
        try:
            while True:
                self.wake.clear()  # a hook from now on is for a round after this one
                ok = self._timed_round()
                wait = self._next_wait()
                self.status.next_round = "" if once or self.stop.is_set() else in_seconds(wait)
                self.status.write(self.state)
                self.published = self.status.to_json()
                for line in self.conclusions:
                    self.say(line)
                self.conclusions.clear()
                if once:
                    return 0 if ok else 1
                self.wake.wait(wait)
                if self.stop.is_set():
                    self.say("sync: stopped")
                    return 0
        finally:
            if listener is not None:
                listener.close()
            lock.release()

    def _timed_round(self) -> bool:
        """A round, recorded: in the status's last rounds and in the metrics."""
        started, at = time.monotonic(), now()
        self.round_lines = []
        ok = self.round()
        seconds = time.monotonic() - started
        commit = self.status.last_fetched.commit if self.status.last_fetched else ""
        self.status.add_round(Round(commit, at, self.outcome, round(seconds, 2), list(self.round_lines)))
        in_sync = {p.name: p.state == "in sync" for p in self.status.packages}
        self.metrics.round_ended(self.outcome, seconds, time.time(), in_sync)
        return ok

    def _listener(self) -> Listener:
        listener = Listener(
            self.listen,
            ref=self.ref,
            secret=self.webhook_secret,
            status=lambda: self.published,
            wake=self.wake.set,
            metrics=self.metrics,
            say=self.say,
        )
        listener.start()
        host, port = listener.address
        hooks = "webhooks at /hooks/github, /hooks/gitlab, /hooks/gitea" if self.webhook_secret else "no webhooks"
        self.say(f"sync: listening on http://{host}:{port}/ (status page, /status, /metrics; {hooks})")
        return listener


def _package_state(outcome, said) -> PackageState:
    """A package as the status shows it after a round."""
    revision = outcome.revision()
    shown = revision.describe() if revision else ""
    if outcome.problems:
        return PackageState(outcome.package.name, "failed", shown, str(outcome.problems[0])[:500])
    if said.still_failing:
        return PackageState(outcome.package.name, "held", shown, said.still_failing[:500])
    if said.line.failed:
        return PackageState(outcome.package.name, "failed", shown, said.line.error[:500])
    return PackageState(outcome.package.name, "in sync", shown)
