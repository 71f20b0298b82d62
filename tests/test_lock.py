"""Locking with the real pip and the host's configuration, for the image's target."""

from __future__ import annotations

import json
import os
import shutil

from reconciler.desired.wheels import sha256_of

from .conftest import EXAMPLES, run_cli


def copy_example(name, repo):
    target = repo / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("build"))
    return target


def test_lock_pins_wheels_with_sha256_for_the_target(repo, cache_root):
    package = copy_example("sklearn-regression", repo)
    os.remove(package / "package.lock")
    result = run_cli("lock", str(package), cwd=repo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sklearn-regression: locked ")
    lock = json.loads((package / "package.lock").read_text())
    assert lock["python"] == "3.11" and lock["platform"] == "linux/amd64"
    by_name = {p["name"]: p for p in lock["packages"]}
    assert by_name["scikit-learn"]["version"] == "1.5.2"
    assert {"numpy", "scipy", "joblib", "threadpoolctl", "uvicorn", "httptools", "uvloop"} <= set(by_name)
    for entry in lock["packages"]:
        assert entry["filename"].endswith(".whl")
        assert "cp311" in entry["filename"] or "py3-none-any" in entry["filename"]
        cached = cache_root / "wheels" / "sha256" / entry["sha256"][:2] / entry["sha256"] / entry["filename"]
        assert sha256_of(cached) == entry["sha256"]
        assert oct(cached.stat().st_mode & 0o777) == "0o444"


def test_committed_example_locks_are_current(tmp_path):
    for name in ("sklearn-regression", "multi-model"):
        result = run_cli("plan", "--frozen", str(EXAMPLES / name), env={"RECONCILER_CACHE_DIR": str(tmp_path)})
        assert "package.lock" not in result.stdout, result.stdout
        assert result.returncode in (0, 2), result.stdout


def test_plan_relocks_a_stale_lock_but_not_for_a_comment(package_dir, repo):
    requirements = package_dir / "requirements.txt"
    requirements.write_text("# only a comment\n")
    manifest = package_dir / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "requirements: requirements.txt"))
    result = run_cli("plan", str(repo), cwd=repo)
    assert "locked" not in result.stdout, "a comment-only requirements file is the same input as pip: []"
    requirements.write_text("# pinned\nsix==1.16.0\n")
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 2
    assert "  locked package.lock (" in result.stdout and "<- requirements changed" in result.stdout
    names = {p["name"]: p["version"] for p in json.loads((package_dir / "package.lock").read_text())["packages"]}
    assert names["six"] == "1.16.0"
    assert "locked" not in run_cli("plan", str(repo), cwd=repo).stdout


def test_fresh_cache_fetches_the_committed_lock_wheels(package_dir, repo, tmp_path):
    empty_cache = tmp_path / "fresh-cache"
    result = run_cli("apply", "--frozen", str(repo), cwd=repo, env={"RECONCILER_CACHE_DIR": str(empty_cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    lock = json.loads((package_dir / "package.lock").read_text())
    wheels = package_dir / "build" / "demo" / "wheels"
    assert sorted(p.name for p in wheels.iterdir()) == sorted(p["filename"] for p in lock["packages"])
    for entry in lock["packages"]:
        assert sha256_of(wheels / entry["filename"]) == entry["sha256"]


def test_damaged_lock_is_an_error_until_relocked(package_dir, repo):
    (package_dir / "package.lock").write_text("{not json")
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 1
    assert "demo/package.lock: cannot read the lock" in result.stdout and "run `reconciler lock`" in result.stdout
    assert run_cli("lock", str(repo), cwd=repo).returncode == 0
    assert run_cli("plan", str(repo), cwd=repo).returncode == 2


def test_tampered_lock_entry_is_refused(package_dir, repo):
    lock = json.loads((package_dir / "package.lock").read_text())
    lock["packages"][0]["filename"] = "../../evil.whl"
    (package_dir / "package.lock").write_text(json.dumps(lock))
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 1 and "damaged lock" in result.stdout and "is not a wheel file name" in result.stdout


def test_arm64_target_gets_aarch64_wheels(package_dir, repo):
    manifest = package_dir / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "pip: []\n    platform: linux/arm64"))
    result = run_cli("plan", str(repo), cwd=repo)
    assert "<- platform changed (linux/amd64 -> linux/arm64)" in result.stdout
    lock = json.loads((package_dir / "package.lock").read_text())
    assert lock["platform"] == "linux/arm64"
    native = [p["filename"] for p in lock["packages"] if "none-any" not in p["filename"]]
    assert native and all("aarch64" in name for name in native)


def test_unresolvable_requirement_shows_pip_error(package_dir, repo):
    manifest = package_dir / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "pip: [six==0.0.0.404]"))
    result = run_cli("plan", str(repo), cwd=repo)
    assert result.returncode == 1
    assert "lock demo: pip failed:" in result.stdout and "six==0.0.0.404" in result.stdout


def test_no_op_plan_and_apply_make_no_network_call(package_dir, repo):
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    unreachable = "http://127.0.0.1:9"
    offline = {
        "PIP_INDEX_URL": unreachable + "/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "HTTP_PROXY": unreachable,
        "HTTPS_PROXY": unreachable,
    }
    assert run_cli("plan", str(repo), cwd=repo, env=offline).returncode == 0
    with open(package_dir / "score.py", "a") as handle:
        handle.write("# code edit: no dependency changed\n")
    result = run_cli("apply", str(repo), cwd=repo, env=offline)
    assert result.returncode == 0, result.stdout
    # and a real requirement change does need the index: the error says so
    manifest = package_dir / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "pip: [six]"))
    result = run_cli("plan", str(repo), cwd=repo, env=offline)
    assert result.returncode == 1 and "lock demo: pip failed" in result.stdout
