"""An animation through the iterative method: frame by frame with steady texture, resumable.

Each frame after the first starts from the result of the one before it, moved along the optical
flow and held to it where the flow holds (``Iterative.run_frame``, as a batch's ``--init
previous``), so the texture stays on what it paints instead of boiling. Finished frames are
kept, lossless, in a folder beside the output (``work_folder``) with the run's recipe; an
interrupted run goes on from them when the same command runs again, and gives the same file as
one that was never interrupted. The animation is written once every frame is made, and the
folder removed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from stylize.animation import AnimationWriter, FrameProgress, frame_masks, read_frames
from stylize.atomic import atomic_write
from stylize.errors import OutputError
from stylize.imageio import apply_mask, as_saved, is_empty, load_image, resize, save_image
from stylize.job import Frame, Job
from stylize.optimize import ProgressFn

RUN_FILE = "run.txt"  # in the work folder: the recipe of the run its frames belong to


@dataclass(frozen=True)
class AnimationResult:
    frames: int
    resumed: int  # frames made by an earlier, interrupted run of the same command
    interrupted: bool  # Ctrl-C: the finished frames are kept (``work_folder``), no animation written
    seconds: float
    last: torch.Tensor | None  # the last frame made (None: interrupted before any)


def work_folder(output: Path) -> Path:
    """Where the finished frames of ``output`` wait until the animation is written."""
    return output.with_name(f".{output.name}.frames")


def frame_file(folder: Path, index: int) -> Path:
    return folder / f"{index + 1:05d}.png"


def resumable(job: Job) -> int:
    """How many frames an interrupted run of the same command (the same ``run_key``) left in
    ``job``'s work folder; a folder left by another run is refused."""
    folder = work_folder(job.output)
    if not folder.exists():
        return 0
    run = folder / RUN_FILE
    if not run.is_file() or run.read_text(encoding="utf-8", errors="replace") != job.run_key:
        raise OutputError(f"{folder}: holds the frames of an interrupted run with other inputs or settings; run "
                          "that command again to finish it, or delete the folder to start this one")
    done = 0
    while frame_file(folder, done).is_file():
        done += 1
    return done


def execute_animation(job: Job, on_frame: Callable[[FrameProgress], None] | None = None,
                      on_progress: ProgressFn | None = None) -> AnimationResult:
    """Stylise every frame of ``job``'s animated photo (``prepare``'s) and write the animation
    atomically; ``on_frame`` is told before each frame made and at the end."""
    start = time.perf_counter()
    folder, max_pixels = work_folder(job.output), job.max_pixels
    done = resumable(job)
    if done == 0:
        folder.mkdir(exist_ok=True)
        atomic_write(folder / RUN_FILE, lambda handle: handle.write(job.run_key.encode("utf-8")), overwrite=True)
    frames, previous, last = AnimationWriter(), None, None
    masks = frame_masks(job.mask, job.frame_masks, job.content, max_pixels)
    for index, (frame, mask) in enumerate(zip(read_frames(job.content.path, max_pixels), masks)):
        path = frame_file(folder, index)
        # A frame whose (animated) mask is empty is its photo; the next starts afresh, as a cut's.
        empty = mask is not None and is_empty(mask)
        if index < done:
            last = load_image(path, max_pixels).rgb  # as made, to the byte
        else:
            if on_frame:
                on_frame(FrameProgress(index, job.content.frames))
            if empty:
                image = resize(frame.image.rgb, job.schedule[-1][0])
            else:
                result, _ = job.stylizer.run_frame(frame.image, job.styles, previous, on_progress, mask)
                if result.interrupted:  # Ctrl-C: the frame in flight is dropped, the finished ones kept
                    return AnimationResult(job.content.frames, done, True, time.perf_counter() - start, last)
                image = result.image if mask is None else apply_mask(result.image, frame.image.rgb, mask)
            save_image(image, path, overwrite=True)
            last = as_saved(image)  # as a resumed run reads it back
        previous = None if empty else Frame(frame.image.rgb, last, mask)
        frames.add(last, frame.image.alpha, frame.duration)
    if on_frame:
        on_frame(FrameProgress(job.content.frames, job.content.frames))
    recipe = None if job.recipe is None else job.recipe.finished({}).to_text()
    frames.write(job.output, job.content, max_pixels, job.overwrite, job.quality, recipe)
    shutil.rmtree(folder, ignore_errors=True)
    return AnimationResult(job.content.frames, done, False, time.perf_counter() - start, last)
