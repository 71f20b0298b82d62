"""Adaptive batching (inference.batching): real runtime processes, real concurrent HTTP clients,
unchanged Azure-style entry scripts. Every client sends its own rows and checks that its answer
holds its own rows' results, whatever batch they were scored in."""

from __future__ import annotations

import json
import re
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from reconciler.desired.dockerfile import render_dockerfile
from reconciler.desired.state import dockerfile_settings, image_settings
from reconciler.spec.package import load_package

from .conftest import run_cli, write_package
from .runtime_helpers import RuntimeProcess, ServeProcess, write_app
from .test_manifest import problems_of

# An Azure-style plain script: each row's answer says which rows were scored with it, so a
# client can tell a batched answer from an unbatched one. Rows are [client, n, *values].
PLAIN = """\
    import json
    import time

    def init():
        pass

    def run(raw_data):
        rows = json.loads(raw_data)["data"]
        if any(row == "bad" for row in rows):
            raise ValueError("a bad row")
        if any(row == "slow" for row in rows):
            time.sleep(3)
        time.sleep(0.03)  # a model's fixed cost per call: concurrent requests queue behind it
        return [{"row": row, "batch": len(rows)} for row in rows]
"""

BATCHING = {"RECONCILER_BATCH_MAX_SIZE": "8", "RECONCILER_BATCH_MAX_LATENCY_MS": "5"}


def post(url: str, body, **kwargs) -> requests.Response:
    return requests.post(url + "/score", data=json.dumps(body), timeout=30, **kwargs)


def concurrently(function, arguments: list, workers: int = 16) -> list:
    start = threading.Barrier(workers)

    def call(argument):
        try:
            start.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return function(argument)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(call, arguments))


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    app = write_app(tmp_path_factory.mktemp("plain") / "app", PLAIN)
    with RuntimeProcess(app, env={**BATCHING, "SCORING_TIMEOUT_MS": "1500"}) as server:
        server.wait_ready()
        yield server


def test_concurrent_requests_share_run_calls_and_each_gets_its_own_rows(plain_server):
    def client(number: int) -> tuple[list, list]:
        seen = []
        for request in range(4):
            rows = [[number, request, i] for i in range(1 + (number + request) % 3)]
            answer = post(plain_server.url, {"data": rows})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-ms-run-function-failed"] == "False"
            got = answer.json()
            assert [item["row"] for item in got] == rows  # its own rows, in its own order
            seen += [item["batch"] for item in got]
        return seen

    batches = [size for sizes in concurrently(client, list(range(16))) for size in sizes]
    assert max(batches) <= 8  # max_batch_size counts rows and is never exceeded
    assert sum(size > 3 for size in batches) > len(batches) / 2  # most rows were scored with others'
    metrics = requests.get(plain_server.url + "/metrics", timeout=5).text
    calls = float(
        next(line.split()[1] for line in metrics.splitlines() if line.startswith("inference_batch_rows_count"))
    )
    assert 0 < calls < 64  # 64 requests, fewer run() calls
    assert "inference_batch_queue_wait_seconds_bucket" in metrics


def test_a_lone_request_is_scored_alone_and_unchanged(plain_server):
    answer = post(plain_server.url, {"data": [[1, 2], [3, 4]]})
    assert answer.json() == [{"row": [1, 2], "batch": 2}, {"row": [3, 4], "batch": 2}]


def test_a_request_with_more_rows_than_a_batch_holds_runs_alone(plain_server):
    rows = [[i] for i in range(12)]
    answers = concurrently(
        lambda body: post(plain_server.url, body).json(), [{"data": rows}] + [{"data": [[0]]}] * 7, 8
    )
    assert [item["batch"] for item in answers[0]] == [12] * 12
    assert all(len(answer) == 1 and answer[0]["batch"] <= 8 for answer in answers[1:])


def test_only_the_request_at_fault_fails_inside_a_batch(plain_server):
    bodies = [{"data": [[i]]} for i in range(11)] + [{"data": ["bad"]}]
    answers = concurrently(lambda body: post(plain_server.url, body), bodies, 12)
    assert answers[-1].status_code == 500 and answers[-1].headers["x-ms-run-function-failed"] == "True"
    for body, answer in zip(bodies[:-1], answers[:-1]):
        assert answer.status_code == 200, answer.text
        assert [item["row"] for item in answer.json()] == body["data"]


def test_a_request_that_times_out_inside_a_batch_fails_alone(plain_server):
    bodies = [{"data": ["slow"]}] + [{"data": [[i]]} for i in range(5)]
    answers = concurrently(lambda body: post(plain_server.url, body), bodies, 6)
    assert answers[0].status_code == 500 and "Scoring timeout" in answers[0].text
    for body, answer in zip(bodies[1:], answers[1:]):
        assert answer.status_code == 200, answer.text
        assert [item["row"] for item in answer.json()] == body["data"]


def test_what_cannot_be_batched_is_served_alone_and_unchanged(plain_server):
    other = {"data": [[1]], "method": "predict_proba"}  # another shape: run() gets it as it came
    answers = concurrently(
        lambda body: post(plain_server.url, body) if body else requests.get(plain_server.url + "/score", timeout=30),
        [other] * 4 + [None] * 2 + [{"data": [[i]]} for i in range(6)],
        12,
    )
    for answer in answers[:4]:  # scored alone: the batch of one is its own body
        assert answer.status_code == 200 and answer.json() == [{"row": [1], "batch": 1}]
    for answer in answers[4:6]:  # GET: run() gets the query as JSON, which has no "data"
        assert answer.status_code == 500
    for answer in answers[6:]:
        assert answer.status_code == 200


def test_an_answer_that_does_not_split_runs_each_request_again_and_turns_batching_off(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        import json, time
        def init():
            pass
        def run(raw_data):
            time.sleep(0.03)
            return {"rows": len(json.loads(raw_data)["data"])}
        """,
    )
    with RuntimeProcess(app, env=BATCHING) as server:
        server.wait_ready()
        bodies = [{"data": [[i]] * (1 + i % 3)} for i in range(12)]
        answers = concurrently(lambda body: post(server.url, body).json(), bodies, 12)
        assert answers == [{"rows": len(body["data"])} for body in bodies]
        server.stop()
        warnings = [line for line in server.logs.splitlines() if "batching is off in this worker" in line]
        assert len(warnings) == 1, server.logs
        assert "a dict whose values are not all lists" in warnings[0]


SCHEMA_SCRIPT = """\
    import time
    import numpy as np
    from inference_schema.schema_decorators import input_schema, output_schema
    from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
    from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

    calls = []

    def init():
        pass

    @input_schema("data", NumpyParameterType(np.array([[1.0, 2.0]])))
    @input_schema("scale", StandardPythonParameterType(1.0))
    @output_schema(StandardPythonParameterType([3.0]))
    def run(data, scale):
        time.sleep(0.03)
        assert isinstance(data, np.ndarray)
        return {"sums": (data.sum(axis=1) * scale).tolist(), "batch": [len(data)] * len(data)}
"""


def test_inference_schema_arrays_are_joined_and_other_parameters_keep_batches_apart(tmp_path):
    app = write_app(tmp_path / "app", SCHEMA_SCRIPT)
    with RuntimeProcess(app, env=BATCHING) as server:
        server.wait_ready()
        bodies = [{"data": [[i, 1.0]] * (1 + i % 2), "scale": 1.0 + i % 2} for i in range(16)]
        answers = concurrently(lambda body: requests.post(server.url + "/score", json=body, timeout=30), bodies, 16)
        batched = 0
        for body, answer in zip(bodies, answers):
            assert answer.status_code == 200, answer.text
            got = answer.json()
            assert got["sums"] == [(row[0] + row[1]) * body["scale"] for row in body["data"]]
            batched += max(got["batch"]) > len(body["data"])
        assert batched > 0, "no request was scored with another's"


def test_batching_settings_are_validated_with_file_line_and_field(repo):
    manifest = write_package(
        repo / "pkg",
        """\
        name: pkg
        models:
          - {name: m, version: 1, path: model/model.txt}
        inference:
          batching: {max_batch_size: 0, max_latency_ms: 1001}
        """,
    )
    found = problems_of(manifest)
    assert any(p.startswith("5:") and "inference.batching.max_batch_size" in p for p in found), found
    assert any(p.startswith("5:") and "inference.batching.max_latency_ms" in p for p in found), found


def test_batching_is_in_the_image_settings_and_the_dockerfile_only_when_set(repo):
    text = "name: pkg\nmodels:\n  - {name: m, version: 1, path: model/model.txt}\n"
    plain = load_package(write_package(repo / "a", text))
    batched = load_package(write_package(repo / "b", text + "inference:\n  batching: {max_batch_size: 64}\n"))
    assert "inference.batching" not in image_settings(plain)
    assert image_settings(batched)["inference.batching"] == {"max_batch_size": 64, "max_latency_ms": 5}
    assert "RECONCILER_BATCH" not in render_dockerfile(dockerfile_settings(plain))
    assert "ENV RECONCILER_BATCH_MAX_SIZE=64 RECONCILER_BATCH_MAX_LATENCY_MS=5" in render_dockerfile(
        dockerfile_settings(batched)
    )


def test_reconciler_serve_batches_as_the_image_does(repo):
    manifest = write_package(repo / "pkg", score=textwrap.dedent(PLAIN))
    manifest.write_text(manifest.read_text().replace("inference:", "inference:\n  batching: {max_batch_size: 8}", 1))
    with ServeProcess(manifest.parent) as server:
        server.wait_ready(timeout=60)
        answers = concurrently(lambda i: post(server.url, {"data": [[i]]}).json(), list(range(12)), 12)
        assert [answer[0]["row"] for answer in answers] == [[i] for i in range(12)]
        assert max(answer[0]["batch"] for answer in answers) > 1


def test_reconciler_hash_shows_the_batching_setting(repo):
    manifest = write_package(repo / "pkg")
    manifest.write_text(manifest.read_text().replace("inference:", "inference:\n  batching: {max_batch_size: 16}", 1))
    assert run_cli("lock", str(manifest.parent)).returncode == 0
    result = run_cli("hash", str(manifest.parent))
    assert result.returncode == 0, result.stderr
    assert re.search(
        r'inference\.batching\s+[0-9a-f]{64}\s+\{"max_batch_size": 16, "max_latency_ms": 5\}', result.stdout
    )
