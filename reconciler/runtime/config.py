"""Runtime settings, from the environment variables Azure's server reads (plus a few of ours)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_PORT = 5001
DEFAULT_APP_ROOT = "/var/azureml-app"
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024


class ConfigError(Exception):
    pass


def _integer(environ: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    text = environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    entry_script: str  # absolute path
    app_root: str
    model_dir: str | None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    scoring_timeout_ms: int = 3_600_000
    shutdown_timeout_s: int = 300
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_inflight_body_bytes: int = 2 * DEFAULT_MAX_BODY_BYTES  # all request bodies held at once, per worker
    body_timeout_s: int = 60  # a request body that takes longer to arrive gets a 408
    head_timeout_s: int = 10  # a connection whose request head takes longer is closed
    max_head_bytes: int = 64 * 1024  # a request head larger than this gets a 431 (the connection closed)
    keep_alive_s: int = 5  # an idle connection between requests is closed after this
    behind_proxy: bool = False  # RECONCILER_BEHIND_PROXY=1: reconciler's proxy is the only client
    drain_idle_s: int = 0  # behind the proxy: how long a shutdown leaves idle connections open
    cors_origins: tuple[str, ...] = ()
    service_name: str = "ML service"
    service_version: str = "1.0"
    log_level: str = "INFO"
    dev_reload: bool = False  # RECONCILER_DEV=1: POST /-/reload re-imports the entry script
    source_directory: str | None = None  # AZUREML_SOURCE_DIRECTORY, under the app root: importable
    service_path_prefix: str = ""  # SERVICE_PATH_PREFIX: in front of the documented paths
    max_concurrent_requests: int = 0  # MAX_CONCURRENT_REQUESTS_PER_INSTANCE, per worker; 0: no limit
    batch_max_rows: int = 0  # RECONCILER_BATCH_MAX_SIZE (inference.batching): rows per run(); 0: no batching
    batch_max_latency_ms: int = 5  # RECONCILER_BATCH_MAX_LATENCY_MS: an idle worker's wait for more requests

    @classmethod
    def from_environ(cls, environ: dict[str, str], *, port: int | None = None, host: str | None = None) -> Settings:
        """Read AZUREML_ENTRY_SCRIPT, AML_APP_ROOT, AZUREML_MODEL_DIR, WORKER_COUNT,
        SCORING_TIMEOUT_MS, WORKER_TIMEOUT, AML_CORS_ORIGINS, PORT, MAX_REQUEST_BODY_BYTES,
        MAX_INFLIGHT_BODY_BYTES, REQUEST_BODY_TIMEOUT_S, REQUEST_HEADER_TIMEOUT_S, MAX_REQUEST_HEAD_BYTES,
        KEEP_ALIVE_TIMEOUT_S, AZUREML_SOURCE_DIRECTORY, SERVICE_PATH_PREFIX, MAX_CONCURRENT_REQUESTS_PER_INSTANCE,
        RECONCILER_BEHIND_PROXY, IDLE_DRAIN_S, RECONCILER_BATCH_MAX_SIZE, RECONCILER_BATCH_MAX_LATENCY_MS."""
        app_root = environ.get("AML_APP_ROOT", DEFAULT_APP_ROOT)
        entry = environ.get("AZUREML_ENTRY_SCRIPT", "score.py")
        entry_path = entry if os.path.isabs(entry) else os.path.join(app_root, entry)
        source = environ.get("AZUREML_SOURCE_DIRECTORY", "").strip()
        origins = tuple(o.strip() for o in environ.get("AML_CORS_ORIGINS", "").split(",") if o.strip())
        # behind the proxy, the proxy closes idle connections (it purges them within seconds) and
        # the runtime never does first: a request sent on one just as it closed could not be resent
        behind_proxy = environ.get("RECONCILER_BEHIND_PROXY") == "1"
        return cls(
            entry_script=entry_path,
            app_root=app_root,
            model_dir=environ.get("AZUREML_MODEL_DIR"),
            host=host or environ.get("HOST", "0.0.0.0"),
            port=port or _integer(environ, "PORT", DEFAULT_PORT),
            workers=_integer(environ, "WORKER_COUNT", 1),
            scoring_timeout_ms=_integer(environ, "SCORING_TIMEOUT_MS", 3_600_000),
            shutdown_timeout_s=_integer(environ, "WORKER_TIMEOUT", 300),
            max_body_bytes=_integer(environ, "MAX_REQUEST_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_inflight_body_bytes=_integer(environ, "MAX_INFLIGHT_BODY_BYTES", 2 * DEFAULT_MAX_BODY_BYTES),
            body_timeout_s=_integer(environ, "REQUEST_BODY_TIMEOUT_S", 60),
            head_timeout_s=_integer(environ, "REQUEST_HEADER_TIMEOUT_S", 10),
            max_head_bytes=_integer(environ, "MAX_REQUEST_HEAD_BYTES", 64 * 1024),
            keep_alive_s=_integer(environ, "KEEP_ALIVE_TIMEOUT_S", 300 if behind_proxy else 5),
            behind_proxy=behind_proxy,
            drain_idle_s=_integer(environ, "IDLE_DRAIN_S", 5) if behind_proxy else 0,
            cors_origins=origins,
            service_name=environ.get("SERVICE_NAME", "ML service"),
            service_version=environ.get("SERVICE_VERSION", "1.0"),
            log_level=environ.get("AZUREML_LOG_LEVEL", environ.get("LOG_LEVEL", "INFO")).upper(),
            dev_reload=environ.get("RECONCILER_DEV") == "1",
            source_directory=os.path.join(app_root, source) if source else None,
            service_path_prefix=environ.get("SERVICE_PATH_PREFIX", ""),
            max_concurrent_requests=_integer(environ, "MAX_CONCURRENT_REQUESTS_PER_INSTANCE", 0, minimum=0),
            batch_max_rows=_integer(environ, "RECONCILER_BATCH_MAX_SIZE", 0, minimum=0),
            batch_max_latency_ms=_integer(environ, "RECONCILER_BATCH_MAX_LATENCY_MS", 5, minimum=0),
        )

    def notices(self, environ: dict[str, str]) -> list[str]:
        """Azure settings this server reads but does not act on as Azure does: said once at start."""
        said = []
        if environ.get("WORKER_PRELOAD", "").strip().lower() in ("1", "true", "yes"):
            said.append(
                "WORKER_PRELOAD is not honoured: each worker imports the entry script and calls init() itself "
                "(what gunicorn's preload would share between workers is loaded once per worker)"
            )
        if self.workers > 1 and self.max_concurrent_requests:
            said.append(
                f"MAX_CONCURRENT_REQUESTS_PER_INSTANCE={self.max_concurrent_requests} applies in each of the "
                f"{self.workers} workers"
            )
        for name in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "AML_APP_INSIGHTS_ENABLED", "AML_APP_INSIGHTS_KEY"):
            if environ.get(name):
                said.append(f"{name} is set, but Application Insights is not wired: requests are logged to stdout")
        return said
