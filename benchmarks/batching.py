"""Adaptive batching (inference.batching) against the same runtime unbatched and Azure's server.

An unchanged Azure-style script (`json.loads(raw_data)["data"]` -> `model.predict` ->
`.tolist()`) over a 100-tree scikit-learn RandomForest with 10 features (trained here, fixed
seed), 2-row requests as the seed's client sends. One worker pinned to CPU 0, wrk on CPU 1,
bounded runs, alternating: batched (`max_batch_size: 32, max_latency_ms: 5`), unbatched, and
azureml-inference-server-http (its own venv, .venv-azure, see tests/azure_server.py). Then the
seed's Ridge model, batched and not.

Targets (issue 19): at 64 connections batched >= 8x unbatched requests/s with a p99 no worse
than Azure's; at 1 connection a median within 1 ms of unbatched; the Ridge model no slower.

    .venv/bin/python benchmarks/batching.py [--runs 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np
from common import ROOT, header, median, require_wrk, wrk
from serve_vs_azure import PinnedAzureServer, azure_server_python
from sklearn.ensemble import RandomForestRegressor

sys.path.insert(0, str(ROOT))
from tests.runtime_helpers import RuntimeProcess  # noqa: E402

EXAMPLE = ROOT / "examples" / "sklearn-regression"
FOREST_SCRIPT = """\
import json
import os

import joblib


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "forest.pkl"))


def run(raw_data):
    data = json.loads(raw_data)["data"]
    return model.predict(data).tolist()
"""
BODY = '{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}'
WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
BATCHING = {"RECONCILER_BATCH_MAX_SIZE": "32", "RECONCILER_BATCH_MAX_LATENCY_MS": "5"}


def forest_app(root: Path) -> tuple[Path, Path]:
    app, model_dir = root / "forest-app", root / "forest-models" / "forest" / "1"
    app.mkdir()
    model_dir.mkdir(parents=True)
    (app / "score.py").write_text(FOREST_SCRIPT)
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 10, size=(2000, 10))
    target = features @ rng.uniform(-1, 1, size=10) + rng.normal(0, 0.5, size=2000)
    joblib.dump(RandomForestRegressor(n_estimators=100, random_state=0).fit(features, target), model_dir / "forest.pkl")
    return app, model_dir


def seed_app(root: Path) -> tuple[Path, Path]:
    app, model_dir = root / "seed-app", root / "seed-models" / "sklearn_regression_model" / "1"
    app.mkdir()
    model_dir.mkdir(parents=True)
    shutil.copy(EXAMPLE / "score.py", app)
    shutil.copy(EXAMPLE / "model" / "sklearn_regression_model.pkl", model_dir)
    return app, model_dir


def ours(app: Path, model_dir: Path, batched: bool):
    env = BATCHING if batched else {}
    return lambda: RuntimeProcess(app, model_dir=model_dir, env=env, launcher=("taskset", "-c", "0"))


def measure(servers: dict, connections: int, runs: int, seconds: int, script: Path) -> dict[str, dict]:
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(runs):
        for name, start in servers.items():
            with start() as server:
                server.wait_ready(timeout=120)
                wrk(server.url + "/score", 1, connections, script)  # warm up
                results[name].append(wrk(server.url + "/score", seconds, connections, script))
    summary = {}
    print(f"\n## {connections} connection{'s' if connections > 1 else ''}")
    print(f"{'server':<40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, found in results.items():
        summary[name] = {key: median([r[key] for r in found]) for key in ("rps", "p50", "p99", "errors")}
        s = summary[name]
        print(f"{name:<40} {s['rps']:>9.0f} {s['p50']:>8.2f} {s['p99']:>8.2f} {s['errors']:>8.0f}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    arguments = parser.parse_args()
    require_wrk()
    header("adaptive batching: a 100-tree RandomForest, 2-row requests, 1 worker on CPU 0, wrk on CPU 1")
    python = azure_server_python()
    print(f"# wrk -t1 -d{arguments.seconds}s, {arguments.runs} runs each, alternating; batching {BATCHING}")
    with tempfile.TemporaryDirectory(prefix="reconciler-batching-bench-") as scratch:
        root = Path(scratch)
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        app, model_dir = forest_app(root)
        forest = {
            "forest, batched": ours(app, model_dir, True),
            "forest, unbatched": ours(app, model_dir, False),
            "forest, azureml-inference-server-http": lambda: PinnedAzureServer(python, app, model_dir),
        }
        loaded = measure(forest, 64, arguments.runs, arguments.seconds, script)
        lone = measure(forest, 1, arguments.runs, arguments.seconds, script)
        app, model_dir = seed_app(root)
        seed = {"seed Ridge, batched": ours(app, model_dir, True), "seed Ridge, unbatched": ours(app, model_dir, False)}
        seed_loaded = measure(seed, 64, arguments.runs, arguments.seconds, script)
        seed_lone = measure(seed, 1, arguments.runs, arguments.seconds, script)
    batched, unbatched = loaded["forest, batched"], loaded["forest, unbatched"]
    azure = loaded["forest, azureml-inference-server-http"]
    print("\n## against the targets")
    print(
        f"64 connections: batched {batched['rps'] / unbatched['rps']:.1f}x unbatched requests/s (target >= 8x); "
        f"p99 {batched['p99']:.1f} ms vs Azure's {azure['p99']:.1f} ms (target: no worse)"
    )
    delta = lone["forest, batched"]["p50"] - lone["forest, unbatched"]["p50"]
    print(f"1 connection: batched median {delta:+.2f} ms against unbatched (target: within 1 ms)")
    ridge = seed_loaded["seed Ridge, batched"]["rps"] / seed_loaded["seed Ridge, unbatched"]["rps"]
    ridge_lone = seed_lone["seed Ridge, batched"]["p50"] - seed_lone["seed Ridge, unbatched"]["p50"]
    print(
        f"seed Ridge: batched {ridge:.2f}x unbatched requests/s at 64 connections, median {ridge_lone:+.2f} ms "
        "at 1 connection (target: no slower)"
    )


if __name__ == "__main__":
    main()
