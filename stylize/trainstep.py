"""One step of `stylize train`, and how a GPU replays it as a CUDA graph.

A step stylises the batch of crops and their copies shifted by 1-3 px (the shift-consistency
term), scores the output against the photos' content and the style, and updates the network.
On a GPU at training sizes a step is a few milliseconds of arithmetic behind some 440 kernel
launches from Python (benchmarks/launches.py), as the iterative method's step was before its
objective was replayed as a graph (stylize.cudagraph: 10.1 to 5.2 ms a step on an H200). So on
CUDA the whole step, optimiser included, is recorded once after its first few eager steps and
replayed from then on. A replay repeats the recorded kernels on the recorded tensors: every
step must have the same shapes and read what changes from the same tensors. The crops are
copied into one buffer, and the shift, which sets the sizes of the shift term's windows, is
read through index tensors (``ShiftWindows``); the optimiser keeps its step count on the device
(Adam's ``capturable``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylize.config import TrainConfig
from stylize.cudagraph import WARM_UP, on_side_stream, record
from stylize.device import autocast
from stylize.features import FeatureExtractor
from stylize.losses import LossParts, PerceptualLoss, content_layer_weights, shift_consistency

SHIFT_BAND = 8  # border pixels the shift-consistency term ignores
MAX_SHIFT = 3  # shifts are 1-3 px: never a multiple of the network maps' 4-px lattice


def shift_for_step(seed: int, step: int) -> tuple[int, int]:
    """The shift (up, left) of training step ``step``'s copies, each 1-3 px: never a multiple
    of the 4-px lattice of the network's maps. Drawn from the seed and step, so a resumed
    training shifts as the uninterrupted one would have."""
    generator = torch.Generator().manual_seed(seed * 15_485_863 + step + 1)
    dy, dx = torch.randint(1, MAX_SHIFT + 1, (2,), generator=generator).tolist()
    return dy, dx


def shifted_copy(batch: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The crops moved up by ``dy`` and left by ``dx`` pixels, reflected back to their size."""
    return F.pad(batch[..., dy:, dx:], (0, dx, 0, dy), mode="reflect")


@dataclass(frozen=True)
class Shift:
    """A step's shift as numbers: the copy and the shift term's windows are slices of sizes that
    depend on it (the form every device but CUDA uses; the bundled models were trained so)."""

    dy: int
    dx: int

    def copy(self, batch: torch.Tensor) -> torch.Tensor:
        return shifted_copy(batch, self.dy, self.dx)

    def consistency(self, output: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
        return shift_consistency(output, shifted, self.dy, self.dx, SHIFT_BAND)


class ShiftWindows:
    """Every step's shift as tensors of one shape, for square crops of ``size`` px: per axis, the
    positions the shifted copy reads (``size`` of them), the output's window that the shifted
    output is compared with (room for the smallest shift, ``size - 2 band - 1``) and a mask of
    the window's part that the step's shift uses. ``select`` copies a shift's rows into them in
    place. The same values as ``Shift``, the term to rounding (it sums over the masked window)."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.length = size - 2 * SHIFT_BAND - 1
        reads, windows, masks = [], [], []
        for shift in range(1, MAX_SHIFT + 1):
            # shifted_copy's reflection appends rows size-2, size-3, ... after the kept ones
            reads.append(torch.cat([torch.arange(shift, size), torch.arange(size - 2, size - 2 - shift, -1)]))
            windows.append(shift + SHIFT_BAND + torch.arange(self.length))
            masks.append((torch.arange(self.length) < size - shift - 2 * SHIFT_BAND).float())
        # [shift - 1] -> that shift's positions; all on the device, so selecting one copies there
        self._tables = [torch.stack(t).to(device) for t in (reads, windows, masks)]
        self.rows = [table[0].clone() for table in self._tables]  # read, window, mask
        self.cols = [table[0].clone() for table in self._tables]

    def select(self, dy: int, dx: int) -> None:
        """Make (dy, dx) the shift that ``copy`` and ``consistency`` compute."""
        for table, row, col in zip(self._tables, self.rows, self.cols):
            row.copy_(table[dy - 1], non_blocking=True)
            col.copy_(table[dx - 1], non_blocking=True)

    def copy(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.index_select(-2, self.rows[0]).index_select(-1, self.cols[0])

    def consistency(self, output: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
        n, band = self.length, SHIFT_BAND
        moved = output.index_select(-2, self.rows[1]).index_select(-1, self.cols[1])
        mask = self.rows[2][:, None] * self.cols[2]
        count = mask.sum() * (output.shape[0] * output.shape[1])
        difference = moved.float() - shifted[..., band:band + n, band:band + n].float()
        return (difference.pow(2) * mask).sum() / count


class TrainStep:
    """``step(batch, k)``: training step k on ``batch`` (the crops, on any device); returns the
    step's loss terms. With ``static`` the step reads the crops and the shift from fixed tensors
    (the default on CUDA); with ``graph`` as well (CUDA only) it is recorded as a CUDA graph
    after ``WARM_UP`` eager steps and replayed after that, falling back to eager steps where the
    recording fails."""

    def __init__(self, model: torch.nn.Module, extractor: FeatureExtractor, loss_fn: PerceptualLoss,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, config: TrainConfig,
                 device: torch.device, static: bool, graph: bool) -> None:
        self.model, self.extractor, self.loss_fn = model, extractor, loss_fn
        self.optimizer, self.scaler, self.config, self.device = optimizer, scaler, config, device
        self.content_layers = set(content_layer_weights(config.loss))
        self.static, self.graph = static or graph, graph and device.type == "cuda"
        self.windows = ShiftWindows(config.image_size, device) if self.static and config.shift_weight > 0 else None
        self._batch: torch.Tensor | None = None
        self._eager_steps = 0
        self._replay: Callable[[], LossParts] | None = None

    @property
    def replaying(self) -> bool:
        """Whether steps are replayed as a CUDA graph now."""
        return self._replay is not None

    def __call__(self, batch: torch.Tensor, step: int) -> LossParts:
        shift = shift_for_step(self.config.seed, step) if self.config.shift_weight > 0 else None
        if not self.static:
            return self._step(batch.to(self.device, non_blocking=True), Shift(*shift) if shift else None)
        if self._batch is None:
            self._batch = torch.empty(batch.shape, dtype=batch.dtype, device=self.device)
        self._batch.copy_(batch, non_blocking=True)
        if self.windows is not None:
            self.windows.select(*shift)
        if not self.graph:
            return self._static_step()
        if self._replay is None:
            if self._eager_steps < WARM_UP:
                self._eager_steps += 1
                return on_side_stream(self._static_step, self.device)
            # Recording computes nothing: this step is the first replay.
            self._replay = record(self._static_step, self.device, warm_up=0)
            if self._replay is None:
                self.graph = False
                return self._static_step()
        return self._replay()

    def _static_step(self) -> LossParts:
        return self._step(self._batch, self.windows)

    def _step(self, batch: torch.Tensor, shift: Shift | ShiftWindows | None) -> LossParts:
        cfg = self.config
        with autocast(self.device, cfg.half):
            with torch.no_grad():
                content_targets = self.extractor(batch, self.content_layers)  # no deeper than the content layer
            if shift is not None:  # only with a shift weight
                # The crops and their shifted copies go through in one pass (one forward, as DDP wants).
                output, shifted = self.model(torch.cat([batch, shift.copy(batch)])).chunk(2)
                term = cfg.shift_weight * shift.consistency(output, shifted)
            else:
                output, term = self.model(batch), None
            parts = self.loss_fn(output, self.extractor(output), content_targets)
            if term is not None:
                parts = parts.with_shift(term)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return parts
