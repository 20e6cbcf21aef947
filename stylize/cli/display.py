"""The command line's progress displays: rich bars on a terminal, plain log lines elsewhere.

Part of the command line (the only layer that prints): the workflows report progress through
callbacks taking small dataclasses, and these classes turn them into bars or lines.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Column
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def count(n: int, noun: str) -> str:
    """``1 photo``, ``2 photos``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def format_losses(losses: dict[str, float]) -> str:
    """``loss 1.23 (content 0.5 style 0.7 tv 0.03)`` for the progress bars."""
    parts = " ".join(f"{k} {v:.3g}" for k, v in losses.items() if k != "total")
    return f"loss {losses.get('total', 0.0):.4g} ({parts})"


class InfoColumn(TextColumn):
    """The losses (or the file in progress) last on the line, cut short with an ellipsis where
    the terminal is too narrow: rich would otherwise squeeze the times and the percentage first,
    and at 80 columns the iterative bar showed neither."""

    def __init__(self) -> None:
        # The one column that may shrink (see render); markup=False: a file named "[red]x.jpg" is
        # shown as it is, not taken for rich markup.
        super().__init__("{task.fields[info]}", markup=False, table_column=Column())

    def render(self, task: Task) -> Text:
        text = super().render(task)
        text.no_wrap, text.overflow = True, "ellipsis"  # it shrinks by cutting, never onto a second line
        return text


LOG_SECONDS = 30.0  # where stderr is not a terminal: a progress line this often (and when a task ends)


class LogLines:
    """The progress bars' stand-in where stderr is a file or a pipe (nohup, CI, docker logs): rich
    would print the bar once, at the very end, cut to 80 columns. Instead a plain line per task
    every LOG_SECONDS and when it completes, as neural-style and pytorch/examples log."""

    def __init__(self, description: str) -> None:
        self.description, self.interval = description, LOG_SECONDS
        self.tasks: list[dict[str, Any]] = []

    def __enter__(self) -> "LogLines":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        now = time.monotonic()
        self.tasks.append({"description": description, "total": total, "completed": completed, "fields": fields,
                           "start": now, "last": now, "done": False})
        return len(self.tasks) - 1

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               description: str | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        for key, value in (("total", total), ("completed", completed), ("description", description)):
            if value is not None:
                task[key] = value
        task["fields"].update(fields)
        done = task["total"] is not None and task["completed"] >= task["total"]
        now = time.monotonic()
        if (done and not task["done"]) or (not done and now - task["last"] >= self.interval):
            task["last"] = now
            err_console.print(self._line(task, now), markup=False, highlight=False, soft_wrap=True)
        task["done"] = done

    def reset(self, task_id: int, **fields: Any) -> None:
        """Start the task's clock and count again (the next image of a batch)."""
        task = self.tasks[task_id]
        task.update(completed=0, total=None, done=False, start=time.monotonic(), last=time.monotonic())
        task["fields"].update(fields)

    def _line(self, task: dict[str, Any], now: float) -> str:
        view = SimpleNamespace(**{k: v for k, v in task.items() if k != "fields"}, fields=task["fields"])
        parts = [self.description.format(task=view)]
        elapsed = now - task["start"]
        parts.append(f"{_clock(elapsed)} elapsed")
        if task["total"]:
            fraction = min(1.0, task["completed"] / task["total"])
            parts[0] += f" ({fraction:.0%})"
            if 0 < fraction < 1:
                parts.append(f"{_clock(elapsed * (1 - fraction) / fraction)} left")
        info = task["fields"].get("info")
        return ", ".join(parts) + (f"; {info}" if info else "")


def _clock(seconds: float) -> str:
    """``1:02:03``, as rich's time columns show it."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_bar(description: str = "{task.description}", percentage: bool = True) -> Any:
    """A progress display on stderr: description, bar, percentage, times, and an info field. Only
    the bar and the info field give way on a narrow terminal. Not on a terminal: log lines."""
    if not err_console.is_terminal:
        return LogLines(description)
    fixed = lambda: Column(no_wrap=True)  # noqa: E731
    columns: list[ProgressColumn] = [TextColumn(description, table_column=fixed()), BarColumn(bar_width=20)]
    if percentage:
        columns.append(TaskProgressColumn(table_column=fixed()))
    columns += [TimeElapsedColumn(table_column=fixed()), TimeRemainingColumn(table_column=fixed()), InfoColumn()]
    return Progress(*columns, console=err_console, transient=False)


class ImageProgress:
    """A rich progress bar over all scales, fed by the optimiser's progress callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.owned = False

    def __enter__(self):
        if self.quiet:
            return None
        self.progress = progress_bar()
        self.progress.__enter__()
        self.attach(self.progress)
        self.owned = True
        return self.update

    def attach(self, progress: Progress) -> None:
        """Show the image's bar inside another display (a batch's)."""
        self.progress = progress
        self.task = self.progress.add_task("starting", total=None, info="")

    def update(self, p: Any) -> None:
        assert self.progress is not None
        description = f"scale {p.scale + 1}/{p.scales} {p.width}x{p.height} it {p.iteration}/{p.iterations}"
        self.progress.update(self.task, total=1.0, completed=p.work_done, description=description,
                             info=format_losses(p.losses))

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None and self.owned:
            self.progress.__exit__(*exc)


class BatchProgress:
    """An overall bar over the jobs and, for iterative runs, a bar for the image in progress."""

    def __init__(self, quiet: bool, total: int, per_image: bool) -> None:
        self.quiet, self.total, self.per_image = quiet, total, per_image
        self.progress: Progress | None = None
        self.image = ImageProgress(quiet)
        self.finished = 0  # counted: a batch with a model reports photos as they finish, not in order

    def __enter__(self):
        if self.quiet:
            return None, None
        self.progress = progress_bar()
        self.progress.__enter__()
        self.task = self.progress.add_task(f"jobs 0/{self.total}", total=self.total, info="")
        if self.per_image:
            self.image.attach(self.progress)
        return self.on_job, (self.image.update if self.per_image else None)

    def on_job(self, event: Any) -> None:
        assert self.progress is not None
        info = f"{event.job.content.path.name} x {event.job.column}"
        if event.outcome is None and self.per_image:  # the image's own clock, for its elapsed and remaining time
            self.progress.reset(self.image.task, total=None, description="starting", info="")
        if event.outcome is not None:
            self.finished += 1
            info = f"{event.outcome.status.value}: {info}"
        self.progress.update(self.task, completed=self.finished, description=f"jobs {self.finished}/{self.total}",
                             info=info)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class FramesProgress:
    """A bar over an animation's frames and, below it, the frame in progress (iterative method)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.image = ImageProgress(quiet)

    def __enter__(self):
        if self.quiet:
            return None, None
        self.progress = progress_bar()
        self.progress.__enter__()
        self.task = self.progress.add_task("frames", total=None, info="")
        self.image.attach(self.progress)
        return self.on_frame, self.image.update

    def on_frame(self, p: Any) -> None:
        assert self.progress is not None
        self.progress.update(self.task, total=p.total, completed=p.done, description=f"frames {p.done}/{p.total}")
        if p.done < p.total:  # the frame's own clock, for its elapsed and remaining time
            self.progress.reset(self.image.task, total=None, description="starting", info="")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class TrainProgress:
    """A progress bar over the training steps, fed by the trainer's progress callback."""

    def __init__(self, quiet: bool, start: int, total: int) -> None:
        self.quiet, self.start, self.total = quiet, start, total
        self.progress: Progress | None = None

    def __enter__(self):
        if self.quiet:
            return None
        self.progress = progress_bar("step {task.completed}/{task.total}", percentage=False)
        self.progress.__enter__()
        self.task = self.progress.add_task("train", total=self.total, completed=self.start, info="")
        return self.update

    def update(self, p: Any) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=p.step,
                             info=f"{p.images_per_second:.1f} img/s {format_losses(p.losses)}")

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class CountBar:
    """A bar over the tiles of one large photo through a --model (minutes for a large print on a
    CPU), or over an animation's frames, fed by a progress callback (``done`` of ``total``). It
    appears at the first report (0 of N tiles, before the first is stylised): a photo stylised in
    one pass reports none and shows no bar."""

    def __init__(self, quiet: bool, what: str) -> None:
        self.quiet, self.what = quiet, what
        self.progress: Progress | None = None

    def __enter__(self):
        return None if self.quiet else self.update

    def update(self, p: Any) -> None:
        if self.progress is None:
            self.progress = progress_bar(self.what + " {task.completed}/{task.total}")
            self.progress.__enter__()
            self.task = self.progress.add_task(self.what, total=p.total, info="")
        self.progress.update(self.task, total=p.total, completed=p.done)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
