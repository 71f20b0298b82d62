"""The build's import check: prove the locked environment imports before a container crashes.

Run by the Dockerfile in a stage of its own, once the virtual environment and the system
packages are in place (without the models and the code, so neither edit runs it again):

    python -m reconciler_runtime.import_check --entry score.py --environment env.yml \
        --passed /opt/reconciler/import-check-passed -- numpy sklearn.linear_model

It imports what the entry script imports (given, found statically by reconciler) and then every
top-level module of every installed distribution. What the entry script imports must import,
whatever the failure: the container would crash at start. A distribution's module fails the
build only on a binary incompatibility (an extension built for another NumPy, an undefined
symbol), a defect of the lock itself; any other failure there (an optional dependency, a
system library nothing uses) is a warning, because the entry script may never import it.

A failure is printed as one line starting with `reconciler: `, which the build's error shows:
the pair and the fix ("scikit-learn 1.2.2 was built for NumPy 1.x, numpy 2.3.1 is locked: add
numpy<2 to env.yml").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import azure_imports

PREFIX = "reconciler: "  # the line the build's error shows (engine/docker.py picks it out)
NOT_MODULES = frozenset({"test", "tests", "testing", "doc", "docs", "example", "examples", "benchmarks"})
# what `python -m venv` brings, not the lock: importing setuptools after distutils fails, harmlessly
TOOLING = frozenset({"pip", "setuptools", "wheel"})
NUMPY_1_BUILD = (
    "numpy.dtype size changed",
    "compiled using NumPy 1.x cannot be run in",
    "_ARRAY_API not found",
    "numpy.core.multiarray failed to import",
    "numpy.core._multiarray_umath failed to import",
)
NUMPY_2_BUILD = ("compiled against ABI version 0x2", "compiled using NumPy 2")
MISSING_LIBRARY = re.compile(r"([\w.+-]+\.so[.\d]*): cannot open shared object file")
DEBIAN_PACKAGES = {  # the libraries wheels most often expect of the system, and who ships them on Debian
    "libgomp.so.1": "libgomp1",
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libsndfile.so.1": "libsndfile1",
}


@dataclass(frozen=True)
class Installed:
    """The distributions in the environment, and which one provides each top-level module."""

    site: Path
    modules: dict[str, importlib.metadata.Distribution]

    @classmethod
    def read(cls, site: Path) -> Installed:
        modules: dict[str, importlib.metadata.Distribution] = {}
        for distribution in sorted(importlib.metadata.distributions(path=[str(site)]), key=_name):
            if _name(distribution) in TOOLING:
                continue
            for module in top_level_modules(distribution):
                modules.setdefault(module, distribution)
        return cls(site, modules)

    def owner(self, module: str) -> importlib.metadata.Distribution | None:
        return self.modules.get(module.split(".")[0])

    def culprit(self, error: BaseException, module: str) -> str:
        """`name version` of the distribution whose code failed: the innermost frame in the
        environment (scipy's, when importing sklearn fails in scipy), else the module's own."""
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            try:
                relative = Path(frame.filename).resolve().relative_to(self.site.resolve())
            except ValueError:
                continue
            owner = self.owner(relative.parts[0].split(".")[0])
            if owner is not None and _name(owner) != "numpy":
                return _label(owner)
        owner = self.owner(module)
        return _label(owner) if owner else module


def _name(distribution: importlib.metadata.Distribution) -> str:
    return (distribution.metadata["Name"] or "").lower().replace("_", "-")


def _label(distribution: importlib.metadata.Distribution) -> str:
    return f"{distribution.metadata['Name']} {distribution.version}"


def top_level_modules(distribution: importlib.metadata.Distribution) -> list[str]:
    """What `import NAME` the distribution provides: its top_level.txt, else its files."""
    listed = distribution.read_text("top_level.txt")
    names = listed.split() if listed else [_top_level(Path(file).parts) for file in distribution.files or ()]
    return sorted({name for name in names if name and name.isidentifier() and name not in NOT_MODULES})


def _top_level(parts: tuple[str, ...]) -> str:
    first = parts[0]
    if len(parts) > 1:
        return "" if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__") else first
    if first.endswith(".py"):
        return first[:-3]
    return first.split(".")[0] if ".so" in first or first.endswith(".pyd") else ""


def imported(module: str) -> BaseException | None:
    """Import `module`, quietly; the exception it raised, if any."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            importlib.import_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # SystemExit too: a module that exits at import fails the check
            return error
    return None


def binary_mismatch(error: BaseException) -> str | None:
    """ "numpy 1", "numpy 2" or "symbol" when the error is a binary incompatibility, else None."""
    text = f"{type(error).__name__}: {error}"
    if any(marker in text for marker in NUMPY_1_BUILD):
        return "numpy 1"
    if any(marker in text for marker in NUMPY_2_BUILD):
        return "numpy 2"
    return "symbol" if "undefined symbol" in text else None


def explain(error: BaseException, module: str, what: str, installed: Installed, environment: str) -> str:
    """One line: what failed, why, and the fix."""
    mismatch = binary_mismatch(error)
    numpy = installed.owner("numpy")
    numpy_version = numpy.version if numpy else "?"
    if mismatch == "numpy 1":
        return (
            f"{installed.culprit(error, module)} was built for NumPy 1.x, numpy {numpy_version} is locked: "
            f"add numpy<2 to {environment}"
        )
    if mismatch == "numpy 2":
        return (
            f"{installed.culprit(error, module)} was built for NumPy 2, numpy {numpy_version} is locked: "
            f"add numpy>=2 to {environment}"
        )
    if mismatch == "symbol":
        return (
            f"{installed.culprit(error, module)} does not match a library it links against ({_first_line(error)}): "
            f"pin versions built together in {environment}"
        )
    library = MISSING_LIBRARY.search(str(error))
    if library:
        name = library.group(1)
        package = DEBIAN_PACKAGES.get(name)
        return (
            f"{what}, which needs the system library {name}, which the image does not have: add "
            + (f"{package}" if package else "the Debian package that provides it")
            + " to inference.environment.system_packages"
        )
    if isinstance(error, ModuleNotFoundError) and error.name:
        missing = error.name.split(".")[0]
        if missing == module.split(".")[0]:
            return (
                f"{what}, which no locked distribution provides: add the distribution that provides it to {environment}"
            )
        return f"{what}, which needs {error.name}, which no locked distribution provides: add it to {environment}"
    return f"{what}, which fails to import: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def check(entry: str, entry_imports: list[str], installed: Installed, environment: str) -> tuple[list[str], list[str]]:
    """(failures, warnings), one line each."""
    failures: list[str] = []
    failed: set[str] = set()
    for module in entry_imports:
        error = imported(module)
        if error is not None:
            failures.append(explain(error, module, f"{entry} imports {module}", installed, environment))
            failed.add(module.split(".")[0])
    warnings: list[str] = []
    for module, distribution in sorted(installed.modules.items()):
        error = None if module in failed else imported(module)
        if error is None:
            continue
        line = explain(error, module, f"{_label(distribution)} provides {module}", installed, environment)
        (failures if binary_mismatch(error) else warnings).append(line)
    return list(dict.fromkeys(failures)), warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler_runtime.import_check",
        description="Import what the entry script imports and every top-level module of the installed "
        "distributions; fail on what would crash the container.",
    )
    parser.add_argument("--entry", default="the entry script", help="the entry script, as messages name it")
    parser.add_argument("--environment", default="the requirements", help="the file to fix, as messages name it")
    parser.add_argument("--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    parser.add_argument("--passed", type=Path, help="a file to write when the check passes (the image copies it)")
    parser.add_argument("modules", nargs="*", help="the modules the entry script imports")
    arguments = parser.parse_args(argv)
    azure_imports.install()  # the names the runtime answers when serving
    home = tempfile.mkdtemp(prefix="reconciler-import-check-")
    os.environ["HOME"] = os.environ["TMPDIR"] = tempfile.tempdir = home  # caches a module writes leave with it
    started = time.monotonic()
    try:
        installed = Installed.read(arguments.site)
        failures, warnings = check(arguments.entry, arguments.modules, installed, arguments.environment)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    for warning in warnings:
        print(f"import check: warning: {warning} (not needed by what the entry script imports)")
    distributions = len({id(d) for d in installed.modules.values()})
    print(
        f"import check: {len(arguments.modules)} entry-script imports and {len(installed.modules)} modules of "
        f"{distributions} distributions in {time.monotonic() - started:.1f} s"
    )
    for failure in failures:
        print(PREFIX + failure)
    if failures:
        return 1
    if arguments.passed:
        arguments.passed.write_text("the import check passed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
