"""Requirement files as data: names, versions, extras, markers and hashes, never pip options.

A requirements file is input from a repository, and pip reads more than requirements from
it: an index or find-links to fetch from, `--pre`, an editable checkout, a `name @ URL` or
VCS reference whose setup.py would run on the host, an include of any file on the machine.
So reconciler parses the files itself (with `packaging`) and hands pip only a file it wrote:
the requirements, their hashes, and constraints. Every option line, direct reference or
include that leaves the repository is an error naming the file and the line; an index is
allowed only by the manifest (`environment.index_url`). Error messages never quote a line,
so nothing a file holds (a token in an index URL, what an include pointed at) is printed.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.errors import InvalidInput, Problem
from reconciler.core.paths import display_path, in_git_metadata, inside, real_path
from reconciler.spec.mlflow_model import SERVED_AS
from reconciler.spec.package import Package

MAX_FILE_BYTES = 1024 * 1024
_INCLUDE = re.compile(r"^(?P<option>-r|--requirement|-c|--constraint)(?:\s+|=)(?P<file>\S.*)$")
_OPTION = re.compile(r"^(-{1,2}[A-Za-z][A-Za-z0-9-]*)")
_HASH = re.compile(r"^--hash[= ](sha256|sha384|sha512):[0-9a-f]+$")
ALLOWED_HINT = "a requirement such as scikit-learn==1.5.2, with optional --hash=sha256:... options"


def parse_requirement(text: str):
    """packaging's Requirement; imported here, as a package with no requirements of its own
    never needs it (a no-op plan is mostly start-up time). Raises ValueError."""
    from packaging.requirements import Requirement

    return Requirement(text)


@dataclass(frozen=True)
class Requirements:
    lines: tuple[str, ...]  # as written, comments dropped, includes in place: what a lock is resolved from
    requirements: tuple[str, ...]  # what pip is given, one per line, with their --hash options
    constraints: tuple[str, ...]


class _Reader:
    def __init__(self, package: Package):
        self.package = package
        self.root = real_path(package.root)
        self.lines: list[str] = []
        self.requirements: list[str] = []
        self.constraints: list[str] = []
        self.problems: list[Problem] = []
        self.seen: set[str] = set()

    def read(self, path: Path, *, constraints: bool, included_from: tuple[Path, int] | None = None) -> None:
        real = os.path.realpath(path)
        if real in self.seen:
            return
        self.seen.add(real)
        text = self._text(path, real, included_from)
        if text is None:
            return
        for number, line in _logical_lines(text):
            self.lines.append(line)
            self._line(path, number, line, constraints)

    def _problem(self, path: Path | str, line: int | None, message: str) -> None:
        self.problems.append(Problem(str(path), message, line, field="requirements"))

    def _text(self, path: Path, real: str, included_from: tuple[Path, int] | None) -> str | None:
        where = included_from or (self.package.manifest_path, None)
        shown = display_path(path)
        if not inside(real, self.root):
            self._problem(where[0], where[1], f"{shown} is outside the repository")
            return None
        if in_git_metadata(path) or in_git_metadata(real):
            self._problem(where[0], where[1], f"{shown} is in .git (the repository's metadata), never content")
            return None
        try:
            status = os.stat(real)
        except OSError as error:
            self._problem(where[0], where[1], f"cannot read {shown}: {error.strerror}")
            return None
        if not stat.S_ISREG(status.st_mode):
            self._problem(where[0], where[1], f"{shown} is not a regular file")
            return None
        if status.st_size > MAX_FILE_BYTES:
            self._problem(
                where[0], where[1], f"{shown} is over {MAX_FILE_BYTES // 1024} KiB; is it a requirements file?"
            )
            return None
        try:
            with open(real, "rb") as handle:
                return handle.read(MAX_FILE_BYTES).decode("utf-8")
        except UnicodeDecodeError:
            self._problem(path, None, "is not UTF-8 text")
        except OSError as error:
            self._problem(where[0], where[1], f"cannot read {shown}: {error.strerror}")
        return None

    def _line(self, path: Path, number: int, line: str, constraints: bool) -> None:
        include = _INCLUDE.match(line)
        if include:
            target = Path(os.path.normpath(path.parent / include.group("file").strip()))
            is_constraint = include.group("option") in ("-c", "--constraint")
            self.read(target, constraints=constraints or is_constraint, included_from=(path, number))
            return
        option = _OPTION.match(line)
        if option:
            self._problem(
                path,
                number,
                f"pip option {option.group(1)} is not allowed in a requirements file (set "
                "environment.index_url in package.yaml to use another index); write " + ALLOWED_HINT,
            )
            return
        requirement, _, options = line.partition(" -")
        options = ("-" + options).split() if options else []
        hashes = []
        for value in _join_hash_options(options):
            if not _HASH.match(value):
                self._problem(path, number, f"only --hash options may follow a requirement; write {ALLOWED_HINT}")
                return
            hashes.append(value.replace("--hash ", "--hash="))
        try:
            parsed = parse_requirement(requirement.strip())
        except ValueError as error:  # packaging's InvalidRequirement
            self._problem(path, number, f"not a valid requirement ({str(error).splitlines()[0]})")
            return
        if parsed.url:
            self._problem(
                path,
                number,
                f"{parsed.name} is a direct reference (name @ URL): pip would fetch it and could run its "
                "build on this machine; require a version from the index instead",
            )
            return
        entry = " ".join([str(parsed), *hashes])
        (self.constraints if constraints else self.requirements).append(entry)


def _join_hash_options(options: list[str]) -> list[str]:
    """`--hash sha256:x` (two words) as one."""
    joined: list[str] = []
    for option in options:
        if joined and joined[-1] == "--hash":
            joined[-1] = f"--hash {option}"
        else:
            joined.append(option)
    return joined


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) for each logical line: continuations joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = re.sub(r"(^|\s)#.*$", "", pending + raw).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if pending.strip():
        lines.append((start, re.sub(r"(^|\s)#.*$", "", pending).strip()))
    return lines


def read_requirements(package: Package) -> Requirements:
    """The package's requirements (its file and the files it includes, or the inline list),
    checked; InvalidInput listing every problem."""
    environment = package.manifest.inference.environment
    reader = _Reader(package)
    if package.requirements_file:
        reader.read(package.requirements_file, constraints=False)
    elif package.conda is not None:
        for entry in package.conda.requirements:  # checked as a requirements file's lines are; -r is relative to it
            reader.lines.append(entry.text)
            reader._line(package.conda.path, entry.line, entry.text, constraints=False)
    else:
        for index, line in enumerate(environment.pip or []):
            reader.lines.append(line)
            requirement = parse_requirement(line)  # the manifest checked it parses
            if requirement.url:
                reader.problems.append(
                    package.problem(
                        ("inference", "environment", "pip", index),
                        f"{requirement.name} is a direct reference (name @ URL): pip would fetch it and could run "
                        "its build on this machine; require a version from the index instead",
                    )
                )
            else:
                reader.requirements.append(str(requirement))
    if reader.problems:
        raise InvalidInput(reader.problems)
    requirements = tuple(reader.requirements)
    if package.declares_models_environment:
        requirements = _served_as_no_code(requirements)
    return Requirements(tuple(reader.lines), requirements, tuple(reader.constraints))


def _served_as_no_code(requirements: tuple[str, ...]) -> tuple[str, ...]:
    """A no-code MLflow model's own requirements as its image installs them: `mlflow` as
    `mlflow-skinny`, and pandas (which full mlflow brings, and the pyfunc loader needs) when
    they do not name it, as older models' requirements.txt do not."""
    served = tuple(_served_as(entry) for entry in requirements)
    names = {parse_requirement(entry.split(" --hash=")[0]).name.lower() for entry in served}
    return served + (("pandas",) if served != requirements and "pandas" not in names else ())


def _served_as(entry: str) -> str:
    """A no-code MLflow model's own requirement, as its image installs it (`mlflow==2.9.2`
    becomes `mlflow-skinny==2.9.2`: the loader only; hashes, which are the other package's, go)."""
    requirement = parse_requirement(entry.split(" --hash=")[0])
    replacement = SERVED_AS.get(requirement.name.lower())
    if replacement is None:
        return entry
    requirement.name = replacement
    return str(requirement)
