"""Which files go into the image: the application code and the models.

Application code is every file below `source_directory`, minus:
- what `.reconcilerignore` (gitignore syntax, at the top of the source folder) lists;
- hidden files and folders (`.env`, `.aws/`: secrets must not be baked in by accident;
  a `!.name` line in `.reconcilerignore` brings one back);
- always: `.git` (a folder, or a worktree's pointer file), `__pycache__/`, `*.pyc`;
- files that are inputs in their own right (the manifest, the lock, the requirements
  file, the models) and outputs (the build folder, any stamped folder, other packages).

Symlinks are followed when they stay inside the repository and refused otherwise.
"""

from __future__ import annotations

import functools
import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path

import pathspec

from reconciler.core.errors import InvalidInput, Problem
from reconciler.core.paths import display_path, in_git_metadata, inside, real_path
from reconciler.core.stamp import STAMP_NAME
from reconciler.spec.mlflow_model import SCORING_SCRIPT
from reconciler.spec.package import MANIFEST_NAME, Package

RUNTIME_DIRECTORY = Path(__file__).parent.parent / "runtime"
IGNORE_FILE = ".reconcilerignore"
DEFAULT_IGNORES = [".*"]
ALWAYS_IGNORED = [".git", "__pycache__/", "*.pyc"]  # .git: the folder, or a worktree's pointer file


@dataclass(frozen=True)
class InputFile:
    """A file copied into the build folder at `destination` (a POSIX path)."""

    path: str  # where to read it (symlinks resolved)
    destination: str
    executable: bool
    stat: os.stat_result


def ignore_spec(source_directory: Path) -> pathspec.PathSpec:
    ignore_file = source_directory / IGNORE_FILE
    try:
        lines = tuple(ignore_file.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        lines = ()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput([Problem(str(ignore_file), f"cannot read: {error}")]) from None
    return _compiled_spec(lines)


@functools.lru_cache(maxsize=256)
def _compiled_spec(user_lines: tuple[str, ...]) -> pathspec.PathSpec:
    """Packages of one repository usually share their ignore rules: compile them once."""
    return pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORES, *user_lines, *ALWAYS_IGNORED])


ONLY_GIT = pathspec.GitIgnoreSpec.from_lines([".git"])  # what a model folder never holds

_KINDS = ((stat_module.S_ISFIFO, "a named pipe"), (stat_module.S_ISSOCK, "a socket"), (stat_module.S_ISCHR, "a device"))


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, for a message."""
    return next((kind for test, kind in _KINDS if test(mode)), "a device")


class _Walker:
    """Walks one folder tree into InputFiles under `prefix`.

    What the ignore rules exclude is never looked into (a hidden symlink that leaves the
    repository is no problem when it is ignored). What cannot go into an image (a named
    pipe, a socket, a device, a symlink loop, a name that is not UTF-8, a symlink leaving the
    repository) is a problem naming its path, and all of them are reported together. `loc`
    is the manifest field blamed; `app` walks also skip other packages' folders and
    reconciler's outputs.
    """

    def __init__(self, package: Package, prefix: str, spec: pathspec.PathSpec, skip: set[str], loc: tuple, app: bool):
        self.package = package
        self.real_root = str(real_path(package.root))
        self.prefix = prefix
        self.spec = spec
        self.skip = skip
        self.loc = loc
        self.app = app
        self.visited: set[tuple[int, int]] = set()
        self.files: list[InputFile] = []
        self.problems: list[Problem] = []

    def walk(self, top: str) -> list[InputFile]:
        status = os.stat(top)
        self._directory(top, "", (status.st_dev, status.st_ino))
        if self.problems:
            raise InvalidInput(self.problems)
        self.files.sort(key=lambda f: f.destination)
        return self.files

    def _problem(self, message: str) -> None:
        self.problems.append(self.package.problem(self.loc, message))

    def _directory(self, directory: str, relative: str, identity: tuple[int, int]) -> None:
        if identity in self.visited:  # a folder reached twice through links: once is enough
            return
        self.visited.add(identity)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as error:
            self._problem(f"cannot read {display_path(directory)}: {error.strerror}")
            return
        if relative and self.app and any(e.name in (STAMP_NAME, MANIFEST_NAME) for e in entries):
            return  # a build folder, or another package's folder
        for entry in entries:
            if entry.path in self.skip:
                continue
            child = f"{relative}/{entry.name}" if relative else entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if self.spec.match_file(child + "/" if is_dir else child):
                continue  # ignored: never followed, never read
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                self._problem(
                    f"{display_path(entry.path)}: the name is not UTF-8; rename it, or list it in {IGNORE_FILE}"
                )
                continue
            self._entry(entry, child)

    def _entry(self, entry: os.DirEntry, child: str) -> None:
        path = entry.path
        shown = functools.partial(display_path, entry.path)  # only a problem shows it
        try:
            if entry.is_symlink():
                path = os.path.realpath(entry.path, strict=True)
                if not inside(path, self.real_root):
                    self._problem(f"{shown()} is a symlink to {path}, outside the repository")
                    return
                if in_git_metadata(path):
                    self._problem(f"{shown()} is a symlink into .git (the repository's metadata), never content")
                    return
                status = os.stat(path)
            else:
                status = entry.stat()
        except FileNotFoundError:
            return  # a dangling link: nothing to copy
        except OSError as error:
            self._problem(f"{shown()} cannot be read ({error.strerror}); a symlink loop?")
            return
        if stat_module.S_ISDIR(status.st_mode):
            self._directory(path, child, (status.st_dev, status.st_ino))
        elif stat_module.S_ISREG(status.st_mode):
            self.files.append(InputFile(path, f"{self.prefix}/{child}", bool(status.st_mode & 0o111), status))
        else:
            self._problem(f"{shown()} is {special_kind(status.st_mode)}, not a file; list it in {IGNORE_FILE}")


def source_files(package: Package) -> list[InputFile]:
    """The application code, as `app/<relative path>`: with a no-code MLflow model, reconciler's
    scoring script alone."""
    if package.mlflow is not None:
        script = str(RUNTIME_DIRECTORY / SCORING_SCRIPT)
        return [InputFile(script, f"app/{SCORING_SCRIPT}", False, os.stat(script))]
    source = package.source_directory
    skip = {
        str(package.manifest_path),
        str(package.lock_path),
        str(package.output_directory),
        str(source / IGNORE_FILE),
        *(str(path) for path in package.model_paths),
    }
    if package.dependencies_file:
        skip.add(str(package.dependencies_file))
    if package.data_collection_directory:  # collected data is never code
        skip.add(str(package.data_collection_directory))
    walker = _Walker(package, "app", ignore_spec(source), skip, ("inference", "source_directory"), app=True)
    return walker.walk(str(source))


def model_files(package: Package) -> list[InputFile]:
    """Each model's file or folder, as `models/<name>/<version>/<original name>...`,
    which is where Azure puts registered models."""
    files: list[InputFile] = []
    for index, (model, path) in enumerate(zip(package.manifest.models, package.model_paths)):
        prefix = f"models/{model.name}/{model.version}/{path.name}"
        real = os.path.realpath(path)
        if os.path.isdir(real):
            walker = _Walker(package, prefix, ONLY_GIT, set(), ("models", index, "path"), app=False)
            files.extend(walker.walk(real))
        else:
            status = os.stat(real)
            files.append(InputFile(real, prefix, bool(status.st_mode & 0o111), status))
    return files
