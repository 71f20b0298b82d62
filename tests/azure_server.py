"""Azure's own inference server (azureml-inference-server-http), installed into its own
virtual environment and run on a loopback port: what the parity suite and the serving
benchmark compare the runtime with."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from .runtime_helpers import RuntimeProcess

ROOT = Path(__file__).resolve().parent.parent
AZURE_VENV = ROOT / ".venv-azure"
AZURE_SERVER = "azureml-inference-server-http==1.5.1"  # the version the parity suite was written against


def azure_python(*extra: str) -> str:
    """The venv's Python, with Azure's server and `extra` packages installed (once: a
    marker per requirement set). Uses the user's pip configuration as it is."""
    python = AZURE_VENV / "bin" / "python"
    wanted = [AZURE_SERVER, *extra]
    marker = AZURE_VENV / f".installed-{hashlib.sha256(' '.join(sorted(wanted)).encode()).hexdigest()[:12]}"
    if not marker.exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(AZURE_VENV)], check=True)
        print(f"# installing {' '.join(wanted)} into {AZURE_VENV}", file=sys.stderr, flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted], check=True
        )
        marker.touch()
    return str(python)


class AzureServer(RuntimeProcess):
    """`azmlinfsrv` serving `score.py` from `app_root` (one worker) on 127.0.0.1."""

    def __init__(
        self,
        python: str,
        app_root: Path,
        *,
        model_dir: Path | None = None,
        env: dict | None = None,
        launcher: tuple = (),
    ):
        environment = {
            "WORKER_COUNT": "1",
            **({"AZUREML_MODEL_DIR": str(model_dir)} if model_dir else {}),
            **(env or {}),
        }
        server = str(Path(python).parent / "azmlinfsrv")
        self._start([*launcher, server, "--entry_script", str(app_root / "score.py")], environment, app_root)
