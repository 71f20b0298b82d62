"""`reconciler watch`: keep every package below PATH in sync while a person edits.

The loop only decides *when* to run the apply pipeline; each run re-reads desired and
observed state and the planner decides *what* (level-triggered), exactly as `apply`:

- a batch of file events (`events`) becomes a change set (`router`): only the packages
  it touches are run; a new manifest is picked up, a deleted one reported (its container
  removed only with --prune), an invalid one reported while its container keeps serving;
- a periodic resync (30 s, with jitter) heals what no event announces: a container
  stopped or removed by hand, a Dockerfile folder edited;
- a temporary failure (no engine, a lock held, a registry hiccup) is one line and a retry
  with capped exponential backoff; a permanent one (a build that fails on these inputs)
  is one line, and the package waits for the next change to its inputs;
- SIGINT/SIGTERM stop it within a second.

With --dev, a change to app code only is a reload in place (no rebuild, no restart).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path

from reconciler import pipeline
from reconciler.core.errors import ReconcilerError
from reconciler.core.package_locks import LockTimeout
from reconciler.core.paths import display_path
from reconciler.loop import Backoff, Holds, settle, stop_on_signals
from reconciler.pipeline import Options, Reconciliation
from reconciler.watch.events import FileEvents
from reconciler.watch.router import ChangeSet, WatchedPackage, folders_to_watch, route


class Watcher:
    def __init__(
        self,
        paths: list[str],
        *,
        dev: bool,
        prune: bool,
        resync_s: float,
        quiet_s: float = 0.2,
        cap_s: float = 2.0,
        lock_timeout_s: float = 2.0,
        secrets_file: Path | None = None,
        out=sys.stdout,
        verbose: bool = False,
    ):
        self.paths = [os.path.abspath(p) for p in paths]
        self.dev, self.verbose = dev, verbose
        self.resync_s = resync_s
        self.options = Options(
            prune=prune, dev=dev, lock_timeout_s=lock_timeout_s, holder="reconciler watch", secrets_file=secrets_file
        )
        self.out = out
        self.stop = threading.Event()
        self.events = FileEvents(self.stop, quiet_s=quiet_s, cap_s=cap_s)
        self.watched: dict[Path, WatchedPackage] = {}
        self.backoff = Backoff()
        self.holds = Holds()
        self.shown_problems: set[str] = set()
        self.output_lock = threading.Lock()
        self.died = False

    def say(self, line: str) -> None:
        with self.output_lock:
            self.out.write(line + "\n")
            self.out.flush()

    # -- a run ------------------------------------------------------------------------

    def run_pipeline(
        self,
        only: set[Path] | None,
        triggers: dict[Path, str] | None = None,
        reload: set[Path] = frozenset(),
        reason: str = "resync",
    ) -> None:
        """One level-triggered run over `only` (None: every package) and its report."""
        try:
            reconciliation = pipeline.run(
                self.paths,
                self.options,
                only=only,
                reload=frozenset(reload),
                hold=self.holds.hashes,
                should_stop=self.stop.is_set,
                progress=(lambda name, line: self.say(f"{name}: {line}")) if self.verbose else None,
            )
        except ReconcilerError as error:  # the run could not start: no engine, a lock held
            self._retry(f"{'waiting' if isinstance(error, LockTimeout) else 'error'}: {error}", error.delay)
            return
        except Exception as error:  # noqa: BLE001 - a surprise mid-run: say it, retry
            self._retry(f"error: {type(error).__name__}: {error}")
            return
        self.backoff.succeeded(None)
        self._remember(reconciliation)
        self._report(reconciliation, triggers or {}, reason)

    def _remember(self, reconciliation: Reconciliation) -> None:
        """The packages to watch from now on. One whose manifest no longer loads stays
        watched as it was, so the save that fixes it is seen as its change."""
        watched = {p.manifest_path: WatchedPackage.of(p) for p in reconciliation.packages}
        for manifest in set(self.watched) - set(watched):
            if manifest.exists():
                watched[manifest] = self.watched[manifest]
            else:
                package = self.watched[manifest].package
                self.say(f"{package.name}: {display_path(manifest)} deleted; {self._what_stays(package)}")
        self.watched = watched
        self.events.watch_folders(folders_to_watch(self.paths, self.watched))

    def _what_stays(self, package) -> str:
        leaves = package.mode.capabilities.leaves
        if leaves == "folder":
            return "its build folder stays"
        kept = "left running" if leaves == "containers" else "kept"
        return f"its {leaves} are " + (
            "removed (--prune)" if self.options.prune else f"{kept} (watch --prune removes them)"
        )

    def _retry(self, message: str, hint: float | None = None) -> None:
        """The whole run could not start: try it again with backoff."""
        self.say(f"{message}; retrying in {self.backoff.failed(None, hint):g} s")

    def _report(self, reconciliation: Reconciliation, triggers: dict[Path, str], reason: str) -> None:
        problems = [str(p) for p in reconciliation.problems] + [
            str(p) for o in reconciliation.outcomes for p in o.problems
        ]
        for problem in problems:
            if problem not in self.shown_problems:
                self.say(f"error: {problem}")
        self.shown_problems = set(problems)
        for said in settle(reconciliation, self.backoff, self.holds, triggers=triggers, reason=reason):
            if said.held:
                self.say(f"{said.line.text}; waiting for a change to its inputs")
            elif said.retry_in is not None:
                self.say(f"{said.line.text}; retrying in {said.retry_in:g} s")
            elif said.line.text:
                self.say(said.line.text)
        for result in reconciliation.cleanup_results:
            self.say(f"prune: {result.kind} {result.target} {result.status} in {result.seconds:.1f} s")

    def _run_changes(self, changes: ChangeSet) -> None:
        for manifest in changes.touched:
            self.holds.release(manifest)  # its inputs changed: worth trying again
        triggers = changes.triggers(self.watched)
        only = None if changes.rescan else set(changes.touched)
        self.run_pipeline(only, triggers, changes.reload, reason="resync")

    # -- the loop ---------------------------------------------------------------------

    def _next_resync(self) -> float:
        return time.monotonic() + self.resync_s * random.uniform(0.8, 1.2)

    def loop(self) -> None:
        self.events.start()
        self.say(
            f"watching {', '.join(display_path(p) for p in self.paths)}"
            f"{' (dev: code reloads in place)' if self.dev else ''}; Ctrl-C to stop"
        )
        self.run_pipeline(None, reason="start")
        resync_at = self._next_resync()
        while not self.stop.is_set():
            batch = self.events.next_batch(max(0.0, self.backoff.next_due(resync_at) - time.monotonic()))
            if self.stop.is_set():
                break
            now = time.monotonic()
            if batch:
                changes = route(batch, self.watched, self.paths, dev=self.dev)
                if not changes.empty:
                    self._run_changes(changes)
            everything, packages = self.backoff.take_due(now)
            if everything:
                self.run_pipeline(None, reason="retry")
            if packages:
                self.run_pipeline(packages, reason="retry")
            if time.monotonic() >= resync_at:
                if not self.backoff.whole_run_failing:  # its retry stands in for the resync
                    self.run_pipeline(None)
                resync_at = self._next_resync()

    def run(self) -> int:
        """Watch until SIGINT or SIGTERM; 0 then, 1 if the loop itself died."""
        stop_on_signals(self.stop)
        worker = threading.Thread(target=self._guarded_loop, name="watch", daemon=True)
        worker.start()
        while worker.is_alive() and not self.stop.wait(0.1):
            pass
        worker.join(timeout=0.7)  # a run in progress gets a moment to finish its current step
        self.events.close()
        self.say("stopped")
        return 1 if self.died else 0

    def _guarded_loop(self) -> None:
        try:
            self.loop()
        except Exception as error:  # noqa: BLE001 - the loop must say why it died, then stop
            self.say(f"error: watch stopped: {type(error).__name__}: {error}")
            self.died = True
            self.stop.set()
