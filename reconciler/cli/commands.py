"""One function per command: take the parsed arguments, call the layer below, print, return
the exit code. No orchestration lives here; a ReconcilerError that escapes a command is
printed as one line by `reconciler.cli.main`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from reconciler import pipeline
from reconciler.cli import report
from reconciler.core.errors import InvalidInput, PermanentError, Problem, ReconcilerError
from reconciler.core.paths import display_path
from reconciler.engine.docker import EngineUnavailable
from reconciler.spec.package import MANIFEST_NAME

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)


def _exit_code(reconciliation: pipeline.Reconciliation, *, changes_pending: bool) -> int:
    if reconciliation.has_errors or reconciliation.manifests_found == 0:
        return EXIT_ERROR
    return EXIT_CHANGES if changes_pending and reconciliation.has_changes else EXIT_OK


def _emit(reconciliation: pipeline.Reconciliation, arguments: argparse.Namespace, command: str, text) -> None:
    as_json = arguments.output == "json"
    print(report.to_json(reconciliation, command) if as_json else text(reconciliation), end="")


def schema(arguments: argparse.Namespace) -> int:
    from reconciler.spec.manifest import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def validate(arguments: argparse.Namespace) -> int:
    from reconciler.desired.pins import read_lock
    from reconciler.desired.requirements import read_requirements
    from reconciler.desired.sources import model_files, source_files
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    problems = list(workspace.problems)
    for package in workspace.packages:
        for check in (read_requirements, read_lock, source_files, model_files):
            try:
                check(package)
            except InvalidInput as error:
                problems.extend(error.problems)
    print_problems(problems)
    if workspace.manifests_found == 0 and not problems:
        print("no package.yaml found", file=sys.stderr)
        return EXIT_ERROR
    if problems:
        return EXIT_ERROR
    print(f"{len(workspace.packages)} package(s) valid")
    return EXIT_OK


def plan(arguments: argparse.Namespace) -> int:
    with pipeline.Session(secrets_file=arguments.secrets) as session:
        reconciliation = pipeline.reconcile(arguments.paths, session, frozen=arguments.frozen, prune=arguments.prune)
    _emit(reconciliation, arguments, "plan", report.plan_text)
    return _exit_code(reconciliation, changes_pending=True)


def apply_(arguments: argparse.Namespace) -> int:
    if arguments.check:
        with pipeline.Session(secrets_file=arguments.secrets) as session:
            reconciliation = pipeline.check(arguments.paths, session)
        _emit(reconciliation, arguments, "apply --check", report.plan_text)
        if reconciliation.has_changes and arguments.output == "text":
            print("Out of date: run `reconciler apply` and commit the folders above.")
        return _exit_code(reconciliation, changes_pending=True)
    options = pipeline.Options(
        frozen=arguments.frozen,
        prune=arguments.prune,
        jobs=arguments.jobs,
        builds=arguments.builds,
        lock_timeout_s=arguments.lock_timeout,
        secrets_file=arguments.secrets,
    )
    from reconciler.execute import printing_progress

    progress = printing_progress(sys.stderr if arguments.output == "json" else sys.stdout)
    reconciliation = pipeline.run(arguments.paths, options, progress=progress)
    _emit(reconciliation, arguments, "apply", report.apply_text)
    return _exit_code(reconciliation, changes_pending=False)


def status(arguments: argparse.Namespace) -> int:
    with pipeline.Session(secrets_file=arguments.secrets) as session:
        reconciliation = pipeline.status(arguments.paths, session)
    _emit(reconciliation, arguments, "status", report.status_text)
    return EXIT_ERROR if reconciliation.has_errors else EXIT_OK


def history(arguments: argparse.Namespace) -> int:
    from reconciler.pipeline.history import history as package_history

    with pipeline.Session(secrets_file=arguments.secrets) as session:
        found, problems = package_history(arguments.paths, session)
    print(report.history_json(found) if arguments.output == "json" else report.history_text(found), end="")
    print_problems(problems)
    return EXIT_ERROR if problems else EXIT_OK


def rollback(arguments: argparse.Namespace) -> int:
    """`rollback PATH [--to X]`, or `--release`: an apply that ignores the hold."""
    from reconciler.pipeline.rollback import rollback as roll_back

    if arguments.release:
        options = pipeline.Options(secrets_file=arguments.secrets, release=True)
        reconciliation = pipeline.run([arguments.path], options)
        print(report.apply_text(reconciliation), end="")
        return _exit_code(reconciliation, changes_pending=False)
    from reconciler.execute import printing_progress

    options = pipeline.Options(frozen=True, secrets_file=arguments.secrets)
    done = roll_back(arguments.path, options, arguments.to, printing_progress(sys.stdout))  # errors: cli.main
    print(report.rollback_text(done), end="")
    return EXIT_ERROR if done.failed else EXIT_OK


def watch(arguments: argparse.Namespace) -> int:
    from reconciler.watch.loop import Watcher

    watcher = Watcher(
        arguments.paths,
        dev=arguments.dev,
        prune=arguments.prune,
        resync_s=arguments.resync,
        secrets_file=arguments.secrets,
        out=sys.stdout,
        verbose=arguments.verbose,
    )
    return watcher.run()


def sync(arguments: argparse.Namespace) -> int:
    from reconciler.sync.agent import SyncAgent
    from reconciler.sync.listener import parse_listen, read_webhook_secret
    from reconciler.sync.status import SyncStatus

    state = arguments.state or default_sync_state(arguments.repository, arguments.ref)
    if arguments.status:
        status = SyncStatus.read(state)
        print(status.text() if status else f"no sync status in {state} yet", end="" if status else "\n")
        return EXIT_OK if status else EXIT_ERROR
    listen = secret = None
    if arguments.webhook_secret_file and not arguments.listen:
        raise PermanentError("--webhook-secret-file needs --listen: the webhooks come in there")
    if arguments.listen:
        if arguments.once:
            raise PermanentError("--listen serves while the agent runs: not with --once")
        try:
            listen = parse_listen(arguments.listen)
        except ValueError as error:
            raise PermanentError(str(error)) from None
        if arguments.webhook_secret_file:
            secret = read_webhook_secret(arguments.webhook_secret_file)
    agent = SyncAgent(
        arguments.repository,
        ref=arguments.ref,
        path=arguments.path,
        interval_s=arguments.interval,
        state=state,
        prune=arguments.prune,
        require_signed=arguments.require_signed,
        secrets_file=arguments.secrets,
        out=sys.stdout,
        verbose=arguments.verbose,
        listen=listen,
        webhook_secret=secret,
    )
    return agent.run(once=arguments.once)


def default_sync_state(repository: str, ref: str) -> Path:
    """$XDG_STATE_HOME/reconciler/sync/<repository name>-<ref>-<digest of both>."""
    import blake3

    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", repository.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    digest = blake3.blake3(f"{repository}\n{ref}".encode()).hexdigest()[:10]
    return base / "reconciler" / "sync" / f"{name}-{re.sub(r'[^A-Za-z0-9._-]+', '-', ref)}-{digest}"


def down(arguments: argparse.Namespace) -> int:
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    print_problems(workspace.problems)
    failed = bool(workspace.problems) or not workspace.manifests_found
    with pipeline.Session() as session:
        removals = pipeline.down(workspace.packages, session)
    for removal in removals:
        if removal.status == "failed":
            print(f"error: {removal.action.package}: {removal.detail}", file=sys.stderr)
            failed = True
        else:
            print(f"{removal.action.package}: removed {removal.target} in {removal.seconds:.2f} s")
    if not removals:
        print("no containers to remove")
    return EXIT_ERROR if failed else EXIT_OK


def _print_failure(result) -> None:
    """A failed action of `pull` or `lock`: its problems in the user's files, or its error."""
    if result.problems:
        print_problems(result.problems)
    else:
        print(f"error: {result.detail}", file=sys.stderr)


def _one_package(path: str, verb: str):
    """The single package at `path`, or None after saying why not."""
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace([path])
    print_problems(workspace.problems)
    if workspace.problems:
        return None
    if len(workspace.packages) != 1:
        print(f"error: {path} holds {len(workspace.packages)} packages; {verb} takes one", file=sys.stderr)
        return None
    return workspace.packages[0]


def pull(arguments: argparse.Namespace) -> int:
    package = _one_package(arguments.path, "pull")
    if package is None:
        return EXIT_ERROR
    with pipeline.Session() as session:
        try:
            result = pipeline.pull(package, session, arguments.hash)
        except InvalidInput as error:
            print_problems(error.problems)
            return EXIT_ERROR
        except EngineUnavailable:
            raise
        except ReconcilerError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR
    if result.status == "failed":
        _print_failure(result)
        return EXIT_ERROR
    fetched = result.value
    print(
        f"{package.name}: pulled {fetched.remote} as {fetched.local} ({fetched.image_id[7:19]}) in {result.seconds:.2f} s"
    )
    return EXIT_OK


def hash_(arguments: argparse.Namespace) -> int:
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    problems = list(workspace.problems)
    with pipeline.Session(secrets_file=arguments.secrets) as session:  # offline: reads package.lock, never the engine
        outcomes = pipeline.desire_packages(workspace.packages, session, frozen=True)
    for outcome in outcomes:
        problems.extend(outcome.problems)
    documents = [o.desired for o in outcomes if o.desired]
    if arguments.output == "json":
        print(json.dumps([report.hash_json(d) for d in documents], indent=2))
    else:
        print("".join(report.hash_text(d) for d in documents), end="")
    print_problems(problems)
    return EXIT_ERROR if problems or not workspace.manifests_found else EXIT_OK


def serve(arguments: argparse.Namespace) -> int:
    from reconciler.cli.serve import serve as serve_package

    package = _one_package(arguments.path, "serve")
    if package is None:
        return EXIT_ERROR
    port = arguments.port or package.manifest.output.container.port
    return serve_package(package, port=port, host=arguments.host, secrets_file=arguments.secrets)


def lock(arguments: argparse.Namespace) -> int:
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    print_problems(workspace.problems)
    failed = bool(workspace.problems) or not workspace.manifests_found
    with pipeline.Session() as session:
        for package in workspace.packages:
            result = pipeline.relock(package, session, upgrade=arguments.upgrade)
            if result.status == "failed":
                _print_failure(result)
                failed = True
                continue
            print(report.lock_text(package.name, result.value))
    return EXIT_ERROR if failed else EXIT_OK


def _absolute(path: str | None) -> Path | None:
    return Path(os.path.abspath(path)) if path else None


def import_(arguments: argparse.Namespace) -> int:
    """`import azure`: write package.yaml, say what was not carried over, then validate it."""
    from reconciler.spec import azure_deployment, azure_import

    cwd = Path.cwd()
    try:
        if arguments.deployment:
            if arguments.entry_script:
                raise InvalidInput([Problem("--entry-script", "give a deployment YAML or v1 flags, not both")])
            deployment = Path(os.path.abspath(arguments.deployment))
            target, source = deployment.parent / MANIFEST_NAME, deployment.name
            models = [azure_import.ModelSource.parse(m, cwd) for m in arguments.model]
            imported = azure_deployment.from_deployment(
                deployment,
                name=arguments.name,
                mode=arguments.mode,
                extra_models=models,
                conda_file=_absolute(arguments.conda_file),
            )
        elif arguments.entry_script:
            directory = Path(os.path.abspath(arguments.directory or "."))
            target, source = directory / MANIFEST_NAME, "SDK v1 arguments"
            entry = Path(os.path.abspath(arguments.entry_script))
            imported = azure_import.from_v1(
                directory,
                entry_script=entry,
                source_directory=_absolute(arguments.source_directory),
                conda_file=_absolute(arguments.conda_file),
                requirements=_absolute(arguments.requirements),
                models=[azure_import.ModelSource.parse(m, cwd) for m in arguments.model],
                name=arguments.name or entry.parent.name,
                mode=arguments.mode or "container",
            )
        else:
            raise InvalidInput([Problem("import azure", "give a deployment YAML, or --entry-script and --model")])
        azure_import.write_manifest(target, imported, source, replace=arguments.force)
    except InvalidInput as error:
        print_problems(error.problems)
        return EXIT_ERROR
    print(f"wrote {display_path(target)}")
    for item in imported.not_carried:
        print(f"not carried over: {item}")
    return validate(argparse.Namespace(paths=[str(target)]))


COMMANDS = {
    "schema": schema,
    "validate": validate,
    "plan": plan,
    "apply": apply_,
    "status": status,
    "history": history,
    "rollback": rollback,
    "watch": watch,
    "sync": sync,
    "down": down,
    "pull": pull,
    "hash": hash_,
    "serve": serve,
    "lock": lock,
    "import": import_,
}
