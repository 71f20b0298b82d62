"""Image and container modes against a real Docker engine, real HTTP on 127.0.0.1, and a
real registry: the seed's whole flow as one declarative, idempotent command."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid

import pytest
import requests

from .conftest import (
    EXAMPLES,
    PROXY_IMAGE,
    engine_package,
    missing,
    remove_package_objects,
    run_cli,
    serving_container,
    with_cpus,
    write_package,
)
from .runtime_helpers import free_port

pytestmark = pytest.mark.docker

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
REGISTRY = os.environ.get("RECONCILER_TEST_REGISTRY", "127.0.0.1:5000")


@pytest.fixture
def unique_name():
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup_engine(docker_client):
    """Remove whatever the test's packages left on the engine."""
    names: list[str] = []
    yield names
    for name in names:
        remove_package_objects(docker_client, name)


def sklearn_package(repo, base_image, name, *, mode="container", port=None, extra=""):
    package = repo / name
    shutil.copytree(EXAMPLES / "sklearn-regression", package, ignore=shutil.ignore_patterns("build"))
    manifest = package / "package.yaml"
    text = manifest.read_text()
    text = text.replace("name: sklearn-regression", f"name: {name}")
    text = text.replace("base_image: python:3.11-slim", f"base_image: {base_image}")
    text = text.replace("mode: dockerfile", f"mode: {mode}")
    port = port or free_port()
    text = text.replace("container: {port: 6789}", f'container: {{port: {port}, proxy_image: "{PROXY_IMAGE}"}}{extra}')
    manifest.write_text(text)
    return package


def port_of(package) -> int:
    return int(re.search(r"port: (\d+)", (package / "package.yaml").read_text()).group(1))


def score(port, body=None):
    return requests.post(f"http://127.0.0.1:{port}/score", json=body or SEED_REQUEST, timeout=10)


def apply(*paths, cwd, extra=(), builder=None):
    env = {"RECONCILER_BUILDER": builder} if builder else None
    return run_cli("apply", *extra, *map(str, paths), cwd=cwd, timeout=900, env=env)


def ids(docker_client, name):
    """The serving container and its image."""
    container = serving_container(docker_client, name)
    return container.id, container.image.id


def direct(package):
    """The same package with the container publishing its port itself (no proxy)."""
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("container: {port:", "container: {proxy: false, port:"))
    return package


def test_seed_flow_then_a_second_apply_does_nothing(
    docker_client, repo, base_image, unique_name, cleanup_engine, buildkit_cli
):
    cleanup_engine.append(unique_name)
    package = sklearn_package(repo, base_image, unique_name)
    first = apply(package, cwd=repo, extra=["--frozen"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{unique_name}: build {unique_name}:" in first.stdout
    # BuildKit is the default where the machine has it: one line per step as it ends (the
    # dependencies stage is not listed when an earlier build of the same lock cached all of it)
    assert re.search(rf"^{unique_name}: \[(dependencies|stage-1) 1/\d+\] FROM \S+ \(\d+\.\d+ s\)$", first.stdout, re.M)
    assert "legacy builder" not in first.stdout
    assert re.search(
        rf"{unique_name}: create {unique_name} on 127\.0\.0\.1:\d+  done in .* \(ready at http://127\.0\.0\.1:\d+/score\)",
        first.stdout,
    )
    predictions = score(port_of(package)).json()
    assert len(predictions) == 2 and predictions[0] != predictions[1]
    before = ids(docker_client, unique_name)
    second = apply(package, cwd=repo, extra=["--frozen"])
    assert second.returncode == 0
    assert f"{unique_name} (container, hash " in second.stdout and ": in sync" in second.stdout
    assert "build" not in second.stdout and "Step" not in second.stdout
    assert ids(docker_client, unique_name) == before
    container = docker_client.containers.get(before[0])
    assert container.name == f"{unique_name}-serving"
    proxy = docker_client.containers.get(unique_name)
    binding = proxy.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1" and proxy.labels["reconciler.role"] == "proxy"
    assert container.labels["reconciler.managed"] == "true" and container.labels["reconciler.package"] == unique_name
    image = docker_client.images.get(before[1])
    full_hash = image.labels["reconciler.hash"]
    assert sorted(image.tags) == sorted([f"{unique_name}:{full_hash[:12]}", f"{unique_name}:latest"])
    assert "reconciler.managed" not in image.labels, "only containers reconciler creates carry it"


def test_code_edit_rebuilds_only_the_code_layer_and_serves_the_new_code(
    docker_client, repo, base_image, unique_name, cleanup_engine, builder
):
    cleanup_engine.append(unique_name)
    package = sklearn_package(repo, base_image, unique_name)
    assert apply(package, cwd=repo, builder=builder).returncode == 0  # pins the base image in package.lock
    old_container, old_image = ids(docker_client, unique_name)
    score_py = package / "score.py"
    edited = score_py.read_text().replace("return result.tolist()", 'return {"v2": result.tolist()}')
    score_py.write_text(edited + f"\n# {unique_name}\n")  # content no earlier build had: no cache hit
    plan = run_cli("plan", str(package), cwd=repo)
    assert plan.returncode == 2
    assert re.search(rf"  build {unique_name}:[0-9a-f]{{12}}  <- inputs changed: score.py", plan.stdout)
    assert re.search(
        rf"  recreate {unique_name} on 127\.0\.0\.1:\d+  <- new image \(inputs changed: score.py\)", plan.stdout
    )
    result = apply(package, cwd=repo, builder=builder)
    assert result.returncode == 0, result.stdout + result.stderr
    # the dependency, runtime and model layers come from the cache; the code layer and what follows do not
    match = re.search(
        rf"{unique_name}: build {unique_name}:[0-9a-f]{{12}}  done in .* \(image [0-9a-f]{{12}}, "
        r"(\d+) of (\d+) steps cached\)",
        result.stdout,
    )
    assert match, result.stdout
    cached, steps = map(int, match.groups())
    if builder == "legacy":  # `Step 3/23 : COPY ...` as each step starts, in Dockerfile order
        step_lines = [line for line in result.stdout.splitlines() if line.startswith(f"{unique_name}: Step ")]
        before_code = next(i for i, line in enumerate(step_lines) if 'COPY ["app/"' in line)
        from_steps = sum(1 for line in step_lines[:before_code] if " : FROM " in line)
        assert steps == len(step_lines) and cached == before_code - from_steps
    else:  # `[stage-3 3/3] COPY [app/, ...] (0.1 s)` as each step ends, `(cached)` when it was
        step_lines = re.findall(rf"^{unique_name}: \[(\S+) (\d+)/\d+\] (\S+) (.*)$", result.stdout, re.M)
        final, code = next(
            (stage, int(i)) for stage, i, verb, rest in step_lines if verb == "COPY" and rest.startswith("[app/")
        )
        for stage, index, verb, rest in step_lines:  # the stages before the image's own, and its steps before the code
            expected = verb != "FROM" and (stage != final or int(index) < code)
            assert rest.endswith("(cached)") == expected, (stage, index, verb, rest)
        assert steps == len(step_lines) and cached == sum(1 for s in step_lines if s[3].endswith("(cached)"))
    response = score(port_of(package))
    assert list(response.json()) == ["v2"]
    new_container, new_image = ids(docker_client, unique_name)
    assert new_container != old_container and new_image != old_image
    old_layers = docker_client.images.get(old_image).attrs["RootFS"]["Layers"]
    new_layers = docker_client.images.get(new_image).attrs["RootFS"]["Layers"]
    assert old_layers[:-1] == new_layers[:-1] and old_layers[-1] != new_layers[-1]


@pytest.mark.parametrize("proxied", [True, False], ids=["proxy", "direct"])
def test_port_change_recreates_without_a_build(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine, proxied
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    if not proxied:
        direct(package)
    assert apply(package, cwd=repo).returncode == 0
    old_port, new_port = port_of(package), free_port()
    container, image = ids(docker_client, unique_name)
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace(f"port: {old_port}", f"port: {new_port}"))
    plan = run_cli("plan", str(package), cwd=repo)
    assert "  build" not in plan.stdout
    if proxied:  # the port is the proxy's: the container that serves stays as it is
        assert (
            f"  recreate proxy {unique_name} on 127.0.0.1:{new_port}  <- proxy settings changed "
            f"(was on 127.0.0.1:{old_port})" in plan.stdout
        )
    else:
        assert (
            f"  recreate {unique_name} on 127.0.0.1:{new_port}  <- container settings changed: port (was {unique_name} on "
            f"127.0.0.1:{old_port})" in plan.stdout
        )
    assert apply(package, cwd=repo).returncode == 0
    assert score(new_port, {"data": [[1, 2]]}).json() == [6.0]
    with pytest.raises(requests.ConnectionError):
        score(old_port, {"data": [[1]]})
    assert ids(docker_client, unique_name)[1] == image
    assert (ids(docker_client, unique_name)[0] == container) is proxied


def test_container_removed_or_stopped_by_hand_comes_back(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(package, cwd=repo).returncode == 0
    container_id, _ = ids(docker_client, unique_name)
    docker_client.containers.get(container_id).stop(timeout=5)
    plan = run_cli("plan", str(package), cwd=repo)
    assert f"  start {unique_name} on 127.0.0.1:{port_of(package)}  <- container exited" in plan.stdout
    assert apply(package, cwd=repo).returncode == 0
    assert ids(docker_client, unique_name)[0] == container_id
    assert score(port_of(package), {"data": [[1]]}).status_code == 200
    docker_client.containers.get(container_id).remove(force=True)
    plan = run_cli("plan", str(package), cwd=repo)
    assert f"  create {unique_name} on 127.0.0.1:{port_of(package)}  <- no container" in plan.stdout
    assert "  build" not in plan.stdout
    assert apply(package, cwd=repo).returncode == 0
    assert score(port_of(package), {"data": [[1]]}).status_code == 200


@pytest.mark.parametrize("proxied", [True, False], ids=["proxy", "direct"])
def test_broken_init_fails_the_canary_and_the_old_container_keeps_serving(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine, proxied
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    if not proxied:
        direct(package)
    assert apply(package, cwd=repo).returncode == 0
    before = ids(docker_client, unique_name)
    (package / "score.py").write_text(
        "def init():\n    raise RuntimeError('broken model file')\n\ndef run(raw):\n    return raw\n"
    )
    result = apply(package, cwd=repo)
    assert result.returncode == 1
    what = (
        "the new container (what serves now keeps serving)"
        if proxied
        else "the canary (the old container keeps serving)"
    )
    # exit code 3, unless the engine restarted it before the check (the log says why either way)
    assert re.search(
        f"{re.escape(what)} did not become ready: the container exited( with code 3|, and is being restarted)",
        result.stdout,
    )
    assert "RuntimeError: broken model file" in result.stdout
    assert ids(docker_client, unique_name) == before
    assert score(port_of(package), {"data": [[1, 2]]}).json() == [6.0]
    names = [
        c.name for c in docker_client.containers.list(all=True, filters={"label": f"reconciler.package={unique_name}"})
    ]
    expected = [unique_name, f"{unique_name}-serving"] if proxied else [unique_name]
    assert sorted(names) == expected, "nothing left behind"


def test_push_then_pull_back_by_hash(docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine):
    if requests.get(f"http://{REGISTRY}/v2/", timeout=2).status_code != 200:
        missing(f"no registry at {REGISTRY}")
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name, mode="image")
    manifest = package / "package.yaml"
    manifest.write_text(
        manifest.read_text().replace("mode: image", f"mode: image\n  image: {{registry: '{REGISTRY}', push: true}}")
    )
    result = apply(package, cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(
        rf"{unique_name}: push {re.escape(REGISTRY)}/{unique_name}:[0-9a-f]{{12}}  done in .* \(digest sha256:[0-9a-f]{{64}}\)",
        result.stdout,
    )
    assert run_cli("plan", str(package), cwd=repo).returncode == 0, "the registry has the tag: nothing to do"
    [image] = docker_client.images.list(filters={"label": f"reconciler.package={unique_name}"})
    full_hash = image.labels["reconciler.hash"]
    docker_client.images.remove(image.id, force=True)
    plan = run_cli("plan", str(package), cwd=repo)
    assert f"  build {unique_name}:{full_hash[:12]}" in plan.stdout
    pulled = run_cli("pull", str(package), cwd=repo)
    assert pulled.returncode == 0, pulled.stderr
    assert f"pulled {REGISTRY}/{unique_name}:{full_hash[:12]} as {unique_name}:{full_hash[:12]}" in pulled.stdout
    assert docker_client.images.get(f"{unique_name}:{full_hash[:12]}").labels["reconciler.hash"] == full_hash
    assert run_cli("plan", str(package), cwd=repo).returncode == 0


def test_a_moved_base_tag_changes_nothing_until_lock_upgrade(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    """The hash reads the pin in package.lock, not the engine: a re-pulled tag is a note, and
    `lock --upgrade` moves the pin (then it rebuilds). A base that was never pushed is pinned
    by its local ID, and a build from a moved tag would not be that image: refused."""
    cleanup_engine.append(unique_name)
    alias = f"reconciler-test/base-{unique_name}:1"
    docker_client.images.get(base_image).tag(alias)
    try:
        package = engine_package(repo, alias, runtime_only_lock, unique_name, mode="image")
        assert apply(package, cwd=repo).returncode == 0
        lock = json.loads((package / "package.lock").read_text())["base_image"]
        assert lock == {"reference": alias, "pin": docker_client.images.get(base_image).id, "by": "image id"}
        assert run_cli("plan", str(package), cwd=repo).returncode == 0
        # "re-pull" the base: same reference, new content
        import io

        dockerfile = io.BytesIO(f"FROM {base_image}\nRUN echo refreshed > /etc/refreshed\n".encode())
        refreshed, _ = docker_client.images.build(fileobj=dockerfile, tag=alias, rm=True)
        plan = run_cli("plan", str(package), cwd=repo)
        assert plan.returncode == 0, plan.stdout
        assert f"note: base image {alias} now points to {refreshed.id[:19]}" in plan.stdout
        assert "reconciler lock --upgrade" in plan.stdout
        (package / "score.py").write_text((package / "score.py").read_text() + "\n# an edit\n")
        refused = run_cli("plan", str(package), cwd=repo)
        assert refused.returncode == 1 and "cannot build: base image" in refused.stdout, refused.stdout
        upgraded = run_cli("lock", "--upgrade", str(package), cwd=repo)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"pinned to {refreshed.id[:19]} (image id, was " in upgraded.stdout
        plan = run_cli("plan", str(package), cwd=repo)
        assert plan.returncode == 2 and "  build" in plan.stdout
        assert "inference.environment.base_image (pinned)" in plan.stdout
        assert apply(package, cwd=repo).returncode == 0
        assert run_cli("plan", str(package), cwd=repo).returncode == 0
    finally:
        docker_client.images.remove(alias, force=True)


def test_a_registry_base_is_pinned_by_its_digest_and_hashes_alike_without_an_engine(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    if requests.get(f"http://{REGISTRY}/v2/", timeout=2).status_code != 200:
        missing(f"no registry at {REGISTRY}")
    cleanup_engine.append(unique_name)
    remote = f"{REGISTRY}/reconciler-test/base-{unique_name}:1"
    docker_client.images.get(base_image).tag(remote)
    for line in docker_client.api.push(remote, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(remote)
    try:
        package = engine_package(repo, remote, runtime_only_lock, unique_name, mode="image")
        locked = run_cli("lock", str(package), cwd=repo)
        assert locked.returncode == 0, locked.stderr
        head = requests.head(
            f"http://{REGISTRY}/v2/reconciler-test/base-{unique_name}/manifests/1",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=5,
        )
        digest = head.headers["Docker-Content-Digest"]
        pin = json.loads((package / "package.lock").read_text())["base_image"]
        assert pin == {"reference": remote, "pin": digest, "by": "registry"}
        result = apply(package, cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"pull {remote}@{digest}  done" in result.stdout
        dockerfile = (package / "build" / unique_name / "Dockerfile").read_text()
        assert f"\nFROM {remote}@{digest} AS environment\n" in dockerfile
        assert run_cli("plan", str(package), cwd=repo).returncode == 0
        with_engine = run_cli("hash", str(package), cwd=repo)
        without = run_cli("hash", str(package), cwd=repo, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert with_engine.returncode == 0 and without.returncode == 0, without.stderr
        assert with_engine.stdout == without.stdout
    finally:
        docker_client.images.remove(f"{remote.rpartition(':')[0]}@{digest}", force=True)


def test_build_failure_shows_the_step_and_others_go_on(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine, builder
):
    good, bad = f"{unique_name}-good", f"{unique_name}-bad"
    cleanup_engine.extend([good, bad])
    engine_package(repo, base_image, runtime_only_lock, good, mode="image")
    broken = engine_package(repo, base_image, runtime_only_lock, bad, mode="image")
    manifest = broken / "package.yaml"
    manifest.write_text(manifest.read_text().replace("pip: []}", "pip: [], system_packages: [no-such-package-xyz]}"))
    result = apply(repo, cwd=repo, builder=builder)
    assert result.returncode == 1
    step = r"Step \d+/\d+ : " if builder == "legacy" else r"\[environment \d+/\d+\] "
    assert re.search(
        rf"{bad}: build {bad}:[0-9a-f]{{12}}  FAILED after .*: build failed at {step}RUN apt-get",
        result.stdout,
    )
    assert re.search(rf"{good}: build {good}:[0-9a-f]{{12}}  done in", result.stdout)


def test_orphans_are_listed_then_pruned_but_never_while_a_manifest_is_broken(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    keep, gone = f"{unique_name}-keep", f"{unique_name}-gone"
    cleanup_engine.extend([keep, gone])
    engine_package(repo, base_image, runtime_only_lock, keep)
    engine_package(repo, base_image, runtime_only_lock, gone)
    assert apply(repo, cwd=repo).returncode == 0
    shutil.rmtree(repo / gone)
    plan = run_cli("plan", str(repo), cwd=repo)
    assert f"note: apply --prune removes container {gone} ({gone}: orphan: its manifest is gone)" in plan.stdout
    write_package(repo / "broken", "name: broken\nmodels: nope\n")
    refused = apply(repo, cwd=repo, extra=["--prune"])
    assert refused.returncode == 1
    assert f"note: not pruned while a manifest has errors or none was found: container {gone}" in refused.stdout
    assert docker_client.containers.list(all=True, filters={"label": f"reconciler.package={gone}"})
    shutil.rmtree(repo / "broken")
    pruned = apply(repo, cwd=repo, extra=["--prune"])
    assert pruned.returncode == 0, pruned.stdout
    assert f"prune: remove container {gone}  done in" in pruned.stdout
    assert not docker_client.containers.list(all=True, filters={"label": f"reconciler.package={gone}"})
    assert not docker_client.images.list(filters={"label": f"reconciler.package={gone}"})
    assert docker_client.containers.list(filters={"label": f"reconciler.package={keep}"})


def test_prune_only_looks_below_the_paths_given(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    one, two = f"{unique_name}-one", f"{unique_name}-two"
    cleanup_engine.extend([one, two])
    engine_package(repo / "a", base_image, runtime_only_lock, one)
    engine_package(repo / "b", base_image, runtime_only_lock, two)
    assert apply(repo, cwd=repo).returncode == 0
    result = apply(repo / "a", cwd=repo, extra=["--prune"])
    assert result.returncode == 0 and "prune:" not in result.stdout
    assert docker_client.containers.list(filters={"label": f"reconciler.package={two}"})


def test_down_removes_containers_and_keeps_images(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(package, cwd=repo).returncode == 0
    result = run_cli("down", str(package), cwd=repo)
    assert result.returncode == 0 and f"{unique_name}: removed container {unique_name}" in result.stdout
    assert not docker_client.containers.list(all=True, filters={"label": f"reconciler.package={unique_name}"})
    assert docker_client.images.list(filters={"label": f"reconciler.package={unique_name}"})
    plan = run_cli("plan", str(package), cwd=repo)
    assert "  create" in plan.stdout and "  build" not in plan.stdout


def test_status_shows_container_readiness_and_url(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(package, cwd=repo).returncode == 0
    result = run_cli("status", str(package), cwd=repo)
    assert result.returncode == 0
    row = result.stdout.splitlines()[1]
    assert row.startswith(unique_name) and "container" in row and "in sync" in row and " ready " in row
    assert f"http://127.0.0.1:{port_of(package)}/score" in row
    import json

    [document] = json.loads(run_cli("status", "-o", "json", str(package), cwd=repo).stdout)["packages"]
    assert document["readiness"] == "ready" and document["container"].startswith(f"{unique_name}-serving: Up")
    assert document["proxy"].startswith(f"{unique_name}: Up") and document["updating"] is False


def test_unreachable_engine_is_one_clear_line_and_changes_nothing(repo, runtime_only_lock, unique_name):
    package = engine_package(repo, "python:3.11-slim", runtime_only_lock, unique_name)
    result = run_cli("apply", str(package), cwd=repo, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Docker engine answers at unix:///nonexistent/docker.sock")
    assert not (package / "build").exists()


def test_a_container_started_by_hand_from_our_image_is_never_touched(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(package, cwd=repo).returncode == 0
    _, image = ids(docker_client, unique_name)
    by_hand = docker_client.containers.run(
        image, detach=True, name=f"{unique_name}-by-hand", ports={"5001/tcp": ("127.0.0.1", None)}
    )
    try:
        assert by_hand.labels["reconciler.package"] == unique_name, "it inherits the image's labels"
        assert run_cli("plan", str(package), cwd=repo).returncode == 0
        manifest = package / "package.yaml"
        manifest.write_text(manifest.read_text().replace("mode: container", "mode: image"))
        # the managed container goes; the one started by hand, and the image it runs, stay
        result = apply(package, cwd=repo, extra=["--prune"])
        assert result.returncode == 0, result.stdout
        assert f"remove container {unique_name}  done" in result.stdout
        assert "by-hand" not in result.stdout
        by_hand.reload()
        assert by_hand.status == "running"
        (package / "score.py").write_text((package / "score.py").read_text() + "\n# new image\n")
        assert apply(package, cwd=repo, extra=["--prune"]).returncode == 0
        docker_client.images.get(image)  # superseded, but in use by a container: kept
    finally:
        by_hand.remove(force=True)


def test_image_lookups_by_tag_and_by_listing_plan_the_same(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine, monkeypatch
):
    from reconciler.observed import state as observed_state
    from reconciler.pipeline import Session, reconcile

    names = [f"{unique_name}-{i}" for i in range(3)]
    cleanup_engine.extend(names)
    for name in names:
        engine_package(repo, base_image, runtime_only_lock, name, mode="image")
    assert apply(repo, cwd=repo).returncode == 0
    for threshold in (100, 1, 0):  # all by tag; one by tag then a listing; a listing from the start
        monkeypatch.setattr(observed_state, "INSPECTS_BEFORE_LISTING", threshold)
        with Session() as session:
            reconciliation = reconcile([str(repo)], session, frozen=True)
        assert [o.plan.actions for o in reconciliation.outcomes] == [[], [], []], threshold
        assert all(o.observed.images for o in reconciliation.outcomes)


def test_hash_command_agrees_with_the_built_image(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name, mode="image")
    assert apply(package, cwd=repo).returncode == 0
    [image] = docker_client.images.list(filters={"label": f"reconciler.package={unique_name}"})
    result = run_cli("hash", str(package), cwd=repo)
    assert result.returncode == 0, result.stderr
    assert f"  image hash      {image.labels['reconciler.hash']}" in result.stdout
    assert re.search(r"^    inference\.environment\.base_image \(pinned\) +sha256:[0-9a-f]{64}$", result.stdout, re.M)


def test_old_images_are_bounded_but_never_one_a_container_runs(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name, mode="image")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("mode: image", "mode: image\n  image: {keep: 2}"))

    def edit_and_apply(n):
        (package / "score.py").write_text((package / "score.py").read_text() + f"\n# edit {n}\n")
        result = apply(package, cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def tags():
        images = docker_client.images.list(filters={"label": f"reconciler.package={unique_name}"})
        return {image.labels["reconciler.hash"][:12] for image in images}

    assert apply(package, cwd=repo).returncode == 0
    [first] = tags()
    by_hand = docker_client.containers.create(f"{unique_name}:{first}", name=f"{unique_name}-by-hand")
    try:
        seen = [first]
        for n in range(3):
            result = edit_and_apply(n)
            seen.append(next(iter(tags() - set(seen))))
        # the last apply removed the one image that was neither among the newest two nor in use
        removed = re.findall(
            rf"^{unique_name}: remove image (\S+)  done in .*not among the 2 used last", result.stdout, re.M
        )
        assert removed == [f"{unique_name}:{seen[1]}"], result.stdout
        # the newest two, and the first one, which a container started by hand still uses
        assert tags() == {seen[3], seen[2], first}
        status = run_cli("status", "--output", "json", str(package), cwd=repo)
        [document] = json.loads(status.stdout)["packages"]
        assert document["images_on_disk"]["count"] == 3 and document["images_on_disk"]["bytes"] > 100_000_000
    finally:
        by_hand.remove(force=True)


def test_resources_limit_the_container_and_a_change_recreates_without_a_build(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("mode: container", "mode: container\n  resources: {cpu: 500m}"))
    assert apply(package, cwd=repo).returncode == 0
    container = serving_container(docker_client, unique_name)
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert container.attrs["HostConfig"]["Memory"] == 4 * 2**30, "a memory limit always (default 4Gi)"
    manifest.write_text(manifest.read_text().replace("{cpu: 500m}", "{cpu: '1', memory: 256Mi}"))
    result = apply(package, cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{unique_name}: recreate {unique_name} on" in result.stdout and "build" not in result.stdout
    container = serving_container(docker_client, unique_name)
    assert container.attrs["HostConfig"]["NanoCpus"] == 1_000_000_000
    assert container.attrs["HostConfig"]["Memory"] == 256 * 2**20


def test_containers_are_confined_by_default_and_each_relaxation_is_named(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    """No capabilities, no privilege gain, a read-only root with a tmpfs /tmp, a pids limit and
    rotated logs, for the serving container and the proxy; relaxed only by output.container.security."""
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(package, cwd=repo).returncode == 0
    container = serving_container(docker_client, unique_name)
    proxy = docker_client.containers.get(unique_name)
    for confined, pids, memory in ((container, 1024, 4 * 2**30), (proxy, 256, 256 * 2**20)):
        host = confined.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True and list(host["Tmpfs"]) == ["/tmp"]
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["PidsLimit"] == pids and host["Memory"] == memory
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "20m", "max-file": "5"}}
    inside = container.exec_run(
        [
            "sh",
            "-c",
            "touch /x; echo written > /tmp/x && cat /tmp/x; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
        ]
    ).output.decode()
    assert "Read-only file system" in inside and "written" in inside
    assert re.search(r"CapEff:\s+0+\n", inside) and re.search(r"NoNewPrivs:\s+1", inside), inside
    assert score(port_of(package), {"data": [[1, 2]]}).status_code == 200
    # the proxy is no root, whatever its image says (the test's is built from Debian's haproxy: root)
    assert proxy.attrs["Config"]["User"] == "10002:10002"
    top = proxy.top(ps_args="-o pid,uid,comm")
    uids = [process[top["Titles"].index("UID")] for process in top["Processes"]]
    assert uids and set(uids) == {"10002"}, top

    manifest = package / "package.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "container: {",
            "container: {security: {read_only_root: false, drop_capabilities: false, pids_limit: 0}, "
            "logs: {max_size: 1m, max_files: 2}, ",
        )
    )
    plan = run_cli("plan", str(package), cwd=repo)
    assert "container settings changed: logs, security" in plan.stdout and "  build" not in plan.stdout, plan.stdout
    assert apply(package, cwd=repo).returncode == 0
    host = serving_container(docker_client, unique_name).attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is False and not host.get("Tmpfs") and not host["CapDrop"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and not host["PidsLimit"]
    assert host["LogConfig"]["Config"] == {"max-size": "1m", "max-file": "2"}
    assert docker_client.containers.get(unique_name).attrs["HostConfig"]["LogConfig"]["Config"]["max-size"] == "1m"


SECRET_SCORE = """\
import json
import os

def init():
    pass

def run(raw):
    return {"token": os.environ.get("API_TOKEN")}
"""


def test_secrets_reach_the_container_only_and_a_changed_value_recreates_it(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine, tmp_path
):
    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    (package / "score.py").write_text(SECRET_SCORE)
    manifest = package / "package.yaml"
    manifest.write_text(
        manifest.read_text().replace("inference:\n", "inference:\n  secrets: {API_TOKEN: RECONCILER_TEST_TOKEN}\n")
    )
    first, second = f"tok-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"

    unset = run_cli("plan", str(package), cwd=repo)
    assert unset.returncode == 1
    assert re.search(
        r"package.yaml:\d+:\d+: inference.secrets: no value for RECONCILER_TEST_TOKEN in the environment",
        unset.stdout,
    ), unset.stdout

    env = {"RECONCILER_TEST_TOKEN": first}
    applied = run_cli("apply", str(package), cwd=repo, env=env, timeout=900)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert score(port_of(package)).json() == {"token": first}
    seen = [applied.stdout, applied.stderr]
    for command in (["plan", "-o", "json"], ["status", "-o", "json"], ["hash", "-o", "json"], ["hash"]):
        result = run_cli(*command, str(package), cwd=repo, env=env)
        seen += [result.stdout, result.stderr]
    assert run_cli("plan", str(package), cwd=repo, env=env).returncode == 0, "the same value: in sync"
    container = serving_container(docker_client, unique_name)
    image = container.image
    seen += [
        json.dumps(image.attrs),
        json.dumps(image.history()),
        json.dumps(container.labels),
        container.logs().decode(),
    ]
    seen += [docker_client.containers.get(unique_name).logs().decode()]
    seen += [p.read_text(errors="replace") for p in package.rglob("*") if p.is_file()]
    assert not [text for text in seen if first in text], "the value shows somewhere other than the container's env"
    assert f"API_TOKEN={first}" in container.attrs["Config"]["Env"]

    secrets_file = tmp_path / "prod.env"
    secrets_file.write_text(f"# values for the model server\nRECONCILER_TEST_TOKEN='{second}'\n")
    plan = run_cli("plan", "--secrets", str(secrets_file), str(package), cwd=repo, env=env)
    assert "container settings changed: secret API_TOKEN" in plan.stdout and "  build" not in plan.stdout, plan.stdout
    assert second not in plan.stdout + plan.stderr
    applied = run_cli("apply", "--secrets", str(secrets_file), str(package), cwd=repo, timeout=900)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert score(port_of(package)).json() == {"token": second}

    secrets_file.write_text(f"RECONCILER_TEST_TOKEN={second}\nthis line is not one\n")
    broken = run_cli("plan", "--secrets", str(secrets_file), str(package), cwd=repo)
    shown = broken.stdout + broken.stderr
    assert broken.returncode == 1 and "prod.env:2: --secrets: not a NAME=value line" in shown, shown
    assert "this line" not in shown and second not in shown


def test_a_same_named_package_in_another_checkout_is_a_conflict_never_a_takeover(
    docker_client, repo, tmp_path_factory, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    cleanup_engine.append(unique_name)
    first = engine_package(repo, base_image, runtime_only_lock, unique_name)
    assert apply(first, cwd=repo).returncode == 0
    serving, image = ids(docker_client, unique_name)
    other = tmp_path_factory.mktemp("second-checkout")
    (other / ".git").mkdir()
    second = engine_package(other, base_image, runtime_only_lock, unique_name)
    (second / "score.py").write_text((second / "score.py").read_text() + "\n# another checkout\n")
    result = apply(second, cwd=other, extra=["--prune"])
    assert result.returncode == 1
    assert f"belongs to a package {unique_name} in another checkout ({first / 'package.yaml'})" in result.stdout
    assert ids(docker_client, unique_name) == (serving, image), "the first checkout's container is untouched"
    assert score(port_of(first), {"data": [[1, 2]]}).json() == [6.0]
    assert "remove" not in result.stdout
    assert run_cli("down", str(second), cwd=other).stdout.strip() == "no containers to remove"
    assert ids(docker_client, unique_name) == (serving, image)


def _docker_proxy_for(port: int) -> int:
    """The pid of Docker's port forwarder for a published port (the daemon's userland proxy)."""
    import subprocess

    found = subprocess.run(["pgrep", "-f", f"docker-proxy .*-host-port {port}( |$)"], capture_output=True, text=True)
    pids = [int(pid) for pid in found.stdout.split()]
    assert pids, f"no docker-proxy publishes {port}: this test needs dockerd's userland proxy (its default)"
    return pids[0]


def test_a_dead_port_forwarder_and_a_network_removed_by_hand_are_healed(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    """Two faults under which plan said in sync while nothing answered (issue 23)."""
    import signal

    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name)
    port = port_of(package)
    assert apply(package, cwd=repo).returncode == 0
    os.kill(_docker_proxy_for(port), signal.SIGKILL)  # as when it ran out of descriptors
    with pytest.raises(requests.ConnectionError):
        score(port)
    planned = run_cli("plan", str(package), cwd=repo)
    assert planned.returncode == 2 and "refuses connections (Docker's port forwarder gone?)" in planned.stdout
    assert apply(package, cwd=repo).returncode == 0
    assert score(port).status_code == 200

    for container in docker_client.containers.list(filters={"label": f"reconciler.package={unique_name}"}):
        container.stop(timeout=5)
    docker_client.networks.get(f"reconciler-{unique_name}").remove()
    planned = run_cli("plan", str(package), cwd=repo)
    assert planned.returncode == 2 and f"the network reconciler-{unique_name} is gone" in planned.stdout
    healed = apply(package, cwd=repo)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert score(port).status_code == 200
    assert run_cli("plan", str(package), cwd=repo).returncode == 0


def test_the_image_records_the_digest_of_its_bill_of_materials(
    docker_client, repo, base_image, runtime_only_lock, unique_name, cleanup_engine
):
    import blake3

    cleanup_engine.append(unique_name)
    package = engine_package(repo, base_image, runtime_only_lock, unique_name, mode="image")
    assert apply(package, cwd=repo).returncode == 0
    sbom = (package / "build" / unique_name / "sbom.cdx.json").read_bytes()
    [image] = docker_client.images.list(filters={"label": f"reconciler.package={unique_name}"})
    assert image.labels["reconciler.sbom"] == f"blake3:{blake3.blake3(sbom).hexdigest()}"


@pytest.mark.docker
def test_more_cpus_than_the_engines_host_has_is_refused_by_the_plan(repo, base_image, runtime_only_lock, docker_client):
    """An Azure instance size carried over by `import azure` (Standard_DS3_v2: 4 CPUs) on a
    smaller host: the engine refused the container after its build; the plan says so first."""
    host_cpus = docker_client.info()["NCPU"]
    package = engine_package(repo, base_image, runtime_only_lock, f"c{uuid.uuid4().hex[:10]}")
    with_cpus(package, str(host_cpus + 2))
    for command in ("plan", "apply"):
        result = run_cli(command, str(package), cwd=repo)
        said = result.stdout + result.stderr
        assert result.returncode == 1, said
        assert f"output.resources.cpu: {host_cpus + 2} CPUs, and the host of the Docker engine" in said
        assert f"lower it to {host_cpus} or less" in said
    assert not docker_client.images.list(filters={"label": f"reconciler.package={package.name}"}), "nothing was built"
