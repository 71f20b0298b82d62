"""Process management: one uvicorn server, or N worker processes sharing one port.

Exit codes, as Azure's server (gunicorn) gives them:
    0  stopped by SIGTERM/SIGINT after in-flight requests finished
    3  the entry script failed to import or its init() raised
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time

from . import azure_imports, logs
from .config import ConfigError, Settings
from .secret_files import export_secret_files

log = logging.getLogger("reconciler.runtime")

EXIT_STOPPED = 0
EXIT_INIT_FAILED = 3
EXIT_CONFIG = 2


def _uvicorn_config(settings: Settings, app):
    import uvicorn

    from .connections import guarded_protocol

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",  # uvloop when installed
        # httptools, with a deadline and a size limit for request heads
        http=guarded_protocol(
            settings.head_timeout_s, settings.max_head_bytes, app.refused_connection, settings.drain_idle_s
        ),
        timeout_keep_alive=settings.keep_alive_s,
        lifespan="on",
        access_log=False,  # our own request log line carries the request id and timing
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


def serve(settings: Settings, sockets=None, readiness=None, index: int = 0) -> int:
    """Serve in this process until SIGTERM/SIGINT (exit 0) or a failed init() (exit 3).

    With several workers, `readiness` is a flag per worker shared with the supervisor,
    so /ready turns 200 only once every worker's init() has returned: a canary check
    must not pass while another worker would still answer 503."""
    import uvicorn

    from .app import ScoringApp

    exit_code = EXIT_STOPPED
    server: uvicorn.Server | None = None

    def on_fatal(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        server.should_exit = True

    if readiness is None:
        app = ScoringApp(settings, on_fatal)
    else:

        def mark_ready() -> None:
            readiness[index] = 1

        app = ScoringApp(settings, on_fatal, on_ready=mark_ready, service_ready=lambda: all(readiness))
    server = uvicorn.Server(_uvicorn_config(settings, app))
    # uvicorn re-raises the stop signal after its graceful shutdown; with these
    # handlers in place that ends here, so a requested stop exits 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    server.run(sockets=sockets)
    return exit_code


def _worker(settings: Settings, sockets, readiness, index: int) -> None:
    logs.configure(settings.log_level, worker=index)
    sys.exit(serve(settings, sockets, readiness, index))


def supervise(settings: Settings) -> int:
    """Run WORKER_COUNT processes on one listening socket.

    A worker whose script fails to start stops the whole service with exit 3 (there
    is nothing to serve); a worker that dies otherwise is replaced. SIGTERM is passed
    on to the workers, which finish their in-flight requests.
    """
    import uvicorn
    from prometheus_client.multiprocess import mark_process_dead

    listener = uvicorn.Config(None, host=settings.host, port=settings.port, log_config=None).bind_socket()
    # the workers' /metrics samples meet here (a fresh folder: no counts from an earlier run)
    metrics_folder = tempfile.mkdtemp(prefix="reconciler-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_folder
    context = multiprocessing.get_context("spawn")
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    readiness = context.Array("b", settings.workers, lock=False)

    def start(index: int):
        readiness[index] = 0
        process = context.Process(target=_worker, args=(settings, [listener], readiness, index), name=f"worker-{index}")
        process.start()
        return process

    workers = {index: start(index) for index in range(settings.workers)}
    log.info("serving on %s:%d with %d workers", settings.host, settings.port, settings.workers)
    exit_code = EXIT_STOPPED
    while not stopping:
        multiprocessing.connection.wait([p.sentinel for p in workers.values()], timeout=0.5)
        for index, process in list(workers.items()):
            if process.exitcode is None or stopping:
                continue
            if process.exitcode == EXIT_INIT_FAILED:
                log.error("worker %d could not start the entry script; stopping", index)
                exit_code, stopping = EXIT_INIT_FAILED, True
                break
            log.warning("worker %d exited with %s; starting a new one", index, process.exitcode)
            mark_process_dead(process.pid)  # its in-flight gauge no longer counts
            time.sleep(0.5)
            workers[index] = start(index)
    for process in workers.values():
        if process.exitcode is None:
            process.terminate()  # SIGTERM: the worker finishes in-flight requests
    deadline = time.monotonic() + settings.shutdown_timeout_s + 5
    for process in workers.values():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()
    listener.close()
    shutil.rmtree(metrics_folder, ignore_errors=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler_runtime",
        description="Serve an Azure ML entry script (init() + run()) over HTTP. Settings come from "
        "AZUREML_ENTRY_SCRIPT, AML_APP_ROOT, AZUREML_MODEL_DIR, WORKER_COUNT, "
        "SCORING_TIMEOUT_MS, WORKER_TIMEOUT, AML_CORS_ORIGINS, PORT, MAX_REQUEST_BODY_BYTES, "
        "AZUREML_SOURCE_DIRECTORY, SERVICE_PATH_PREFIX, MAX_CONCURRENT_REQUESTS_PER_INSTANCE.",
    )
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT or 5001)")
    parser.add_argument("--host", help="address to listen on (default: $HOST or 0.0.0.0)")
    parser.add_argument(
        "--missing-imports",
        nargs="+",
        metavar="MODULE",
        help="print which of these top-level modules an entry script could not import here, Azure's import "
        "names answered as when serving (reconciler serve asks before it starts), then exit",
    )
    arguments = parser.parse_args(argv)
    if arguments.missing_imports:
        azure_imports.install()
        print("\n".join(name for name in arguments.missing_imports if importlib.util.find_spec(name) is None))
        return 0
    try:
        settings = Settings.from_environ(dict(os.environ), port=arguments.port, host=arguments.host)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)
    for notice in settings.notices(dict(os.environ)):
        log.warning("%s", notice)
    exported = export_secret_files()  # before any worker imports the entry script, which reads os.environ
    if exported:
        log.info("secrets from files: %s", ", ".join(exported))
    if settings.workers == 1:
        return serve(settings)
    return supervise(settings)
