"""The Dockerfile folder: self-contained, in Azure's layout, injection-proof."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import pytest

from reconciler.desired.dockerfile import DockerfileSettings, ImportCheck, ModelLayout, _quote, render_dockerfile
from reconciler.desired.state import RUNTIME_DIRECTORY as RUNTIME

from .conftest import run_cli, write_package


def test_folder_holds_everything_a_build_needs(package_dir, repo, cache_root):
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    folder = package_dir / "build" / "demo"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    lock = json.loads((package_dir / "package.lock").read_text())
    expected = sorted(
        [
            ".reconciler-stamp.json",
            "Dockerfile",
            "app/score.py",
            "models/demo_model/1/model.txt",
            "package.lock",
            "requirements.lock.txt",
            "sbom.cdx.json",
        ]
        + [f"wheels/{p['filename']}" for p in lock["packages"]]
        + ["runtime/reconciler_runtime.zip"]
    )
    assert names == expected
    with zipfile.ZipFile(folder / "runtime" / "reconciler_runtime.zip") as archive:  # the runtime, whole
        assert sorted(archive.namelist()) == sorted(
            f"reconciler_runtime/{n}" for n in os.listdir(RUNTIME) if n.endswith(".py") or n == "requirements.txt"
        )
        assert archive.read("reconciler_runtime/app.py") == (RUNTIME / "app.py").read_bytes()
    for entry in lock["packages"]:
        wheel = folder / "wheels" / entry["filename"]
        cached = cache_root / "wheels" / "sha256" / entry["sha256"][:2] / entry["sha256"] / entry["filename"]
        assert wheel.stat().st_ino == cached.stat().st_ino, "wheels are hard links into the cache"
    requirements = (folder / "requirements.lock.txt").read_text().splitlines()
    assert all(" --hash=sha256:" in line for line in requirements) and len(requirements) == len(lock["packages"])
    stamp = json.loads((folder / ".reconciler-stamp.json").read_text())
    assert stamp["package"] == "demo" and len(stamp["image_hash"]) == 64
    assert set(stamp["files"]) == {n for n in names if n != ".reconciler-stamp.json"}


def test_multi_model_layout_and_model_dir(repo, runtime_only_lock):
    package = repo / "multi"
    write_package(
        package,
        """\
        name: multi
        models:
          - {name: first, version: 3, path: model/model.txt}
          - {name: second, version: 1, path: weights}
        inference: {environment: {pip: []}}
        """,
    )
    (package / "weights" / "sub").mkdir(parents=True)
    (package / "weights" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    shutil.copy(runtime_only_lock, package / "package.lock")
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    folder = package / "build" / "multi"
    assert (folder / "models" / "first" / "3" / "model.txt").read_text() == "2.0"
    assert (folder / "models" / "second" / "1" / "weights" / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    dockerfile = (folder / "Dockerfile").read_text()
    assert "AZUREML_MODEL_DIR=/var/azureml-app/azureml-models \\" in dockerfile
    assert 'COPY ["models/first/3/", "/var/azureml-app/azureml-models/first/3/"]' in dockerfile


def settings(**changes) -> DockerfileSettings:
    base = dict(
        base_image="python:3.11-slim",
        python="3.11",
        system_packages=(),
        models=(ModelLayout("m", 1),),
        entry_script="score.py",
        variables=(),
        workers=1,
        timeout_ms=60000,
        import_check=ImportCheck("score.py", "requirements.txt", ("numpy",)),
    )
    return DockerfileSettings(**{**base, **changes})


def test_layers_go_from_slowest_to_fastest_changing():
    text = render_dockerfile(settings(system_packages=("libgomp1",), variables=(("A", "b"),)))
    order = [
        "apt-get install",
        "COPY --from=dependencies /opt/venv",
        'COPY ["runtime/',
        "FROM environment AS import-check",
        "COPY --from=import-check",
        'COPY ["models/m/1/"',
        'COPY ["app/"',
        'ENV A="b"',
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "USER 10001:10001" in text and "EXPOSE 5001" in text and "HEALTHCHECK" in text
    assert text.count("FROM python:3.11-slim") == 2, "wheels stay in the first stage"


@pytest.mark.parametrize("value", ['say "hi"', "$HOME", "back\\slash", "${PATH}", "a' b", "\\"])
def test_variable_values_are_quoted_not_interpreted(value):
    line = render_dockerfile(settings(variables=(("V", value),))).split("ENV V=")[1].splitlines()[0]
    assert line == _quote(value)
    assert line.startswith('"') and line.endswith('"') and "$" not in line.replace("\\$", "")


def test_newlines_can_never_reach_the_dockerfile():
    with pytest.raises(ValueError):
        _quote("x\nRUN rm -rf /")


def test_rewriting_a_folder_reuses_unchanged_files_instead_of_copying(package_dir, repo):
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    folder = package_dir / "build" / "demo"
    model = folder / "models" / "demo_model" / "1" / "model.txt"
    model_inode = model.stat().st_ino
    with open(package_dir / "score.py", "a") as handle:
        handle.write("# a code edit\n")
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert model.stat().st_ino == model_inode, "the unchanged model was linked, not copied"
    assert "# a code edit" in (folder / "app" / "score.py").read_text()
    model.write_text("9.0")  # a hand edit: drift, and never a file to carry over
    with open(package_dir / "score.py", "a") as handle:
        handle.write("# another\n")
    assert run_cli("apply", str(repo), cwd=repo).returncode == 0
    assert model.read_text() == "2.0"
    assert run_cli("plan", str(repo), cwd=repo).returncode == 0
