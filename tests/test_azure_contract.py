"""The rest of Azure's entry-script contract in our runtime (the parts Azure's own server
cannot be compared on here): waiting for init(), Model.get_model_path, Azure's server
settings, concurrency limits, and streamed bodies that fail midway."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .runtime_helpers import RuntimeProcess, write_app


def test_requests_waiting_for_a_failing_init_get_the_failure(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        import time

        def init():
            time.sleep(2)
            raise RuntimeError("no model")

        def run(raw_data):
            return raw_data
    """,
    )
    server = RuntimeProcess(app)
    try:
        server.wait_alive()
        answer = requests.post(server.url + "/score", data="{}", timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"message": "the entry script failed to start; the service's log says why"}
        assert server.process.wait(30) == 3
    finally:
        server.stop()


def test_model_get_model_path_resolves_as_azure_for_one_and_several_models(tmp_path):
    models = tmp_path / "azureml-models"
    for name, version in (("encoder", 1), ("encoder", 3), ("ranker", 2)):
        (models / name / str(version)).mkdir(parents=True)
        (models / name / str(version) / f"{name}-v{version}.bin").write_text(f"{name} {version}")
    script = """\
        from azureml.core.model import Model
        from azureml.core import Model as SameModel

        def init():
            pass

        def run(raw_data):
            name, version = raw_data.split()
            try:
                return SameModel.get_model_path(name, int(version) if version != "-" else None)
            except Exception as error:
                return f"{type(error).__name__}: {error}"
    """
    several = write_app(tmp_path / "several", script)
    with RuntimeProcess(several, model_dir=models) as server:
        server.wait_ready()
        ask = lambda text: requests.post(server.url + "/score", data=text).json()  # noqa: E731
        assert ask("encoder -") == str(models / "encoder" / "3" / "encoder-v3.bin")  # the newest version
        assert ask("encoder 1") == str(models / "encoder" / "1" / "encoder-v1.bin")
        assert ask("ranker -") == str(models / "ranker" / "2" / "ranker-v2.bin")
        assert ask("missing -").startswith("ModelNotFoundException: Model missing not found")
    one = write_app(tmp_path / "one", script)
    with RuntimeProcess(one, model_dir=models / "ranker" / "2") as server:  # one model: its <name>/<version>
        server.wait_ready()
        assert requests.post(server.url + "/score", data="ranker -").json() == str(
            models / "ranker" / "2" / "ranker-v2.bin"
        )


def test_azure_server_settings_are_honoured_or_named(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        from helpers import greeting

        def init():
            pass

        def run(raw_data):
            return greeting(raw_data)
    """,
    )
    (app / "src").mkdir()
    (app / "src" / "helpers.py").write_text("def greeting(name):\n    return 'hello ' + name\n")
    env = {
        "AZUREML_SOURCE_DIRECTORY": "src",
        "SERVICE_PATH_PREFIX": "models/greeter",
        "WORKER_PRELOAD": "true",
    }
    with RuntimeProcess(app, env=env) as server:
        server.wait_ready()
        assert requests.post(server.url + "/score", data="you").json() == "hello you"
        paths = requests.get(server.url + "/swagger.json").json()["paths"]
        assert "/models/greeter/score" in paths and "/score" not in paths
        assert "WORKER_PRELOAD is not honoured" in server.logs


def test_beyond_max_concurrent_requests_is_429_with_retry_after(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        import time

        def init():
            pass

        def run(raw_data):
            time.sleep(float(raw_data))
            return "done"
    """,
    )
    with RuntimeProcess(app, env={"MAX_CONCURRENT_REQUESTS_PER_INSTANCE": "2"}) as server:
        server.wait_ready()
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(requests.post, server.url + "/score", data="1.5") for _ in range(2)]
            time.sleep(0.5)  # both are in run() or queued for it by now
            refused = requests.post(server.url + "/score", data="0")
            assert [future.result().status_code for future in slow] == [200, 200]
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1", refused.text
        assert requests.post(server.url + "/score", data="0").status_code == 200  # room again


def test_a_stream_that_fails_midway_is_cut_not_completed(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        from azureml_inference_server_http.api.aml_request import rawhttp
        from azureml_inference_server_http.api.aml_response import AMLResponse

        def init():
            pass

        @rawhttp
        def run(request):
            def chunks():
                yield "first\\n"
                raise RuntimeError("the model fell over")
            return AMLResponse(chunks(), 200)
    """,
    )
    with RuntimeProcess(app) as server:
        server.wait_ready()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("POST", "/score", body=b"{}")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("transfer-encoding") == "chunked"
        try:
            body = response.read()
        except http.client.IncompleteRead as cut:
            body = cut.partial
        else:
            raise AssertionError(f"the failed stream ended like a complete one: {body!r}")
        assert body == b"first\n"
        assert "RuntimeError: the model fell over" in server.logs
        assert requests.get(server.url + "/ready").status_code == 200  # the service goes on


def test_rawhttp_and_input_schema_together_are_refused_at_start(tmp_path):
    app = write_app(
        tmp_path / "app",
        """\
        from azureml.contrib.services.aml_request import rawhttp
        from inference_schema.schema_decorators import input_schema
        from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

        def init():
            pass

        @rawhttp
        @input_schema("data", StandardPythonParameterType([1]))
        def run(data):
            return data
    """,
    )
    server = RuntimeProcess(app)
    assert server.process.wait(30) == 3
    assert "run() cannot be decorated with both @rawhttp and @input_schema" in server.logs


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_count_requests_failures_and_init_time_across_workers(tmp_path, workers):
    app = write_app(
        tmp_path / "app",
        """\
        import time

        def init():
            time.sleep(0.3)

        def run(raw_data):
            if raw_data == "fail":
                raise ValueError("no")
            return raw_data
    """,
    )
    with RuntimeProcess(app, env={"WORKER_COUNT": str(workers)}) as server:
        server.wait_ready()
        for body in ("a", "b", "c", "fail"):
            requests.post(server.url + "/score", data=body)  # a new connection each: any worker answers
        deadline = time.monotonic() + 10  # a request is counted just after its response went out
        while True:
            scrape = requests.get(server.url + "/metrics")
            assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
            samples = _samples(scrape.text)
            counted = samples.get(
                ("inference_request_duration_seconds_count", (("route", "/score"), ("status", "500")))
            )
            if counted == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    ok = (("route", "/score"), ("status", "200"))
    failed = (("route", "/score"), ("status", "500"))
    assert samples[("inference_requests_total", ok)] == 3
    assert samples[("inference_requests_total", failed)] == 1
    assert samples[("inference_request_duration_seconds_count", ok)] == 3
    assert samples[("inference_run_failures_total", ())] == 1
    assert samples[("inference_requests_waiting", ())] == 0
    init = [value for (name, _), value in samples.items() if name == "inference_init_seconds"]
    assert init and max(init) >= 0.3
