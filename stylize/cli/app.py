"""The Typer app and what every command shares: one-line errors, exit codes, stop signals."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from stylize.cli.display import err_console
from stylize.errors import StylizeError

EXIT_FAILED_JOBS = 1  # a batch ran, but some of its jobs failed
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def half_help(note: str = "") -> str:
    """--half/--no-half's help, with a command's own note before the default."""
    return (f"Mixed precision: bfloat16 (float16 on GPUs without it) for the convolutions.{note} \\[default: on "
            "where bfloat16 is native, CPUs with AVX512-BF16 or AMX (about 2x faster there); off on GPUs and "
            "other CPUs; `stylize info` shows which]")


def choice(*names: str, **options: Any) -> Any:
    """A typer option whose value is one of an Enum's, in any case (--format PNG, --norm IBN)."""
    return typer.Option(*names, case_sensitive=False, **options)


def panel(title: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(option, choice) factories whose options --help lists under ``title``."""
    return (functools.partial(typer.Option, rich_help_panel=title), functools.partial(choice, rich_help_panel=title))


class _OneLineErrors(TyperGroup):
    """Report usage errors (bad option values, missing arguments) as one line, exit code 2."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            rv = EXIT_INTERRUPTED
        except Exception as exc:
            # Click's usage errors (typer vendors Click in recent releases, so match by shape).
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `stylize`: the help was shown
                return sys.exit(0) if standalone_mode else 0
            err_console.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
            rv = exc.exit_code
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Neural style transfer: stylize a photo with a painting.")


def package_version(name: str) -> str | None:
    """An installed package's version, without importing it (torch takes seconds); None if absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _show_version(value: bool) -> None:
    if value:
        from stylize import __version__

        versions = ", ".join(f"{name} {package_version(name) or 'not installed'}" for name in ("torch", "torchvision"))
        typer.echo(f"stylize {__version__} ({versions}, Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", "-V", callback=_show_version, is_eager=True,
                                                   help="Show the versions and exit.")] = False) -> None:
    """Neural style transfer: stylize a photo with a painting."""


_DEFERRED_SIGNALS: set[int] = set()  # Ctrl-C and SIGTERM, from main() until torch has loaded


def defer_stop_signals() -> None:
    """Ctrl-C and SIGTERM (kill, timeout, a cluster scheduler's or docker's stop) end the process
    at once until torch has loaded (``arm_stop_signals``): nothing has started then, and a
    KeyboardInterrupt inside torch's import was turned into an abort ('terminate called...',
    SIGABRT) or swallowed, and the run went on. Signals a parent set otherwise (a background job
    ignores SIGINT) are left alone; under torchrun, whose agent stops its workers with SIGTERM,
    this is not called."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
            signal.signal(sig, signal.SIG_DFL)
            _DEFERRED_SIGNALS.add(sig)


def arm_stop_signals() -> None:
    """From now on Ctrl-C and SIGTERM raise KeyboardInterrupt, which every workflow turns into a
    clean stop: a run keeps its best image, training writes its checkpoint, a batch its summary."""
    for sig in _DEFERRED_SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    _DEFERRED_SIGNALS.clear()


@contextmanager
def command_context(world: Any = None,
                    smaller: str = "a smaller --size (with a trained --model, --tile 512)") -> Iterator[None]:
    """A command's core errors as one line and exit code 2 (said once, by rank 0 under torchrun).
    ``smaller``: what to try when memory ran out. A process group, if any, is not destroyed: the
    process leaves with os._exit under torchrun (see ``stylize.cli.main``)."""
    from stylize import distributed  # imports torch
    from stylize.device import reuse_freed_memory

    arm_stop_signals()
    reuse_freed_memory()  # 7-20 % faster passes on the CPU, more peak memory; see its docstring
    world = world or distributed.World()
    try:
        yield
    except StylizeError as exc:
        if not world.main:
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise fail(str(exc)) from None
    except KeyboardInterrupt:  # outside a workflow's own handling, e.g. while loading: no traceback
        err_console.print("interrupted", markup=False, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # an allocation that failed despite the up-front checks: one line too
        from stylize.device import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        if not world.main:
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise fail(f"out of memory: try {smaller}") from None


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)
