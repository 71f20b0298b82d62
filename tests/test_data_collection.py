"""Model data collection as Azure's azureml-ai-monitoring does it: a script with `Collector`,
unchanged, behind the real runtime; the JSON Lines it leaves, correlated with each request;
payload logging; and collection that fails never failing a request."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import engine_package, remove_package_objects, run_cli, serving_container
from .runtime_helpers import RuntimeProcess, write_app

COLLECTING_SCORE = """\
import json

import pandas as pd
from azureml.ai.monitoring import Collector


def init():
    global inputs_collector, outputs_collector
    inputs_collector = Collector(name="model_inputs", on_error=lambda e: print("collect failed", e))
    outputs_collector = Collector(name="model_outputs")


def run(raw_data):
    frame = pd.DataFrame(json.loads(raw_data)["data"], columns=["age", "bmi"])
    context = inputs_collector.collect(frame)
    result = pd.DataFrame({"prediction": frame.age * 2 + frame.bmi})
    outputs_collector.collect(result, context)
    return result.prediction.tolist()
"""


def collected(folder: Path, collection: str, count: int, timeout: float = 10) -> list[dict]:
    """The lines of one collection, once there are `count` (a thread writes them after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            json.loads(text)
            for path in sorted(folder.glob(f"{collection}/*/*/*/*/*.jsonl"))
            for text in path.read_text().splitlines()
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_collected_rows_land_as_json_lines_correlated_with_the_request(tmp_path):
    app, data = write_app(tmp_path / "app", COLLECTING_SCORE), tmp_path / "collected"
    data.mkdir()
    env = {"RECONCILER_DATA_COLLECTION": str(data), "RECONCILER_DATA_COLLECTION_PAYLOAD": "1"}
    with RuntimeProcess(app, env=env) as server:
        server.wait_ready()
        answers = [
            requests.post(
                f"{server.url}/score", json={"data": [[50, 20.5], [n, 30.0]]}, headers={"x-request-id": f"req-{n}"}
            )
            for n in (1, 2)
        ]
        assert [a.json() for a in answers] == [[120.5, 32.0], [120.5, 34.0]]
        inputs, outputs = collected(data, "model_inputs", 2), collected(data, "model_outputs", 2)
        requests_, responses = collected(data, "request", 2), collected(data, "response", 2)
    assert [line["xrequestid"] for line in inputs] == ["req-1", "req-2"]
    assert inputs[0]["data"] == [{"age": 50, "bmi": 20.5}, {"age": 1, "bmi": 30.0}]
    assert inputs[0]["collectdatatype"] == "pandas.core.frame.DataFrame"
    assert [line["correlationid"] for line in outputs] == [line["correlationid"] for line in inputs]
    assert outputs[1]["data"] == [{"prediction": 120.5}, {"prediction": 34.0}]
    path = next(data.glob("model_inputs/*/*/*/*/*.jsonl")).relative_to(data)
    assert len(path.parts) == 6 and len(path.parts[1]) == 4  # <name>/YYYY/MM/DD/HH/<host>-<pid>.jsonl
    assert json.loads(requests_[0]["data"]) == {"data": [[50, 20.5], [1, 30.0]]}
    assert json.loads(responses[1]["data"]) == [120.5, 34.0]
    assert [line["correlationid"] for line in responses] == ["req-1", "req-2"]


def test_payloads_are_capped_and_say_so(tmp_path):
    app, data = (
        write_app(tmp_path / "app", "def init():\n    pass\n\ndef run(raw):\n    return len(raw)\n"),
        tmp_path / "d",
    )
    data.mkdir()
    env = {
        "RECONCILER_DATA_COLLECTION": str(data),
        "RECONCILER_DATA_COLLECTION_PAYLOAD": "1",
        "RECONCILER_DATA_COLLECTION_MAX_PAYLOAD_BYTES": "10",
    }
    with RuntimeProcess(app, env=env) as server:
        server.wait_ready()
        assert requests.post(f"{server.url}/score", data="x" * 100).json() == 100
        [request] = collected(data, "request", 1)
    assert request["data"] == "x" * 10 and request["truncated"] is True


def test_a_missing_folder_drops_data_with_one_warning_and_serves_every_request(tmp_path):
    app = write_app(tmp_path / "app", COLLECTING_SCORE)
    with RuntimeProcess(app, env={"RECONCILER_DATA_COLLECTION": str(tmp_path / "gone")}) as server:
        server.wait_ready()
        for _ in range(5):
            answer = requests.post(f"{server.url}/score", json={"data": [[1, 2.0]]})
            assert answer.status_code == 200 and answer.json() == [4.0]
        time.sleep(0.5)
        logs = server.logs
    assert logs.count("cannot write model_inputs data") == 1 and "requests are served as usual" in logs
    assert not (tmp_path / "gone").exists()  # never made: a typo must not collect somewhere unexpected


def test_stdout_mode_writes_the_lines_to_the_log_for_the_clusters_collector(tmp_path):
    app = write_app(tmp_path / "app", COLLECTING_SCORE)
    with RuntimeProcess(app, env={"RECONCILER_DATA_COLLECTION": "stdout"}) as server:
        server.wait_ready()
        requests.post(f"{server.url}/score", json={"data": [[1, 2.0]]}, headers={"x-request-id": "k8s-1"})
        deadline = time.monotonic() + 10
        while '"data_collection": "model_outputs"' not in server.logs and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [json.loads(text) for text in server.logs.splitlines() if text.startswith('{"data_collection"')]
    assert {line["data_collection"] for line in lines} == {"model_inputs", "model_outputs"}
    assert all(line["xrequestid"] == "k8s-1" for line in lines)


def test_without_data_collection_a_collector_collects_nothing_and_says_so(tmp_path):
    app = write_app(tmp_path / "app", COLLECTING_SCORE)
    with RuntimeProcess(app) as server:
        server.wait_ready()
        assert requests.post(f"{server.url}/score", json={"data": [[1, 2.0]]}).json() == [4.0]
        logs = server.logs
    assert "data collection is off (inference.data_collection): Collector 'model_inputs' collects nothing" in logs


PLAIN_COLLECTING_SCORE = """\
import json

from azureml.ai.monitoring import Collector


def init():
    global inputs
    inputs = Collector(name="model_inputs")


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    inputs.collect([{"x": row} for row in rows])
    return [row * 2 for row in rows]
"""


@pytest.mark.docker
def test_in_container_mode_the_folder_is_mounted_writable_and_the_root_stays_read_only(
    repo, base_image, runtime_only_lock, docker_client
):
    name = f"dc{uuid.uuid4().hex[:10]}"
    package = engine_package(repo, base_image, runtime_only_lock, name)
    (package / "score.py").write_text(PLAIN_COLLECTING_SCORE)
    manifest = package / "package.yaml"
    manifest.write_text(
        manifest.read_text().replace("inference:\n", "inference:\n  data_collection: {payload: true}\n")
    )
    port = int(re.search(r"port: (\d+)", manifest.read_text()).group(1))
    try:
        applied = run_cli("apply", str(package), cwd=repo)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        answer = requests.post(f"http://127.0.0.1:{port}/score", json={"data": [1, 2]}, headers={"x-request-id": "r-1"})
        assert answer.json() == [2, 4]
        folder = package / "data-collection"
        [collected_line] = collected(folder, "model_inputs", 1)
        assert collected_line["data"] == [{"x": 1}, {"x": 2}] and collected_line["xrequestid"] == "r-1"
        assert collected(folder, "request", 1)[0]["correlationid"] == "r-1"
        serving = serving_container(docker_client, name)
        assert serving.attrs["HostConfig"]["ReadonlyRootfs"] is True
        # the collected data is neither code nor drift: the package stays in sync
        planned = run_cli("plan", str(package), cwd=repo)
        assert planned.returncode == 0, planned.stdout
    finally:
        remove_package_objects(docker_client, name)


def test_serve_writes_to_the_packages_folder_directly(repo):
    from .conftest import write_package
    from .runtime_helpers import ServeProcess

    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models: [{name: m, version: 1, path: model/model.txt}]
        inference: {data_collection: {directory: collected}, environment: {pip: []}}
        """,
        score=PLAIN_COLLECTING_SCORE,
    )
    with ServeProcess(manifest.parent) as served:
        served.wait_ready(timeout=60)
        assert requests.post(f"{served.url}/score", json={"data": [3]}, timeout=30).json() == [6]
        [collected_line] = collected(manifest.parent / "collected", "model_inputs", 1)
    assert collected_line["data"] == [{"x": 3}]


def test_under_sync_collected_data_is_kept_out_of_the_clone(repo):
    from reconciler.desired.state import collected_data_folder
    from reconciler.spec.package import load_package

    from .conftest import write_package

    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models: [{name: m, version: 1, path: model/model.txt}]
        inference: {data_collection: {directory: out/collected}}
        """,
    )
    package = load_package(manifest)
    assert collected_data_folder(package, None) == repo / "pkg" / "out" / "collected"
    state = repo / "state" / "data-collection"
    assert collected_data_folder(package, state) == state / "pkg" / "out" / "collected"
