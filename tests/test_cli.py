"""The real command line, in a subprocess, on real files."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from .conftest import run_cli, write_package

HASH = re.compile(r"hash [0-9a-f]{12}")
SECONDS = re.compile(r"\d+\.\d\d s")


def normalised(text: str) -> str:
    return SECONDS.sub("N.NN s", HASH.sub("hash HASH", text))


def test_plan_apply_plan_cycle_with_exit_codes(package_dir, repo):
    first = run_cli("plan", str(repo), cwd=repo)
    assert first.returncode == 2, first.stderr
    assert normalised(first.stdout) == (
        "demo (dockerfile, hash HASH): 1 action\n"
        "  write demo/build/demo  <- not written yet\n"
        "\n"
        "Plan: 1 action in 1 package, 0 in sync, 0 errors.\n"
    )
    applied = run_cli("apply", str(repo), cwd=repo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert normalised(applied.stdout) == (
        "demo: write demo/build/demo  done in N.NN s  <- not written yet\n"
        "\n"
        "Apply: 1 done, 0 failed, 0 in sync, 0 errors.\n"
    )
    again = run_cli("plan", str(repo), cwd=repo)
    assert again.returncode == 0
    assert normalised(again.stdout) == (
        "demo (dockerfile, hash HASH): in sync\n\nPlan: 0 actions in 0 packages, 1 in sync, 0 errors.\n"
    )


def test_code_edit_and_hand_edit_are_planned_with_causes(package_dir, repo):
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    with open(package_dir / "score.py", "a") as handle:
        handle.write("# tweak\n")
    plan = run_cli("plan", str(repo), cwd=repo)
    assert plan.returncode == 2 and "  write demo/build/demo  <- inputs changed: score.py\n" in plan.stdout
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    with open(package_dir / "build" / "demo" / "Dockerfile", "a") as handle:
        handle.write("RUN echo hand-edit\n")
    (package_dir / "build" / "demo" / "app" / "extra.py").write_text("")
    plan = run_cli("plan", str(repo), cwd=repo)
    assert "  write demo/build/demo  <- drift: Dockerfile edited, app/extra.py added\n" in plan.stdout
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert "hand-edit" not in (package_dir / "build" / "demo" / "Dockerfile").read_text()
    assert not (package_dir / "build" / "demo" / "app" / "extra.py").exists()


def test_folder_without_stamp_is_never_touched(package_dir, repo):
    foreign = package_dir / "build" / "demo"
    foreign.mkdir(parents=True)
    (foreign / "precious.txt").write_text("mine")
    result = run_cli("apply", str(repo), cwd=repo)
    assert result.returncode == 1
    assert "was not written by reconciler" in result.stdout
    assert (foreign / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.txt"]


def test_write_is_atomic_and_leaves_no_temporaries(package_dir, repo):
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    with open(package_dir / "score.py", "a") as handle:
        handle.write("# again\n")
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert sorted(p.name for p in (package_dir / "build").iterdir()) == ["demo"]


def test_one_bad_manifest_does_not_stop_the_others(package_dir, repo):
    write_package(repo / "broken", "name: broken\nmodels: [{name: m, version: one, path: model/model.txt}]\n")
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 1
    assert "demo (dockerfile, hash" in result.stdout and "  write demo/build/demo  <- not written yet" in result.stdout
    assert "error: broken/package.yaml:2:29: models[0].version: must be a valid integer, got 'one'" in result.stdout
    applied = run_cli("apply", str(repo), cwd=repo)
    assert applied.returncode == 1
    assert (package_dir / "build" / "demo" / "Dockerfile").exists()


def test_frozen_refuses_a_stale_lock(package_dir, repo):
    manifest = package_dir / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "pip: [six]"))
    result = run_cli("plan", "--frozen", str(repo), cwd=repo)
    assert result.returncode == 1
    assert (
        "error: demo/package.lock: requirements changed; run `reconciler lock` and commit package.lock (--frozen)"
        in result.stdout
    )


def test_check_reports_out_of_date_folders_without_writing(package_dir, repo):
    result = run_cli("apply", "--check", str(repo), cwd=repo)
    assert result.returncode == 2 and "not written yet" in result.stdout
    assert not (package_dir / "build").exists()
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert run_cli("apply", "--check", str(repo), cwd=repo).returncode == 0


def test_json_output_is_documented_shape(package_dir, repo):
    result = run_cli("plan", "--output", "json", str(repo), cwd=repo)
    document = json.loads(result.stdout)
    assert document["format"] == 1 and document["command"] == "plan"
    [package] = document["packages"]
    assert package["name"] == "demo" and package["status"] == "changes"
    assert package["actions"] == [{"kind": "write", "target": "demo/build/demo", "cause": "not written yet"}]
    assert re.fullmatch(r"[0-9a-f]{64}", package["image_hash"])
    assert document["summary"] == {"manifests": 1, "in_sync": 0, "changes": 1, "errors": 0, "actions": 1, "failed": 0}
    applied = json.loads(run_cli("apply", "-o", "json", str(repo), cwd=repo).stdout)
    [result] = applied["packages"][0]["results"]
    assert result["status"] == "done" and result["kind"] == "write" and result["seconds"] >= 0


def test_status_shows_each_package(package_dir, repo):
    result = run_cli("status", str(repo), cwd=repo)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "PACKAGE",
        "MODE",
        "HASH",
        "STATE",
        "IMAGE",
        "DISK",
        "CONTAINER",
        "READY",
        "URL",
        "/",
        "OUTPUT",
    ]
    assert lines[1].startswith("demo") and "out of date: not written yet" in lines[1]


def test_hash_prints_every_input(package_dir, repo):
    result = run_cli("hash", str(package_dir), cwd=repo)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  image hash      [0-9a-f]{64}$", result.stdout, re.M)
    for name in (
        "app/score.py",
        "models/demo_model/1/model.txt",
        "package.lock",
        "runtime",
        "Dockerfile",
        "inference.environment.python",
    ):
        assert re.search(rf"^    {re.escape(name)} +\S+", result.stdout, re.M), name


def test_validate_is_offline_and_reports_every_problem(repo):
    write_package(repo / "good", name="good")
    write_package(repo / "bad", "name: Bad\nmodels: [{name: m, version: 1, path: nope.pkl}]\n")
    result = run_cli("validate", str(repo), cwd=repo)
    assert result.returncode == 1
    assert "bad/package.yaml:1:7: name: 'Bad' is not valid" in result.stderr
    shutil.rmtree(repo / "bad")
    assert run_cli("validate", str(repo), cwd=repo).returncode == 0


def test_no_manifest_found_is_an_error(repo):
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 1 and "no package.yaml found" in result.stdout


@pytest.mark.parametrize(
    "command, phrase",
    [
        ("validate", "pre-commit hook"),
        ("plan", "Exit 0: in sync; 2: changes pending; 1: errors"),
        ("apply", "are never touched"),
        ("status", "Never changes"),
        ("hash", "why did it rebuild"),
        ("lock", "the host's pip configuration"),
        ("schema", "schemas/package.schema.json"),
    ],
)
def test_every_command_explains_itself(command, phrase):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: reconciler {command}")
    assert phrase in " ".join(result.stdout.split())


def test_module_entry_point_and_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("reconciler ")
