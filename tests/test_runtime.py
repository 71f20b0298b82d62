"""The scoring runtime: real server processes, real HTTP on 127.0.0.1, Azure's contract."""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time

import joblib
import numpy as np
import pytest
import requests

from .conftest import EXAMPLES
from .runtime_helpers import RuntimeProcess, write_app

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

ECHO = """\
    import json
    import os
    import time

    def init():
        time.sleep(float(os.environ.get("INIT_SECONDS", "0")))

    def run(raw_data):
        data = json.loads(raw_data)
        if isinstance(data, dict) and data.get("fail"):
            raise ValueError("secret detail that must stay in the logs")
        if isinstance(data, dict) and "sleep" in data:
            time.sleep(data["sleep"])
        if isinstance(data, dict) and data.get("unserialisable"):
            return object()
        return {"raw": raw_data, "pid": os.getpid()}
"""


@pytest.fixture
def echo_app(tmp_path):
    return write_app(tmp_path / "app", ECHO)


def test_the_seeds_azure_script_runs_unchanged(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(EXAMPLES / "sklearn-regression" / "score.py", app / "score.py")
    model_dir = tmp_path / "azureml-models" / "sklearn_regression_model" / "1"
    model_dir.mkdir(parents=True)
    model_file = EXAMPLES / "sklearn-regression" / "model" / "sklearn_regression_model.pkl"
    shutil.copy(model_file, model_dir)
    with RuntimeProcess(app, model_dir=model_dir) as server:
        server.wait_ready()
        response = requests.post(
            server.url + "/score", data=json.dumps(SEED_REQUEST), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        expected = joblib.load(model_file).predict(np.array(SEED_REQUEST["data"])).tolist()
        assert response.json() == pytest.approx(expected)


def test_liveness_readiness_and_scoring_contract(echo_app):
    with RuntimeProcess(echo_app, env={"INIT_SECONDS": "1.5"}) as server:
        server.wait_alive()
        assert requests.get(server.url + "/").text == "Healthy"
        not_ready = requests.get(server.url + "/ready")
        assert not_ready.status_code == 503 and not_ready.json() == {"message": "init() has not returned yet"}
        early = requests.post(server.url + "/score", data="{}")  # waits for init(), as with Azure's server
        assert early.status_code == 200 and early.json()["raw"] == "{}"
        assert requests.get(server.url + "/ready").status_code == 200, "answered before init() returned"
        response = requests.post(server.url + "/score", data='{"a": 1}')
        assert response.status_code == 200
        assert response.json()["raw"] == '{"a": 1}'
        assert response.headers["x-ms-run-function-failed"] == "False"
        assert float(response.headers["x-ms-run-fn-exec-ms"]) >= 0
        assert UUID.match(response.headers["x-request-id"])
        echoed = requests.post(server.url + "/score", data="{}", headers={"x-request-id": "my-id-1"})
        assert echoed.headers["x-request-id"] == "my-id-1"
        too_long = requests.post(server.url + "/score", data="{}", headers={"x-request-id": "x" * 101})
        assert too_long.status_code == 431
        assert requests.options(server.url + "/score").status_code == 200
        assert requests.put(server.url + "/score", data="{}").status_code == 405
        assert requests.get(server.url + "/nowhere").status_code == 404


def test_get_score_passes_query_parameters_as_json_like_azure(echo_app):
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        response = requests.get(server.url + "/score?a=1&b=[1,2]&c=text&d=null&foo=x&foo=y")
        assert response.status_code == 200
        assert json.loads(response.json()["raw"]) == {"a": 1, "b": [1, 2], "c": "text", "d": None, "foo": ["x", "y"]}


def test_run_error_is_500_with_header_and_traceback_only_in_logs(echo_app):
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        response = requests.post(server.url + "/score", data='{"fail": true}')
        assert response.status_code == 500
        assert response.headers["x-ms-run-function-failed"] == "True"
        assert "secret detail" not in response.text
        assert response.json() == {
            "message": "An unexpected error occurred in scoring script. Check the logs for more info."
        }
        unserialisable = requests.post(server.url + "/score", data='{"unserialisable": true}')
        assert unserialisable.status_code == 500 and "not JSON-serialisable" in unserialisable.json()["message"]
        time.sleep(0.2)
        assert "Traceback" in server.logs and "secret detail that must stay in the logs" in server.logs


def test_scoring_timeout_while_liveness_still_answers(echo_app):
    with RuntimeProcess(echo_app, env={"SCORING_TIMEOUT_MS": "700"}) as server:
        server.wait_ready()
        outcome = {}

        def slow_call():
            started = time.monotonic()
            outcome["response"] = requests.post(server.url + "/score", data='{"sleep": 5}')
            outcome["seconds"] = time.monotonic() - started

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.3)
        probe_started = time.monotonic()
        assert requests.get(server.url + "/", timeout=2).text == "Healthy"
        assert time.monotonic() - probe_started < 0.5
        caller.join(10)
        response = outcome["response"]
        assert response.status_code == 500
        assert response.json() == {"message": "Scoring timeout after 700 ms"}
        assert response.headers["x-ms-run-function-failed"] == "True"
        assert outcome["seconds"] < 2.5
        # the overrunning call no longer blocks the next one
        assert requests.post(server.url + "/score", data="{}", timeout=3).status_code == 200


def test_body_over_the_limit_is_413(echo_app):
    with RuntimeProcess(echo_app, env={"MAX_REQUEST_BODY_BYTES": "1000"}) as server:
        server.wait_ready()
        assert requests.post(server.url + "/score", data="x" * 1001).status_code == 413
        chunked = requests.post(server.url + "/score", data=iter([b"x" * 600, b"x" * 600]))
        assert chunked.status_code == 413
        assert requests.post(server.url + "/score", data='"' + "x" * 900 + '"').status_code == 200


def test_init_failure_logs_traceback_and_model_listing_then_exits_3(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        def init():
            raise RuntimeError("the model file is corrupt")

        def run(raw_data):
            return raw_data
    """,
    )
    model_dir = tmp_path / "models" / "m" / "1"
    (model_dir / "sub").mkdir(parents=True)
    (model_dir / "weights.bin").write_bytes(b"0")
    (model_dir / "sub" / "vocab.txt").write_text("a")
    server = RuntimeProcess(app, model_dir=model_dir)
    assert server.process.wait(30) == 3
    logs = server.logs
    assert "RuntimeError: the model file is corrupt" in logs and "Traceback" in logs
    assert f"AZUREML_MODEL_DIR={model_dir} contains:" in logs
    assert "  weights.bin" in logs and "  sub/" in logs and "    vocab.txt" in logs


def test_missing_module_is_named_and_exits_3(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        import not_installed_module_xyz

        def init():
            pass

        def run(raw_data):
            return raw_data
    """,
    )
    server = RuntimeProcess(app)
    assert server.process.wait(30) == 3
    assert "the entry script imports 'not_installed_module_xyz', which is not installed in" in server.logs


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(echo_app):
    server = RuntimeProcess(echo_app)
    try:
        server.wait_ready()
        outcome = {}
        caller = threading.Thread(
            target=lambda: outcome.setdefault("response", requests.post(server.url + "/score", data='{"sleep": 1.5}'))
        )
        caller.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        caller.join(10)
        assert outcome["response"].status_code == 200
        assert server.process.wait(10) == 0
    finally:
        server.stop()


def test_two_workers_share_one_port_and_stop_cleanly(echo_app):
    server = RuntimeProcess(echo_app, env={"WORKER_COUNT": "2"})
    try:
        server.wait_ready()
        pids = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            with requests.Session() as session:  # a new connection each time, so both workers get some
                response = session.post(server.url + "/score", data="{}")
            if response.status_code == 200:
                pids.add(response.json()["pid"])
        assert len(pids) == 2, f"only worker pids {pids} answered:\n{server.logs}"
        assert server.stop() == 0
        assert "worker=0" in server.logs and "worker=1" in server.logs
    finally:
        server.stop()


def test_a_worker_whose_init_fails_stops_the_service_with_3(tmp_path):
    app = write_app(tmp_path / "app", "def init():\n    raise SystemExit(9)\n\ndef run(raw_data):\n    return 1\n")
    server = RuntimeProcess(app, env={"WORKER_COUNT": "2"})
    assert server.process.wait(60) == 3


def test_multi_model_layout(tmp_path):
    models = tmp_path / "azureml-models"
    for name, version, value in (("first", 1, "1.5"), ("second", 4, "10")):
        (models / name / str(version)).mkdir(parents=True)
        (models / name / str(version) / "value.txt").write_text(value)
    app = write_app(
        tmp_path / "app",
        """\
        import json
        import os

        def init():
            global first, second
            root = os.environ["AZUREML_MODEL_DIR"]
            first = float(open(os.path.join(root, "first", "1", "value.txt")).read())
            second = float(open(os.path.join(root, "second", "4", "value.txt")).read())

        def run(raw_data):
            return first + second * json.loads(raw_data)["x"]
    """,
    )
    with RuntimeProcess(app, model_dir=models) as server:
        server.wait_ready()
        assert requests.post(server.url + "/score", json={"x": 2}).json() == 21.5


def test_request_headers_parameter_receives_the_headers(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        def init():
            pass

        def run(data, request_headers):
            return {"data": data, "content_type": request_headers.get("Content-Type"),
                    "custom": request_headers.get("X-Custom-Header")}
    """,
    )
    with RuntimeProcess(app) as server:
        server.wait_ready()
        response = requests.post(
            server.url + "/score", data="[1]", headers={"Content-Type": "application/json", "x-custom-header": "abc"}
        )
        assert response.json() == {"data": "[1]", "content_type": "application/json", "custom": "abc"}


DECORATED = """\
    from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
    from inference_schema.schema_decorators import input_schema, output_schema

    def init():
        pass

    @input_schema("data", StandardPythonParameterType([[1.0, 2.0]]))
    @input_schema("scale", StandardPythonParameterType(1.0))
    @output_schema(StandardPythonParameterType([3.0]))
    def run(data, scale):
        return [scale * sum(row) for row in data]
"""


def test_decorated_run_gets_keyword_arguments(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", DECORATED)) as server:
        server.wait_ready()
        response = requests.post(server.url + "/score", json={"data": [[1, 2], [3, 4]], "scale": 2})
        assert response.status_code == 200 and response.json() == [6.0, 14.0]
        not_json = requests.post(server.url + "/score", data="data=1", headers={"Content-Type": "text/plain"})
        assert not_json.status_code == 415
        assert not_json.json() == {"message": "Expects Content-Type to be application/json"}
        missing = requests.post(server.url + "/score", json={"data": [[1, 2]]})
        assert missing.status_code == 400
        assert missing.json() == {"message": "A value is not provided for the 'scale' parameter."}
        assert requests.post(server.url + "/score", json=[1]).status_code == 400
        via_get = requests.get(server.url + "/score", params={"data": "[[1, 1]]", "scale": "3"})
        assert via_get.json() == [6.0]


def test_swagger_generated_from_decorators(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", DECORATED)) as server:
        server.wait_ready()
        v2 = requests.get(server.url + "/swagger.json").json()
        assert v2["swagger"] == "2.0"
        input_schema = v2["definitions"]["ServiceInput"]
        assert set(input_schema["properties"]) == {"data", "scale"}
        assert v2["definitions"]["ServiceOutput"]["type"] == "array"
        v3 = requests.get(server.url + "/swagger.json?version=3").json()
        assert v3["openapi"].startswith("3.") and v3["components"]["schemas"]["ServiceInput"] == input_schema
        bad = requests.get(server.url + "/swagger.json?version=7")
        assert bad.status_code == 404 and "Supported versions" in bad.json()["message"]


def test_swagger_generic_without_decorators_and_user_file_wins(echo_app):
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        v2 = requests.get(server.url + "/swagger.json?version=2").json()
        assert v2["definitions"]["ServiceInput"] == {"type": "object", "example": {}}
        assert "/score" in v2["paths"] and "/ready" in v2["paths"]
    (echo_app / "swagger3.json").write_text('{"openapi": "3.0.0", "info": {"title": "mine"}}')
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        assert requests.get(server.url + "/swagger.json?version=3").json()["info"]["title"] == "mine"


def test_cors_for_configured_origins_only(echo_app):
    with RuntimeProcess(echo_app, env={"AML_CORS_ORIGINS": "https://app.example, https://b.example"}) as server:
        server.wait_ready()
        allowed = requests.post(server.url + "/score", data="{}", headers={"Origin": "https://b.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://b.example"
        other = requests.post(server.url + "/score", data="{}", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = requests.options(server.url + "/score", headers={"Origin": "https://app.example"})
        assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]


def test_one_log_line_per_request(echo_app):
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        requests.post(server.url + "/score", data="{}", headers={"x-request-id": "log-me"})
        requests.get(server.url + "/missing")
        server.request_log_lines(2)  # both are written
        time.sleep(0.3)  # and no third comes
        lines = server.request_log_lines(3, timeout=0)
        assert len(lines) == 2, server.logs
        assert re.search(r"method=POST path=/score status=200 ms=\d+\.\d{3} request_id=log-me$", lines[0])
        assert re.search(r"method=GET path=/missing status=404 ms=", lines[1])
        assert "path=/ready status=200" not in server.logs, "successful probes are not logged at INFO"


def test_runtime_imports_nothing_else_of_reconciler():
    import ast
    from pathlib import Path

    import reconciler.runtime as runtime

    for path in Path(runtime.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1) and not (
                    node.level == 0 and (node.module or "").startswith("reconciler")
                ), path
                assert node.level != 2, path
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("reconciler") for alias in node.names), path


def test_with_several_workers_ready_means_every_worker_is_ready(tmp_path):
    app = write_app(
        tmp_path / "app",
        f"""\
        import os
        import time

        def init():
            try:  # the first worker to get here is slow to start, the other is quick
                os.close(os.open({str(tmp_path / "slow-taken")!r}, os.O_CREAT | os.O_EXCL))
                time.sleep(2)
            except FileExistsError:
                pass

        def run(raw_data):
            return os.getpid()
    """,
    )
    server = RuntimeProcess(app, env={"WORKER_COUNT": "2"})
    try:
        server.wait_ready()
        statuses = set()
        for _ in range(30):
            with requests.Session() as session:
                statuses.add(session.post(server.url + "/score", data="{}").status_code)
        assert statuses == {200}
    finally:
        server.stop()


def test_dev_reload_picks_up_edits_and_keeps_old_code_when_the_new_fails(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        from helper import factor

        def init():
            global ready
            ready = "v1"

        def run(raw_data):
            return [ready, factor()]
    """,
    )
    (app / "helper.py").write_text("def factor():\n    return 1\n")
    with RuntimeProcess(app, env={"RECONCILER_DEV": "1"}) as server:
        server.wait_ready()
        assert requests.post(server.url + "/score", data="{}").json() == ["v1", 1]
        (app / "score.py").write_text((app / "score.py").read_text().replace('"v1"', '"v2"'))
        (app / "helper.py").write_text("def factor():\n    return 2\n")
        reloaded = requests.post(server.url + "/-/reload")
        assert reloaded.status_code == 200 and reloaded.json()["reloaded"] is True
        assert requests.post(server.url + "/score", data="{}").json() == ["v2", 2]
        (app / "score.py").write_text(
            "def init():\n    raise ValueError('half-written edit')\n\ndef run(raw):\n    return 0\n"
        )
        failed = requests.post(server.url + "/-/reload")
        assert failed.status_code == 500
        assert failed.json()["message"] == (
            "reload failed: ValueError: half-written edit; the previous code keeps serving"
        )
        assert requests.post(server.url + "/score", data="{}").json() == ["v2", 2]


def test_reload_route_exists_only_in_dev_mode(echo_app):
    with RuntimeProcess(echo_app) as server:
        server.wait_ready()
        assert requests.post(server.url + "/-/reload").status_code == 404
