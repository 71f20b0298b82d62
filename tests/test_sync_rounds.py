"""The sync agent's rounds on the fake engine: real git (a local bare repository stands in for
the remote), the real agent and pipeline in this process, the engine in memory. What a failing
commit does round after round, which a real engine would take minutes to show."""

from __future__ import annotations

import pytest

from reconciler.sync.agent import SyncAgent

from .conftest import BASE_IMAGE, engine_package
from .fake_engine import FakeEngine
from .test_sync import Remote


@pytest.fixture
def agent(tmp_path, fake, runtime_only_lock):
    remote = Remote(tmp_path)
    package = engine_package(remote.work, BASE_IMAGE, runtime_only_lock, "demo")
    good = remote.commit("a package")
    agent = SyncAgent(
        str(remote.bare),
        ref="main",
        path=".",
        interval_s=1,
        state=tmp_path / "state",
        prune=False,
        require_signed=False,
    )
    assert agent.round(), agent.conclusions
    return agent, remote, package, good


def builds(fake: FakeEngine) -> int:
    return sum(1 for call in fake.calls if call.startswith("build "))


def test_a_commit_whose_build_fails_is_held_round_after_round_and_never_reported_applied(agent, fake):
    agent, remote, package, good = agent
    fake.failing_builds.add("demo")
    (package / "score.py").write_text((package / "score.py").read_text() + "\n# broken\n")
    broken = remote.commit("broken")
    before = builds(fake)
    for _ in range(4):  # the broken commit was built again every other round, and recorded as applied between
        assert not agent.round()
        assert agent.status.last_applied.commit == good
        assert agent.status.last_error.commit == broken and "build FAILED" in agent.status.last_error.message
    assert builds(fake) == before + 1


def test_while_a_commit_fails_what_served_before_is_started_again(agent, fake):
    agent, remote, package, good = agent
    fake.failing_builds.add("demo")
    (package / "score.py").write_text((package / "score.py").read_text() + "\n# broken\n")
    remote.commit("broken")
    assert not agent.round()
    serving = next(c for c in fake.stored_containers.values() if c.name == "demo-serving")
    fake.stop(serving.id)  # stopped by hand while the commit fails
    agent.conclusions.clear()
    assert not agent.round()
    assert serving.state == "running", "the last good container is healed"
    assert any("demo: held: container exited" in line for line in agent.conclusions), agent.conclusions
    assert agent.status.last_applied.commit == good
