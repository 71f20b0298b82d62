"""The `reconciler` argument parser: every command, option and help text.

Exit codes follow `terraform plan -detailed-exitcode`: 0 in sync (or done),
2 changes pending, 1 errors.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from reconciler import __version__
from reconciler.spec.modes import MODE_NAMES

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
  reconciler apply --check .            exit 2 if a committed Dockerfile or Kubernetes folder is out of date
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


def _add_secrets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secrets",
        type=lambda text: Path(os.path.abspath(text)),
        metavar="FILE",
        help="NAME=value lines (as a .env file) giving inference.secrets their values; a name not "
        "in FILE is read from the environment. Values reach containers only, never an image, "
        "a label, the lock or any output.",
    )


def _duration(text: str) -> float:
    """`60`, `60s`, `5m`, `1h` -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 60, 60s, 5m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


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
        "requirement files (requirements only, no pip options or direct references), what cannot "
        "go into an image (named pipes, devices, symlink loops, names that are not UTF-8), and that "
        "each entry script defines init() and run(). Prints every problem as "
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
    _add_secrets(plan)
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
    _add_secrets(apply)
    _add_frozen(apply)
    _add_prune(apply)
    _add_output(apply)
    apply.add_argument(
        "--check",
        action="store_true",
        help="change nothing, offline; exit 2 if a committed folder is out of date or edited by hand: "
        "the Dockerfile folder in dockerfile mode, the Kubernetes folder in kubernetes mode. Implies --frozen.",
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
    _add_secrets(status)
    _add_output(status)

    history = commands.add_parser(
        "history",
        help="list the images each package keeps, newest first",
        description="For each package that builds: the images it keeps (output.image.keep), newest first, "
        "each with its hash, the commit it was built from (-dirty when the inputs differed from it), when "
        "it was built, when it last served, and its size; * marks the one serving now. Changes nothing.",
    )
    _add_paths(history)
    _add_secrets(history)
    _add_output(history)

    rollback = commands.add_parser(
        "rollback",
        help="serve an image the package keeps again, and hold it there",
        description="Replace what serves with an older image the package keeps (reconciler history lists them), "
        "through the proxy like an update: no request refused, no build. Without --to: the image that served "
        "before the current one. Then the package is held: plan, apply, watch and sync leave it alone while its "
        "inputs are what they are now; the first change of its inputs deploys them as usual, and --release "
        "deploys them now.",
    )
    rollback.add_argument("path", metavar="PATH", help="the package (its folder or package.yaml)")
    rollback.add_argument("--to", metavar="HASH|REVISION", help="a kept image by hash prefix or by commit")
    rollback.add_argument("--release", action="store_true", help="release the hold: deploy the inputs again")
    _add_secrets(rollback)

    hash_ = commands.add_parser(
        "hash",
        help="print a package's hashes and every input behind them",
        description="Print the image hash, the container hash, and each input with its digest "
        "(files, the lock, settings), to answer 'why did it rebuild?'. Offline: a missing "
        "or stale package.lock is reported, not resolved.",
    )
    _add_paths(hash_)
    _add_secrets(hash_)
    _add_output(hash_)

    lock = commands.add_parser(
        "lock",
        help="resolve dependencies into package.lock",
        description="Resolve each package's requirements (plus the serving runtime's) for its target "
        "Python and platform with the host's pip configuration, and write package.lock "
        "beside package.yaml: names, versions, wheel files, sha256. Wheels go to the local "
        "wheel cache. Always resolves again, so it also upgrades within your constraints. "
        "Also pins the base image: its digest in the registry when one answers, else the "
        "digest of the engine's copy, else (an image that was never pushed) its local ID; "
        "an existing pin is kept unless --upgrade.",
    )
    _add_paths(lock)
    lock.add_argument(
        "--upgrade",
        action="store_true",
        help="also move the base image pin to what the tag points to now (the registry first)",
    )

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
    _add_secrets(serve)

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
    _add_secrets(watch)
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

    sync = commands.add_parser(
        "sync",
        help="deploy what a branch says to this Docker host, and keep it so (a pull-based agent)",
        description="Keep a clone of REPO in a state folder; every --interval, fetch --ref, check "
        "out its commit and apply the packages below --path (the one apply pipeline). A round "
        "with no new commit still heals (a container removed by hand comes back). A commit that "
        "fails keeps what serves, is reported, and is not tried again until the ref moves; an "
        "unreachable remote or engine is retried with backoff. SIGTERM stops it between actions.",
        epilog="examples:\n"
        "  reconciler sync https://git.example.com/team/models.git --ref main --path models/\n"
        "  reconciler sync /srv/git/models.git --once          one round, exit code as apply (cron, CI)\n"
        "  reconciler sync /srv/git/models.git --status        what it fetched, applied, and when next\n"
        "  reconciler sync URL --interval 1h --listen 0.0.0.0:8099 --webhook-secret-file /etc/reconciler/hook\n"
        "                                                      a push deploys at once; the poll is the fallback",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync.add_argument("repository", metavar="REPO", help="a URL or a path git can clone")
    sync.add_argument("--ref", default="main", help="the branch or tag to deploy (default: main)")
    sync.add_argument("--path", default=".", help="where the packages are in the repository (default: all of it)")
    sync.add_argument(
        "--interval",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="time between rounds, with jitter: 60, 60s, 5m (default 60s)",
    )
    sync.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="the agent's folder: its clone, status file and lock "
        "(default: $XDG_STATE_HOME/reconciler/sync/<repository>-<ref>)",
    )
    _add_prune(sync)
    _add_secrets(sync)
    sync.add_argument("--once", action="store_true", help="one round, then exit 0 (applied) or 1 (errors)")
    sync.add_argument(
        "--require-signed",
        action="store_true",
        help="apply only commits whose signature git can verify with the configured keys (git verify-commit)",
    )
    sync.add_argument("--status", action="store_true", help="print the agent's status file and exit")
    sync.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="serve the status page (/), /status (JSON), /metrics (Prometheus) and, with "
        "--webhook-secret-file, push webhooks (/hooks/github, /hooks/gitlab, /hooks/gitea) that start a "
        "round at once; on 127.0.0.1 unless HOST is given",
    )
    sync.add_argument(
        "--webhook-secret-file",
        type=Path,
        metavar="FILE",
        help="the secret webhooks are signed with (GitHub, Gitea) or carry (GitLab); never printed",
    )
    sync.add_argument("--verbose", "-v", action="store_true", help="also print each build step")

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
        description="Pull <registry>/<repository>:<hash12> for the package at PATH (the hash its "
        "committed files give, the same on every machine, or --hash), check its reconciler.hash "
        "label, and tag it <repository>:<hash12> locally, as Azure's package.pull() does.",
    )
    pull.add_argument("path", metavar="PATH", help="the package's folder or package.yaml")
    pull.add_argument("--hash", metavar="HASH", help="the image hash to pull (12 or 64 hex digits)")

    importer = commands.add_parser(
        "import",
        help="write a package.yaml from an existing project (Azure ML)",
        description="Write a package.yaml from what a project already has, then validate it.",
    )
    sources = importer.add_subparsers(dest="source", metavar="SOURCE", required=True)
    azure = sources.add_parser(
        "azure",
        help="from an Azure ML deployment YAML (CLI v2) or SDK v1 arguments",
        description="CLI v2: `reconciler import azure deployment.yml` writes package.yaml beside the "
        "online deployment YAML (model, code_configuration, environment.conda_file, "
        "environment_variables, request_settings, instance_count, resources, instance_type); `azureml:NAME:VERSION` "
        "and `azureml:NAME@latest` resolve through the asset YAMLs (model, environment, code) in the "
        "repository. SDK v1: give what InferenceConfig and "
        "Model.package were given: --entry-script, --source-directory, --conda-file or --requirements, "
        "--model. What cannot be carried over (registry references nothing here defines, Azure's base "
        "image, App Insights, probes) is listed, and written as comments at the top of the manifest. An "
        "existing package.yaml is never overwritten without --force.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  reconciler import azure endpoints/online/blue-deployment.yml\n"
        "  reconciler import azure --entry-script score.py --conda-file env.yml \\\n"
        "      --model outputs/model.pkl=sklearn_regression_model:1",
    )
    azure.add_argument("deployment", nargs="?", metavar="DEPLOYMENT_YAML", help="a CLI v2 deployment YAML")
    azure.add_argument("--entry-script", metavar="FILE", help="v1: InferenceConfig(entry_script=...)")
    azure.add_argument("--source-directory", metavar="DIR", help="v1: InferenceConfig(source_directory=...)")
    azure.add_argument(
        "--conda-file",
        metavar="FILE",
        help="v1: the environment's conda specification; with a deployment YAML, it stands in for the "
        "deployment's environment (a registry reference the repository does not define)",
    )
    azure.add_argument("--requirements", metavar="FILE", help="v1: the environment's pip requirements file")
    azure.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH[=NAME[:VERSION]]",
        help="a model file or folder (repeatable); with a deployment YAML, instead of a registry reference",
    )
    azure.add_argument("--name", help="the package name (default: the endpoint's or the entry script folder's)")
    azure.add_argument(
        "--mode",
        choices=MODE_NAMES,
        help="output.mode of the package (default: kubernetes for a `type: kubernetes` deployment, else "
        "container, a running service as on Azure)",
    )
    azure.add_argument("--directory", metavar="DIR", help="v1: where package.yaml goes (default: .)")
    azure.add_argument("--force", action="store_true", help="replace an existing package.yaml")

    commands.add_parser(
        "schema",
        help="print the JSON schema of package.yaml",
        description="Print the JSON schema generated from reconciler's manifest models "
        "(committed as schemas/package.schema.json for editors).",
    )
    return parser
