"""Hostile input: nothing a repository holds makes reconciler run its code on the host, read
files outside it, print what it should not, or hang. Each case is listed with what it now
yields in docs/reliability.md."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap

import pytest

from .conftest import run_cli, write_package

SECRET = "s3cr3t-value-that-must-never-print"

MANIFEST = """\
    name: demo
    models: [{name: demo_model, version: 1, path: model/model.txt}]
    inference:
      environment: {requirements: requirements.txt}
    """


def package_with_requirements(repo, text: str):
    package = repo / "demo"
    write_package(package, MANIFEST)
    (package / "requirements.txt").write_text(textwrap.dedent(text))
    return package


@pytest.mark.parametrize(
    "line, option",
    [
        ("--index-url https://evil.example.com/simple", "--index-url"),
        ("--extra-index-url=https://user:token@evil.example.com/simple", "--extra-index-url"),
        ("--trusted-host evil.example.com", "--trusted-host"),
        ("-f /tmp/wheels", "-f"),
        ("--pre", "--pre"),
        ("-e git+https://example.com/repo.git#egg=thing", "-e"),
        ("--editable=./local", "--editable"),
    ],
)
def test_pip_options_in_a_requirements_file_are_errors_naming_the_file_and_line(repo, line, option):
    package = package_with_requirements(repo, f"numpy==2.1.0\n{line}\n")
    for command in ("validate", "plan"):
        result = run_cli(command, str(package), cwd=repo)
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert f"demo/requirements.txt:2: requirements: pip option {option} is not allowed" in output, output
        assert "token" not in output and "evil.example.com" not in output, "a line is never quoted"
    assert not (package / "package.lock").exists()


def test_a_direct_reference_never_runs_its_setup_py(repo, tmp_path):
    """`name @ git+file://...` made pip clone it and run its setup.py on the host."""
    source = tmp_path / "evil"
    source.mkdir()
    marker = tmp_path / "setup-py-ran"
    (source / "setup.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='evil')\n"
    )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=source, check=True, env=env)
    package = package_with_requirements(repo, f"evil @ git+file://{source}\n")
    result = run_cli("plan", str(package), cwd=repo)
    assert result.returncode == 1
    assert (
        "demo/requirements.txt:1: requirements: evil is a direct reference (name @ URL)"
        in result.stderr + result.stdout
    )
    assert not marker.exists()
    inline = repo / "inline"
    write_package(inline, MANIFEST.replace("{requirements: requirements.txt}", f"{{pip: ['evil @ file://{source}']}}"))
    result = run_cli("validate", str(inline), cwd=repo)
    assert result.returncode == 1 and "inference.environment.pip[0]: evil is a direct reference" in result.stderr


def test_includes_stay_inside_the_repository_and_never_print_what_they_point_at(repo):
    package = package_with_requirements(repo, "-r /proc/self/environ\n-c ../../../../../../etc/passwd\n")
    result = run_cli("plan", str(package), cwd=repo, env={"RECONCILER_TEST_SECRET": SECRET})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "demo/requirements.txt:1: requirements: /proc/self/environ is outside the repository" in output
    assert re.search(r"demo/requirements.txt:2: requirements: /etc/passwd is outside the repository", output)
    assert SECRET not in output and "root:x:0:0" not in output


def test_includes_inside_the_repository_are_followed(repo):
    package = package_with_requirements(repo, "-r ../shared/common.txt\n")
    (repo / "shared").mkdir()
    (repo / "shared" / "common.txt").write_text("# only the runtime's own\n")
    result = run_cli("validate", str(package), cwd=repo)
    assert result.returncode == 0, result.stderr


def test_a_fifo_as_a_requirements_file_is_an_error_not_a_hang(repo):
    package = package_with_requirements(repo, "")
    os.unlink(package / "requirements.txt")
    os.mkfifo(package / "requirements.txt")
    result = run_cli("validate", str(package), cwd=repo, timeout=30)
    assert result.returncode == 1 and "is not a file" in result.stderr, result.stderr


def test_hash_options_are_kept_and_other_trailing_options_refused(repo):
    package = package_with_requirements(
        repo, "numpy==2.1.0 --hash=sha256:" + "a" * 64 + "\nscipy==1.14.1 --no-binary :all:\n"
    )
    result = run_cli("validate", str(package), cwd=repo)
    assert result.returncode == 1
    assert "demo/requirements.txt:2: requirements: only --hash options may follow a requirement" in result.stderr
    assert "requirements.txt:1:" not in result.stderr
