"""What the commands print: text for people, JSON for programs.

The JSON documents are a stable interface (docs/json-output.md): fields are only
ever added, and `format` changes if one ever has to change meaning.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from reconciler.core.paths import display_path
from reconciler.desired.pins import Lock
from reconciler.desired.state import Desired, image_reference, image_settings
from reconciler.engine.endpoint import score_url
from reconciler.execute.canary import percent
from reconciler.pipeline import Outcome, Reconciliation
from reconciler.pipeline.history import PackageHistory
from reconciler.pipeline.outcome import CanaryInProgress
from reconciler.pipeline.rollback import RolledBack
from reconciler.plan import Action
from reconciler.plan.serving import rollback_summary, rollback_target

if TYPE_CHECKING:
    from reconciler.execute import ActionResult, Relocked

JSON_FORMAT = 1


def _header(outcome: Outcome) -> str:
    package = outcome.package
    mode = package.manifest.output.mode
    if outcome.desired is None:
        return f"{package.name} ({mode})"
    return f"{package.name} ({mode}, hash {outcome.desired.short_hash})"


def _action_line(action: Action) -> str:
    return f"  {action}"


def _locked_note(outcome: Outcome, prefix: str) -> list[str]:
    """A line saying the lock was resolved during this run, and why; and the plan's notes."""
    lines = [f"{prefix}note: {note}" for note in (outcome.plan.notes if outcome.plan else ())]
    if outcome.desired is None or outcome.desired.locked is None:
        return lines
    wheels = len(outcome.desired.lock.wheels)
    return [f"{prefix}locked package.lock ({wheels} wheels)  <- {outcome.desired.locked}"] + lines


def _problem_lines(reconciliation: Reconciliation) -> list[str]:
    problems = list(reconciliation.problems)
    for outcome in reconciliation.outcomes:
        problems.extend(outcome.problems)
    return [f"error: {problem}" for problem in problems]


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def _result_line(name: str, result: ActionResult) -> str:
    head = f"{name}: {result.kind} {result.target}"
    if result.status == "done":
        detail = f" ({result.detail})" if result.detail and result.kind not in ("write", "remove") else ""
        return f"{head}  done in {result.seconds:.2f} s{detail}  <- {result.cause}"
    if result.status == "failed":
        return f"{head}  FAILED after {result.seconds:.2f} s: {result.detail}"
    return f"{head}  skipped: {result.detail}"


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
    cleanup = reconciliation.cleanup
    if cleanup.actions:
        lines.append(f"prune: {_count(len(cleanup.actions), 'action')}")
        lines += [_action_line(action) for action in cleanup.actions]
        actions += len(cleanup.actions)
    lines += [f"note: {note}" for note in cleanup.notes]
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    if reconciliation.manifests_found == 0:
        lines.append("no package.yaml found")
    changed = sum(1 for o in reconciliation.outcomes if o.plan and o.plan.actions and not o.problems)
    lines += [
        "",
        f"Plan: {_count(actions, 'action')} in {_count(changed, 'package')}, "
        f"{in_sync} in sync, {_count(len(problems), 'error')}.",
    ]
    return "\n".join(lines) + "\n"


def apply_text(reconciliation: Reconciliation) -> str:
    lines: list[str] = []
    in_sync = 0
    results = list(reconciliation.cleanup_results)
    for outcome in reconciliation.outcomes:
        if outcome.problems:
            lines.append(f"{_header(outcome)}: not applied (errors below)")
            continue
        lines += _locked_note(outcome, f"{outcome.package.name}: ")
        if not outcome.results:
            lines.append(f"{_header(outcome)}: in sync")
            in_sync += 1
        lines += [_result_line(outcome.package.name, result) for result in outcome.results]
        results += outcome.results
    lines += [_result_line("prune", result) for result in reconciliation.cleanup_results]
    lines += [f"note: {note}" for note in reconciliation.cleanup.notes]
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    if reconciliation.manifests_found == 0:
        lines.append("no package.yaml found")
    done = sum(1 for r in results if r.status == "done")
    failed = sum(1 for r in results if r.status == "failed")
    lines += ["", f"Apply: {done} done, {failed} failed, {in_sync} in sync, {_count(len(problems), 'error')}."]
    return "\n".join(lines) + "\n"


# -- status -------------------------------------------------------------------------


def package_status(outcome: Outcome) -> dict:
    """State of one package's artifacts, as status shows it (text and JSON)."""
    package = outcome.package
    manifest = package.manifest
    status = {
        "name": package.name,
        "mode": manifest.output.mode,
        "hash": outcome.desired.image_hash if outcome.desired else None,
        "state": "error"
        if outcome.problems
        else ("out of date: " + outcome.plan.actions[0].cause if outcome.plan and outcome.plan.actions else "in sync"),
        "output_directory": display_path(package.output_directory),
        "kubernetes_directory": display_path(package.kubernetes_directory) if package.kubernetes_directory else None,
        "image": None,
        "container": None,
        "readiness": None,
        "url": None,
        "images_on_disk": None,
        "revision": None,
        "proxy": None,
        "updating": False,
        "canary": None,
    }
    revision = outcome.revision()
    if revision is not None:
        status["revision"] = revision.to_json()
        if status["state"] == "in sync":
            status["state"] = f"in sync at {revision.describe()}"
    if outcome.images_on_disk is not None:
        status["images_on_disk"] = {"count": outcome.images_on_disk.count, "bytes": outcome.images_on_disk.bytes}
    observed = outcome.observed
    if observed is None or not package.mode.builds or outcome.desired is None:
        return status
    image = next((i for i in observed.images if i.hash == outcome.desired.image_hash), None)
    status["image"] = image.tags[0] if image and image.tags else (image.id[7:19] if image else None)
    if not package.mode.serves:
        return status
    serving, front = outcome.serving_container(), outcome.front_container()
    if serving is not None:
        status["container"] = f"{serving.name}: {serving.status}"
        if serving.hold and serving.hold == outcome.desired.container_hash:  # a rollback holds it
            status["image"] = image_reference(package.manifest.image_repository, serving.image_hash)
            status["state"] = "rolled back to " + serving.image_hash[:12] + " (held until the inputs change)"
    if front is not None:
        status["readiness"] = outcome.readiness
        if front.host_port:
            status["url"] = score_url(front.host_ip, front.host_port)
    if manifest.output.container.proxy:
        status["proxy"] = f"{front.name}: {front.status}" if front is not None and front.role == "proxy" else None
        others = [c for c in observed.containers if c.role in ("backend", "canary") and c is not serving]
        status["updating"] = bool(others)
        if others:
            status["state"] += f" (update in progress: {', '.join(c.name for c in others)})"
    if outcome.canary is not None:
        status["canary"] = _canary_json(outcome.canary)
        status["state"] += f" ({_canary_text(outcome.canary)})"
    return status


def _canary_json(canary: CanaryInProgress) -> dict:
    counts = canary.counts
    return {
        "container": canary.container,
        "weight": canary.weight,
        "max_error_rate": canary.max_error_rate,
        "requests": counts.requests if counts else None,
        "errors": counts.errors if counts else None,
    }


def _canary_text(canary: CanaryInProgress) -> str:
    counts, bound = canary.counts, f"it fails above {percent(canary.max_error_rate)} errors"
    if counts is None:
        return f"canary {canary.container} gets {canary.weight}% of requests; the proxy's counts do not answer; {bound}"
    rate = f" ({percent(counts.errors / counts.requests)})" if counts.requests else ""
    return (
        f"canary {canary.container} gets {canary.weight}% of requests: "
        f"{counts.requests} so far, {counts.errors} errors{rate}; {bound}"
    )


def _on_disk(images: dict | None) -> str:
    if not images:
        return "-"
    count = images["count"]
    return f"{count} image{'' if count == 1 else 's'}, {images['bytes'] / 1e6:.0f} MB"


def status_text(reconciliation: Reconciliation) -> str:
    rows = [("PACKAGE", "MODE", "HASH", "STATE", "IMAGE", "DISK", "CONTAINER", "READY", "URL / OUTPUT")]
    for outcome in reconciliation.outcomes:
        s = package_status(outcome)
        rows.append(
            (
                s["name"],
                s["mode"],
                (s["hash"] or "-")[:12],
                s["state"],
                s["image"] or "-",
                _on_disk(s["images_on_disk"]),
                s["container"] or "-",
                s["readiness"] or "-",
                s["url"] or s["kubernetes_directory"] or s["output_directory"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        ("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]).rstrip() for row in rows
    ]
    problems = _problem_lines(reconciliation)
    if problems:
        lines += [""] + problems
    return "\n".join(lines) + "\n"


# -- JSON -------------------------------------------------------------------------


def _action_json(action: Action) -> dict:
    return {"kind": action.kind.verb, "target": action.target, "cause": action.cause}


def _result_json(result: ActionResult) -> dict:
    return {
        "kind": result.kind,
        "target": result.target,
        "cause": result.cause,
        "status": result.status,
        "seconds": round(result.seconds, 3),
        "detail": result.detail,
    }


def _outcome_json(outcome: Outcome, command: str) -> dict:
    package = outcome.package
    desired = outcome.desired
    plan = outcome.plan
    if outcome.problems:
        status = "error"
    elif plan is not None and plan.actions:
        status = "changes"
    else:
        status = "in_sync"
    document = {
        "name": package.name,
        "manifest": display_path(package.manifest_path),
        "mode": package.manifest.output.mode,
        "output_directory": display_path(package.output_directory),
        "kubernetes_directory": display_path(package.kubernetes_directory) if package.kubernetes_directory else None,
        "image_hash": desired.image_hash if desired else None,
        "container_hash": desired.container_hash if desired else None,
        "status": status,
        "locked": desired.locked if desired else None,
        "notes": list(plan.notes) if plan else [],
        "actions": [_action_json(a) for a in (plan.actions if plan else [])],
        "results": [_result_json(r) for r in outcome.results],
        "problems": [p.to_json() for p in outcome.problems],
    }
    if command == "status":
        live = package_status(outcome)
        keys = ("image", "container", "readiness", "url", "images_on_disk", "revision", "proxy", "updating", "canary")
        document.update({key: live[key] for key in keys})
    return document


def to_json(reconciliation: Reconciliation, command: str) -> str:
    packages = [_outcome_json(o, command) for o in reconciliation.outcomes]
    cleanup = reconciliation.cleanup
    document = {
        "format": JSON_FORMAT,
        "command": command,
        "packages": packages,
        "prune": {
            "actions": [_action_json(a) for a in cleanup.actions],
            "results": [_result_json(r) for r in reconciliation.cleanup_results],
            "notes": cleanup.notes,
        },
        "problems": [p.to_json() for p in reconciliation.problems],
        "summary": {
            "manifests": reconciliation.manifests_found,
            "in_sync": sum(1 for p in packages if p["status"] == "in_sync"),
            "changes": sum(1 for p in packages if p["status"] == "changes"),
            "errors": len(reconciliation.problems) + sum(1 for p in packages if p["status"] == "error"),
            "actions": sum(len(p["actions"]) for p in packages) + len(cleanup.actions),
            "failed": sum(1 for p in packages for r in p["results"] if r["status"] == "failed")
            + sum(1 for r in reconciliation.cleanup_results if r.status == "failed"),
        },
    }
    return json.dumps(document, indent=2) + "\n"


# -- hash and lock --------------------------------------------------------------------


def hash_text(desired: Desired) -> str:
    """Every input with its digest; settings also with their value, which says more."""
    values = image_settings(desired.package)
    lines = [
        desired.package.name,
        f"  image hash      {desired.image_hash}",
        f"  container hash  {desired.container_hash}  (image hash + {json.dumps(desired.container_settings)})",
        "  inputs:",
    ]
    width = max(len(name) for name in desired.inputs)
    for name, digest in desired.inputs.items():
        shown = f"  {json.dumps(values[name])}" if name in values else ""
        lines.append(f"    {name.ljust(width)}  {digest}{shown[:100]}")
    return "\n".join(lines) + "\n"


def hash_json(desired: Desired) -> dict:
    return {
        "name": desired.package.name,
        "image_hash": desired.image_hash,
        "container_hash": desired.container_hash,
        "inputs": desired.inputs,
    }


def lock_text(name: str, relocked: Relocked) -> str:
    new = relocked.new
    line = f"{name}: locked {len(new.wheels)} wheels in {relocked.seconds:.1f} s{lock_changes(relocked.old, new)}"
    old_pin = relocked.old.base.pin if relocked.old and relocked.old.base else None
    if new.base is not None and new.base.pin:
        moved = f", was {old_pin[:19]}" if old_pin and old_pin != new.base.pin else ""
        line += f"; base image {new.base.reference} pinned to {new.base.pin[:19]} ({new.base.by}{moved})"
    for note in new.notes:
        line += f"\nnote: {note}"
    if relocked.base_note:
        line += f"\nnote: {relocked.base_note}"
    return line


def lock_changes(old: Lock | None, new: Lock) -> str:
    """' (+numpy 2.1.0, scipy 1.13 -> 1.14)': what re-locking changed."""
    if old is None:
        return ""
    before = {w.name: w.version for w in old.wheels}
    after = {w.name: w.version for w in new.wheels}
    changes = [f"+{n} {after[n]}" for n in sorted(after.keys() - before.keys())]
    changes += [f"-{n} {before[n]}" for n in sorted(before.keys() - after.keys())]
    changes += [f"{n} {before[n]} -> {after[n]}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return " (" + ", ".join(changes) + ")" if changes else " (unchanged)"


# -- history ----------------------------------------------------------------------


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def history_text(found: list[PackageHistory]) -> str:
    """Per package, its retained images newest first; `*` marks the one serving now."""
    lines = []
    for entry in found:
        package = entry.outcome.package
        lines.append(f"{package.name} ({package.mode.value}): {len(entry.images)} image(s) kept")
        rows = [("", "HASH", "REVISION", "BUILT", "LAST DEPLOYED", "SIZE")]
        for retained in entry.images:
            image = retained.image
            last = "serving now" if retained.serving else (_when(image.last_used) if package.mode.serves else "-")
            rows.append(
                (
                    "*" if retained.serving else " ",
                    image.hash[:12],
                    image.revision.short if image.revision else "-",
                    _when(image.created),
                    last,
                    f"{retained.bytes / 1e6:.0f} MB",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n" if lines else "no package here builds an image\n"


def history_json(found: list[PackageHistory]) -> str:
    return json.dumps(
        [
            {
                "name": entry.outcome.package.name,
                "mode": entry.outcome.package.mode.value,
                "images": [
                    {
                        "hash": r.image.hash,
                        "tags": list(r.image.tags),
                        "revision": r.image.revision.to_json() if r.image.revision else None,
                        "built": int(r.image.created),
                        "last_used": int(r.image.last_used),
                        "bytes": r.bytes,
                        "serving": r.serving,
                    }
                    for r in entry.images
                ],
            }
            for entry in found
        ],
        indent=2,
    )


def rollback_text(done: RolledBack) -> str:
    """Each action's line, then what serves and the hold (or the failure)."""
    name = done.outcome.package.name
    lines = [_result_line(name, result) for result in done.results]
    image = done.target.image
    if done.failed:
        target = rollback_target(image.hash, image.revision)
        lines.append(f"{name}: rollback to {target} failed; what served before keeps serving")
    else:
        lines.append(f"{name}: {rollback_summary(image.hash, image.revision)}")
    return "\n".join(lines) + "\n"
