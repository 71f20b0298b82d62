"""The planner is pure: (desired, observed) -> actions with causes, checked as golden strings."""

from __future__ import annotations

from reconciler.observe import FolderState
from reconciler.plan import Intent, changed_inputs, plan_folder
from reconciler.report import _action_line

INPUTS = {
    "Dockerfile": "d1",
    "app/score.py": "s1",
    "models/m/1/model.pkl": "m1",
    "package.lock": "l1",
    "inference.environment.variables": "v1",
}
INTENT = Intent("demo", "dockerfile", "build/demo", "a" * 64, "b" * 64, INPUTS)


def render(folder: FolderState) -> str:
    plan = plan_folder(INTENT, folder)
    return "\n".join([_action_line(a) for a in plan.actions] + [f"error: {e}" for e in plan.errors])


def test_missing_folder_is_written():
    assert render(FolderState("missing")) == "  write build/demo  <- not written yet"


def test_in_sync_folder_needs_nothing():
    assert render(FolderState("ours", "a" * 64, dict(INPUTS))) == ""


def test_changed_inputs_are_named():
    old = {**INPUTS, "app/score.py": "s0", "package.lock": "l0"}
    assert render(FolderState("ours", "c" * 64, old)) == \
        "  write build/demo  <- inputs changed: score.py, package.lock"


def test_added_and_removed_inputs_are_marked():
    old = {k: v for k, v in INPUTS.items() if k != "app/score.py"}
    old["app/old_helper.py"] = "h"
    assert render(FolderState("ours", "c" * 64, old)) == \
        "  write build/demo  <- inputs changed: old_helper.py (gone), score.py (new)"


def test_many_changes_are_summarised():
    old = {k: v + "x" for k, v in INPUTS.items()}
    assert render(FolderState("ours", "c" * 64, old)) == (
        "  write build/demo  <- inputs changed: score.py, models/m/1/model.pkl, package.lock, "
        "inference.environment.variables, 1 more"
    )


def test_same_inputs_with_another_hash_means_a_new_hash_schema():
    assert changed_inputs(INPUTS, INPUTS) == "reconciler's hash schema changed"


def test_hand_edits_are_drift():
    folder = FolderState("ours", "a" * 64, dict(INPUTS), ("Dockerfile edited", "app/extra.py added"))
    assert render(folder) == "  write build/demo  <- drift: Dockerfile edited, app/extra.py added"


def test_input_change_wins_over_drift_as_the_cause():
    folder = FolderState("ours", "c" * 64, {**INPUTS, "app/score.py": "s0"}, ("Dockerfile edited",))
    assert render(folder) == "  write build/demo  <- inputs changed: score.py"


def test_folders_that_are_not_ours_are_errors_not_actions():
    for status in ("foreign", "damaged", "other"):
        assert render(FolderState(status, detail=f"build/demo is {status}")) == f"error: build/demo is {status}"
