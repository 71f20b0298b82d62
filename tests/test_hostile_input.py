"""Hostile input: nothing a repository holds makes reconciler run its code on the host, read
files outside it, print what it should not, or hang. Each case is listed with what it now
yields in docs/reliability.md."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import run_cli, write_package
from .runtime_helpers import RuntimeProcess, write_app

SECRET = "s3cr3t-value-that-must-never-print"

MANIFEST = """\
    name: demo
    models: [{name: demo_model, version: 1, path: model/model.txt}]
    inference:
      environment: {requirements: requirements.txt}
    """


def package_with_requirements(repo, text: str):
    package = repo / "demo"
    write_package(package, MANIFEST)
    (package / "requirements.txt").write_text(textwrap.dedent(text))
    return package


@pytest.mark.parametrize(
    "line, option",
    [
        ("--index-url https://evil.example.com/simple", "--index-url"),
        ("--extra-index-url=https://user:token@evil.example.com/simple", "--extra-index-url"),
        ("--trusted-host evil.example.com", "--trusted-host"),
        ("-f /tmp/wheels", "-f"),
        ("--pre", "--pre"),
        ("-e git+https://example.com/repo.git#egg=thing", "-e"),
        ("--editable=./local", "--editable"),
    ],
)
def test_pip_options_in_a_requirements_file_are_errors_naming_the_file_and_line(repo, line, option):
    package = package_with_requirements(repo, f"numpy==2.1.0\n{line}\n")
    for command in ("validate", "plan"):
        result = run_cli(command, str(package), cwd=repo)
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert f"demo/requirements.txt:2: requirements: pip option {option} is not allowed" in output, output
        assert "token" not in output and "evil.example.com" not in output, "a line is never quoted"
    assert not (package / "package.lock").exists()


def test_a_direct_reference_never_runs_its_setup_py(repo, tmp_path):
    """`name @ git+file://...` made pip clone it and run its setup.py on the host."""
    source = tmp_path / "evil"
    source.mkdir()
    marker = tmp_path / "setup-py-ran"
    (source / "setup.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='evil')\n"
    )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=source, check=True, env=env)
    package = package_with_requirements(repo, f"evil @ git+file://{source}\n")
    result = run_cli("plan", str(package), cwd=repo)
    assert result.returncode == 1
    assert (
        "demo/requirements.txt:1: requirements: evil is a direct reference (name @ URL)"
        in result.stderr + result.stdout
    )
    assert not marker.exists()
    inline = repo / "inline"
    write_package(inline, MANIFEST.replace("{requirements: requirements.txt}", f"{{pip: ['evil @ file://{source}']}}"))
    result = run_cli("validate", str(inline), cwd=repo)
    assert result.returncode == 1 and "inference.environment.pip[0]: evil is a direct reference" in result.stderr


def test_includes_stay_inside_the_repository_and_never_print_what_they_point_at(repo):
    package = package_with_requirements(repo, "-r /proc/self/environ\n-c ../../../../../../etc/passwd\n")
    result = run_cli("plan", str(package), cwd=repo, env={"RECONCILER_TEST_SECRET": SECRET})
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "demo/requirements.txt:1: requirements: /proc/self/environ is outside the repository" in output
    assert re.search(r"demo/requirements.txt:2: requirements: /etc/passwd is outside the repository", output)
    assert SECRET not in output and "root:x:0:0" not in output


def test_includes_inside_the_repository_are_followed(repo):
    package = package_with_requirements(repo, "-r ../shared/common.txt\n")
    (repo / "shared").mkdir()
    (repo / "shared" / "common.txt").write_text("# only the runtime's own\n")
    result = run_cli("validate", str(package), cwd=repo)
    assert result.returncode == 0, result.stderr


def test_a_fifo_as_a_requirements_file_is_an_error_not_a_hang(repo):
    package = package_with_requirements(repo, "")
    os.unlink(package / "requirements.txt")
    os.mkfifo(package / "requirements.txt")
    result = run_cli("validate", str(package), cwd=repo, timeout=30)
    assert result.returncode == 1 and "is not a file" in result.stderr, result.stderr


def test_hash_options_are_kept_and_other_trailing_options_refused(repo):
    package = package_with_requirements(
        repo, "numpy==2.1.0 --hash=sha256:" + "a" * 64 + "\nscipy==1.14.1 --no-binary :all:\n"
    )
    result = run_cli("validate", str(package), cwd=repo)
    assert result.returncode == 1
    assert "demo/requirements.txt:2: requirements: only --hash options may follow a requirement" in result.stderr
    assert "requirements.txt:1:" not in result.stderr


# -- the scoring runtime, in front of any client ---------------------------------------------

SLEEPY = """\
    import json
    import time

    def init():
        pass

    def run(raw_data):
        time.sleep(json.loads(raw_data).get("sleep", 0))
        return len(raw_data)
"""


def test_request_ids_are_bounded_and_cannot_forge_a_header_or_a_log_field(tmp_path):
    """A 10,000-character client id was echoed back; a crafted x-request-id forged log fields."""
    with RuntimeProcess(write_app(tmp_path / "app", SLEEPY)) as server:
        server.wait_ready()
        long_id = requests.post(server.url + "/score", data="{}", headers={"x-ms-client-request-id": "c" * 10_000})
        assert long_id.status_code == 431
        assert "c" * 101 not in str(long_id.headers)
        forged = requests.post(
            server.url + "/score", data="{}", headers={"x-request-id": "x status=200 ms=0.1 request_id=forged"}
        )
        assert forged.status_code == 200
        assert re.fullmatch(r"[0-9a-f-]{36}", forged.headers["x-request-id"]), "a uuid replaces an unsafe id"
        odd_path = requests.get(server.url + "/no%20such status=200")
        assert odd_path.status_code == 404
        lines = server.request_log_lines(3)
        assert len(lines) == 3, server.logs
        for line in lines:
            fields = line.split(" reconciler.runtime.requests: ")[1].split(" ")
            assert [field.split("=")[0] for field in fields] == ["method", "path", "status", "ms", "request_id"], line
        assert "forged" not in server.logs
        assert "path=/no%20such%20status=200 status=404" in lines[2]


def test_large_bodies_at_once_are_refused_past_their_budget_and_slow_ones_time_out(tmp_path):
    """Ten concurrent 99 MB bodies pushed one container past 1 GiB: what bodies hold at once is
    capped (503 with Retry-After, then served again), and a body that trickles in gets a 408."""
    env = {"MAX_REQUEST_BODY_BYTES": "1000000", "MAX_INFLIGHT_BODY_BYTES": "1500000", "REQUEST_BODY_TIMEOUT_S": "1"}
    big = json.dumps({"sleep": 2, "pad": "x" * 900_000})
    with RuntimeProcess(write_app(tmp_path / "app", SLEEPY), env=env) as server:
        server.wait_ready()
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(requests.post, server.url + "/score", data=big)
            time.sleep(0.7)  # the first body is in and held while run() sleeps
            refused = requests.post(server.url + "/score", data=big)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
            assert held.result().status_code == 200
        assert requests.post(server.url + "/score", data=big.replace('"sleep": 2', '"sleep": 0')).status_code == 200

        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert slow.recv(4096).startswith(b"HTTP/1.1 408 ")


def test_connections_that_never_finish_a_request_head_are_closed(tmp_path):
    """A connection idle from the start, or sending its headers byte by byte, was held forever."""
    env = {"REQUEST_HEADER_TIMEOUT_S": "1"}
    with RuntimeProcess(write_app(tmp_path / "app", SLEEPY), env=env) as server:
        server.wait_ready()
        for opening in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
                idle.sendall(opening)
                started = time.monotonic()
                assert idle.recv(4096) == b"", "closed without an answer"
                assert time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as polite:
            polite.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert polite.recv(4096).startswith(b"HTTP/1.1 200 ")


# -- nothing under a .git is ever content (the agent's clone keeps its remote's token there) --

GIT_CONFIG = '[remote "origin"]\n\turl = https://x-access-token:ghp_CLONE_TOKEN@example.com/team/repo.git\n'


def test_a_model_path_into_dot_git_is_refused_whatever_the_route(repo):
    (repo / ".git" / "config").write_text(GIT_CONFIG)
    (repo / "demo").mkdir()
    (repo / "demo" / "innocent").symlink_to("../.git")
    for path in ("../.git/config", "innocent/config"):
        write_package(
            repo / "demo",
            f"name: demo\nmodels: [{{name: m, version: 1, path: {path}}}]\ninference: {{environment: {{pip: []}}}}\n",
        )
        result = run_cli("validate", str(repo / "demo"), cwd=repo)
        assert result.returncode == 1
        assert "models[0].path:" in result.stderr and ".git (the repository's metadata), never content" in result.stderr
        assert "ghp_CLONE_TOKEN" not in result.stdout + result.stderr


def test_a_symlink_into_dot_git_in_the_source_folder_is_an_error_and_never_copied(repo, package_dir):
    (repo / ".git" / "config").write_text(GIT_CONFIG)
    (package_dir / "helpers").symlink_to("../.git")
    result = run_cli("apply", str(package_dir), cwd=repo)
    assert result.returncode == 1
    assert "helpers is a symlink into .git (the repository's metadata), never content" in result.stdout
    assert not (package_dir / "build").exists()


def test_a_worktree_pointer_file_named_dot_git_is_never_copied(repo, package_dir):
    (package_dir / ".reconcilerignore").write_text("!.*\n")  # un-ignore hidden files: .git still never goes in
    (package_dir / ".git").write_text("gitdir: /elsewhere/.git/worktrees/demo\n")
    (package_dir / ".env.example").write_text("A=1\n")
    assert run_cli("apply", str(package_dir), cwd=repo).returncode == 0
    app = package_dir / "build" / "demo" / "app"
    assert (app / ".env.example").exists() and not (app / ".git").exists()


def test_a_requirements_include_into_dot_git_is_refused(repo):
    (repo / ".git" / "config").write_text(GIT_CONFIG)
    package = package_with_requirements(repo, "-r ../.git/config\n")
    result = run_cli("validate", str(package), cwd=repo)
    assert result.returncode == 1
    assert "demo/requirements.txt:1: requirements: .git/config is in .git" in result.stderr
    assert "ghp_CLONE_TOKEN" not in result.stdout + result.stderr


def test_no_output_folder_is_written_into_dot_git(repo):
    manifest = write_package(repo / "demo")
    manifest.write_text(manifest.read_text() + "output: {directory: ../.git/hooks}\n")
    result = run_cli("validate", str(repo / "demo"), cwd=repo)
    assert result.returncode == 1
    assert "output.directory: .git/hooks is inside .git: reconciler writes no files there" in result.stderr


# -- a secret's value is never printed, whatever its bytes --------------------------------


@pytest.mark.parametrize("value", ["abc\x00def", '"abc\\ndef"', "abc\x1bdef"])
def test_a_secret_value_with_a_control_character_is_refused_naming_only_its_key(repo, value):
    manifest = write_package(repo / "demo")
    manifest.write_text(manifest.read_text().replace("inference:\n", "inference:\n  secrets: [API_TOKEN]\n"))
    manifest.write_text(manifest.read_text() + "output: {mode: container}\n")
    secrets = repo / "secrets.env"
    secrets.write_bytes(f"API_TOKEN={value}\n".encode())
    result = run_cli("plan", str(repo / "demo"), "--secrets", str(secrets), cwd=repo)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "inference.secrets: the value of API_TOKEN holds a control character" in output
    assert "abc" not in output and "def" not in output


IMPORT_SECRETS = """\
    name: blue
    endpoint_name: leaky
    model: {path: https://acct.blob.core.windows.net/models/m.pkl?sv=2022-11-02&se=2030-01-01&sp=r&sig=SAS_SIGNATURE}
    code_configuration: {code: ., scoring_script: score.py}
    environment_variables:
      DB_PASS: hunter2
      DATABASE_URL: postgres://app:DB_URL_PASSWORD@db.internal:5432/app
      AUTH_HEADER: Bearer AUTH_VALUE
      PRIVATE_PEM: "-----BEGIN PRIVATE KEY-----PEM_BODY"
      BLOB_URL: https://acct.blob.core.windows.net/c?sv=1&sig=BLOB_SIGNATURE
      PLAIN_SETTING: fine
"""


def test_import_azure_never_copies_or_prints_a_credential_by_name_or_by_value(repo):
    folder = repo / "leaky"
    write_package(folder)
    (folder / "package.yaml").unlink()
    deployment = folder / "deployment.yml"
    deployment.write_text(textwrap.dedent(IMPORT_SECRETS))
    result = run_cli("import", "azure", str(deployment), "--model", "model/model.txt", cwd=repo)
    written = (folder / "package.yaml").read_text()
    shown = result.stdout + result.stderr + written
    for leaked in (
        "hunter2",
        "DB_URL_PASSWORD",
        "AUTH_VALUE",
        "PEM_BODY",
        "BLOB_SIGNATURE",
        "SAS_SIGNATURE",
        "sv=2022",
    ):
        assert leaked not in shown, leaked
    for name in ("DB_PASS", "DATABASE_URL", "AUTH_HEADER", "PRIVATE_PEM", "BLOB_URL"):
        assert f"environment_variables.{name}: looks like a secret" in result.stdout, name
    assert "PLAIN_SETTING: fine" in written
    again = run_cli("import", "azure", str(deployment), "--force", cwd=repo)  # the model's URL is only named
    shown = again.stdout + again.stderr + (folder / "package.yaml").read_text()
    assert "model https://acct.blob.core.windows.net/models/m.pkl: a registry reference" in shown
    assert "SAS_SIGNATURE" not in shown and "sv=2022" not in shown


# -- bodies: handed to run() only whole; every request answered with Azure's error -------

COUNTING = """\
    import json, os

    def init():
        pass

    def run(raw_data):
        with open(os.environ["RUNS_FILE"], "a") as runs:
            runs.write(f"{len(raw_data)}\\n")
        return {"bytes": len(raw_data)}
    """

RAW_ECHO = """\
    from azureml.contrib.services.aml_request import AMLRequest, rawhttp
    from azureml.contrib.services.aml_response import AMLResponse

    def init():
        pass

    @rawhttp
    def run(request):
        if request.args.get("bad") == "control":
            return AMLResponse("x", 200, {"X-Note": "a\\x01b"})
        if request.args.get("bad") == "unicode":
            return AMLResponse("x", 200, {"X-Note": "snow \\u2603"})
        if request.args.get("form"):
            return AMLResponse(str(len(request.form)), 200)
        return AMLResponse(request.get_data(), 200)
    """


def _azure_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and "x-ms-run-function-failed" in response.headers
    assert "x-request-id" in response.headers
    return response.json()


def test_a_body_cut_short_never_reaches_run(tmp_path):
    runs = tmp_path / "runs"
    with RuntimeProcess(write_app(tmp_path / "app", COUNTING), env={"RUNS_FILE": str(runs)}) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as cut:
            cut.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 14)
            time.sleep(0.3)
        assert requests.post(server.url + "/score", data="{}").json() == {"bytes": 2}
        lines = server.request_log_lines(2)
        assert runs.read_text().split() == ["2"], "only the whole body was scored"
        assert any("status=400" in line for line in lines), lines


def test_a_chunked_body_reaches_a_rawhttp_run_whole(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", RAW_ECHO)) as server:
        server.wait_ready()
        chunked = requests.post(server.url + "/score", data=iter([b"hello ", b"chunked ", b"world"]))
        assert chunked.status_code == 200 and chunked.content == b"hello chunked world"


def test_json_nested_too_deeply_is_a_400_with_azures_headers(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", SLEEPY)) as server:
        server.wait_ready()
        deep = requests.get(server.url + "/score", params={"data": "[" * 10_000 + "]" * 10_000})
        assert _azure_error(deep, 400) == {"message": "the request's JSON is nested too deeply"}
        assert any("status=400" in line for line in server.request_log_lines(1))


def test_a_response_header_http_cannot_carry_is_a_json_500_not_a_cut_connection(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", RAW_ECHO)) as server:
        server.wait_ready()
        for kind in ("control", "unicode"):
            bad = requests.post(server.url + "/score", params={"bad": kind}, data="x")
            body = _azure_error(bad, 500)
            assert bad.headers["x-ms-run-function-failed"] == "True"
            assert "a X-Note header holding a character HTTP cannot carry" in body["message"]
        assert len([line for line in server.request_log_lines(2) if "status=500" in line]) == 2


def test_a_multipart_form_over_its_limits_is_a_413_as_flask_answers(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", RAW_ECHO)) as server:
        server.wait_ready()
        parts = {f"f{i}": (None, "v") for i in range(2000)}  # werkzeug's max_form_parts is 1,000
        refused = requests.post(server.url + "/score", params={"form": "1"}, files=parts)
        _azure_error(refused, 413)
        assert refused.headers["x-ms-run-function-failed"] == "False"
        big_field = {"f": (None, "v" * 5_000_000)}  # over werkzeug's max_form_memory_size
        assert requests.post(server.url + "/score", params={"form": "1"}, files=big_field).status_code == 413


def test_request_heads_are_bounded_where_the_runtime_faces_clients(tmp_path):
    with RuntimeProcess(write_app(tmp_path / "app", SLEEPY), env={"MAX_REQUEST_HEAD_BYTES": "16384"}) as server:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as greedy:
            greedy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            try:
                for _ in range(400):  # 4 MB of headers that never end
                    greedy.sendall(b"X-Pad: " + b"p" * 10_000 + b"\r\n")
            except OSError:
                pass  # closed under us: what it should be
            answer = greedy.recv(4096)
        assert answer.startswith(b"HTTP/1.1 431 ") and b'"message"' in answer
        assert requests.get(server.url + "/").status_code == 200
        assert any("status=431" in line for line in server.request_log_lines(1))


# -- import azure reads bounded regular files, and answers each wrong type with one line --

GOOD_DEPLOYMENT = "name: blue\nendpoint_name: fine\nmodel: {path: model/model.txt}\ncode_configuration: {code: ., scoring_script: score.py}\n"


@pytest.mark.parametrize(
    "line, field, message",
    [
        ("environment_variables: [A, B]", "environment_variables", "must be a mapping of names to values, got a list"),
        ('environment_variables: "A=1"', "environment_variables", "must be a mapping of names to values, got a string"),
        ('request_settings: "fast"', "request_settings", "must be a mapping, got a string"),
        (
            "request_settings: {request_timeout_ms: soon}",
            "request_settings.request_timeout_ms",
            "must be a whole number",
        ),
        ("instance_count: two", "instance_count", "must be a whole number, got a string"),
        ("endpoint_name: 123", "endpoint_name", "must be a string, got a number"),
    ],
)
def test_import_azure_answers_a_wrong_type_with_one_line(repo, line, field, message):
    folder = repo / "app"
    write_package(folder)
    (folder / "package.yaml").unlink()
    deployment = folder / "deployment.yml"
    text = GOOD_DEPLOYMENT.replace("endpoint_name: fine\n", "") if line.startswith("endpoint_name") else GOOD_DEPLOYMENT
    deployment.write_text(text + line + "\n")
    result = run_cli("import", "azure", str(deployment), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [error] = result.stderr.strip().splitlines()
    assert re.fullmatch(rf"error: app/deployment\.yml:\d+: {re.escape(field)}: {re.escape(message)}.*", error), error


def test_import_azure_refuses_superscript_digits_in_a_version(repo):
    folder = repo / "app"
    write_package(folder)
    (folder / "package.yaml").unlink()
    deployment = folder / "deployment.yml"
    deployment.write_text(GOOD_DEPLOYMENT.replace("{path: model/model.txt}", '{path: model/model.txt, version: "²"}'))
    result = run_cli("import", "azure", str(deployment), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model.version: must be a version number (1, 2, ...), got '²'" in result.stderr
    flag = run_cli(
        "import", "azure", "--entry-script", str(folder / "score.py"), "--model", "model/model.txt=m:²", cwd=folder
    )
    assert flag.returncode == 1 and "Traceback" not in flag.stderr and "is not a whole number" in flag.stderr


def test_import_azure_reads_only_bounded_regular_files(repo):
    folder = repo / "app"
    folder.mkdir()
    (folder / "zero.yml").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.yml")
    for name in ("zero.yml", "fifo.yml"):
        result = run_cli("import", "azure", str(folder / name), cwd=repo, timeout=30)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"app/{name}: is not a regular file" in result.stderr
    (folder / "huge.yml").write_text("# padding\n" * 40_000)
    huge = run_cli("import", "azure", str(folder / "huge.yml"), cwd=repo)
    assert huge.returncode == 1 and "is over 256 KiB" in huge.stderr


# -- Kubernetes names and labels as the API server would have them --------------------------


def test_kubernetes_labels_cannot_override_the_selector_and_names_start_with_a_letter(repo):
    manifest = write_package(repo / "demo")
    base = manifest.read_text()
    kubernetes = "output: {mode: kubernetes, image: {registry: 'r:5000'}, kubernetes: {labels: {app.kubernetes.io/name: other}}}\n"
    manifest.write_text(base + kubernetes)
    result = run_cli("validate", str(repo / "demo"), cwd=repo)
    assert result.returncode == 1
    assert "app.kubernetes.io/name is set by reconciler (it selects the pods) and cannot be set here" in result.stderr
    manifest.write_text(
        base.replace("name: demo", "name: 9lives") + "output: {mode: kubernetes, image: {registry: 'r:5000'}}\n"
    )
    result = run_cli("validate", str(repo / "demo"), cwd=repo)
    assert result.returncode == 1
    assert "name: '9lives' starts with a digit: a Kubernetes Service's name must start with a letter" in result.stderr
    manifest.write_text(base.replace("name: demo", "name: 9lives"))  # other modes: fine
    assert run_cli("validate", str(repo / "demo"), cwd=repo).returncode == 0


def test_a_model_inside_a_submodule_that_is_not_checked_out_says_so(repo):
    (repo / ".gitmodules").write_text(
        '[submodule "weights"]\n\tpath = vendor/weights\n\turl = https://example.com/w.git\n'
    )
    (repo / "vendor" / "weights").mkdir(parents=True)  # what a clone without submodules has: an empty folder
    manifest = write_package(repo / "demo")
    manifest.write_text(manifest.read_text().replace("path: model/model.txt", "path: ../vendor/weights/model.bin"))
    result = run_cli("validate", str(repo / "demo"), cwd=repo)
    assert result.returncode == 1
    assert "vendor/weights/model.bin does not exist: it is inside the git submodule vendor/weights" in result.stderr
    assert "never fetches submodules" in result.stderr
