"""`reconciler watch`: keep every package below PATH in sync while a person edits.

The watcher only decides *when* to run; each run re-reads desired and observed state
and the planner decides *what* (level-triggered), exactly as `apply` does:

- file events (watchdog) on manifests and every input they reference, never on
  reconciler's outputs or caches, are coalesced: a batch closes after a quiet period
  (200 ms) or at a cap (2 s), so a branch switch touching a thousand files is one run;
- only the packages a batch touches are planned; a new manifest is picked up, a deleted
  one reported (its container removed only with --prune), an invalid one reported while
  its container keeps serving;
- a periodic resync (30 s, with jitter) heals what no event announces: a container
  stopped or removed by hand, a Dockerfile folder edited;
- a failure is one line and a retry with capped exponential backoff; the loop survives
  package errors and an engine restart; SIGINT/SIGTERM stop it within a second.

With --dev, a container mounts its source folder read-only and a change to app code is
sent to the runtime as a reload (import and init() again, no rebuild, no restart);
anything else (environment, lock, models, manifest) takes the full path.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pathspec

from reconciler import apply
from reconciler.apply import Options, Outcome, Reconciliation
from reconciler.core.errors import ReconcilerError
from reconciler.core.package_locks import LockTimeout
from reconciler.core.paths import display_path, inside
from reconciler.core.stamp import STAMP_NAME
from reconciler.desired.sources import IGNORE_FILE, ignore_spec
from reconciler.plan import ActionKind
from reconciler.spec.discovery import MANIFEST_NAME, SKIPPED_FOLDERS
from reconciler.spec.package import Package

MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class WatchedPackage:
    """Where one package's inputs live, to tell which package an event is about."""

    package: Package
    spec: pathspec.PathSpec

    def classify(self, path: str) -> str | None:
        """'app', 'input' (manifest, lock, requirements, models) or None (not an input)."""
        package = self.package
        if inside(path, package.output_directory):
            return None
        if path in (str(package.manifest_path), str(package.lock_path), str(package.requirements_file)):
            return "input"
        if any(inside(path, model) for model in package.model_paths):
            return "input"
        source = str(package.source_directory)
        if not inside(path, source) or path == source:
            return None
        relative = os.path.relpath(path, source)
        if relative == IGNORE_FILE:
            return "input"
        # the path may be a folder, or gone: a folder pattern (`__pycache__/`) must match it too
        ignored = self.spec.match_file(relative) or self.spec.match_file(relative + "/")
        return None if ignored else "app"


class _Events:
    """watchdog handler: every path an event names, into a queue."""

    def __init__(self, sink: queue.SimpleQueue):
        self.sink = sink

    def dispatch(self, event) -> None:
        if event.is_directory and event.event_type in ("modified", "opened", "closed", "closed_no_write"):
            return  # a folder's own metadata: the files inside report themselves
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.sink.put(os.path.abspath(event.src_path))
        if getattr(event, "dest_path", ""):
            self.sink.put(os.path.abspath(event.dest_path))


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
        out=sys.stdout,
        verbose: bool = False,
    ):
        self.paths = [os.path.abspath(p) for p in paths]
        self.dev, self.prune, self.verbose = dev, prune, verbose
        self.resync_s, self.quiet_s, self.cap_s, self.lock_timeout_s = resync_s, quiet_s, cap_s, lock_timeout_s
        self.out = out
        self.events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.watched: dict[Path, WatchedPackage] = {}
        self.retry_at: dict[Path | None, tuple[int, float]] = {}  # manifest (None: everything) -> (failures, when)
        self.shown_problems: set[str] = set()
        self.scheduled: dict[str, object] = {}
        self.observer = None
        self.output_lock = threading.Lock()

    # -- output -----------------------------------------------------------------------

    def say(self, line: str) -> None:
        with self.output_lock:
            self.out.write(line + "\n")
            self.out.flush()

    # -- the file watch ---------------------------------------------------------------

    def _start_observer(self) -> None:
        from watchdog.observers import Observer

        self.observer = Observer()
        self.observer.daemon = True
        self.observer.start()

    def _folders(self) -> set[str]:
        """Every folder to watch, each on its own (not recursively): below the paths given,
        the folders discovery looks in; for each package, its source tree minus what is
        ignored, its model folders, and the folders of its manifest and model files.
        Build folders are never watched, so reconciler's own writes raise no events."""
        outputs = {str(w.package.output_directory) for w in self.watched.values()}
        folders: set[str] = set()

        def walk(top: str, keep) -> None:
            pending = [top]
            while pending:
                folder = pending.pop()
                if folder in folders or folder in outputs or not os.path.isdir(folder):
                    continue
                folders.add(folder)
                try:
                    entries = list(os.scandir(folder))
                except OSError:
                    continue
                if any(e.name == STAMP_NAME for e in entries):
                    folders.discard(folder)  # a build folder
                    continue
                pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False) and keep(e))

        for path in self.paths:
            walk(
                path if os.path.isdir(path) else os.path.dirname(path),
                lambda e: not e.name.startswith(".") and e.name not in SKIPPED_FOLDERS,
            )
        for watched in self.watched.values():
            package, spec = watched.package, watched.spec
            source = str(package.source_directory)
            walk(source, lambda e, s=source, sp=spec: not sp.match_file(os.path.relpath(e.path, s) + "/"))
            folders.add(str(package.directory))
            for model in package.model_paths:
                if model.is_dir():
                    walk(str(model), lambda e: e.name != ".git")
                folders.add(str(model.parent))
        return folders

    def _schedule(self) -> None:
        wanted = self._folders()
        handler = _Events(self.events)
        for folder in wanted - self.scheduled.keys():
            try:
                self.scheduled[folder] = self.observer.schedule(handler, folder, recursive=False)
            except OSError:
                pass  # vanished since the walk: the next run looks again
        for folder in set(self.scheduled) - wanted:
            self.observer.unschedule(self.scheduled.pop(folder))

    def _collect(self, timeout: float) -> set[str]:
        """One batch: wait up to `timeout` for a first event, then until a quiet period or the cap."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stop.is_set():
                return set()
            try:
                first = self.events.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                break
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return set()
        batch = {first}
        cap = time.monotonic() + self.cap_s
        quiet_until = time.monotonic() + self.quiet_s
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= quiet_until or now >= cap:
                break
            try:
                batch.add(self.events.get(timeout=min(quiet_until, cap) - now))
                quiet_until = time.monotonic() + self.quiet_s
            except queue.Empty:
                break
        return batch

    # -- what a batch means -----------------------------------------------------------

    def _classify_batch(self, paths: set[str]) -> tuple[dict[Path, set[str]], dict[Path, bool], bool]:
        """Which packages a batch touches (with the files, and whether only app code),
        and whether manifests appeared or vanished (then the whole tree is looked at)."""
        touched: dict[Path, set[str]] = {}
        app_only: dict[Path, bool] = {}
        rescan = False
        for path in paths:
            if os.path.basename(path) == MANIFEST_NAME and Path(path) not in self.watched:
                rescan = rescan or any(inside(path, root) for root in self.paths)
                continue
            for manifest, watched in self.watched.items():
                kind = watched.classify(path)
                if kind is None:
                    continue
                touched.setdefault(manifest, set()).add(path)
                app_only[manifest] = app_only.get(manifest, True) and kind == "app"
                if path == str(manifest) and not os.path.exists(path):
                    rescan = True
        return touched, app_only, rescan

    @staticmethod
    def _trigger(files: set[str], package: Package) -> str:
        names = sorted(os.path.relpath(f, package.directory) for f in files)
        if len(names) > 3:
            return f"{len(names)} files changed"
        return ", ".join(names) + " changed"

    # -- a run ------------------------------------------------------------------------

    def reconcile(
        self, only: set[Path] | None, triggers: dict[Path, str], reload: set[Path] = frozenset(), reason: str = "resync"
    ) -> None:
        """One level-triggered run over `only` (None: every package) and its report. Packages
        without a trigger of their own are reported with `reason` and their plan's cause."""
        options = Options(prune=self.prune, dev=self.dev, lock_timeout_s=self.lock_timeout_s, holder="reconciler watch")
        try:
            reconciliation = apply.run(
                self.paths,
                options,
                only=only,
                reload=frozenset(reload),
                should_stop=self.stop.is_set,
                progress=(lambda name, line: self.say(f"{name}: {line}")) if self.verbose else None,
            )
        except LockTimeout as error:
            self._failed(None, f"waiting: {error}")
            return
        except ReconcilerError as error:
            self._failed(None, f"error: {error}")
            return
        except Exception as error:  # noqa: BLE001 - an engine restarting mid-run, a disk full: say it, retry
            self._failed(None, f"error: {type(error).__name__}: {error}")
            return
        self.retry_at.pop(None, None)
        self._remember(reconciliation)
        self._report(reconciliation, triggers, reason)

    def _remember(self, reconciliation: Reconciliation) -> None:
        """The packages to watch from now on. One whose manifest no longer loads stays
        watched as it was, so the save that fixes it is seen as its change."""
        watched = {p.manifest_path: WatchedPackage(p, ignore_spec(p.source_directory)) for p in reconciliation.packages}
        for manifest in set(self.watched) - set(watched):
            if manifest.exists():
                watched[manifest] = self.watched[manifest]
            else:
                name = self.watched[manifest].package.name
                kept = "removed with --prune" if self.prune else "left running (watch --prune removes it)"
                self.say(f"{name}: {display_path(manifest)} deleted; its container is {kept}")
        self.watched = watched
        self._schedule()

    def _failed(self, key: Path | None, message: str) -> None:
        failures = self.retry_at.get(key, (0, 0.0))[0] + 1
        delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1))
        self.retry_at[key] = (failures, time.monotonic() + delay)
        self.say(f"{message}; retrying in {delay:g} s")

    def _report(self, reconciliation: Reconciliation, triggers: dict[Path, str], reason: str) -> None:
        problems = [str(p) for p in reconciliation.problems] + [
            str(p) for o in reconciliation.outcomes for p in o.problems
        ]
        for problem in problems:
            if problem not in self.shown_problems:
                self.say(f"error: {problem}")
        self.shown_problems = set(problems)
        for outcome in reconciliation.outcomes:
            manifest = outcome.package.manifest_path
            trigger = triggers.get(manifest)
            line, failed = self._outcome_line(outcome, trigger, reason)
            if failed:
                self._failed(manifest, line)
            else:
                self.retry_at.pop(manifest, None)
                if line:
                    self.say(line)
        for result in reconciliation.cleanup_results:
            self.say(f"prune: {result.kind} {result.target} {result.status} in {result.seconds:.1f} s")

    def _outcome_line(self, outcome: Outcome, trigger: str | None, reason: str) -> tuple[str | None, bool]:
        name = outcome.package.name
        if outcome.problems:
            return None, False  # reported above; the running container (if any) keeps serving
        event = trigger is not None
        if not trigger:
            first = outcome.plan.actions[0].cause if outcome.plan and outcome.plan.actions else None
            trigger = f"{reason}: {first}" if first else None
        parts, failed, ready = [], False, ""
        for result in outcome.results:
            if result.action.kind is ActionKind.RELOAD:  # a failed reload leaves the old code serving
                done = result.status == "done"
                parts.append(f"reloaded {result.seconds:.2f} s (dev)" if done else f"reload FAILED: {result.detail}")
            elif result.status == "done":
                parts.append(f"{result.kind} {result.seconds:.1f} s")
                if result.detail.startswith("ready at "):
                    ready = result.detail
            elif result.status == "failed":
                parts.append(f"{result.kind} FAILED after {result.seconds:.1f} s: {result.detail}")
                failed = True
        if ready:
            parts.append(ready)
        if not parts:
            return (f"{name}: {trigger} -> in sync" if event else None), False
        return f"{name}: {trigger or reason} -> {', '.join(parts)}", failed

    # -- the loop ---------------------------------------------------------------------

    def _next_resync(self) -> float:
        return time.monotonic() + self.resync_s * random.uniform(0.8, 1.2)

    def loop(self) -> None:
        self._start_observer()
        self.say(
            f"watching {', '.join(display_path(p) for p in self.paths)}"
            f"{' (dev: code reloads in place)' if self.dev else ''}; Ctrl-C to stop"
        )
        self.reconcile(None, {}, reason="start")
        resync_at = self._next_resync()
        while not self.stop.is_set():
            retry_when = min((when for _, when in self.retry_at.values()), default=resync_at)
            batch = self._collect(max(0.0, min(resync_at, retry_when) - time.monotonic()))
            if self.stop.is_set():
                break
            now = time.monotonic()
            if batch:
                self._run_batch(batch)
            if None in self.retry_at and self.retry_at[None][1] <= now:
                self.reconcile(None, {}, reason="retry")
            due = {m for m, (_, when) in self.retry_at.items() if m is not None and when <= now}
            if due:
                self.reconcile(due, {}, reason="retry")
            if time.monotonic() >= resync_at:
                self.reconcile(None, {})
                resync_at = self._next_resync()

    def _run_batch(self, batch: set[str]) -> None:
        touched, app_only, rescan = self._classify_batch(batch)
        if not touched and not rescan:
            return
        triggers = {m: self._trigger(files, self.watched[m].package) for m, files in touched.items()}
        reload = {
            m
            for m, only_app in app_only.items()
            if only_app and self.dev and self.watched[m].package.manifest.output.mode == "container"
        }
        if rescan:
            self.reconcile(None, triggers, reload)
        else:
            self.reconcile(set(touched), triggers, reload)

    def run(self) -> int:
        """Watch until SIGINT or SIGTERM; return the exit code."""
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda *_: self.stop.set())
        worker = threading.Thread(target=self._guarded_loop, name="watch", daemon=True)
        worker.start()
        while worker.is_alive() and not self.stop.wait(0.1):
            pass
        worker.join(timeout=0.7)  # a run in progress gets a moment to finish its current step
        if self.observer is not None:
            self.observer.stop()
        self.say("stopped")
        return 0

    def _guarded_loop(self) -> None:
        try:
            self.loop()
        except Exception as error:  # noqa: BLE001 - the loop must say why it died, then stop
            self.say(f"error: watch stopped: {type(error).__name__}: {error}")
            self.stop.set()
