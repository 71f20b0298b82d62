"""Our scoring runtime against Azure's (azureml-inference-server-http), side by side.

The same entry script (the seed's sklearn example, unchanged) and model, one worker each,
the same load from wrk on 127.0.0.1 (server pinned to CPU 0, wrk to CPU 1), several bounded
runs each, alternating. Azure's server is installed by this script into its own virtual
environment (.venv-azure, reused when present; see tests/azure_server.py).

Target (issue 3): >= 4x Azure's requests/s at one worker, p99 <= 1/4 of Azure's.

    .venv/bin/python benchmarks/serve_vs_azure.py [--runs 5] [--seconds 5] [--connections 16]
        [--baseline CHECKOUT]   # also the runtime of another checkout (git worktree add /tmp/base REV)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, header, median, require_wrk, wrk

sys.path.insert(0, str(ROOT))
from tests.azure_server import AzureServer, azure_python  # noqa: E402
from tests.runtime_helpers import RuntimeProcess  # noqa: E402

EXAMPLE = ROOT / "examples" / "sklearn-regression"
BODY = '{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}'
WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline", type=Path, help="a checkout whose runtime is measured too, side by side")
    arguments = parser.parse_args()
    require_wrk()
    header("scoring runtime vs azureml-inference-server-http, 1 worker each, wrk on 127.0.0.1")
    python = azure_server_python()
    print(f"# wrk -t1 -c{arguments.connections} -d{arguments.seconds}s, {arguments.runs} runs each, alternating")
    with tempfile.TemporaryDirectory(prefix="reconciler-serve-bench-") as scratch:
        root = Path(scratch)
        app = root / "app"
        app.mkdir()
        shutil.copy(EXAMPLE / "score.py", app)
        model_dir = root / "azureml-models" / "sklearn_regression_model" / "1"
        model_dir.mkdir(parents=True)
        shutil.copy(EXAMPLE / "model" / "sklearn_regression_model.pkl", model_dir)
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        servers = {
            "reconciler runtime": lambda: RuntimeProcess(app, model_dir=model_dir, launcher=("taskset", "-c", "0")),
            "azureml-inference-server-http": lambda: PinnedAzureServer(python, app, model_dir),
            "bare uvicorn calling run()": lambda: BareServer(app, model_dir),
        }
        if arguments.baseline:  # its runtime first on the path: the same launch, older code
            baseline = {"PYTHONPATH": str(arguments.baseline.resolve())}
            servers["baseline runtime"] = lambda: RuntimeProcess(
                app, model_dir=model_dir, env=baseline, launcher=("taskset", "-c", "0")
            )
        results: dict[str, list[dict]] = {name: [] for name in servers}
        for _ in range(arguments.runs):
            for name, start in servers.items():
                with start() as server:
                    server.wait_ready()
                    wrk(server.url + "/score", 1, arguments.connections, script)  # warm up
                    results[name].append(wrk(server.url + "/score", arguments.seconds, arguments.connections, script))
        print(f"{'server':<32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        summary = {}
        for name, runs in results.items():
            summary[name] = {key: median([r[key] for r in runs]) for key in ("rps", "p50", "p99", "errors")}
            s = summary[name]
            print(f"{name:<32} {s['rps']:>9.0f} {s['p50']:>8.2f} {s['p99']:>8.2f} {s['errors']:>8.0f}")
        ours, azure = summary["reconciler runtime"], summary["azureml-inference-server-http"]
        bare = summary["bare uvicorn calling run()"]
        print(
            f"requests/s: {ours['rps'] / azure['rps']:.1f}x Azure's; "
            f"p99: {ours['p99'] / azure['p99']:.2f} of Azure's; p50: {ours['p50'] / azure['p50']:.2f} of Azure's; "
            f"{ours['rps'] / bare['rps']:.0%} of the bare loop's requests/s"
        )
        if arguments.baseline:
            base = summary["baseline runtime"]
            print(
                f"against the baseline ({arguments.baseline}): requests/s {ours['rps'] / base['rps']:.2f}x, "
                f"p50 {ours['p50'] / base['p50']:.2f}x, p99 {ours['p99'] / base['p99']:.2f}x"
            )


def azure_server_python() -> str:
    """The venv with Azure's server and the seed's scikit-learn; its version goes in the header."""
    python = azure_python("scikit-learn==1.5.2", "joblib")
    shown = subprocess.run(
        [python, "-m", "pip", "show", "azureml-inference-server-http"], capture_output=True, text=True
    ).stdout
    print("# azureml-inference-server-http " + re.search(r"Version: (\S+)", shown).group(1))
    return python


class BareServer(RuntimeProcess):
    """The ceiling: uvicorn calling run() directly, none of the contract (benchmarks/bare_uvicorn.py)."""

    def __init__(self, app: Path, model_dir: Path):
        from tests.runtime_helpers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix="bare-", suffix=".log", delete=False)
        environment = {**os.environ, "AZUREML_MODEL_DIR": str(model_dir), "AML_APP_ROOT": str(app)}
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(ROOT / "benchmarks" / "bare_uvicorn.py"), str(self.port)],
            env=environment,
            cwd=app,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )


class PinnedAzureServer(AzureServer):
    """Azure's server with the same script and model, one worker, pinned like ours."""

    def __init__(self, python: str, app: Path, model_dir: Path):
        super().__init__(python, app, model_dir=model_dir, launcher=("taskset", "-c", "0"))

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait("/", timeout)
        deadline = time.monotonic() + timeout
        import requests

        while time.monotonic() < deadline:  # Azure answers / before init() is done: probe /score
            try:
                if requests.post(self.url + "/score", data=BODY, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(self.logs)


if __name__ == "__main__":
    main()
