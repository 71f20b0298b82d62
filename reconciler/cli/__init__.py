"""The command line: parse, call the pipeline, print. Holds no orchestration."""

from reconciler.cli.main import main

__all__ = ["main"]
