"""The build's import check: an environment that cannot import fails the build with one line
naming the pair and the fix, not the container in a crash loop.

The checker (runtime/import_check.py) runs here on the host against environments made of real
files (distributions with their metadata, modules that fail as broken wheels do), and in real
builds: a package.lock an older reconciler wrote (NumPy 2 beside scikit-learn 1.2.2, whose
wheels were built for NumPy 1.x), and an entry script that imports what nothing locked provides.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler.desired.entry_imports import entry_imports, import_check
from reconciler.spec.package import load_package

from .conftest import engine_package, remove_package_objects, run_cli, serving_container, write_package
from .test_conda import OLD_PIN_CONDA, conda_package

DTYPE_ERROR = "numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88"


def distribution(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    """An installed distribution: its modules and the .dist-info pip would leave."""
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(textwrap.dedent(text))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{relative},,\n" for relative in files))


def check(site: Path, *modules: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-S",
            "-m",
            "reconciler.runtime.import_check",
            "--entry",
            "score.py",
            "--environment",
            "env.yml",
        ]
        + ["--site", str(site), "--", *modules],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{site}:{Path(__file__).parents[1]}", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def site(tmp_path) -> Path:
    """NumPy 2 (as far as its metadata and version go), an extension built for NumPy 1.x, a
    package that imports it, and an optional module that needs what is not installed."""
    site = tmp_path / "site-packages"
    distribution(site, "numpy", "2.3.1", {"numpy/__init__.py": "__version__ = '2.3.1'\n"})
    distribution(
        site,
        "old-ext",
        "1.0",
        {"oldext/__init__.py": "from . import _core\n", "oldext/_core.py": f"raise ValueError({DTYPE_ERROR!r})\n"},
    )
    distribution(site, "uses-old", "2.0", {"usesold/__init__.py": "import numpy\nimport oldext\n"})
    distribution(site, "extras", "0.1", {"extras.py": "import not_installed_anywhere\n"})
    return site


def test_a_build_for_numpy_1_under_numpy_2_names_the_pair_and_the_fix(site):
    result = check(site, "usesold")
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    assert last == "reconciler: old-ext 1.0 was built for NumPy 1.x, numpy 2.3.1 is locked: add numpy<2 to env.yml"
    assert result.stdout.count("reconciler: ") == 1  # the entry import and the module itself: one line
    assert "warning: extras 0.1 provides extras, which needs not_installed_anywhere" in result.stdout


def test_a_broken_distribution_fails_the_build_though_the_entry_script_does_not_import_it(site):
    result = check(site, "numpy")
    assert result.returncode == 1
    assert "reconciler: old-ext 1.0 was built for NumPy 1.x" in result.stdout


def test_what_only_a_distribution_cannot_import_is_a_warning(site):
    (site / "oldext" / "_core.py").write_text("")
    result = check(site, "usesold")
    assert result.returncode == 0, result.stdout
    assert "reconciler: " not in result.stdout
    assert "import check: 1 entry-script imports and 4 modules of 4 distributions" in result.stdout


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (
            "pandas",
            "score.py imports pandas, which no locked distribution provides: add the distribution that "
            "provides it to env.yml",
        ),
        (
            "extras",
            "score.py imports extras, which needs not_installed_anywhere, which no locked distribution "
            "provides: add it to env.yml",
        ),
        (
            "gomp",
            "score.py imports gomp, which needs the system library libgomp.so.1, which the image does not have: add "
            "libgomp1 to inference.environment.system_packages",
        ),
        ("exits", "score.py imports exits, which fails to import: SystemExit: no display"),
    ],
)
def test_what_the_entry_script_imports_must_import(site, module, expected):
    (site / "oldext" / "_core.py").write_text("")
    distribution(
        site, "gomp", "4.0", {"gomp.py": "raise OSError('libgomp.so.1: cannot open shared object file: No such file')"}
    )
    distribution(site, "exits", "1.0", {"exits.py": "raise SystemExit('no display')"})
    result = check(site, module)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "reconciler: " + expected


def test_azure_import_names_are_answered_as_when_serving(site):
    """As in the image, where the runtime's own dependencies are always locked."""
    import markupsafe
    import werkzeug

    for module in (werkzeug, markupsafe):
        (site / module.__name__).symlink_to(Path(module.__file__).parent)
    (site / "oldext" / "_core.py").write_text("")
    result = check(site, "azureml.contrib.services.aml_request", "azureml.ai.monitoring")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_entry_scripts_imports_are_found_statically(repo):
    manifest = write_package(repo / "demo")
    (repo / "demo" / "helpers.py").write_text("")
    (repo / "demo" / "score.py").write_text(
        textwrap.dedent(
            """\
            import json, os.path
            import numpy as np
            from sklearn.linear_model import Ridge
            from . import sibling
            import helpers
            try:
                import optional_thing
            except ImportError:
                optional_thing = None

            def init():
                import late_import

            def run(raw_data):
                return 1
            """
        )
    )
    package = load_package(manifest)
    assert entry_imports(package) == ("numpy", "sklearn.linear_model")
    check = import_check(package, dev=False)
    assert check.command[-3:] == ["--", "numpy", "sklearn.linear_model"]
    assert check.environment == "inference.environment.pip in package.yaml" and check.entry == "score.py"
    assert import_check(package, dev=True).modules == ()  # watch --dev mounts the code: no rebuild per import


def test_an_edit_that_keeps_the_imports_keeps_the_check_and_one_that_adds_one_changes_it(repo, runtime_only_lock):
    """The check's line in the Dockerfile moves with the imports, not with the code."""
    manifest = write_package(repo / "demo")
    (repo / "demo" / "package.lock").write_bytes(runtime_only_lock.read_bytes())
    script = repo / "demo" / "score.py"

    def check_line() -> str:
        written = run_cli("apply", str(manifest.parent), cwd=repo)  # folder mode: the Dockerfile folder
        assert written.returncode == 0, written.stdout + written.stderr
        dockerfile = (repo / "demo" / "build" / "demo" / "Dockerfile").read_text()
        return next(line for line in dockerfile.splitlines() if "import_check" in line)

    first = check_line()
    script.write_text(script.read_text() + "\n# a code edit\n")
    assert check_line() == first
    script.write_text("import numpy\n" + script.read_text())
    assert check_line() != first and check_line().endswith('"--", "numpy"]')


@pytest.mark.docker
@pytest.mark.network
def test_a_lock_an_older_reconciler_wrote_fails_the_build_with_the_pair(
    repo, base_image, docker_client, runtime_only_lock
):
    """A package.lock from before the NumPy rule: scikit-learn 1.2.2 beside NumPy 2. The lock is
    current (its inputs did not change), so nothing re-resolves it; the build's import check
    fails with the pair and the fix instead of a container that crashes at import."""
    current = conda_package(repo, OLD_PIN_CONDA.replace("scikit-learn=1.2.2", "scikit-learn=1.5.2"), name="current")
    assert run_cli("lock", str(current.parent), cwd=repo, timeout=600).returncode == 0
    numpy_2 = next(
        p for p in json.loads((current.parent / "package.lock").read_text())["packages"] if p["name"] == "numpy"
    )
    package = engine_package(repo, base_image, runtime_only_lock, "old-lock")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []", "conda_file: env.yml"))
    (package / "env.yml").write_text(textwrap.dedent(OLD_PIN_CONDA))
    (package / "score.py").write_text("import sklearn\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return 1\n")
    (package / "package.lock").unlink()
    assert run_cli("lock", str(package), cwd=repo, timeout=600).returncode == 0
    lock = json.loads((package / "package.lock").read_text())
    lock["packages"] = [numpy_2 if p["name"] == "numpy" else p for p in lock["packages"]]
    lock["requirements"] = [r for r in lock["requirements"] if not r.startswith("numpy<2")]
    (package / "package.lock").write_text(json.dumps(lock, indent=2))
    try:
        applied = run_cli("apply", str(package), timeout=900)
        assert applied.returncode == 1, applied.stdout + applied.stderr
        expected = (
            f"scikit-learn 1.2.2 was built for NumPy 1.x, numpy {numpy_2['version']} is locked: add numpy<2 to env.yml"
        )
        assert expected in applied.stdout + applied.stderr
        assert "exit code" not in (applied.stdout + applied.stderr).split(expected)[0].splitlines()[-1]
        assert not docker_client.containers.list(all=True, filters={"label": "reconciler.package=old-lock"})
    finally:
        remove_package_objects(docker_client, "old-lock")


@pytest.mark.docker
def test_an_entry_import_nothing_locks_fails_the_build_and_what_served_keeps_serving(
    repo, base_image, docker_client, runtime_only_lock
):
    package = engine_package(repo, base_image, runtime_only_lock, "forgot-one")
    try:
        assert run_cli("apply", str(package), timeout=600).returncode == 0
        serving = serving_container(docker_client, "forgot-one")
        script = package / "score.py"
        script.write_text("import pandas\n" + script.read_text())
        applied = run_cli("apply", str(package), timeout=600)
        assert applied.returncode == 1, applied.stdout + applied.stderr
        assert (
            "score.py imports pandas, which no locked distribution provides: add the distribution that provides it "
            "to inference.environment.pip in package.yaml" in applied.stdout + applied.stderr
        )
        still = serving_container(docker_client, "forgot-one")
        assert still is not None and still.id == serving.id and still.status == "running"
    finally:
        remove_package_objects(docker_client, "forgot-one")
