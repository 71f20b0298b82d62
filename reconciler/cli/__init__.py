"""The `reconciler` command line: parse, call the layer below, print. Holds no orchestration.

`parser` declares the commands and their help, `commands` runs one command each, and
`report` renders results for people (text) and programs (JSON).
"""

from __future__ import annotations

import gc
import os
import sys

from reconciler.cli.commands import COMMANDS, EXIT_ERROR
from reconciler.cli.parser import build_parser
from reconciler.core.errors import ReconcilerError


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return COMMANDS[arguments.command](arguments)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`reconciler hash | head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except ReconcilerError as error:  # refused before anything changed: no engine, a lock held, ...
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def console() -> int:
    """`reconciler` as a process (the console script, `python -m reconciler`): main, with the
    garbage collector kept off what lives as long as the process. What the imports made is
    frozen before the command, what the command made after it: at exit, a cycle collection
    over everything would only cost time (about a tenth of a no-op plan)."""
    gc.freeze()
    code = main()
    gc.freeze()
    return code
