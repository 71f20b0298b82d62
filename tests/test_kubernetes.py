"""kubernetes mode: golden renderings, validation against the official schemas (oldest and
newest supported versions), kustomize, and a real push whose digest the Deployment pins."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from reconciler.desired.kubernetes import render_kubernetes
from reconciler.spec.package import load_package

from .conftest import ROOT, engine_package, missing, remove_package_objects, run_cli, write_package

GOLDEN = Path(__file__).parent / "golden" / "kubernetes"
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")  # the oldest and newest we support
REGISTRY = os.environ.get("RECONCILER_TEST_REGISTRY", "127.0.0.1:5000")
HASH = "0123456789ab" + "c" * 52
DIGEST = "sha256:" + "d" * 64

MINIMAL = """\
    name: demo
    models: [{name: demo_model, version: 1, path: model/model.txt}]
    inference: {environment: {pip: []}}
    output:
      mode: kubernetes
      image: {registry: "registry.example.com:5000"}
    """

EVERY_SETTING = """\
    name: demo
    models: [{name: demo_model, version: 1, path: model/model.txt}]
    inference:
      environment: {pip: []}
      server: {timeout_ms: 30000}
      secrets: {API_TOKEN: SCORING_API_TOKEN, DB_PASSWORD: DB_PASSWORD}
    output:
      mode: kubernetes
      image: {registry: "registry.example.com:5000", repository: team/demo}
      container: {ready_timeout_s: 600}
      resources: {cpu: "2", memory: 4Gi, gpus: 1}
      kubernetes:
        directory: manifests/demo
        namespace: models
        autoscale: {min: 2, max: 10, cpu_percent: 70}
        service_port: 8080
        image_pull_secret: registry-credentials
        secret_name: demo-runtime
        labels: {team: ml, example.com/cost-center: "42"}
        annotations: {example.com/owner: "ml-platform@example.com"}
        network_policy:
          allow_from:
            - pod_labels: {app: gateway}
            - namespace_labels: {kubernetes.io/metadata.name: ingress-nginx}
              pod_labels: {app.kubernetes.io/name: ingress-nginx}
    """


def rendered(repo: Path, manifest: str) -> dict[str, str]:
    package = load_package(write_package(repo / "demo", manifest))
    repository = package.manifest.image_repository
    return render_kubernetes(
        package,
        image_hash=HASH,
        image=f"registry.example.com:5000/{repository}@{DIGEST}",
        tag=f"registry.example.com:5000/{repository}:{HASH[:12]}",
    )


@pytest.mark.parametrize("case, manifest", [("minimal", MINIMAL), ("every-setting", EVERY_SETTING)])
def test_rendering_is_golden(repo, case, manifest):
    files = rendered(repo, manifest)
    folder = GOLDEN / case
    if os.environ.get("RECONCILER_UPDATE_GOLDEN") == "1":
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    assert sorted(files) == sorted(p.name for p in folder.iterdir())
    for name, text in files.items():
        assert text == (folder / name).read_text(), f"{case}/{name} differs (RECONCILER_UPDATE_GOLDEN=1 rewrites)"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", [MINIMAL, EVERY_SETTING], ids=["minimal", "every-setting"])
def test_rendered_objects_validate_against_the_official_schemas(repo, manifest, version):
    import kubernetes_validate

    files = rendered(repo, manifest)
    for name, text in files.items():
        if name == "kustomization.yaml":
            continue  # not a Kubernetes API object: kustomize checks it below
        kubernetes_validate.validate(yaml.safe_load(text), version, strict=True)


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        missing("kubectl (with its built-in kustomize) is not on PATH")
    return path


def test_kustomize_builds_the_folder(repo):
    folder = repo / "out"
    folder.mkdir()
    for name, text in rendered(repo, EVERY_SETTING).items():
        (folder / name).write_text(text)
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = [document["kind"] for document in yaml.safe_load_all(result.stdout)]
    assert sorted(kinds) == ["Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service"]


def test_kubernetes_mode_needs_a_registry_and_cpu_to_autoscale(repo):
    write_package(repo / "a", MINIMAL.replace('image: {registry: "registry.example.com:5000"}', "image: {}"))
    result = run_cli("validate", str(repo / "a"), cwd=repo)
    assert result.returncode == 1
    assert re.search(
        r"a/package.yaml:\d+:\d+: output: output.mode kubernetes needs output.image.registry", result.stderr
    )
    registry = 'image: {registry: "registry.example.com:5000"}'
    write_package(repo / "b", MINIMAL.replace(registry, registry + "\n      kubernetes: {autoscale: {max: 3}}"))
    result = run_cli("validate", str(repo / "b"), cwd=repo)
    assert result.returncode == 1 and "kubernetes.autoscale scales on CPU use" in result.stderr


def test_the_docs_examples_for_argo_cd_and_flux_point_at_a_folder_kustomize_builds(repo):
    """No schema for Argo CD's Application or Flux's Kustomization can be had offline, so the
    examples are checked for what they must say: kinds, and a path that is the folder."""
    examples = ROOT / "docs" / "kubernetes"
    application = yaml.safe_load((examples / "argocd-application.yaml").read_text())
    assert application["apiVersion"] == "argoproj.io/v1alpha1" and application["kind"] == "Application"
    assert application["spec"]["source"]["path"] == "models/sklearn-regression/deploy/sklearn-regression"
    assert application["spec"]["syncPolicy"]["automated"]["prune"] is True
    flux = list(yaml.safe_load_all((examples / "flux-kustomization.yaml").read_text()))
    assert [d["kind"] for d in flux] == ["GitRepository", "Kustomization"]
    assert flux[1]["spec"]["path"] == "./models/sklearn-regression/deploy/sklearn-regression"
    assert flux[1]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": flux[0]["metadata"]["name"]}
    workflow = yaml.safe_load((examples / "ci.yml").read_text())
    commands = "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    assert "reconciler plan --frozen" in commands and "reconciler apply --check" in commands
    assert "reconciler apply" in commands and "git commit" in commands


@pytest.mark.docker
def test_apply_pushes_and_pins_the_digest_the_registry_gives(docker_client, repo, base_image, runtime_only_lock):
    if requests.get(f"http://{REGISTRY}/v2/", timeout=2).status_code != 200:
        missing(f"no registry at {REGISTRY}")
    name = f"k{os.urandom(5).hex()}"
    package = engine_package(repo, base_image, runtime_only_lock, name, mode="kubernetes")
    manifest = package / "package.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "mode: kubernetes", f"mode: kubernetes\n  image: {{registry: '{REGISTRY}'}}\n  kubernetes: {{replicas: 2}}"
        )
    )
    try:
        result = run_cli("apply", str(package), cwd=repo, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(rf"{name}: push {re.escape(REGISTRY)}/{name}:[0-9a-f]{{12}}  done", result.stdout)
        assert re.search(rf"{name}: write {name}/deploy/{name}  done in .*  <- not written yet", result.stdout)
        folder = package / "deploy" / name
        deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
        tag = deployment["metadata"]["annotations"]["reconciler.image-tag"]
        repository, _, short = tag.rpartition(":")
        head = requests.head(
            f"http://{REGISTRY}/v2/{repository.split('/', 1)[1]}/manifests/{short}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=5,
        )
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{repository}@{head.headers['Docker-Content-Digest']}"
        assert (folder / "poddisruptionbudget.yaml").exists()
        assert run_cli("plan", str(package), cwd=repo).returncode == 0
        # CI, offline: the committed folder is checked without an engine or registry
        offline = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
        assert run_cli("apply", "--check", str(package), cwd=repo, env=offline).returncode == 0
        (package / "score.py").write_text((package / "score.py").read_text() + "\n# an edit\n")
        stale = run_cli("apply", "--check", str(package), cwd=repo, env=offline)
        assert stale.returncode == 2, stale.stdout + stale.stderr
        assert re.search(
            rf"  write {name}/deploy/{name}  <- rendered for image {short}, inputs give [0-9a-f]{{12}}", stale.stdout
        )
        assert "run `reconciler apply` and commit" in stale.stdout
        assert run_cli("apply", str(package), cwd=repo, timeout=900).returncode == 0
        assert run_cli("apply", "--check", str(package), cwd=repo, env=offline).returncode == 0
        status = json.loads(run_cli("status", "-o", "json", str(package), cwd=repo).stdout)
        assert status["packages"][0]["kubernetes_directory"] == f"{name}/deploy/{name}"
    finally:
        remove_package_objects(docker_client, name)


def test_a_kubernetes_folder_reconciler_did_not_write_is_never_touched(repo, runtime_only_lock):
    package = repo / "demo"
    write_package(package, MINIMAL)
    shutil.copy(runtime_only_lock, package / "package.lock")
    (package / "deploy" / "demo").mkdir(parents=True)
    (package / "deploy" / "demo" / "mine.yaml").write_text("kind: Mine\n")
    result = run_cli("apply", "--check", str(package), cwd=repo)
    assert result.returncode == 1
    assert "demo/deploy/demo exists and was not written by reconciler" in result.stdout
    assert (package / "deploy" / "demo" / "mine.yaml").read_text() == "kind: Mine\n"
