"""The sync agent's listener: push webhooks that deploy at once, /status, /metrics and the status
page, in a real headless Chromium. The real agent runs in a thread, on real git and real HTTP on
loopback, against the fake engine (the rounds' engine calls are tested elsewhere)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import threading
import time

import pytest
import requests

from reconciler.sync.agent import SyncAgent

from .conftest import BASE_IMAGE, engine_package, missing
from .runtime_helpers import free_port
from .test_sync import Remote

SECRET = b"a-webhook-secret-of-some-length"


class Running:
    """An agent polling once an hour, in a thread, listening on a free port."""

    def __init__(self, remote: Remote, state, secret: bytes | None = SECRET):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent = SyncAgent(
            str(remote.bare),
            ref="main",
            path=".",
            interval_s=3600,
            state=state,
            prune=False,
            require_signed=False,
            listen=("127.0.0.1", self.port),
            webhook_secret=secret,
            out=open(os.devnull, "w"),
        )
        self.thread = threading.Thread(target=self.agent.run, kwargs={"once": False}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        self.wait(lambda: len(self.status()["rounds"]) >= 1)
        return self

    def __exit__(self, *exc) -> None:
        self.agent.stop.set()
        self.agent.wake.set()
        self.thread.join(timeout=30)

    def status(self) -> dict:
        try:
            return requests.get(self.url + "/status", timeout=5).json()
        except requests.ConnectionError:
            return {"rounds": []}

    def wait(self, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, self.status()
            time.sleep(0.05)

    def hook(self, provider: str, body: dict, *, sign: bytes | None = SECRET, event: str = "push", **headers):
        data = json.dumps(body).encode()
        signature = hmac.new(sign, data, hashlib.sha256).hexdigest() if sign else ""
        sent = {"Content-Type": "application/json", **headers}
        if provider == "github":
            sent |= {"X-GitHub-Event": event, **({"X-Hub-Signature-256": f"sha256={signature}"} if sign else {})}
        elif provider == "gitlab":
            sent |= {"X-Gitlab-Event": "Push Hook", **({"X-Gitlab-Token": sign.decode()} if sign else {})}
        else:
            sent |= {"X-Gitea-Event": event, **({"X-Gitea-Signature": signature} if sign else {})}
        return requests.post(f"{self.url}/hooks/{provider}", data=data, headers=sent, timeout=10)


@pytest.fixture
def served(tmp_path, fake, runtime_only_lock):
    remote = Remote(tmp_path)
    package = engine_package(remote.work, BASE_IMAGE, runtime_only_lock, "demo")
    remote.commit("a package")
    with Running(remote, tmp_path / "state") as running:
        yield running, remote, package


def edit_and_push(remote: Remote, package, note: str) -> str:
    (package / "score.py").write_text((package / "score.py").read_text() + f"\n# {note}\n")
    return remote.commit(note)


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_a_signed_push_hook_deploys_at_once_and_an_unsigned_one_changes_nothing(served, provider):
    running, remote, package = served
    rounds = len(running.status()["rounds"])
    commit = edit_and_push(remote, package, "a new version")
    for wrong in (None, b"not-the-secret-at-all-no"):
        refused = running.hook(provider, {"ref": "refs/heads/main"}, sign=wrong)
        assert refused.status_code == 401 and "signature" in refused.json()["message"]
    time.sleep(1)
    assert len(running.status()["rounds"]) == rounds, "a refused hook starts no round"
    accepted = running.hook(provider, {"ref": "refs/heads/main"})
    assert accepted.status_code == 202
    running.wait(lambda: (running.status().get("last_applied") or {}).get("commit") == commit)
    assert SECRET.decode() not in json.dumps(running.status())


def test_a_push_to_another_ref_is_acknowledged_and_ignored_and_a_burst_is_one_round(served):
    running, remote, package = served
    rounds = len(running.status()["rounds"])
    other = running.hook("github", {"ref": "refs/heads/feature"})
    assert other.status_code == 202 and "ignored" in other.json()["message"]
    assert running.hook("github", {}, event="ping").json() == {"message": "pong"}
    time.sleep(1)
    assert len(running.status()["rounds"]) == rounds
    edit_and_push(remote, package, "burst")
    for _ in range(10):
        assert running.hook("gitea", {"ref": "refs/heads/main"}).status_code == 202
    time.sleep(3)
    assert 1 <= len(running.status()["rounds"]) - rounds <= 2, "ten hooks in a burst are one round (and one after)"


def test_hooks_are_bounded_and_need_a_length(served):
    running, _, _ = served
    big = requests.post(
        running.url + "/hooks/github", data=b"x" * (2 * 1024 * 1024), headers={"X-GitHub-Event": "push"}, timeout=10
    )
    assert big.status_code == 413
    assert requests.get(running.url + "/hooks/github", timeout=5).status_code == 405
    assert requests.post(running.url + "/hooks/bitbucket", data=b"{}", timeout=5).status_code == 404


def test_status_and_metrics_say_what_runs(served):
    running, remote, package = served
    status = running.status()
    assert status["ref"] == "main" and status["last_applied"]["commit"] == status["last_fetched"]["commit"]
    [demo] = status["packages"]
    assert demo["name"] == "demo" and demo["state"] == "in sync" and demo["error"] == ""
    assert status["rounds"][0]["outcome"] == "applied"
    metrics = requests.get(running.url + "/metrics", timeout=5).text
    assert 'reconciler_sync_rounds_total{outcome="applied"}' in metrics
    assert "reconciler_sync_round_duration_seconds_bucket" in metrics
    assert "reconciler_sync_last_success_timestamp_seconds" in metrics
    assert 'reconciler_sync_package_in_sync{package="demo"} 1.0' in metrics


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("Debian's chromium is not installed; scripts/test installs it")
    return path


def test_the_status_page_shows_each_package_and_updates_after_a_round_in_a_real_browser(served, tmp_path, fake):
    from playwright.sync_api import sync_playwright

    running, remote, package = served
    arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=arguments)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 800})  # a phone
            page.goto(running.url + "/")
            assert page.locator("#packages tr td").first.inner_text() == "demo"
            assert page.locator("#packages .state").first.inner_text() == "in sync"
            rounds = int(page.locator("body").get_attribute("data-rounds"))
            fake.failing_builds.add("demo")
            commit = edit_and_push(remote, package, "broken on purpose")
            assert running.hook("github", {"ref": "refs/heads/main"}).status_code == 202
            deadline = time.monotonic() + 20  # polled from here: the page's policy forbids eval, also Playwright's
            while page.locator("body").get_attribute("data-rounds") != str(rounds + 1):
                assert time.monotonic() < deadline, page.content()
                time.sleep(0.2)
            assert page.locator("#packages .state").first.inner_text() == "failed"
            assert commit[:7] in page.locator("#rounds li").first.inner_text()
            assert "build FAILED" in page.locator("#packages td.problem").first.inner_text()
            assert SECRET.decode() not in page.content()
            box = page.locator("main").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, "readable on a phone: nothing wider than it"
        finally:
            browser.close()
