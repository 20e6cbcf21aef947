"""Shared fixtures: small generated images, so the suite needs no files from outside the repo."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED = REPO.parent / "shared" / "data"


def sigint_default() -> None:
    """Popen's preexec_fn for the Ctrl-C tests: the child takes SIGINT even where this test run
    ignores it (a shell's background job does, the child inherits that, and Python then sets no
    KeyboardInterrupt handler: the run went on after the test's SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class HostReads(TorchDispatchMode):
    """Counts reads of a tensor's value into Python inside ``with HostReads() as reads:`` (on a
    GPU each one waits for the device to finish what was queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def output_and_gradients(net: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The network's output on ``batch`` and its parameters' gradients of a weighted sum of the
    output, every value weighted differently (a plain sum would hide errors that cancel)."""
    net.zero_grad()
    out = net(batch)
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view(out.shape)).sum().backward()
    return out.detach(), {name: p.grad.clone() for name, p in net.named_parameters()}


def assert_gradients_close(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], rtol: float,
                           atol_of_largest: float) -> None:
    """Each gradient equal to rounding: within ``rtol``, or ``atol_of_largest`` times the largest
    gradient (the biases before an instance norm have none really, only rounding noise)."""
    scale = max(float(grad.abs().max()) for grad in theirs.values())
    for name, grad in theirs.items():
        torch.testing.assert_close(ours[name], grad, rtol=rtol, atol=atol_of_largest * scale, msg=name)


def scene(width: int, height: int, seed: int = 0) -> Image.Image:
    """A small photo-like image: gradient sky, a bright disc, a dark ground with texture."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height).view(-1, 1).expand(height, width)
    x = torch.linspace(0, 1, width).view(1, -1).expand(height, width)
    r = 0.3 + 0.5 * y
    gr = 0.5 + 0.3 * x
    b = 0.9 - 0.5 * y
    disc = ((x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.02).float()
    ground = (y > 0.65 + 0.05 * torch.sin(x * 12)).float()
    img = torch.stack([r, gr, b]) * (1 - ground) + ground * torch.stack([0.2 + 0 * x, 0.35 + 0 * x, 0.1 + 0 * x])
    img = img * (1 - disc) + disc
    img = (img + 0.05 * torch.rand(img.shape, generator=g)).clamp(0, 1)
    data = (img * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(data, "RGB")


def stripes(width: int, height: int) -> Image.Image:
    """A strongly textured 'painting': diagonal coloured stripes."""
    img = Image.new("RGB", (width, height))
    px = img.load()
    for j in range(height):
        for i in range(width):
            t = math.sin((i + 2 * j) / 3.0)
            px[i, j] = (int(128 + 120 * t), int(200 * (t > 0)), int(128 - 120 * t))
    return img


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    scene(48, 40).save(path)
    return path


@pytest.fixture
def painting(tmp_path: Path) -> Path:
    path = tmp_path / "painting.png"
    stripes(40, 40).save(path)
    return path


# Operations whose output shape depends on the values.
DATA_DEPENDENT_SHAPES = {torch.ops.aten.nonzero, torch.ops.aten.masked_select, torch.ops.aten._unique2,
                         torch.ops.aten.unique_consecutive, torch.ops.aten.unique_dim}


class Recording(TorchDispatchMode):
    """A CUDA graph's recording, emulated on the CPU: every aten operation the step dispatches,
    with the tensors it read and wrote. ``replay`` runs those operations again on those tensors,
    writing into the recorded outputs, without any of the step's Python: what the step takes from
    anything but its tensors (a Python number that changes from step to step) replays stale, as
    on a GPU. A read back to the host fails, as it does in a capture, and so does an operation
    whose output's shape depends on the data (on CUDA it reads that size back)."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise RuntimeError("a value read back to the host cannot be recorded")
        if func.overloadpacket in DATA_DEPENDENT_SHAPES or _boolean_index(func, args):
            # on CUDA these read a size back to the host
            raise RuntimeError(f"{func}: its output's shape depends on the data and cannot be recorded")
        out = func(*args, **(kwargs or {}))
        self.operations.append((func, args, kwargs or {}, out))
        return out

    def replay(self) -> None:
        # The kernels alone, as a graph holds them (below autograd, which recorded its part)
        with torch._C._AutoDispatchBelowADInplaceOrView():
            for func, args, kwargs, out in self.operations:
                if func.is_view:  # relabels memory the replay refills
                    continue
                result = func(*args, **kwargs)
                for recorded, new in zip(_tensors(out), _tensors(result)):
                    if recorded.data_ptr() != new.data_ptr():  # in place, or an alias: already written
                        recorded.copy_(new)


def _boolean_index(func, args) -> bool:
    """Indexing with a mask (``x[mask]``, ``x[mask] = v``): it runs as nonzero on CUDA."""
    if func.overloadpacket not in (torch.ops.aten.index, torch.ops.aten.index_put, torch.ops.aten.index_put_):
        return False
    return any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in value if isinstance(v, torch.Tensor)] if isinstance(value, (tuple, list)) else []


def emulated_record(fn, device, warm_up=0):
    """``cudagraph.record`` on the CPU: the recording computes the step (a capture computes
    nothing and the caller then replays it, so the first replay returns what it computed)."""
    recording = Recording()
    with recording:
        out = fn()
    replays = []

    def replay():
        if replays:
            recording.replay()
        replays.append(1)
        return out

    return replay


def counted_statistics(stylizer) -> list:
    """A stylize.job.Iterative whose style statistics' computations are recorded: the returned
    list gets the cache key (size and tiles) of each one computed."""
    computed: list = []
    original = stylizer.cache.get

    def counting(style, use, compute):
        return original(style, use, lambda: computed.append(use) or compute())

    stylizer.cache.get = counting
    return computed
