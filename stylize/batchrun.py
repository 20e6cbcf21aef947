"""Running a planned batch: every job tried, failures reported, nothing done twice.

A file that fails (corrupt, too small, too large) is recorded with its reason and the batch
goes on; a full disk stops it (every later output would fail too), before the next job's work.
Outputs are written atomically, so Ctrl-C leaves only finished files: the image in flight is
discarded (results already computed are written first), and re-running the batch skips what
is done. The networks, the VGG and each style image's statistics are loaded or
computed once; trained networks process same-size photos together while reader threads decode
the next ones and writer threads encode the last results.
"""

from __future__ import annotations

import collections
import functools
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from stylize.animated import execute_animation
from stylize.animation import animated_mask, check_animation, frame_masks
from stylize.batch import PlannedJob, prepare_folders
from stylize.atomic import check_space
from stylize.errors import DiskFullError, InputError, StylizeError
from stylize.config import InitKind, OutputConfig
from stylize.device import is_out_of_memory
from stylize.distributed import SINGLE, World, gather, shard
from stylize.imageio import (FORMATS, QUALITY_FORMATS, LoadedImage, apply_mask, as_saved, is_empty, load_image,
                             load_mask, output_bytes, resize, save_image, save_picture, save_result)
from stylize.sheet import contact_sheet
from stylize.job import Fast, Frame, Iterative, Job
from stylize.recipe import Recipe, file_input
from stylize.optimize import ProgressFn, Result


class Status(str, Enum):
    done = "done"
    skipped = "skipped"  # the output exists (re-running a batch resumes it)
    failed = "failed"


@dataclass(frozen=True)
class Outcome:
    job: PlannedJob
    status: Status
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class JobEvent:
    """Reported when a job starts (``outcome`` None) and when it ends."""

    index: int  # 0-based position in the plan
    total: int
    job: PlannedJob
    outcome: Outcome | None


JobFn = Callable[[JobEvent], None]


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the jobs without an outcome were not tried
    stopped: str = ""  # why the batch stopped early (its disk is full): the rest were not tried

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.failed]


def _failure(exc: BaseException) -> str:
    """A failed job's one-line reason. Core errors and failed allocations fail one job and let the
    batch go on; anything else is a bug, raised again here to stop the batch."""
    if is_out_of_memory(exc):
        return "out of memory (try a smaller --size, or --tile with a model)"
    if isinstance(exc, StylizeError):
        return str(exc)
    raise exc


def _fail(summary: Summary, on_job: JobFn | None, index: int, total: int, job: PlannedJob,
          exc: BaseException) -> None:
    """Record a failed job; a full disk also stops the batch."""
    reason = _failure(exc)
    _record(summary, on_job, index, total, Outcome(job, Status.failed, reason))
    if isinstance(exc, DiskFullError):
        summary.stopped = reason


def run_iterative_batch(jobs: list[PlannedJob], stylizer: Iterative, options: OutputConfig,
                        on_job: JobFn | None = None, on_progress: ProgressFn | None = None,
                        predecessors: dict[Path, PlannedJob] | None = None) -> Summary:
    """Gatys et al. for each job in turn (all of them: skipping is run_batch's); each style
    image is read once (by the stylizer and its sweep's variants). With --init previous each job
    starts from its predecessor's result (``predecessors``, by output: the frame before, see
    ``frame_predecessors``)."""
    frames = stylizer.config.init is InitKind.previous
    last: dict[Path, Frame | None] = {}  # the last frame made, by its output

    def one(job: PlannedJob) -> bool:
        nonlocal last
        content = load_image(job.content.path, options.max_pixels)
        if frames:
            _check_still(content)
        mask = _mask(job, content, options.max_pixels)
        style_images = [_style(stylizer.style_images, path, options.max_pixels) for path in job.styles]
        schedule = stylizer.check(content, style_images, masked=mask is not None)
        check_space(job.output.parent, output_bytes(content, schedule[-1][0]))
        if content.frames > 1:  # (interrupted, its finished frames are kept: running the batch again goes on)
            return _animate_iterative(job, content, style_images, mask, schedule, stylizer, options, on_progress)
        before = (predecessors or {}).get(job.output) if frames else None
        previous = _previous_frame(before, last, options.max_pixels) if frames else None
        result, moved = _stylize(stylizer, content, style_images, schedule, mask, frames, previous, on_progress)
        if result.interrupted:  # Ctrl-C inside the optimiser: discard the unfinished image
            return False
        image = result.image if mask is None else apply_mask(result.image, content.rgb, mask)
        recipe = (stylizer.recipe(content, style_images, schedule, mask=job.mask, invert_mask=job.invert_mask)
                  if options.recipe else None)
        recipe = None if recipe is None else recipe.finished(result.losses)
        if frames:
            last = _save_frame(image, content, job, before, mask, recipe, moved, options)
        else:
            save_result(image, content, job.output, options.overwrite, options.quality,
                        None if recipe is None else recipe.to_text())
        return True

    return _one_by_one(jobs, one, on_job)


def _one_by_one(jobs: list[PlannedJob], one: Callable[[PlannedJob], bool], on_job: JobFn | None) -> Summary:
    """``one`` for each job in turn, each outcome recorded: a job that raises fails (a full disk
    also stops the batch); Ctrl-C, or ``one`` returning False (interrupted inside), interrupts it."""
    summary = Summary()
    for index, job in enumerate(jobs):
        if on_job:
            on_job(JobEvent(index, len(jobs), job, None))
        start = time.perf_counter()
        try:
            if not one(job):
                summary.interrupted = True
                return summary
        except KeyboardInterrupt:
            summary.interrupted = True
            return summary
        except Exception as exc:
            _fail(summary, on_job, index, len(jobs), job, exc)
            if summary.stopped:
                return summary
            continue
        _record(summary, on_job, index, len(jobs), Outcome(job, Status.done, seconds=time.perf_counter() - start))
    return summary


def _check_still(content: LoadedImage, model: bool = False) -> None:
    if content.frames > 1:
        how = ("(and with --temporal-weight, to hold its frames to each other)" if model else
               "(its own frames follow each other anyway)")
        raise InputError(f"{content.path}: an animation of {content.frames} frames among the frames of --init "
                         f"previous; run it in a batch without --init previous {how}")


def _save_frame(image: torch.Tensor, content: LoadedImage, job: PlannedJob, before: PlannedJob | None,
                mask: torch.Tensor | None, recipe: Recipe | None, moved: tuple[float, float] | None,
                options: OutputConfig) -> dict[Path, Frame | None]:
    """Write a video frame's result (its recipe naming the frame ``before`` it followed, if it did);
    returns it as the next frame starts from it (see ``_previous_frame``)."""
    if recipe is not None and moved is not None and before is not None:
        recipe = recipe.following(file_input("previous", before.output), moved)
    save_result(image, content, job.output, options.overwrite, options.quality,
                None if recipe is None else recipe.to_text())
    # As the next frame would read it back from the file (a resumed batch); an empty mask's frame
    # is the photo, with nothing painted to go on from.
    empty = mask is not None and is_empty(mask)
    _keep_exact(job, before, image, empty)
    return {job.output: None if empty else Frame(content.rgb, as_saved(image), mask)}


def run_fast_frames(jobs: list[PlannedJob], stylizer: Fast, options: OutputConfig, on_job: JobFn | None = None,
                    predecessors: dict[Path, PlannedJob] | None = None) -> Summary:
    """A trained network over video frames (--init previous), one at a time in order, each held to
    the result of the frame before it (``Fast.run_frame``; ``predecessors`` as in
    ``run_iterative_batch``, whose resumed batches go on from the frames written)."""
    last: dict[Path, Frame | None] = {}

    def one(job: PlannedJob) -> bool:
        nonlocal last
        content = stylizer.load(job.content.path, options.max_pixels)
        _check_still(content, model=True)
        stylizer.check(content, options.max_pixels)
        check_space(job.output.parent, output_bytes(content, stylizer.output_size(content)))
        before = (predecessors or {}).get(job.output)
        mask = _mask(job, content, options.max_pixels)
        image, moved = stylizer.run_frame(content, _previous_frame(before, last, options.max_pixels, stylizer.load),
                                          mask)
        recipe = stylizer.recipe(content, job.mask, job.invert_mask) if options.recipe else None
        last = _save_frame(image, content, job, before, mask, recipe, moved, options)
        return True

    return _one_by_one(jobs, one, on_job)


def _animate_iterative(job: PlannedJob, content: LoadedImage, styles: list[LoadedImage], mask: torch.Tensor | None,
                       schedule: list[tuple[tuple[int, int], int]], stylizer: Iterative, options: OutputConfig,
                       on_progress: ProgressFn | None) -> bool:
    """An animated photo of the batch, frame by frame (stylize.animated); False: interrupted."""
    frames = animated_mask(job.mask, job.invert_mask, content)
    if mask is not None and is_empty(mask) and frames is None:
        raise InputError(f"{job.mask}: black (or clear) everywhere: no frame of the animation would be stylised")
    size = schedule[-1][0]
    check_animation(content, job.output, size)
    check_space(job.output.parent, output_bytes(content, size))  # its frames, kept until it is written
    recipe = stylizer.recipe(content, styles, schedule, mask=job.mask, invert_mask=job.invert_mask)
    animation = Job(content, styles, job.output, options.overwrite, options.quality, stylizer, schedule, None, mask,
                    recipe if options.recipe else None, options.max_pixels, recipe.to_text(), frames)
    return not execute_animation(animation, None, on_progress).interrupted


def frame_predecessors(jobs: list[PlannedJob]) -> dict[Path, PlannedJob]:
    """Each job's frame before it, by output: the job before it in the plan with the same styles
    (the photos of a folder in their natural order, for each style)."""
    before: dict[Path, PlannedJob] = {}
    last: dict[tuple[Path, ...], PlannedJob] = {}
    for job in jobs:
        if job.styles in last:
            before[job.output] = last[job.styles]
        last[job.styles] = job
    return before


def _stylize(stylizer: Iterative, content: LoadedImage, styles: list[LoadedImage],
             schedule: list[tuple[tuple[int, int], int]], mask: torch.Tensor | None, frames: bool,
             previous: Frame | None, on_progress: ProgressFn | None) -> tuple[Result, tuple[float, float] | None]:
    """A job's optimisation, its style loss guided by its ``mask`` (as job.execute); with
    --init previous (``frames``) from the ``previous`` frame. A photo whose mask is empty is left
    as it is. Returns the result and the shift it followed (see ``Iterative.run_frame``)."""
    if mask is not None and is_empty(mask):
        return Result(resize(content.rgb, schedule[-1][0]), {}, interrupted=False), None
    if frames:
        return stylizer.run_frame(content, styles, previous, on_progress, mask)
    return stylizer.run(content, styles, on_progress, mask=mask), None


def _mask(job: PlannedJob, content: LoadedImage, max_pixels: int) -> torch.Tensor | None:
    """The job's --mask for its photo; in a batch one may keep the whole photo (a video frame
    whose subject's matte is empty: the frame is the photo)."""
    return None if job.mask is None else load_mask(job.mask, content, max_pixels, job.invert_mask, allow_empty=True)


def exact_copy(output: Path) -> Path:
    """Where a frame of --init previous written lossily (JPEG, WebP) keeps its exact pixels: a
    resumed batch starts the next frame from them, as the run that made it would have."""
    return output.with_name(f".{output.name}.exact.png")


def _keep_exact(job: PlannedJob, before: PlannedJob | None, image: torch.Tensor, empty: bool) -> None:
    """The frame's exact copy where its file is lossy; the frame before's copy is then done with
    (only the last frame's is kept: an interrupted batch goes on from it)."""
    if FORMATS[job.output.suffix.lower()][0] in QUALITY_FORMATS and not empty:
        save_image(image, exact_copy(job.output), overwrite=True)
    if before is not None:
        exact_copy(before.output).unlink(missing_ok=True)


def _previous_frame(before: PlannedJob | None, last: dict[Path, Frame | None], max_pixels: int,
                    load: Callable[[Path, int], LoadedImage] = load_image) -> Frame | None:
    """The frame ``before`` as the next starts from it: just made, or read back from its output
    (a resumed batch, whose earlier frames exist; its photo read by ``load``, as the batch reads
    photos); None where there is none, or where it is the photo itself (an empty mask: nothing
    painted to go on from)."""
    if before is None:
        return None
    if before.output in last:
        return last[before.output]
    try:
        photo = load(before.content.path, max_pixels)
        mask = _mask(before, photo, max_pixels)
        if mask is not None and is_empty(mask):
            return None
        exact = exact_copy(before.output)  # a lossy frame's own pixels, where it kept them
        return Frame(photo.rgb, load_image(exact if exact.is_file() else before.output, max_pixels).rgb, mask)
    except StylizeError:  # not made (it failed), or unreadable: this frame starts from its photo
        return None


def _style(cache: dict[Path, LoadedImage | StylizeError], path: Path, max_pixels: int) -> LoadedImage:
    """Each style image is read once per batch (and an unreadable one fails every job fast), into
    ``cache`` (an Iterative's ``style_images``)."""
    if path not in cache:
        try:
            cache[path] = load_image(path, max_pixels)
        except StylizeError as exc:
            cache[path] = exc
    found = cache[path]
    if isinstance(found, StylizeError):
        raise found
    return found


def _record(summary: Summary, on_job: JobFn | None, index: int, total: int, outcome: Outcome) -> None:
    summary.outcomes.append(outcome)
    if on_job:
        on_job(JobEvent(index, total, outcome.job, outcome))


def run_fast_batch(jobs: list[PlannedJob], stylizer: Fast, options: OutputConfig,
                   on_job: JobFn | None = None) -> Summary:
    """A trained network over every job (all of them: skipping is run_batch's); same-size photos
    go through it together, while reader threads decode the next photos and writer threads
    encode the last results. Outcomes come in the order the photos finish."""
    summary = Summary()
    threads = io_threads()
    loader = _Loader(list(enumerate(jobs)), functools.partial(stylizer.load, max_pixels=options.max_pixels),
                     prefetch=2 * options.batch_size, threads=threads)
    writer = _Writer(threads, in_flight=2 * options.batch_size)
    pending: dict[tuple[int, int], list[tuple[int, PlannedJob, LoadedImage, torch.Tensor]]] = {}

    def flush(key: tuple[int, int]) -> None:
        _flush(pending.pop(key), stylizer, options, summary, on_job, len(jobs), writer)
        _written(writer, summary, on_job, len(jobs), wait=False)

    try:
        for index, job, loaded in loader:
            if on_job:
                on_job(JobEvent(index, len(jobs), job, None))
            if isinstance(loaded, BaseException):
                _fail(summary, on_job, index, len(jobs), job, loaded)
                continue
            try:
                stylizer.check(loaded, options.max_pixels)
                if loaded.frames > 1:
                    check_animation(loaded, job.output, stylizer.output_size(loaded))
                check_space(job.output.parent, output_bytes(loaded, stylizer.output_size(loaded)))
            except Exception as exc:
                _fail(summary, on_job, index, len(jobs), job, exc)
                if summary.stopped:
                    break
                continue
            if loaded.frames > 1:
                _animate(index, job, loaded, stylizer, options, summary, on_job, len(jobs))
                if summary.stopped:
                    break
                continue
            image = stylizer.input(loaded)
            group = pending.setdefault(tuple(image.shape[-2:]), [])
            group.append((index, job, loaded, image))
            if len(group) >= options.batch_size:
                flush(tuple(image.shape[-2:]))
            elif sum(len(g) for g in pending.values()) > 2 * options.batch_size:
                # Photos of many sizes: do not hold more than a few batches' worth in memory.
                flush(max(pending, key=lambda k: len(pending[k])))
            if summary.stopped:  # a write found the disk full: the photos held are dropped
                break
        else:
            for key in list(pending):
                if not summary.stopped:
                    flush(key)
    except KeyboardInterrupt:  # the photos in flight are dropped; their outputs were never started
        summary.interrupted = True
    finally:
        loader.close()
        try:  # results already computed are written (whole files, a few at most) and recorded
            _written(writer, summary, on_job, len(jobs), wait=True)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            writer.close()
    return summary


def _flush(group: list[tuple[int, PlannedJob, LoadedImage, torch.Tensor]], stylizer: Fast, options: OutputConfig,
           summary: Summary, on_job: JobFn | None, total: int, writer: _Writer) -> None:
    start = time.perf_counter()
    try:
        results = stylizer.run([image for _, _, _, image in group])
    except Exception as exc:
        for index, job, _, _ in group:
            _fail(summary, on_job, index, total, job, exc)
        return
    seconds = (time.perf_counter() - start) / len(group)
    for (index, job, loaded, image), result in zip(group, results):
        writer.submit(index, job, seconds,
                      functools.partial(_save_fast, result, image, loaded, job, stylizer, options))


def _animate(index: int, job: PlannedJob, content: LoadedImage, stylizer: Fast, options: OutputConfig,
             summary: Summary, on_job: JobFn | None, total: int) -> None:
    """An animated photo, frame by frame, written as one animation (here: its frames are its batch)."""
    start = time.perf_counter()
    try:
        mask = None if job.mask is None else _mask(job, content, options.max_pixels)
        masks = frame_masks(mask, animated_mask(job.mask, job.invert_mask, content), content, options.max_pixels)
        frames, _ = stylizer.animate(content, options.max_pixels, masks)
        recipe = stylizer.recipe(content, job.mask, job.invert_mask).to_text() if options.recipe else None
        frames.write(job.output, content, options.max_pixels, options.overwrite, options.quality, recipe)
    except Exception as exc:
        _fail(summary, on_job, index, total, job, exc)
        return
    _record(summary, on_job, index, total, Outcome(job, Status.done, seconds=time.perf_counter() - start))


def _save_fast(result: torch.Tensor, photo: torch.Tensor, content: LoadedImage, job: PlannedJob, stylizer: Fast,
               options: OutputConfig) -> None:
    """Write a trained network's result, blended over the ``photo`` by the job's mask, with its
    recipe (in a writer thread: the mask is read there, and the photo's file again for its SHA-256)."""
    if job.mask is not None:
        result = apply_mask(result, photo, _mask(job, content, options.max_pixels))
    recipe = stylizer.recipe(content, job.mask, job.invert_mask).to_text() if options.recipe else None
    save_result(result, content, job.output, options.overwrite, options.quality, recipe)


def _written(writer: _Writer, summary: Summary, on_job: JobFn | None, total: int, wait: bool) -> None:
    """Record the outcomes of the writes that have finished (with ``wait``: of all of them)."""
    for index, job, seconds, error in writer.finished(wait):
        if error is None:
            _record(summary, on_job, index, total, Outcome(job, Status.done, seconds=seconds))
        else:
            _fail(summary, on_job, index, total, job, error)


def io_threads() -> int:
    """Threads that read photos, and threads that encode and write results: half the cores each,
    at least one, at most four. On the 2-core CPU one: the network's pass has the cores, and a
    PNG at zlib level 1 takes a quarter of a bundled model's pass (imageio.PNG_COMPRESS_LEVEL).
    On a GPU's host reading and writing are most of a frame's time: one core reads a 1080p JPEG
    in 10 ms and a PNG in 53, and writes them in about 20 and 190 (benchmarks/imageio_speed.py),
    where the network takes a few."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class _Writer:
    """Writes results in background threads (PIL encodes outside Python's lock), at most
    ``in_flight`` at a time; the batch's thread collects the outcomes in the order submitted.
    With no threads each write happens at once, in the batch's thread (as before the writer)."""

    def __init__(self, threads: int, in_flight: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stylize-writer") if threads else None
        self._in_flight = max(1, in_flight)
        self._pending: collections.deque[tuple[Future, int, PlannedJob, float]] = collections.deque()

    def submit(self, index: int, job: PlannedJob, seconds: float, write: Callable[[], None]) -> None:
        if self._pool is not None:
            future = self._pool.submit(write)
        else:
            future = Future()
            try:
                write()
                future.set_result(None)
            except Exception as exc:  # recorded as the job's failure, as a thread's would be
                future.set_exception(exc)
        self._pending.append((future, index, job, seconds))

    def finished(self, wait: bool) -> Iterator[tuple[int, PlannedJob, float, BaseException | None]]:
        """The writes done, oldest first: also waits for the oldest while too many are in flight,
        and with ``wait`` for all."""
        while self._pending:
            future, index, job, seconds = self._pending[0]
            if not (wait or future.done() or len(self._pending) > self._in_flight):
                return
            error = future.exception()  # waits for it
            self._pending.popleft()
            yield index, job, seconds, error

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Loader:
    """Reads photos in background threads (decoding overlaps with the network's work), at most
    ``prefetch`` ahead of the batch, handed over in the jobs' order."""

    def __init__(self, jobs: list[tuple[int, PlannedJob]], read: Callable[[Path], LoadedImage], prefetch: int,
                 threads: int) -> None:
        self._jobs = iter(jobs)
        self._read = read
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="stylize-reader")
        self._ahead: collections.deque[tuple[int, PlannedJob, Future]] = collections.deque()
        for _ in range(max(1, prefetch)):
            self._read_next()

    def _read_next(self) -> None:
        item = next(self._jobs, None)
        if item is not None:
            index, job = item
            self._ahead.append((index, job, self._pool.submit(_read, self._read, job.content.path)))

    def __iter__(self) -> Iterator[tuple[int, PlannedJob, LoadedImage | BaseException]]:
        while self._ahead:
            index, job, future = self._ahead.popleft()
            self._read_next()
            yield index, job, future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _read(read: Callable[[Path], LoadedImage], path: Path) -> LoadedImage | BaseException:
    try:
        return read(path)
    except Exception as exc:  # handed to the batch, whose _failure stops it on a bug
        return exc


def write_contact_sheet(jobs: list[PlannedJob], summary: Summary, path: Path, overwrite: bool) -> None:
    """One image of the batch: a row per photo, a column per style (and sweep setting); failed jobs grey."""
    failed = {o.job.output for o in summary.failed}
    contents = list(dict.fromkeys(job.content.path for job in jobs))
    styles = list(dict.fromkeys((job.column, job.styles[0] if len(job.styles) == 1 else None) for job in jobs))
    results = {(job.content.path, job.column): (None if job.output in failed else job.output) for job in jobs}
    save_picture(contact_sheet(contents, styles, results), path, overwrite)


def run_batch(jobs: list[PlannedJob], stylizer: Iterative | Fast, options: OutputConfig, world: World = SINGLE,
              on_job: JobFn | None = None, on_progress: ProgressFn | None = None) -> Summary:
    """Run a planned batch: existing outputs are skipped (unless --overwrite); under torchrun each
    rank does its share of the jobs still to do and every rank gets the summary of all of them,
    in the plan's order."""
    prepare_folders(jobs)
    todo = [job for job in jobs if options.overwrite or not job.exists]
    mine = shard(todo, world)
    if isinstance(stylizer, Fast) and stylizer.frames and stylizer.temporal_weight:
        summary = run_fast_frames(mine, stylizer, options, on_job, frame_predecessors(jobs))
    elif isinstance(stylizer, Fast):
        summary = run_fast_batch(mine, stylizer, options, on_job)
    else:
        summary = run_iterative_batch(mine, stylizer, options, on_job, on_progress, frame_predecessors(jobs))
    planned = {id(job) for job in todo}
    skipped = Summary([Outcome(job, Status.skipped, "exists") for job in jobs if id(job) not in planned])
    return _combined([skipped, *gather(summary, world)], jobs)


def run_batches(groups: list[tuple[list[PlannedJob], Iterative | Fast]], options: OutputConfig,
                world: World = SINGLE, on_job: JobFn | None = None,
                on_progress: ProgressFn | None = None) -> Summary:
    """``run_batch`` for each group of jobs with its stylizer in turn (several trained networks:
    a group each); Ctrl-C or a full disk stops it there. One summary, in the groups' jobs' order."""
    parts: list[Summary] = []
    for jobs, stylizer in groups:
        parts.append(run_batch(jobs, stylizer, options, world, on_job, on_progress))
        if parts[-1].interrupted or parts[-1].stopped:
            break
    return _combined(parts, [job for jobs, _ in groups for job in jobs])


def _combined(parts: list[Summary], jobs: list[PlannedJob]) -> Summary:
    """Summaries of parts of ``jobs`` as one, outcomes in the jobs' order."""
    order = {job.output: index for index, job in enumerate(jobs)}  # jobs are copies after gathering
    outcomes = sorted((o for part in parts for o in part.outcomes), key=lambda o: order[o.job.output])
    return Summary(outcomes, interrupted=any(part.interrupted for part in parts),
                   stopped=next((part.stopped for part in parts if part.stopped), ""))
