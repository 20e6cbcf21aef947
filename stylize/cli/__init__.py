"""The command line: option parsing, messages and exit codes.

One module a concern: ``app`` (the Typer app, one-line errors, exit codes, stop signals),
``run``, ``train`` and ``tools`` (models, export, info) for the commands, ``display`` for
progress bars and consoles.

This package is the only part of stylize that prints or exits. Core errors (:class:`StylizeError`)
become a one-line message and exit code 2; Ctrl-C exits with 130 after keeping what was done.
"""

from __future__ import annotations

import os
import sys

# The commands register themselves on ``app`` when imported, in the order `stylize --help` lists them.
from stylize.cli import run, train, tools  # noqa: F401
from stylize.cli.app import app, arm_stop_signals, defer_stop_signals

__all__ = ["app", "main", "arm_stop_signals", "defer_stop_signals"]


def main() -> None:
    """Console-script entry point."""
    if os.environ.get("WORLD_SIZE", "1").strip() in ("", "1"):
        defer_stop_signals()
        app()
        return
    # Under torchrun, leave without the interpreter's teardown: Gloo's worker threads outlive
    # destroy_process_group (torch keeps the group referenced), and tearing them down at exit
    # now and then aborted a rank whose work was done ("terminate called without an active
    # exception", SIGABRT: about 1 run in 100 of the two-process tests on a loaded CPU). Every
    # output is written and closed by now; only the streams need flushing.
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
