"""The canary against the real engine and HAProxy: the share of traffic it gets, its
promotion, its abort when run() fails half the time (no request refused, the old version
serving every request after), and a kill -9 in the middle of it."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from .conftest import run_cli
from .test_zero_downtime import Probe, apply_until_paused, assert_converged, set_version, version_served

pytestmark = pytest.mark.docker

FLAKY_SCORE = """\
RUNS = []


def init():
    pass


def run(raw_data):
    RUNS.append(1)
    if len(RUNS) % 2:
        raise RuntimeError("every other request fails")
    return {"version": 1}
"""


def with_canary(package, **settings) -> None:
    manifest = package / "package.yaml"
    entries = ", ".join(f"{key}: {value}" for key, value in settings.items())
    manifest.write_text(manifest.read_text().replace("container: {", f"container: {{canary: {{{entries}}}, "))


def canary_verdict(output: str) -> tuple[int, int]:
    """(errors, requests) from `canary passed|failed: N% errors (E of R)`."""
    found = re.search(r"canary (?:passed|failed): [\d.]+% errors \((\d+) of (\d+)\)", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def test_a_canary_gets_its_share_of_the_requests_then_is_promoted(served, repo, docker_client):
    package, name, port = served
    with_canary(package, weight=30, duration_s=4, max_error_rate=0, min_requests=20)
    set_version(package, 0, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    set_version(package, 1, 0)
    with Probe(port) as probe:
        result = run_cli("apply", str(package), cwd=repo)
        time.sleep(0.2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert probe.failures == [], probe.failures[:5]
    errors, requests_ = canary_verdict(result.stdout)
    assert errors == 0 and requests_ >= 20
    # while both served (from the canary's first answer to the old version's last), 30% went to it
    first_new = next(t for t, version in probe.versions if version == 1)
    last_old = max(t for t, version in probe.versions if version == 0)
    both = [version for t, version in probe.versions if first_new <= t <= last_old]
    share = both.count(1) / len(both)
    assert len(both) > 50 and 0.15 <= share <= 0.5, (share, len(both))
    assert_converged(docker_client, name, 1, port)
    assert run_cli("plan", str(package), cwd=repo).returncode == 0


def test_a_canary_whose_run_fails_half_the_time_is_aborted_and_refuses_nothing(served, repo, docker_client):
    package, name, port = served
    with_canary(package, weight=30, duration_s=30, max_error_rate=0.05, min_requests=20)
    set_version(package, 0, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    (package / "score.py").write_text(FLAKY_SCORE)
    with Probe(port) as probe:
        result = run_cli("apply", str(package), cwd=repo)
        ended = time.monotonic()
        time.sleep(1)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "what served before keeps serving" in result.stdout
    errors, requests_ = canary_verdict(result.stdout)
    assert requests_ >= 20 and 0.3 <= errors / requests_ <= 0.7
    # judged early (well before duration_s) on what the client saw: its 500s, and nothing refused
    failed = [status for _, status in probe.failures]
    assert set(failed) == {500}, probe.failures[:5]
    assert len(failed) >= errors  # the proxy counted each 500 the client got (some came after its last look)
    assert all(version == 0 for t, version in probe.versions if t > ended)
    assert [status for t, status in probe.answers if t > ended] == [200] * len(
        [t for t, _ in probe.answers if t > ended]
    )
    assert_converged(docker_client, name, 0, port)


def test_kill_9_during_a_canary_is_resumed_by_the_next_apply_and_status_shows_it(served, repo, docker_client):
    package, name, port = served
    with_canary(package, weight=30, duration_s=3, max_error_rate=0, min_requests=5)
    set_version(package, 1, 0)
    assert run_cli("apply", str(package), cwd=repo).returncode == 0
    set_version(package, 2, 0)
    with Probe(port) as probe:
        process = apply_until_paused(package, repo, "canary-named")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        time.sleep(1)  # the canary keeps its share meanwhile
        status = run_cli("status", str(package), "--output", "json", cwd=repo)
        assert status.returncode == 0, status.stderr
        [entry] = json.loads(status.stdout)["packages"]
        assert entry["canary"]["container"] == f"{name}-canary" and entry["canary"]["weight"] == 30
        assert entry["canary"]["requests"] > 0 and entry["canary"]["errors"] == 0
        assert entry["canary"]["max_error_rate"] == 0
        text = run_cli("status", str(package), cwd=repo).stdout
        assert re.search(
            rf"canary {name}-canary gets 30% of requests: \d+ so far, 0 errors \(0%\); it fails above 0% errors", text
        ), text
        planned = run_cli("plan", str(package), cwd=repo)
        assert planned.returncode == 2 and "(resumed: it was interrupted)" in planned.stdout, planned.stdout
        result = run_cli("apply", str(package), cwd=repo)
        assert result.returncode == 0, result.stdout + result.stderr
        time.sleep(0.2)
    assert probe.failures == [], probe.failures[:5]
    assert "canary passed" in result.stdout
    assert_converged(docker_client, name, 2, port)
    assert version_served(port) == 2
    assert run_cli("plan", str(package), cwd=repo).returncode == 0
