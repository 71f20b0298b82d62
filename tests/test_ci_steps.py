"""The documented CI steps run as written: the example workflow's shell steps, on a real repo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml

from .conftest import EXAMPLES, ROOT, run_cli

WORKFLOW = ROOT / "docs" / "ci" / "reconcile.yml"


def workflow_steps(job: str) -> list[str]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]
    return [s["run"] for s in steps if "run" in s and not s["run"].startswith("pip install")]


def run_steps(steps: list[str], cwd) -> list[int]:
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return [
        subprocess.run(["bash", "-e", "-c", step], cwd=cwd, env=env, capture_output=True).returncode for step in steps
    ]


def test_pull_request_and_main_branch_jobs(repo):
    shutil.copytree(
        EXAMPLES / "sklearn-regression", repo / "sklearn-regression", ignore=shutil.ignore_patterns("build")
    )
    assert run_cli("apply", "--frozen", str(repo), cwd=repo).returncode == 0  # folders committed up to date
    pull_request = workflow_steps("plan")
    assert len(pull_request) == 3
    assert run_steps(pull_request, repo) == [0, 0, 0]
    with open(repo / "sklearn-regression" / "score.py", "a") as handle:
        handle.write("# changed in the pull request\n")
    # changes pending are fine for plan; the committed Dockerfile folder is now stale
    assert run_steps(pull_request, repo) == [0, 0, 2]
    assert run_steps(workflow_steps("apply"), repo) == [0]
    assert run_steps(pull_request, repo) == [0, 0, 0]


def test_pre_commit_hook_entry_runs_validate(repo):
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"] == "reconciler validate" and hook["pass_filenames"] is False
    shutil.copytree(EXAMPLES / "multi-model", repo / "multi-model", ignore=shutil.ignore_patterns("build"))
    assert run_cli(*hook["entry"].split()[1:], cwd=repo).returncode == 0
    (repo / "multi-model" / "score.py").write_text("def run(data):\n    return data\n")
    result = run_cli(*hook["entry"].split()[1:], cwd=repo)
    assert result.returncode == 1 and "defines no init()" in result.stderr
