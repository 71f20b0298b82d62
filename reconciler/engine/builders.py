"""Image builds: BuildKit through the docker CLI where the machine can, the engine's
legacy builder otherwise.

The legacy builder (what the Docker SDK speaks) uploads the whole build context, models
included, on every build: a code edit next to a 10 GiB model costs minutes. BuildKit
syncs the context incrementally, so the same edit rebuilds in well under a second. As
Skaffold's docker builder and docker-compose 1.29 (COMPOSE_DOCKER_CLI_BUILD) do, BuildKit
builds go through the docker CLI:

- `docker buildx build --load` where the buildx plugin is installed (Docker Desktop, docker-ce);
- `DOCKER_BUILDKIT=1 docker build` with a CLI that still has BuildKit built in (before
  23.0, such as Debian's docker.io 20.10);
- the SDK's legacy builder otherwise, with a note saying why it is slower.

RECONCILER_BUILDER=buildkit|legacy forces one; RECONCILER_DOCKER_CLI names the CLI to use.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.core.errors import PermanentError
from reconciler.engine.docker import BuildFailed, BuildResult, Engine, EngineUnavailable, engine_address
from reconciler.engine.specs import BuildSpec

Progress = Callable[[str], None]

LEGACY_NOTE = (
    "building with the engine's legacy builder, which sends the whole build folder (models included) "
    "on every build; install the docker buildx plugin for incremental BuildKit builds"
)


@dataclass(frozen=True)
class DockerCli:
    """A docker CLI that can build with BuildKit, and how."""

    path: str
    buildx: bool  # `docker buildx build`; else `DOCKER_BUILDKIT=1 docker build`
    version: str = ""

    @property
    def description(self) -> str:
        how = "buildx" if self.buildx else "DOCKER_BUILDKIT=1"
        return f"BuildKit ({self.path} {self.version}, {how})".replace("  ", " ")


def _run(command: list[str], timeout: float = 20) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _probe(path: str) -> DockerCli | None:
    """How `path` can build with BuildKit, if it can."""
    version = _run([path, "version", "--format", "{{.Client.Version}}"])
    client = version.stdout.strip() if version is not None else ""
    buildx = _run([path, "buildx", "version"])
    if buildx is not None and buildx.returncode == 0:
        return DockerCli(path, True, client)
    match = re.match(r"(\d+)\.", client)
    if match and int(match.group(1)) < 23:  # BuildKit was built into the CLI until 23.0
        return DockerCli(path, False, client)
    return None


def _candidates() -> list[str]:
    """Every docker CLI on PATH, in PATH order, then the usual places, each once."""
    found: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        path = os.path.join(folder, "docker")
        real = os.path.realpath(path)
        if os.access(path, os.X_OK) and real not in {os.path.realpath(p) for p in found}:
            found.append(path)
    return found


@functools.lru_cache(maxsize=4)
def find_buildkit_cli(explicit: str | None = None) -> tuple[DockerCli | None, str]:
    """The first docker CLI that builds with BuildKit, or None and why not."""
    if explicit:
        cli = _probe(explicit)
        return cli, "" if cli else f"RECONCILER_DOCKER_CLI={explicit} cannot build with BuildKit"
    candidates = _candidates()
    for path in candidates:
        cli = _probe(path)
        if cli is not None:
            return cli, ""
    if not candidates:
        return None, "no docker CLI on PATH"
    return None, f"no docker CLI with BuildKit ({', '.join(candidates)}: no buildx plugin, and 23.0 or newer)"


@dataclass
class Builder:
    """Builds a folder into the engine's image store, tagged and labelled."""

    engine: Engine
    cli: DockerCli | None  # None: the legacy builder
    note: str = ""  # why the legacy builder, when it is the one

    @property
    def description(self) -> str:
        return self.cli.description if self.cli else "the engine's legacy builder"

    def build(self, spec: BuildSpec, progress: Progress) -> BuildResult:
        if self.cli is None:
            return self.engine.build(spec, progress)
        return _buildkit_build(self.cli, spec, progress)


def choose_builder(engine: Engine) -> Builder:
    """BuildKit where the machine can, else the legacy builder (RECONCILER_BUILDER forces one)."""
    forced = os.environ.get("RECONCILER_BUILDER", "").strip().lower()
    if forced == "legacy":
        return Builder(engine, None, "RECONCILER_BUILDER=legacy")
    cli, why = find_buildkit_cli(os.environ.get("RECONCILER_DOCKER_CLI") or None)
    if cli is None and forced == "buildkit":
        raise PermanentError(f"RECONCILER_BUILDER=buildkit, but {why}")
    if forced not in ("", "buildkit"):
        raise PermanentError(f"RECONCILER_BUILDER={forced!r}: use buildkit or legacy")
    return Builder(engine, cli, "" if cli else f"{why}; {LEGACY_NOTE}")


# -- BuildKit through the docker CLI ---------------------------------------------------

_LINE = re.compile(r"^#(\d+) (.*)$")
_STEP = re.compile(r"^\[(?!internal\])[^\]]*\d+/\d+\] ")
_DONE = re.compile(r"^DONE (\d+(?:\.\d+)?)s$")


@dataclass
class _Vertex:
    name: str
    output: list[str] = field(default_factory=list)


def _buildkit_build(cli: DockerCli, spec: BuildSpec, progress: Progress) -> BuildResult:
    tags = spec.tags
    environment = dict(os.environ)
    command = [cli.path, "buildx", "build", "--load"] if cli.buildx else [cli.path, "build"]
    if not cli.buildx:
        environment["DOCKER_BUILDKIT"] = "1"
    scratch = tempfile.mkdtemp(prefix="reconciler-build-")
    iidfile = os.path.join(scratch, "iid")
    command += ["--progress=plain", "--iidfile", iidfile]
    for tag in tags:
        command += ["--tag", tag]
    for key, value in sorted(spec.labels.items()):
        command += ["--label", f"{key}={value}"]
    if not spec.network:
        command += ["--network", "none"]
    if spec.platform:
        command += ["--platform", spec.platform]
    command.append(spec.folder)
    vertices: dict[str, _Vertex] = {}
    steps = cached = 0
    failed: _Vertex | None = None
    error = ""
    tail: list[str] = []
    try:
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=environment
        ) as process:
            for raw in process.stdout:
                line = raw.rstrip("\n")
                tail = (tail + [line])[-40:]
                match = _LINE.match(line)
                if not match:
                    continue
                number, text = match.groups()
                vertex = vertices.get(number)
                if vertex is None:
                    vertices[number] = vertex = _Vertex(text)
                    continue
                if text == "CACHED" or _DONE.match(text):
                    if _STEP.match(vertex.name):
                        steps += 1
                        cached += text == "CACHED"
                        done = _DONE.match(text)
                        progress(_shorten(vertex.name) + (" (cached)" if done is None else f" ({done.group(1)} s)"))
                elif text.startswith("ERROR"):
                    failed, error = vertex, text.removeprefix("ERROR:").strip() or text
                elif not text.startswith("sha256:") and text != vertex.name:
                    vertex.output.append(text)
            returncode = process.wait()
        if returncode != 0:
            message = " ".join(tail)
            if "Cannot connect to the Docker daemon" in message or "error during connect" in message:
                raise EngineUnavailable(f"build {tags[0]}: no Docker engine answers at {engine_address()}")
            last = next((t for t in reversed(tail) if t.strip() and not t.startswith("#")), "")
            step = failed.name if failed else ""
            lines = failed.output[-20:] if failed else tail[-20:]
            raise BuildFailed(step, lines, error or last or f"the docker CLI exited with {returncode}")
        with open(iidfile, encoding="utf-8") as handle:
            image_id = handle.read().strip()
    except OSError as error_:
        raise PermanentError(f"build {tags[0]}: cannot run {cli.path}: {error_}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return BuildResult(image_id, steps, cached)


def _shorten(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= 100 else line[:97] + "..."
