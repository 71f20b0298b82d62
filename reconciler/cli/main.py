"""The `reconciler` command line.

Exit codes follow `terraform plan -detailed-exitcode`: 0 in sync (or done),
2 changes pending, 1 errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from reconciler import __version__

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

DESCRIPTION = """\
GitOps for model packages. Each package.yaml (a trained model, its Azure-style
entry script and environment, and an output mode) becomes a Dockerfile folder,
a built image, or a running container serving POST /score. reconciler compares
content hashes of the desired state with what exists and acts only on what changed.
"""

EPILOG = """\
examples:
  reconciler validate .                 check every manifest below . (fast, offline)
  reconciler plan examples/             what would change, and why (exit 2 if anything)
  reconciler apply examples/            make it so
  reconciler plan --frozen .            in CI: a missing or stale package.lock is an error
  reconciler apply --check .            exit 2 if a committed Dockerfile folder is out of date
  reconciler hash examples/sklearn-regression   every input behind the hash

exit codes: 0 in sync / done, 2 changes pending (plan, apply --check), 1 errors.
"""


def _add_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        default=["."],
        metavar="PATH",
        help="package.yaml files or folders to search below (default: .); "
        "hidden folders and reconciler's own outputs are skipped",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or json for programs (fields: docs/json-output.md)",
    )


def _add_prune(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also remove what no manifest wants: containers and images whose package.yaml (below "
        "PATH) is gone, and superseded images. Never while a manifest has errors or none is found.",
    )


def _add_frozen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="never resolve dependencies: a missing or stale package.lock is an error (use in CI)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="check manifests, paths and entry scripts (offline, no Docker)",
        description="Check every package.yaml below PATH: YAML, fields, paths inside the repository, "
        "and that each entry script defines init() and run(). Prints every problem as "
        "file:line:column: field: message. Fast and offline: suited to a pre-commit hook.",
    )
    _add_paths(validate)

    plan = commands.add_parser(
        "plan",
        help="show what apply would do, and why",
        description="Compare each package's desired state (content hashes of its inputs) with what "
        "exists, and print the actions apply would take, each with its cause. Resolves "
        "package.lock first when it is missing or stale, unless --frozen. "
        "Exit 0: in sync; 2: changes pending; 1: errors.",
    )
    _add_paths(plan)
    _add_frozen(plan)
    _add_prune(plan)
    _add_output(plan)

    apply = commands.add_parser(
        "apply",
        help="carry out the plan",
        description="Plan, then act: write Dockerfile folders (atomically; folders without "
        "reconciler's stamp are never touched). Prints each action with its cause and "
        "duration. Exit 0 when everything succeeded, 1 otherwise.",
    )
    _add_paths(apply)
    _add_frozen(apply)
    _add_prune(apply)
    _add_output(apply)
    apply.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 2 if any Dockerfile folder (output.mode: dockerfile) is out of "
        "date or edited by hand, for repositories that commit them. Implies --frozen.",
    )
    apply.add_argument("--jobs", "-j", type=int, default=4, metavar="N", help="packages worked on at once (default 4)")
    apply.add_argument(
        "--builds",
        type=int,
        default=1,
        metavar="N",
        help="image builds at once (default 1; builds are CPU- and disk-bound)",
    )
    apply.add_argument(
        "--lock-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for another reconciler (a watch, another apply) working on "
        "the same packages (default 120)",
    )

    status = commands.add_parser(
        "status",
        help="show each package's state",
        description="One line per package: mode, hash, whether its output is in sync, and for "
        "containers their state, readiness (GET /ready) and URL. Never changes anything "
        "and never resolves dependencies.",
    )
    _add_paths(status)
    _add_output(status)

    hash_ = commands.add_parser(
        "hash",
        help="print a package's hashes and every input behind them",
        description="Print the image hash, the container hash, and each input with its digest "
        "(files, the lock, settings), to answer 'why did it rebuild?'. Offline: a missing "
        "or stale package.lock is reported, not resolved.",
    )
    _add_paths(hash_)
    _add_output(hash_)

    lock = commands.add_parser(
        "lock",
        help="resolve dependencies into package.lock",
        description="Resolve each package's requirements (plus the serving runtime's) for its target "
        "Python and platform with the host's pip configuration, and write package.lock "
        "beside package.yaml: names, versions, wheel files, sha256. Wheels go to the local "
        "wheel cache. Always resolves again, so it also upgrades within your constraints.",
    )
    _add_paths(lock)

    serve = commands.add_parser(
        "serve",
        help="run one package's scoring server on the host, without Docker",
        description="Serve the package's entry script with the same runtime, model layout "
        "(AZUREML_MODEL_DIR) and settings as its image, in this Python, for quick local "
        "checks. The package's requirements must be installed in this Python; a missing "
        "one is named before the server starts. Stops on Ctrl-C.",
    )
    serve.add_argument(
        "path", nargs="?", default=".", metavar="PATH", help="the package's folder or package.yaml (default: .)"
    )
    serve.add_argument(
        "--port", type=int, metavar="N", help="port to listen on (default: the manifest's output.container.port)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")

    watch = commands.add_parser(
        "watch",
        help="keep the packages in sync while you edit",
        description="Apply once, then again within moments of every change to a manifest or an "
        "input it references (batched: a quiet period of 200 ms), and every --resync "
        "seconds to heal what no file event announces (a container removed by hand). "
        "One line per action with its cause and duration. Failures are retried with "
        "backoff; Ctrl-C or SIGTERM stops it.",
    )
    _add_paths(watch)
    watch.add_argument(
        "--dev",
        action="store_true",
        help="containers mount their source folder read-only and reload changed code in "
        "place (no rebuild, no restart); environment, lock, model or manifest changes "
        "still rebuild. One worker per container.",
    )
    _add_prune(watch)
    watch.add_argument(
        "--resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="full reconcile every SECONDS, with jitter (default 30)",
    )
    watch.add_argument("--verbose", "-v", action="store_true", help="also print each build step")

    down = commands.add_parser(
        "down",
        help="stop and remove the packages' containers (not their images)",
        description="Stop (gracefully: in-flight requests finish) and remove the containers of the "
        "packages below PATH. Images stay; `apply` brings the containers back.",
    )
    _add_paths(down)

    pull = commands.add_parser(
        "pull",
        help="fetch a package's pushed image by hash from its registry",
        description="Pull <registry>/<repository>:<hash12> for the package at PATH (the hash this "
        "machine computes, or --hash), check its reconciler.hash label, and tag it "
        "<repository>:<hash12> locally, as Azure's package.pull() does.",
    )
    pull.add_argument("path", metavar="PATH", help="the package's folder or package.yaml")
    pull.add_argument("--hash", metavar="HASH", help="the image hash to pull (12 or 64 hex digits)")

    commands.add_parser(
        "schema",
        help="print the JSON schema of package.yaml",
        description="Print the JSON schema generated from reconciler's manifest models "
        "(committed as schemas/package.schema.json for editors).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    handler = globals()[f"_command_{arguments.command}"]
    try:
        return handler(arguments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_problems(problems) -> None:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)


def _command_schema(arguments: argparse.Namespace) -> int:
    from reconciler.spec.manifest import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _command_validate(arguments: argparse.Namespace) -> int:
    from reconciler.core.errors import InvalidInput
    from reconciler.desired.pins import read_lock
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    problems = list(workspace.problems)
    for package in workspace.packages:
        try:
            read_lock(package)
        except InvalidInput as error:
            problems.extend(error.problems)
    _print_problems(problems)
    if workspace.manifests_found == 0 and not problems:
        print("no package.yaml found", file=sys.stderr)
        return EXIT_ERROR
    if problems:
        return EXIT_ERROR
    print(f"{len(workspace.packages)} package(s) valid")
    return EXIT_OK


def _reconcile(arguments: argparse.Namespace, session, *, frozen: bool, use_engine: bool = True):
    from reconciler.apply import reconcile

    return reconcile(
        arguments.paths, session, frozen=frozen, prune=getattr(arguments, "prune", False), use_engine=use_engine
    )


def _refused(error: Exception) -> int:
    """One clear line (where the engine was looked for, or who holds a lock), exit 1, nothing changed."""
    print(f"error: {error}", file=sys.stderr)
    return EXIT_ERROR


def _command_plan(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session
    from reconciler.cli.report import plan_text, to_json
    from reconciler.engine.docker import EngineUnavailable

    with Session() as session:
        try:
            reconciliation = _reconcile(arguments, session, frozen=arguments.frozen)
        except EngineUnavailable as error:
            return _refused(error)
    print(to_json(reconciliation, "plan") if arguments.output == "json" else plan_text(reconciliation), end="")
    if reconciliation.has_errors or reconciliation.manifests_found == 0:
        return EXIT_ERROR
    return EXIT_CHANGES if reconciliation.has_changes else EXIT_OK


def _command_apply(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session
    from reconciler.cli.report import apply_text, to_json
    from reconciler.core.package_locks import LockTimeout, PackageLocks
    from reconciler.engine.docker import EngineUnavailable
    from reconciler.execute import execute, printing_progress
    from reconciler.spec.discovery import discover

    if arguments.check:
        return _apply_check(arguments)
    progress = printing_progress(sys.stderr if arguments.output == "json" else sys.stdout)
    manifests, _ = discover(arguments.paths)
    with Session(build_slots=arguments.builds) as session:
        try:
            with PackageLocks(manifests, timeout=arguments.lock_timeout):
                reconciliation = _reconcile(arguments, session, frozen=arguments.frozen)
                if _pull_bases(reconciliation, session, arguments, progress):
                    # the base images' IDs are part of the hashes: plan again with them
                    pulled = {o.package.name: o.results for o in reconciliation.outcomes}
                    reconciliation = _reconcile(arguments, session, frozen=arguments.frozen)
                    for outcome in reconciliation.outcomes:
                        outcome.results = list(pulled.get(outcome.package.name, []))
                execute(reconciliation, session, jobs=arguments.jobs, progress=progress)
        except (LockTimeout, EngineUnavailable) as error:
            return _refused(error)
    print(to_json(reconciliation, "apply") if arguments.output == "json" else apply_text(reconciliation), end="")
    if reconciliation.has_errors or reconciliation.manifests_found == 0:
        return EXIT_ERROR
    return EXIT_OK


def _pull_bases(reconciliation, session, arguments: argparse.Namespace, progress) -> bool:
    """Pull the base images the plan says are missing; whether there were any."""
    from reconciler.execute import execute

    if not any(a.kind == "pull" for o in reconciliation.outcomes if o.plan for a in o.plan.actions):
        return False
    execute(reconciliation, session, jobs=arguments.jobs, progress=progress, kinds=frozenset({"pull"}))
    return True


def _apply_check(arguments: argparse.Namespace) -> int:
    """Only Dockerfile-mode folders are meant to be committed, so only they are checked
    (and no Docker engine is needed)."""
    from reconciler.apply import Session
    from reconciler.cli.report import plan_text, to_json

    with Session() as session:
        reconciliation = _reconcile(arguments, session, frozen=True, use_engine=False)
    reconciliation.outcomes = [o for o in reconciliation.outcomes if o.package.manifest.output.mode == "dockerfile"]
    print(to_json(reconciliation, "apply --check") if arguments.output == "json" else plan_text(reconciliation), end="")
    if reconciliation.has_errors or reconciliation.manifests_found == 0:
        return EXIT_ERROR
    return EXIT_CHANGES if reconciliation.has_changes else EXIT_OK


def _command_status(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session
    from reconciler.cli.report import status_text, to_json
    from reconciler.engine.docker import EngineUnavailable

    with Session() as session:
        try:
            reconciliation = _reconcile(arguments, session, frozen=True)
        except EngineUnavailable as error:
            return _refused(error)
    print(to_json(reconciliation, "status") if arguments.output == "json" else status_text(reconciliation), end="")
    return EXIT_ERROR if reconciliation.has_errors else EXIT_OK


def _command_watch(arguments: argparse.Namespace) -> int:
    from reconciler.watch.loop import Watcher

    watcher = Watcher(
        arguments.paths,
        dev=arguments.dev,
        prune=arguments.prune,
        resync_s=arguments.resync,
        out=sys.stdout,
        verbose=arguments.verbose,
    )
    return watcher.run()


def _command_down(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session
    from reconciler.engine.docker import EngineError, EngineUnavailable
    from reconciler.observed.state import Snapshot
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    _print_problems(workspace.problems)
    names = {p.name for p in workspace.packages}
    failed = bool(workspace.problems) or not workspace.manifests_found
    with Session() as session:
        try:
            engine = session.engine
            containers = [c for c in Snapshot.read(engine, images=False).containers if c.package in names]
        except EngineUnavailable as error:
            return _refused(error)
        for container in containers:
            started = time.perf_counter()
            try:
                engine.stop(container.id)
                engine.remove_container(container.id)
            except EngineError as error:
                print(f"error: {container.package}: {error}", file=sys.stderr)
                failed = True
                continue
            print(f"{container.package}: removed container {container.name} in {time.perf_counter() - started:.2f} s")
    if not containers:
        print("no containers to remove")
    return EXIT_ERROR if failed else EXIT_OK


def _one_package(path: str, verb: str):
    """The single package at `path`, or None after saying why not."""
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace([path])
    _print_problems(workspace.problems)
    if workspace.problems:
        return None
    if len(workspace.packages) != 1:
        print(f"error: {path} holds {len(workspace.packages)} packages; {verb} takes one", file=sys.stderr)
        return None
    return workspace.packages[0]


def _command_pull(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session, desire_packages, read_snapshot
    from reconciler.core.errors import ReconcilerError
    from reconciler.engine.docker import EngineUnavailable
    from reconciler.observed.state import image_state

    package = _one_package(arguments.path, "pull")
    if package is None:
        return EXIT_ERROR
    manifest = package.manifest
    registry = manifest.output.image.registry
    if not registry:
        print(f"error: {package.name} has no output.image.registry to pull from", file=sys.stderr)
        return EXIT_ERROR
    with Session() as session:
        try:
            engine = session.engine
            wanted = arguments.hash
            if wanted is None:
                snapshot = read_snapshot(session, [package], images=False)
                [outcome] = desire_packages([package], session, frozen=True, snapshot=snapshot)
                if outcome.problems:
                    _print_problems(outcome.problems)
                    return EXIT_ERROR
                wanted = outcome.desired.image_hash
            short = wanted[:12]
            remote = f"{registry}/{manifest.image_repository}:{short}"
            started = time.perf_counter()
            image_id = engine.pull(remote)
            details = engine.inspect_image(image_id)
            pulled = image_state(details) if details else None
            if pulled is None or not pulled.hash.startswith(wanted):
                print(f"error: {remote} carries hash {pulled and pulled.hash!r}, not {wanted}", file=sys.stderr)
                return EXIT_ERROR
            engine.tag(image_id, f"{manifest.image_repository}:{short}")
        except EngineUnavailable as error:
            return _refused(error)
        except ReconcilerError as error:
            print(f"error: {error}", file=sys.stderr)
            if arguments.hash is None:
                print(
                    "  (this machine's hash includes its own base image's ID; pass --hash with the builder's)",
                    file=sys.stderr,
                )
            return EXIT_ERROR
    print(
        f"{package.name}: pulled {remote} as {manifest.image_repository}:{short} ({image_id[7:19]}) "
        f"in {time.perf_counter() - started:.2f} s"
    )
    return EXIT_OK


def _command_hash(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session, desire_packages, read_snapshot, uses_engine
    from reconciler.engine.docker import EngineUnavailable
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    problems = list(workspace.problems)
    with Session() as session:
        try:  # image and container modes hash the base image's ID on the engine, as plan does
            uses = any(uses_engine(p) for p in workspace.packages)
            snapshot = read_snapshot(session, workspace.packages, images=False) if uses else None
            outcomes = desire_packages(workspace.packages, session, frozen=True, snapshot=snapshot)
        except EngineUnavailable as error:
            return _refused(error)
    for outcome in outcomes:
        problems.extend(outcome.problems)
    documents = [o.desired for o in outcomes if o.desired]
    if arguments.output == "json":
        print(
            json.dumps(
                [
                    {
                        "name": d.package.name,
                        "image_hash": d.image_hash,
                        "container_hash": d.container_hash,
                        "inputs": d.inputs,
                    }
                    for d in documents
                ],
                indent=2,
            )
        )
    else:
        for desired in documents:
            _print_hash(desired)
    _print_problems(problems)
    return EXIT_ERROR if problems or not workspace.manifests_found else EXIT_OK


def _command_serve(arguments: argparse.Namespace) -> int:
    from reconciler.core.errors import ReconcilerError
    from reconciler.serve import serve

    package = _one_package(arguments.path, "serve")
    if package is None:
        return EXIT_ERROR
    port = arguments.port or package.manifest.output.container.port
    try:
        return serve(package, port=port, host=arguments.host)
    except ReconcilerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _print_hash(desired) -> None:
    """Every input with its digest; settings also with their value, which says more."""
    from reconciler.desired.state import container_settings, image_settings

    values = image_settings(desired.package)
    print(desired.package.name)
    print(f"  image hash      {desired.image_hash}")
    print(
        f"  container hash  {desired.container_hash}  (image hash + {json.dumps(container_settings(desired.package))})"
    )
    print("  inputs:")
    width = max(len(name) for name in desired.inputs)
    for name, digest in desired.inputs.items():
        shown = f"  {json.dumps(values[name])}" if name in values else ""
        print(f"    {name.ljust(width)}  {digest}{shown[:100]}")


def _command_lock(arguments: argparse.Namespace) -> int:
    from reconciler.apply import Session
    from reconciler.core.errors import InvalidInput, ReconcilerError
    from reconciler.desired.pins import read_lock, resolve, write_lock
    from reconciler.spec.discovery import load_workspace

    workspace = load_workspace(arguments.paths)
    _print_problems(workspace.problems)
    failed = bool(workspace.problems) or not workspace.manifests_found
    with Session() as session:
        for package in workspace.packages:
            started = time.perf_counter()
            try:
                try:
                    old = read_lock(package)
                except InvalidInput:
                    old = None  # being rewritten is the fix for a damaged lock
                lock = resolve(package, session.wheels)
                write_lock(package, lock)
            except InvalidInput as error:
                _print_problems(error.problems)
                failed = True
                continue
            except ReconcilerError as error:
                print(f"error: {error}", file=sys.stderr)
                failed = True
                continue
            seconds = time.perf_counter() - started
            print(f"{package.name}: locked {len(lock.wheels)} wheels in {seconds:.1f} s{_lock_changes(old, lock)}")
    return EXIT_ERROR if failed else EXIT_OK


def _lock_changes(old, new) -> str:
    if old is None:
        return ""
    before = {w.name: w.version for w in old.wheels}
    after = {w.name: w.version for w in new.wheels}
    changes = [f"+{n} {after[n]}" for n in sorted(after.keys() - before.keys())]
    changes += [f"-{n} {before[n]}" for n in sorted(before.keys() - after.keys())]
    changes += [f"{n} {before[n]} -> {after[n]}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return " (" + ", ".join(changes) + ")" if changes else " (unchanged)"
