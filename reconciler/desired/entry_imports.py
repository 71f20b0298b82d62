"""What the entry script imports, found statically: the build's import check is asked to import
it (runtime/import_check.py), and `reconciler serve` to find it, before a server starts.

Only unconditional module-level imports count (an import inside `try:` or a function may be
optional), less the standard library and the package's own modules. The list is written into
the Dockerfile, so the check runs again when the imports change, not on every code edit.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from reconciler.desired.dockerfile import ImportCheck
from reconciler.spec.package import Package


def script_imports(script: Path) -> set[str]:
    """The modules a script imports at module level, unconditionally, by their full names."""
    tree = ast.parse(script.read_bytes(), filename=str(script))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _local_modules(package: Package) -> set[str]:
    """Names the package's own files provide, beside the entry script or in the source folder."""
    return {p.stem for p in package.entry_script.parent.iterdir()} | {
        p.name for p in package.source_directory.iterdir()
    }


def entry_imports(package: Package) -> tuple[str, ...]:
    """What serving the package imports from its environment: the entry script's third-party
    imports, or what a no-code MLflow model's loader needs."""
    if package.mlflow is not None:
        return package.mlflow.imports
    try:
        names = script_imports(package.entry_script)
    except (OSError, SyntaxError, ValueError):
        return ()  # the manifest's checks report it
    local = _local_modules(package)
    return tuple(
        sorted(n for n in names if n.split(".")[0] not in local and n.split(".")[0] not in sys.stdlib_module_names)
    )


def import_check(package: Package, *, dev: bool) -> ImportCheck:
    """What the build's import check is asked. With watch --dev the code is mounted, not built
    in: the entry script's imports stay out, or each new import would rebuild."""
    if package.mlflow is not None:
        entry = f"the MLflow model {package.manifest.models[package.mlflow.index].name}"
    else:
        entry = package.entry_script_relative
    declared = package.dependencies_file
    environment = (
        os.path.relpath(declared, package.directory)
        if declared is not None
        else "inference.environment.pip in package.yaml"
    )
    modules = () if dev and package.mlflow is None else entry_imports(package)
    return ImportCheck(entry, environment, modules)
