"""The serving protocols and the executor against the fake engine: the tier between the golden
plan tests and the real engine. Real files, the real pipeline, planner and executor; only the
Docker engine is in memory, so every interruption point of an update is tried in seconds."""

from __future__ import annotations

import pytest

from reconciler import pipeline

from .conftest import BASE_IMAGE, engine_package, with_cpus
from .fake_engine import FakeEngine, Killed


def apply(path) -> pipeline.Reconciliation:
    return pipeline.run([str(path)], pipeline.Options(lock_timeout_s=5))


def plan(path) -> pipeline.Reconciliation:
    with pipeline.Session() as session:
        return pipeline.reconcile([str(path)], session, frozen=True)


def edit(package) -> None:
    score = package / "score.py"
    score.write_text(score.read_text() + "\n# a new version\n")


def serving_state(engine: FakeEngine) -> list[tuple[str, str, str]]:
    """(role, name, state) of every container, sorted."""
    return sorted(
        (c.spec.labels.get("reconciler.role", ""), c.name, c.state) for c in engine.stored_containers.values()
    )


def kills(fake: FakeEngine, package):
    """An uninterrupted apply (its result, engine calls and end state), then the same apply
    killed before each of those calls in turn: the engine put back first each time, and
    `where` yielded for the test to apply again and check what that converged to."""
    before, start = fake.save(), len(fake.calls)
    result = apply(package)
    steps, wanted = fake.calls[start:], serving_state(fake)

    def each():
        for killed_at in range(len(steps)):
            fake.restore(before)
            fake.kill_after = start + killed_at
            with pytest.raises(Killed):
                apply(package)
            fake.kill_after = None
            yield f"killed before {steps[killed_at]!r}"

    return result, steps, wanted, each()


def failures(reconciliation) -> list[str]:
    return [r.detail for o in reconciliation.outcomes for r in o.results if r.status == "failed"]


def test_from_nothing_the_proxy_and_one_serving_container_then_in_sync(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    result = apply(package)
    assert failures(result) == [] and not result.has_errors
    assert serving_state(fake) == [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]
    assert set(fake.stored_networks) == {"reconciler-demo"}
    assert [o.plan.actions for o in plan(package).outcomes] == [[]]


def test_an_update_moves_traffic_without_a_refused_request_and_leaves_nothing_behind(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    fake.watch_service(old.spec.port or fake.running("proxy")[0].host_port, "demo-serving")
    edit(package)
    result = apply(package)
    assert failures(result) == []
    assert fake.refusals == []
    assert old.id not in fake.stored_containers
    assert serving_state(fake) == [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]
    new = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    assert new.starts == 1  # the container that passed readiness is the one that serves


def test_an_update_killed_after_any_engine_call_is_finished_by_the_next_apply(fake, repo, runtime_only_lock):
    """kill -9 after each step of a proxied update in turn: the next apply converges to one
    serving container of the new version, no request is refused at any moment, and a plan
    after it is in sync."""
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    fake.watch_service(fake.running("proxy")[0].host_port, "demo-serving")
    edit(package)
    _, steps, wanted, killed = kills(fake, package)
    assert len(steps) >= 8, steps  # build, tag, create, start, renames, stop, remove...
    for where in killed:
        result = apply(package)
        assert failures(result) == [], where
        assert serving_state(fake) == wanted, where
        assert fake.refusals == [], where
        assert [o.plan.actions for o in plan(package).outcomes] == [[]], where


def test_a_new_version_that_never_becomes_ready_leaves_the_old_one_serving(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    fake.watch_service(fake.running("proxy")[0].host_port, "demo-serving")
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    fake.broken_builds = True
    edit(package)
    result = apply(package)
    [failure] = [r for o in result.outcomes for r in o.results if r.status == "failed"]
    assert failure.permanent and "did not become ready" in failure.detail
    assert fake.refusals == []
    assert serving_state(fake) == [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]
    assert fake.stored_containers[old.id].name == "demo-serving"


def test_without_the_proxy_a_canary_that_fails_changes_nothing(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("container: {", "container: {proxy: false, "))
    apply(package)
    [old] = fake.stored_containers.values()
    fake.broken_builds = True
    edit(package)
    result = apply(package)
    [failure] = [r for o in result.outcomes for r in o.results if r.status == "failed"]
    assert failure.permanent and "the canary" in failure.detail
    assert list(fake.stored_containers) == [old.id] and old.state == "running" and old.name == "demo"


def test_without_the_proxy_an_update_killed_anywhere_converges(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("container: {", "container: {proxy: false, "))
    apply(package)
    edit(package)
    _, _, wanted, killed = kills(fake, package)
    assert wanted == [("", "demo", "running")]
    for where in killed:
        assert failures(apply(package)) == [], where
        assert serving_state(fake) == wanted, where


def test_down_removes_the_containers_then_the_network(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    with pipeline.Session() as session:
        results = pipeline.down([o.package for o in plan(package).outcomes], session)
    assert sorted(r.target for r in results) == ["container demo", "container demo-serving"]
    assert all(r.status == "done" for r in results)
    assert fake.stored_containers == {} and fake.stored_networks == {}
    assert fake.calls[-1] == "remove network reconciler-demo"


def test_a_failed_action_skips_the_rest_of_its_package_and_not_the_others(fake, repo, runtime_only_lock):
    engine_package(repo, BASE_IMAGE, runtime_only_lock, "broken")
    engine_package(repo, BASE_IMAGE, runtime_only_lock, "fine")
    fake.failing_builds.add("broken")
    result = apply(repo)
    by_name = {o.package.name: [(r.kind, r.status, r.detail) for r in o.results] for o in result.outcomes}
    assert [(kind, status) for kind, status, _ in by_name["broken"]] == [
        ("write", "done"),
        ("build", "failed"),
        ("create", "skipped"),
    ]
    assert by_name["broken"][-1][2] == "upstream failed"
    assert [(kind, status) for kind, status, _ in by_name["fine"]] == [
        ("write", "done"),
        ("build", "done"),
        ("create", "done"),
    ]
    [failure] = [r for o in result.outcomes for r in o.results if r.status == "failed"]
    assert failure.permanent  # the same inputs fail the same way: watch waits for a change


def test_an_engine_error_that_quotes_a_secret_is_told_without_it(fake, repo, runtime_only_lock, monkeypatch):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("inference:\n", "inference:\n  secrets: [API_TOKEN]\n"))
    monkeypatch.setenv("API_TOKEN", "tok-3f9a-never-shown")
    fake.create_error = "cannot create container: invalid environment {environment}"
    result = apply(package)
    [failure] = failures(result)
    assert "tok-3f9a-never-shown" not in failure
    assert "'API_TOKEN': '<secret API_TOKEN>'" in failure


def test_a_name_another_container_holds_is_an_error_of_the_plan_not_a_conflict_midway(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    fake.add_image("somebody-elses:1")
    from reconciler.engine.specs import ContainerSpec

    fake.create_container(ContainerSpec("somebody-elses:1", "demo-serving", {}))  # not reconciler's
    [outcome] = plan(package).outcomes
    assert outcome.plan.actions == []
    assert "container name demo-serving is held by a container that is not this package's" in outcome.plan.errors[0]
    before = set(fake.stored_containers)
    result = apply(package)
    assert result.has_errors and set(fake.stored_containers) == before  # nothing built, nothing left running


def test_a_swap_that_fails_at_the_rename_leaves_no_backend_running(fake, repo, runtime_only_lock, monkeypatch):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    edit(package)
    real_rename = fake.rename

    def refuse_the_serving_name(container_id, name):
        if name == "demo-serving" and container_id != old.id:
            from reconciler.engine.docker import EngineError

            raise EngineError("cannot rename: Conflict")
        real_rename(container_id, name)

    monkeypatch.setattr(fake, "rename", refuse_the_serving_name)
    assert failures(apply(package))
    assert serving_state(fake) == [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]
    assert fake.stored_containers[old.id].name == "demo-serving"


def test_a_network_removed_by_hand_is_seen_and_healed(fake, repo, runtime_only_lock):
    """With the package's network gone, the service was down while plan said in sync, and with
    the proxy stopped too every apply waited its ready timeout and failed."""
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    for container in fake.stored_containers.values():
        fake.stop(container.id)
    fake.remove_network("reconciler-demo")  # refused while they ran, as Docker refuses it
    [outcome] = plan(package).outcomes
    [action] = outcome.plan.actions
    assert str(action).startswith("recreate demo on") and "the network reconciler-demo is gone" in action.cause
    assert failures(apply(package)) == []
    assert serving_state(fake) == [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]
    network_id = fake.stored_networks["reconciler-demo"][0]
    assert all(c.network_id == network_id for c in fake.stored_containers.values())
    assert [o.plan.actions for o in plan(package).outcomes] == [[]]


def test_prune_removes_the_networks_no_manifest_wants(fake, repo, runtime_only_lock):
    kept = engine_package(repo, BASE_IMAGE, runtime_only_lock, "kept")
    gone = engine_package(repo, BASE_IMAGE, runtime_only_lock, "gone")
    apply(repo)
    assert set(fake.stored_networks) == {"reconciler-kept", "reconciler-gone"}
    import shutil

    shutil.rmtree(gone)
    result = pipeline.run([str(repo)], pipeline.Options(lock_timeout_s=5, prune=True))
    removed = [r.target for r in result.cleanup_results if r.status == "done"]
    assert "network reconciler-gone" in removed, [(r.target, r.status, r.detail) for r in result.cleanup_results]
    assert set(fake.stored_networks) == {"reconciler-kept"} and kept.exists()


def test_a_published_port_that_refuses_connections_recreates_what_publishes_it(fake, repo, runtime_only_lock):
    """Above HAProxy's maxconn, Docker's port forwarder ran out of descriptors and exited: the
    port stayed dead while plan said in sync."""
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    proxy = fake.running("proxy")[0]
    fake.dead_forwarders.add(proxy.id)
    [action] = plan(package).outcomes[0].plan.actions
    assert str(action).startswith("recreate proxy demo on") and "refuses connections" in action.cause
    assert failures(apply(package)) == []
    assert proxy.id not in fake.stored_containers and len(fake.running("proxy")) == 1


def test_more_cpus_than_the_engine_has_is_an_error_of_the_plan_and_the_old_container_keeps_serving(
    fake, repo, runtime_only_lock
):
    """The engine refused the container only at creation, after its build."""
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo")
    apply(package)
    before, calls = serving_state(fake), len(fake.calls)
    with_cpus(package, "4")
    result = apply(package)
    [problem] = [str(p) for o in result.outcomes for p in o.problems]
    assert "demo/package.yaml:7:20: output.resources.cpu: 4 CPUs, and the host of the Docker engine" in problem
    assert "has 2: the engine refuses" in problem and "lower it to 2 or less" in problem, problem
    assert fake.calls[calls:] == [] and serving_state(fake) == before, "nothing built, nothing changed"
    with_cpus(package, "1500m")
    result = apply(package)
    assert failures(result) == [] and not result.has_errors
