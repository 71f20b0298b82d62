"""The entry script's static checks: it parses, and defines init() and run() at module level
(directly, by import, by assignment, or inside if/try/with blocks), as Azure requires."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from reconciler.core.errors import Problem
from reconciler.core.paths import display_path


def entry_script_problems(script: Path, at_field: Callable[[str], Problem]) -> list[Problem]:
    """Check statically that the entry script defines init() and run(), as Azure requires
    (`at_field`: a problem at the manifest's inference.entry_script)."""
    try:
        source = script.read_bytes()
        tree = ast.parse(source, filename=str(script))
    except SyntaxError as error:
        return [Problem(str(script), f"syntax error: {error.msg}", error.lineno, error.offset)]
    except (OSError, ValueError) as error:
        return [at_field(f"cannot read {display_path(script)}: {error}")]
    defined = _module_level_names(tree.body)
    missing = [name for name in ("init", "run") if name not in defined]
    if not missing or "*" in defined:  # `from scoring import *` may define them: the runtime will tell
        return []
    functions = " and ".join(f"{name}()" for name in missing)
    return [at_field(f"{display_path(script)} defines no {functions}; an entry script needs init() and run(raw_data)")]


def _module_level_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for block in ("body", "orelse", "finalbody"):
                names |= _module_level_names(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                names |= _module_level_names(handler.body)
    return names
