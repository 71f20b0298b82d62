"""Load `package.yaml` files into validated packages, or into precise problems.

A manifest goes through three gates, and every problem of every gate is reported
at once with file, line, column and field:

1. YAML (safe-loaded, size and alias-bounded, duplicate keys refused),
2. the pydantic models in `manifest`,
3. the filesystem: paths exist, stay inside the repository (symlinks resolved),
   and the entry script statically defines init() and run().
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from reconciler.core.errors import InvalidInput, Problem
from reconciler.core.paths import GIT_METADATA, RealPaths, display_path, in_git_metadata, inside
from reconciler.spec.conda import CondaEnvironment, read_conda_file
from reconciler.spec.entry_script import entry_script_problems
from reconciler.spec.fields import DNS_1035_LABEL
from reconciler.spec.manifest import Manifest
from reconciler.spec.mlflow_model import SCORING_SCRIPT, MlflowModel, read_mlmodel
from reconciler.spec.modes import Mode
from reconciler.spec.validation import dotted, problem_at, validation_problems
from reconciler.spec.yamldoc import MAX_MANIFEST_BYTES, Loc, YamlDocument, YamlError, load_yaml

MANIFEST_NAME = "package.yaml"
LOCK_NAME = "package.lock"


@dataclass(frozen=True)
class Package:
    """A manifest that passed every check, with its paths resolved."""

    manifest: Manifest
    manifest_path: Path
    root: Path  # the repository root no path may leave
    document: YamlDocument
    conda: CondaEnvironment | None = None  # environment.conda_file, read once when the manifest is loaded
    mlflow: MlflowModel | None = None  # the MLflow model served with no entry script (spec.mlflow_model)

    @property
    def name(self) -> str:
        return self.manifest.name

    @functools.cached_property
    def owner(self) -> str:
        """Who the package's images and containers belong to: its manifest's real path. Two
        checkouts never share it, and a symlinked route to the same package does."""
        return os.path.realpath(self.manifest_path)

    @property
    def mode(self) -> Mode:
        return self.manifest.output.kind

    @property
    def directory(self) -> Path:
        return self.manifest_path.parent

    # Paths are derived once: a plan over a thousand packages asks for them often.
    @functools.cached_property
    def lock_path(self) -> Path:
        return self.directory / LOCK_NAME

    @functools.cached_property
    def source_directory(self) -> Path:
        return _join(self.directory, self.manifest.inference.source_directory)

    @functools.cached_property
    def entry_script(self) -> Path:
        return _join(self.source_directory, self.manifest.inference.entry_script)

    @functools.cached_property
    def entry_script_relative(self) -> str:
        """The entry script as a POSIX path below the app folder (AZUREML_ENTRY_SCRIPT)."""
        if self.mlflow is not None:
            return SCORING_SCRIPT
        return self.entry_script.relative_to(self.source_directory).as_posix()

    @functools.cached_property
    def requirements_file(self) -> Path | None:
        """The manifest's requirements file; with no-code MLflow and no environment declared, the model's own."""
        environment = self.manifest.inference.environment
        if environment.requirements:
            return _join(self.directory, environment.requirements)
        declared = environment.pip is not None or environment.conda_file is not None
        return self.mlflow.requirements if self.mlflow is not None and not declared else None

    @functools.cached_property
    def conda_file(self) -> Path | None:
        """The manifest's conda file; with no-code MLflow, no environment declared and no
        requirements.txt in the model (MLflow before 1.20 wrote none), the model's conda.yaml."""
        environment = self.manifest.inference.environment
        if environment.conda_file:
            return _join(self.directory, environment.conda_file)
        if self.mlflow is None or environment.pip is not None or environment.requirements:
            return None
        return self.mlflow.conda if self.mlflow.requirements is None else None

    @property
    def dependencies_file(self) -> Path | None:
        """The file that declares the dependencies (requirements or conda), if any: an input."""
        return self.requirements_file or self.conda_file

    @functools.cached_property
    def python_chosen_by(self) -> str | None:
        """The field the manifest itself writes that chooses its Python; it keeps an MLflow model's out."""
        fields = ("python", "base_image", "conda_file")
        return next((f for f in fields if ("inference", "environment", f) in self.document.value_marks), None)

    @property
    def declares_models_environment(self) -> bool:
        """Whether the dependencies are the no-code MLflow model's own (its mlflow becomes mlflow-skinny)."""
        own = self.mlflow.environment_file if self.mlflow is not None else None
        return own is not None and self.dependencies_file == own

    @functools.cached_property
    def model_paths(self) -> tuple[Path, ...]:
        return tuple(_join(self.directory, model.path) for model in self.manifest.models)

    @functools.cached_property
    def data_collection_directory(self) -> Path | None:
        """Where collected data lands (inference.data_collection): never an input."""
        collection = self.manifest.inference.data_collection
        return _join(self.directory, collection.directory) if collection else None

    @functools.cached_property
    def output_directory(self) -> Path:
        return _join(self.directory, self.manifest.output_directory)

    @functools.cached_property
    def kubernetes_directory(self) -> Path | None:
        """The folder of Kubernetes manifests (kubernetes mode only)."""
        if not self.mode.renders_manifests:
            return None
        return _join(self.directory, self.manifest.kubernetes_directory)

    @property
    def output_directories(self) -> list[tuple[Path, Loc]]:
        """Every folder reconciler writes for this package, with the field that names it."""
        folders = [(self.output_directory, ("output", "directory"))]
        if self.kubernetes_directory is not None:
            folders.append((self.kubernetes_directory, ("output", "kubernetes", "directory")))
        return folders

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem pointing at the manifest field `loc`."""
        return problem_at(self.manifest_path, self.document, loc, message)


def _join(base: Path, relative: str) -> Path:
    return Path(os.path.normpath(os.path.join(base, relative)))


@functools.lru_cache(maxsize=4096)
def repository_root(directory: Path) -> Path:
    """The nearest folder holding `.git`, else the manifest's own folder."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return directory


def load_package(manifest_path: Path, real_paths: RealPaths | None = None) -> Package:
    """Load and check one manifest; raise InvalidInput listing every problem. `real_paths`:
    the run's memo of resolved folders, when many packages are loaded at once."""
    manifest_path = Path(os.path.abspath(manifest_path))
    try:
        if not stat.S_ISREG(os.stat(manifest_path).st_mode):  # a named pipe would block the read
            raise InvalidInput([Problem(str(manifest_path), "is not a regular file")])
        with open(manifest_path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise InvalidInput([Problem(str(manifest_path), f"cannot read manifest: {error.strerror}")]) from None
    try:
        document = load_yaml(raw)
    except YamlError as error:
        line, column = (error.position.line, error.position.column) if error.position else (None, None)
        raise InvalidInput(
            [Problem(str(manifest_path), error.message, line, column, dotted(error.loc) or None)]
        ) from None
    if not isinstance(document.data, dict):
        kind = "empty" if document.data is None else f"a {type(document.data).__name__}"
        raise InvalidInput(
            [
                Problem(
                    str(manifest_path),
                    f"a manifest is a mapping of fields (name, models, ...); this file is {kind}",
                    1,
                    1,
                )
            ]
        )
    try:
        manifest = Manifest.model_validate(document.data)
    except ValidationError as error:
        raise InvalidInput(validation_problems(manifest_path, document, error)) from None
    package = Package(
        manifest=manifest,
        manifest_path=manifest_path,
        root=repository_root(manifest_path.parent),
        document=document,
    )
    problems = _mode_problems(package) + _filesystem_problems(package, real_paths or RealPaths())
    if problems:
        raise InvalidInput(problems)
    if _no_code_models(package):
        package = _with_mlflow(package)
    if package.conda_file:
        package = _with_conda(package)
    return package


def _no_code_models(package: Package) -> list[int]:
    """The models of type mlflow_model when there is no entry script (unset, and no score.py):
    the one there may be is served with no code."""
    if "entry_script" in package.manifest.inference.model_fields_set or package.entry_script.is_file():
        return []
    return [i for i, model in enumerate(package.manifest.models) if model.type == "mlflow_model"]


def _with_mlflow(package: Package) -> Package:
    """The package with the MLflow model it serves with no entry script, read from its MLmodel."""
    indexes = _no_code_models(package)
    if len(indexes) > 1:
        names = ", ".join(package.manifest.models[i].name for i in indexes)
        why = f"{names} are MLflow models and there is no entry script: write one that serves them (inference.entry_script)"
        raise InvalidInput([package.problem(("models",), why)])
    [index] = indexes
    found = read_mlmodel(package.model_paths[index], index, lambda why: package.problem(("models", index, "path"), why))
    if isinstance(found, Problem):
        raise InvalidInput([found])
    package = dataclasses.replace(package, mlflow=found)
    saved_with, python = found.python, package.manifest.inference.environment.python
    if saved_with is None or saved_with == python or package.python_chosen_by:
        return package
    # pickled under its Python, it is served under that one, as Azure's environment from its conda.yaml
    # would be (one the runtime cannot run keeps the default, and the plan says so)
    return _with_python(package, saved_with) or package


def _with_conda(package: Package) -> Package:
    """The package with its conda file read; the file's `python=3.x` is the package's Python
    (unless the manifest says otherwise, which is a conflict to resolve, not to guess)."""
    conda = read_conda_file(package.conda_file)
    environment = package.manifest.inference.environment
    the_models_own = package.mlflow is not None and package.conda_file == package.mlflow.conda
    if conda.python is None or conda.python == environment.python or the_models_own:  # its MLmodel chose (_with_mlflow)
        return dataclasses.replace(package, conda=conda)
    if "python" in environment.model_fields_set:
        raise InvalidInput(
            [
                package.problem(
                    ("inference", "environment", "python"),
                    f"python {environment.python!r} differs from python={conda.python} in "
                    f"{display_path(package.conda_file)}; keep one",
                )
            ]
        )
    changed = _with_python(package, conda.python)
    if changed is None:
        raise InvalidInput(
            [
                package.problem(
                    ("inference", "environment", "conda_file"),
                    f"python={conda.python} in {display_path(package.conda_file)} is not a Python version the "
                    "runtime supports (3.9 or newer)",
                )
            ]
        )
    return dataclasses.replace(changed, conda=conda)


def _with_python(package: Package, python: str) -> Package | None:
    """The package with its environment's Python set to `python`, or None when the runtime
    cannot run that one."""
    environment = package.manifest.inference.environment
    try:
        changed = environment.model_validate({**environment.model_dump(exclude_unset=True), "python": python})
    except ValidationError:
        return None
    inference = package.manifest.inference.model_copy(update={"environment": changed})
    return dataclasses.replace(package, manifest=package.manifest.model_copy(update={"inference": inference}))


def _mode_problems(package: Package) -> list[Problem]:
    """What a mode asks of the manifest beyond its shape."""
    if package.mode.renders_manifests and not re.match(DNS_1035_LABEL, package.name):
        # the Service takes the package's name, and the API server refuses one that starts with a digit
        message = f"{package.name!r} starts with a digit: a Kubernetes Service's name must start with a letter"
        return [package.problem(("name",), message)]
    return []


# -- filesystem checks ----------------------------------------------------------------


def _path_problem(package: Package, loc: Loc, path: Path, real_paths: RealPaths, *, want: str) -> Problem | None:
    """Check one manifest path: inside the repository (also after symlinks), of the right kind."""
    root = package.root
    if not inside(path, root):
        return package.problem(loc, f"{display_path(path)} is outside the repository ({display_path(root)})")
    real = real_paths(path)
    try:
        status: os.stat_result | None = os.stat(real)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        status = None
    if status is None and not os.path.lexists(path):
        submodule = _submodule_holding(package.root, path)
        if submodule:  # a clone without --recurse-submodules (the sync agent's, always) lacks it
            return package.problem(
                loc,
                f"{display_path(path)} does not exist: it is inside the git submodule {submodule}, which is not "
                "checked out (`git submodule update --init`; `reconciler sync` never fetches submodules: commit "
                "the file itself)",
            )
        return package.problem(loc, f"{display_path(path)} does not exist")
    if not inside(real, real_paths(root)):
        return package.problem(loc, f"{display_path(path)} is a symlink to {real}, outside the repository")
    if in_git_metadata(path) or in_git_metadata(real):
        return package.problem(
            loc, f"{display_path(path)} is {GIT_METADATA} (the repository's metadata), never content"
        )
    is_file = status is not None and stat.S_ISREG(status.st_mode)
    is_dir = status is not None and stat.S_ISDIR(status.st_mode)
    if want == "file" and not is_file:
        return package.problem(loc, f"{display_path(path)} is not a file")
    if want == "folder" and not is_dir:
        return package.problem(loc, f"{display_path(path)} is not a folder")
    if want == "any" and not (is_file or is_dir):
        return package.problem(loc, f"{display_path(path)} is neither a file nor a folder (a named pipe, a device?)")
    if not os.access(real, os.R_OK | (os.X_OK if is_dir else 0)):
        return package.problem(loc, f"{display_path(path)} is not readable")
    return None


def _submodule_holding(root: Path, path: Path) -> str | None:
    """The submodule (by its path in .gitmodules) that `path` is inside, if any."""
    gitmodules = root / ".gitmodules"
    try:
        if not stat.S_ISREG(os.stat(gitmodules).st_mode):
            return None
        with open(gitmodules, "rb") as handle:
            text = handle.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    for submodule in re.findall(r"^\s*path\s*=\s*(.+?)\s*$", text, re.M):
        if inside(path, os.path.normpath(root / submodule)):
            return submodule
    return None


def _filesystem_problems(package: Package, real_paths: RealPaths) -> list[Problem]:
    problems: list[Problem] = []
    for index, path in enumerate(package.model_paths):
        problem = _path_problem(package, ("models", index, "path"), path, real_paths, want="any")
        if problem is None and os.path.isfile(real_paths(path)) and not _readable_file(path):
            problem = package.problem(("models", index, "path"), f"{display_path(path)} cannot be read")
        if problem:
            problems.append(problem)
    source_loc = ("inference", "source_directory")
    source_problem = _path_problem(package, source_loc, package.source_directory, real_paths, want="folder")
    if source_problem:
        problems.append(source_problem)
    elif not _no_code_models(package):  # a no-code MLflow package's app is reconciler's scoring script
        entry_loc = ("inference", "entry_script")
        entry = package.entry_script
        problem = _path_problem(package, entry_loc, entry, real_paths, want="file")
        if problem is None and not inside(entry, package.source_directory):
            problem = package.problem(entry_loc, "the entry script must be inside source_directory")
        at_field = lambda why: package.problem(entry_loc, why)  # noqa: E731
        problems.extend([problem] if problem else entry_script_problems(entry, at_field))
    for path, loc in (
        (package.requirements_file, ("inference", "environment", "requirements")),
        (package.conda_file, ("inference", "environment", "conda_file")),
    ):
        problem = _path_problem(package, loc, path, real_paths, want="file") if path else None
        if problem:
            problems.append(problem)
    problems.extend(_data_collection_problems(package))
    for output, output_loc in package.output_directories:
        what = "the Kubernetes folder" if output_loc[-2] == "kubernetes" else "the build folder"
        problems.extend(_output_problems(package, output, output_loc, what, real_paths))
    folders = [folder for folder, _ in package.output_directories]
    if len(folders) == 2 and (inside(folders[0], folders[1]) or inside(folders[1], folders[0])):
        problems.append(
            package.problem(("output", "kubernetes", "directory"), "the Kubernetes folder and the build folder overlap")
        )
    return problems


def _data_collection_problems(package: Package) -> list[Problem]:
    """A committed manifest must not choose what on the host gets mounted writable: the folder
    stays inside the package's own, and holds none of its inputs."""
    folder, loc = package.data_collection_directory, ("inference", "data_collection", "directory")
    if folder is None:
        return []
    real_inside = inside(Path(os.path.realpath(folder)), Path(os.path.realpath(package.directory)))
    if not inside(folder, package.directory) or folder == package.directory or not real_inside:
        where = "" if real_inside else " (through a symlink)"
        return [
            package.problem(
                loc, f"{display_path(folder)} is not a folder inside {display_path(package.directory)}{where}"
            )
        ]
    inputs = [package.source_directory, package.manifest_path, *package.model_paths, package.output_directory]
    if any(inside(path, folder) for path in inputs):
        return [package.problem(loc, f"{display_path(folder)} would hold the package's inputs or outputs")]
    return []


def _output_problems(
    package: Package, output: Path, output_loc: Loc, what: str, real_paths: RealPaths
) -> list[Problem]:
    """A folder reconciler writes must be inside the repository, a real folder, and hold no input."""
    if not inside(output, package.root):
        return [package.problem(output_loc, f"{display_path(output)} is outside the repository")]
    if in_git_metadata(output) or in_git_metadata(real_paths(output)):
        return [
            package.problem(
                output_loc, f"{display_path(output)} is inside {GIT_METADATA}: reconciler writes no files there"
            )
        ]
    problems = []
    for path in [package.directory, package.source_directory, *package.model_paths]:
        if inside(path, output):
            problems.append(
                package.problem(output_loc, f"{what} would contain the package's own input {display_path(path)}")
            )
            break
    if os.path.islink(output) or not inside(real_paths(output), real_paths(package.root)):
        problems.append(package.problem(output_loc, f"{display_path(output)} is a symlink; use a real folder"))
    return problems


def _readable_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False
