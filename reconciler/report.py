"""What `plan`, `apply` and `status` print: text for people, JSON for programs.

The JSON documents are a stable interface (docs/json-output.md): fields are only
ever added, and `format` changes if one ever has to change meaning.
"""

from __future__ import annotations

import json

from .engine import Outcome, Reconciliation
from .plan import Action
from .problems import display_path

JSON_FORMAT = 1


def _header(outcome: Outcome) -> str:
    package = outcome.package
    mode = package.manifest.output.mode
    if outcome.desired is None:
        return f"{package.name} ({mode})"
    return f"{package.name} ({mode}, hash {outcome.desired.short_hash})"


def _action_line(action: Action) -> str:
    return f"  {action.kind} {action.target}  <- {action.cause}"


def _locked_note(outcome: Outcome, prefix: str) -> list[str]:
    """A line saying the lock was resolved during this run, and why."""
    if outcome.desired is None or outcome.desired.locked is None:
        return []
    wheels = len(outcome.desired.lock.wheels)
    return [f"{prefix}locked package.lock ({wheels} wheels)  <- {outcome.desired.locked}"]


def _problem_lines(reconciliation: Reconciliation) -> list[str]:
    problems = list(reconciliation.problems)
    for outcome in reconciliation.outcomes:
        problems.extend(outcome.problems)
    return [f"error: {problem}" for problem in problems]


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def plan_text(reconciliation: Reconciliation) -> str:
    lines: list[str] = []
    actions = in_sync = 0
    for outcome in reconciliation.outcomes:
        plan = outcome.plan
        if plan is None or outcome.problems:
            lines.append(f"{_header(outcome)}: not planned (errors below)")
        elif plan.actions:
            lines.append(f"{_header(outcome)}: {_count(len(plan.actions), 'action')}")
            lines += [_action_line(action) for action in plan.actions]
            actions += len(plan.actions)
        else:
            lines.append(f"{_header(outcome)}: in sync")
            in_sync += 1
        lines += _locked_note(outcome, "  ")
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    if reconciliation.manifests_found == 0:
        lines.append("no package.yaml found")
    changed = sum(1 for o in reconciliation.outcomes if o.plan and o.plan.actions and not o.problems)
    lines += ["", f"Plan: {_count(actions, 'action')} in {_count(changed, 'package')}, "
                  f"{in_sync} in sync, {_count(len(problems), 'error')}."]
    return "\n".join(lines) + "\n"


def apply_text(reconciliation: Reconciliation) -> str:
    lines: list[str] = []
    done = failed = in_sync = 0
    for outcome in reconciliation.outcomes:
        if outcome.problems:
            lines.append(f"{_header(outcome)}: not applied (errors below)")
            continue
        lines += _locked_note(outcome, f"{outcome.package.name}: ")
        if not outcome.results:
            lines.append(f"{_header(outcome)}: in sync")
            in_sync += 1
        for result in outcome.results:
            head = f"{outcome.package.name}: {result.kind} {result.target}"
            if result.status == "done":
                lines.append(f"{head}  done in {result.seconds:.2f} s  <- {result.cause}")
                done += 1
            elif result.status == "failed":
                lines.append(f"{head}  FAILED after {result.seconds:.2f} s: {result.detail}")
                failed += 1
            else:
                lines.append(f"{head}  skipped: {result.detail}")
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    if reconciliation.manifests_found == 0:
        lines.append("no package.yaml found")
    lines += ["", f"Apply: {done} done, {failed} failed, {in_sync} in sync, {_count(len(problems), 'error')}."]
    return "\n".join(lines) + "\n"


def status_text(reconciliation: Reconciliation) -> str:
    rows = [("PACKAGE", "MODE", "HASH", "STATE", "OUTPUT")]
    for outcome in reconciliation.outcomes:
        package = outcome.package
        short = outcome.desired.short_hash if outcome.desired else "-"
        if outcome.problems:
            state = "error"
        elif outcome.plan and outcome.plan.actions:
            state = "out of date: " + outcome.plan.actions[0].cause
        else:
            state = "in sync"
        rows.append((package.name, package.manifest.output.mode, short, state, display_path(package.output_directory)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    lines = [line.rstrip() for line in lines]
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    return "\n".join(lines) + "\n"


# -- JSON -------------------------------------------------------------------------


def _outcome_json(outcome: Outcome) -> dict:
    package = outcome.package
    desired = outcome.desired
    plan = outcome.plan
    if outcome.problems:
        status = "error"
    elif plan is not None and plan.actions:
        status = "changes"
    else:
        status = "in_sync"
    return {
        "name": package.name,
        "manifest": display_path(package.manifest_path),
        "mode": package.manifest.output.mode,
        "output_directory": display_path(package.output_directory),
        "image_hash": desired.image_hash if desired else None,
        "container_hash": desired.container_hash if desired else None,
        "status": status,
        "locked": desired.locked if desired else None,
        "actions": [
            {"kind": a.kind, "target": a.target, "cause": a.cause} for a in (plan.actions if plan else [])
        ],
        "results": [
            {"kind": r.kind, "target": r.target, "cause": r.cause, "status": r.status,
             "seconds": round(r.seconds, 3), "detail": r.detail}
            for r in outcome.results
        ],
        "problems": [p.to_json() for p in outcome.problems],
    }


def to_json(reconciliation: Reconciliation, command: str) -> str:
    packages = [_outcome_json(o) for o in reconciliation.outcomes]
    document = {
        "format": JSON_FORMAT,
        "command": command,
        "packages": packages,
        "problems": [p.to_json() for p in reconciliation.problems],
        "summary": {
            "manifests": reconciliation.manifests_found,
            "in_sync": sum(1 for p in packages if p["status"] == "in_sync"),
            "changes": sum(1 for p in packages if p["status"] == "changes"),
            "errors": len(reconciliation.problems) + sum(1 for p in packages if p["status"] == "error"),
            "actions": sum(len(p["actions"]) for p in packages),
            "failed": sum(1 for p in packages for r in p["results"] if r["status"] == "failed"),
        },
    }
    return json.dumps(document, indent=2) + "\n"
