"""Training photos: a folder read recursively, random crops and flips, reproducible per step.

The batch for step k depends only on (seed, k): epoch permutations and crop parameters come
from generators seeded by the step, so a resumed training sees exactly the batches an
uninterrupted one would, whatever the number of loader workers.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch

from stylize.errors import InputError
from stylize.imageio import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, fit_long_side_at_least, load_image, open_image,
                             resize)
from stylize.paths import did_you_mean

MAX_CROP_SCALE = 1.5  # a crop's photo is scaled so its short side is 1 to this many times the crop's


@dataclass(frozen=True)
class PhotoScan:
    paths: list[Path]
    skipped: list[Path]  # files with an image suffix that could not be opened, or over the pixel limit


def scan_photos(root: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoScan:
    """Every readable image under ``root`` (recursively) of at most ``max_pixels``, sorted; raise if
    there is none."""
    root = Path(root)
    if not root.is_dir():
        hint = "" if os.path.lexists(root) else did_you_mean(root)
        raise InputError(f"{root}: not a folder of training photos{hint}")
    good: list[Path] = []
    skipped: list[Path] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        try:
            # Over the limit every step's decode would refuse it (a decompression bomb, or a photo
            # too large to decode at every step): skipped and counted here instead.
            with open_image(path, max_pixels) as img:
                img.verify()  # header and structure; cheap, no full decode
            good.append(path)
        except Exception:  # PIL raises many types for broken files
            skipped.append(path)
    if not good:
        extra = f" ({len(skipped)} unreadable or too large)" if skipped else ""
        raise InputError(f"{root}: no usable images found{extra}; expected .jpg/.png/... photos, searched recursively")
    return PhotoScan(good, skipped)


class StepBatches(torch.utils.data.Dataset):
    """Item k is the ``[B,3,S,S]`` batch for training step k."""

    def __init__(self, paths: list[Path], image_size: int, batch_size: int, seed: int, steps: int,
                 part: tuple[int, int] = (0, 1)) -> None:
        """``batch_size`` is the global batch; with ``part=(rank, ranks)`` this process makes only
        its share of it (torch.distributed: every rank a different slice of the same batch)."""
        rank, ranks = part
        if batch_size % ranks:
            raise InputError(f"a batch of {batch_size} cannot be shared by {ranks} processes")
        self.paths = paths
        self.image_size = image_size
        self.batch_size = batch_size
        self.rows = range(rank * batch_size // ranks, (rank + 1) * batch_size // ranks)
        self.seed = seed
        self.steps = steps
        self._perm: tuple[int, torch.Tensor] | None = None
        self.failed: list[Path] = []

    def __len__(self) -> int:
        return self.steps

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.paths), generator=generator))
        return self._perm[1]

    def __getitem__(self, step: int) -> torch.Tensor:
        crops = []
        for j in self.rows:
            sample = step * self.batch_size + j
            epoch, offset = divmod(sample, len(self.paths))
            index = int(self._permutation(epoch)[offset])
            crops.append(self._crop(index, crop_generator(self.seed, sample)))
        return torch.cat(crops)

    def _crop(self, index: int, generator: torch.Generator) -> torch.Tensor:
        # A photo that fails to decode is replaced by the next one, deterministically.
        reason: InputError | None = None
        for attempt in range(len(self.paths)):
            path = self.paths[(index + attempt) % len(self.paths)]
            try:
                image = load_image(path, min_short_side=math.ceil(self.image_size * MAX_CROP_SCALE)).rgb
                break
            except InputError as exc:
                self.failed.append(path)
                reason = exc
        else:
            raise InputError(f"none of the {len(self.paths)} training photo(s) could be decoded (the last: {reason})")
        return random_crop(image, self.image_size, generator)


def crop_generator(seed: int, sample: int) -> torch.Generator:
    """The random source of the ``sample``-th crop of a training (its scale, place and flip)."""
    return torch.Generator().manual_seed(seed * 7_919 + sample)


def random_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Scale so the short side is 1-1.5x ``size``, crop a square at random, flip half the time."""
    h, w = image.shape[-2:]
    scale = 1.0 + (MAX_CROP_SCALE - 1.0) * float(torch.rand((), generator=generator))
    short = math.ceil(size * scale)
    new_h, new_w = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
    image = resize(image, (new_h, new_w))
    top = int(torch.randint(0, new_h - size + 1, (), generator=generator))
    left = int(torch.randint(0, new_w - size + 1, (), generator=generator))
    crop = image[..., top:top + size, left:left + size]
    if float(torch.rand((), generator=generator)) < 0.5:
        crop = crop.flip(-1)
    return crop.contiguous()


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which writes the checkpoint
    (and stops them). A stop can land while the main process is taking a batch's shared memory
    from a worker (multiprocessing's resource sharer, a thread of the worker); the handover then
    fails in the worker, which printed a traceback under the one-line message (seen once in CI,
    a race). The main process stops regardless: those failures stay quiet."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.excepthook = quiet_handover_failures(sys.excepthook)


def quiet_handover_failures(previous: Callable[..., object]) -> Callable[..., object]:
    """``sys.excepthook`` that drops errors raised inside multiprocessing's resource sharer (which
    reports them through ``sys.excepthook``) and passes every other one to ``previous``."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        if any(Path(frame.filename).name == "resource_sharer.py" for frame in traceback.extract_tb(trace)):
            return
        previous(kind, error, trace)

    return hook


def style_image(path: Path, long_side: int, min_side: int = 1) -> torch.Tensor:
    """The style image resized to the given long side (its short side at least ``min_side``), ``[1,3,H,W]``."""
    image = load_image(path).rgb
    return resize(image, fit_long_side_at_least(*image.shape[-2:], long_side, min_side))
