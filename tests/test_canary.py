"""The canary (output.container.canary) against the fake engine: the verdict on the proxy's
counts, promotion, abort, and every interruption point of a canary update. The real proxy's
split and counting are tested in test_canary_engine.py."""

from __future__ import annotations

import pytest

from reconciler.engine.endpoint import ServerCounts
from reconciler.execute.canary import judge
from reconciler.plan.actions import CanaryRun

from .conftest import BASE_IMAGE, engine_package
from .fake_engine import FakeEngine, Killed
from .test_serving_protocols import apply, edit, failures, kills, plan, serving_state

CANARY = "canary: {weight: 20, duration_s: 0.3, max_error_rate: 0.1, min_requests: 20}"
IN_SYNC = [("backend", "demo-serving", "running"), ("proxy", "demo", "running")]


def run(**settings) -> CanaryRun:
    defaults = dict(name="demo-canary", weight=10, duration_s=60, max_error_rate=0.01, min_requests=20)
    return CanaryRun(**{**defaults, **settings}, abort_name="demo-retiring-2")


@pytest.mark.parametrize(
    "counts, over, verdict",
    [
        (ServerCounts(50, 24), False, (False, "canary failed: 48% errors (24 of 50) > 1%")),
        (ServerCounts(50, 0), False, None),  # not over yet, and nothing wrong
        (ServerCounts(50, 0), True, (True, "canary passed: 0% errors (0 of 50) <= 1%")),
        (ServerCounts(200, 2), True, (True, "canary passed: 1% errors (2 of 200) <= 1%")),
        (ServerCounts(19, 1), False, None),  # one error in too few requests is not judged early
        (
            ServerCounts(3, 0),
            True,
            (True, "canary promoted untested: too few requests to judge (3 of the 20 needed in 60 s, 0 errors)"),
        ),
        (
            ServerCounts(5, 5),
            True,
            (False, "canary failed: 5 errors in 5 requests, over 1% of even the 20 needed to judge"),
        ),
    ],
)
def test_the_verdict_on_the_proxys_counts(counts, over, verdict):
    got = judge(counts, run(), over=over)
    assert (None if got is None else (got.passed, got.text)) == verdict


def test_counts_since_a_proxy_restart_start_from_zero():
    assert ServerCounts(30, 4).since(ServerCounts(10, 1)) == ServerCounts(20, 3)
    assert ServerCounts(5, 0).since(ServerCounts(10, 1)) == ServerCounts(5, 0)
    assert ServerCounts.of_label(ServerCounts(7, 2).label()) == ServerCounts(7, 2)


def canary_package(repo, runtime_only_lock, fake: FakeEngine):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo", container=CANARY)
    assert failures(apply(package)) == []
    fake.watch_service(fake.running("proxy")[0].host_port, "demo-serving", "demo-canary")
    return package


def test_a_healthy_canary_is_promoted_with_no_refused_request(fake, repo, runtime_only_lock):
    package = canary_package(repo, runtime_only_lock, fake)
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    edit(package)
    [action] = [a for a in plan(package).outcomes[0].plan.actions if a.kind.verb == "recreate"]
    assert action.cause.endswith("; canary: 20% of requests for 0.3 s")
    result = apply(package)
    assert failures(result) == [] and fake.refusals == []
    [swap] = [r for o in result.outcomes for r in o.results if r.kind == "recreate"]
    assert swap.detail.startswith("canary passed: 0% errors (")
    assert any(call.endswith(" demo-canary") for call in fake.calls)  # it took the canary's name first
    assert old.id not in fake.stored_containers and serving_state(fake) == IN_SYNC
    assert [o.plan.actions for o in plan(package).outcomes] == [[]]


def test_a_failing_canary_is_aborted_and_the_old_container_never_stops_serving(fake, repo, runtime_only_lock):
    package = canary_package(repo, runtime_only_lock, fake)
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    fake.canary_traffic = (10, 5)
    edit(package)
    result = apply(package)
    [failure] = [r for o in result.outcomes for r in o.results if r.status == "failed"]
    assert failure.permanent
    assert failure.detail == "canary failed: 50% errors (10 of 20) > 10%; what served before keeps serving"
    assert fake.refusals == [] and serving_state(fake) == IN_SYNC
    assert fake.stored_containers[old.id].name == "demo-serving" and fake.stored_containers[old.id].starts == 1


def test_a_canary_update_killed_after_any_engine_call_converges_with_no_refused_request(fake, repo, runtime_only_lock):
    """kill -9 at each step in turn: the next apply resumes the canary (or retires what it left)
    and ends with one version serving, and no moment refused a request."""
    package = canary_package(repo, runtime_only_lock, fake)
    edit(package)
    result, _, wanted, killed = kills(fake, package)
    assert failures(result) == [] and wanted == IN_SYNC
    for where in killed:
        assert failures(apply(package)) == [], where
        assert serving_state(fake) == wanted, where
        assert fake.refusals == [], where
        assert [o.plan.actions for o in plan(package).outcomes] == [[]], where


def killed_once_the_canary_serves(package, monkeypatch) -> None:
    """An apply killed just after the new container took the canary's name."""
    from reconciler.execute import serving

    pause_at = serving.pause_at

    def killed_there(step, say):
        if step == "canary-named":
            raise Killed(step)

    monkeypatch.setattr(serving, "pause_at", killed_there)
    with pytest.raises(Killed):
        apply(package)
    monkeypatch.setattr(serving, "pause_at", pause_at)


def test_an_interrupted_canary_is_resumed_with_the_counts_it_began_with(fake, repo, runtime_only_lock, monkeypatch):
    package = canary_package(repo, runtime_only_lock, fake)
    fake.canary_counts = ServerCounts(500, 400)  # a canary before this one failed: not this one's
    edit(package)
    killed_once_the_canary_serves(package, monkeypatch)
    [canary] = [c for c in fake.stored_containers.values() if c.name == "demo-canary"]
    assert canary.spec.labels["reconciler.canary"] == "500,400"
    [action] = [a for a in plan(package).outcomes[0].plan.actions if a.kind.verb == "recreate"]
    assert action.cause.endswith("(resumed: it was interrupted)")
    result = apply(package)
    assert failures(result) == [], "judged on its own counts, not those of the canary before it"
    assert canary.id in fake.stored_containers and canary.name == "demo-serving"


def test_no_canary_when_nothing_serves_yet_or_the_proxy_is_new(fake, repo, runtime_only_lock):
    package = engine_package(repo, BASE_IMAGE, runtime_only_lock, "demo", container=CANARY)
    [create] = [a for a in plan(package).outcomes[0].plan.actions if a.kind.verb == "create"]
    assert "canary" not in create.cause
    apply(package)
    manifest = package / "package.yaml"
    manifest.write_text(manifest.read_text().replace("weight: 20", "weight: 30"))  # a new proxy configuration
    edit(package)
    [recreate] = [a for a in plan(package).outcomes[0].plan.actions if a.kind.verb == "recreate"]
    assert "canary" not in recreate.cause and recreate.payload.new_proxy is not None


def test_a_canary_of_inputs_that_changed_since_is_retired_first_and_a_new_one_runs(
    fake, repo, runtime_only_lock, monkeypatch
):
    package = canary_package(repo, runtime_only_lock, fake)
    edit(package)
    killed_once_the_canary_serves(package, monkeypatch)
    [stale] = [c for c in fake.stored_containers.values() if c.name == "demo-canary"]
    edit(package)  # the inputs change again while that canary serves
    actions = plan(package).outcomes[0].plan.actions
    assert [a.kind.verb for a in actions][-2:] == ["remove", "recreate"]
    assert actions[-2].cause == "a canary left by an interrupted update" and actions[-2].payload.unname
    assert "(resumed" not in actions[-1].cause
    assert failures(apply(package)) == [] and fake.refusals == []
    assert stale.id not in fake.stored_containers and serving_state(fake) == IN_SYNC


def test_a_failing_canary_killed_after_any_engine_call_leaves_the_old_version_serving(fake, repo, runtime_only_lock):
    package = canary_package(repo, runtime_only_lock, fake)
    old = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    fake.canary_traffic = (10, 5)
    edit(package)
    result, _, _, killed = kills(fake, package)
    assert failures(result)
    for where in killed:
        [failure] = failures(apply(package))
        assert failure.startswith("canary failed: "), (where, failure)
        assert serving_state(fake) == IN_SYNC and fake.refusals == [], where
        assert fake.stored_containers[old.id].name == "demo-serving", where
