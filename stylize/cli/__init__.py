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
    # Under torchrun, leave without destroying the process group or the interpreter's teardown;
    # the OS closes the connections. Both tore down Gloo's worker threads at the wrong moment:
    # - destroy_process_group deadlocked now and then (torch 2.6: 3 of some 60 runs of the
    #   two-process tests): the main thread, holding the GIL, waits in ~ProcessGroupGloo for a
    #   worker thread that waits for the GIL, to free a tensor of all_gather_object;
    # - the teardown at exit aborted a rank whose work was done ("terminate called without an
    #   active exception", SIGABRT: about 1 run in 100 on a loaded CPU).
    # Every output is written and closed by now, and the ranks' last collective has returned on
    # every rank; only the streams need flushing.
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
