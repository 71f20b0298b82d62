"""The layers of docs/architecture.md hold: import-linter checks the contracts in pyproject.toml."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter over the `reconciler` package found in `package_parent`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=package_parent,
        env={**os.environ, "PYTHONPATH": str(package_parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layer_imports_only_the_layers_below_it():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "reconciler", tmp_path / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    planner = tmp_path / "reconciler" / "plan" / "package.py"
    planner.write_text(planner.read_text() + "\nfrom reconciler import execute  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reconciler.plan.package -> reconciler.execute" in result.stdout


def test_only_the_engine_imports_the_docker_sdk(tmp_path):
    shutil.copytree(ROOT / "reconciler", tmp_path / "reconciler", ignore=shutil.ignore_patterns("__pycache__"))
    executor = tmp_path / "reconciler" / "execute" / "executor.py"
    executor.write_text(executor.read_text() + "\nimport docker  # noqa: E402,F401\n")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reconciler.execute.executor -> docker" in result.stdout


MAX_MODULE_LINES = 450


def test_every_module_is_at_most_450_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "reconciler").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


# `dir/file.py` or `dir/` in backticks, and `reconciler.x.y` dotted names
PATH_REFERENCE = re.compile(r"`((?:[a-z][a-z_]*/)+(?:[a-z_]+\.py)?)`")
DOTTED_REFERENCE = re.compile(r"`(reconciler(?:\.[a-z_]+)+)`")


def _documents() -> list[tuple[Path, str]]:
    texts = [(path, path.read_text()) for path in (ROOT / "reconciler").rglob("*.py")]
    return texts + [(path, path.read_text()) for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]]


def test_files_and_modules_named_in_docstrings_and_docs_exist():
    """A docstring or page that points at a file or module that does not exist misleads the
    next person: every backticked path resolves below the repository or the package, and every
    backticked `reconciler.x` name to a module or one of its attributes (or a label)."""
    from reconciler.core import labels

    label_names = {value for name, value in vars(labels).items() if name.isupper()}
    stale = []
    for path, text in _documents():
        for reference in PATH_REFERENCE.findall(text):
            if not any((base / reference).exists() for base in (ROOT, ROOT / "reconciler", path.parent)):
                stale.append(f"{path.relative_to(ROOT)}: {reference}")
        for reference in DOTTED_REFERENCE.findall(text):
            if reference not in label_names and not _resolves(reference):
                stale.append(f"{path.relative_to(ROOT)}: {reference}")
    assert stale == []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False
