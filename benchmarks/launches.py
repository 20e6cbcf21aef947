"""Operations dispatched per training step and per fast pass: what a GPU launches, counted here.

    python benchmarks/launches.py [--image-size 256] [--batch-size 4]

On a GPU an iterative step at stylize's sizes was bound by launching kernels, not by arithmetic
(profile_step.py on the H200, benchmarks/RESULTS.md), and a training step or a fast pass of a
few milliseconds likely is too (profile_train.py measures a training step's share), so their
number of operations is what to cut. The count is exact and the same on any machine, where a
CPU timing of them says nothing. Every aten operation dispatched that computes is counted (on a
GPU a kernel launch each, give or take), as on a GPU: in float32, with the network's GPU code
paths (stylize.deterministic's fixed-order sums) and torch's multi-tensor Adam:

1. one `stylize train` step, in the fixed-shape form CUDA runs (stylize.trainstep): the
   difference between training 3 steps and 2 (the set-up, the last checkpoint and the model
   file are the same in both; photos load in a worker process). On CUDA these operations are
   launched one by one only in the first four steps; later steps replay them as one graph;
2. the network alone, forward and backward, in training;
3. one inference pass at 1024x768: the network as trained, and as `stylize run --model` runs it
   (transformer.for_inference: kernels folded once).

For the classic network (32-64-128, 5 blocks) and the bundled layout (FAST); for the classic
one also a step with the reference's objective (--shift-weight 0), and the training benchmark's
reference loop (train.py's pytorch/examples recipe: a step, and its network as recipe.py computes
it, with torch's padding).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from recipe import PlainTransformer
from train import photos_and_style, reference
import stylize.deterministic
from stylize.config import BackboneConfig, TrainConfig
from stylize.dataset import scan_photos
from stylize.train import prepare_training, train
from stylize.trainstep import TrainStep
from stylize.transformer import CLASSIC, FAST, TransformerConfig, TransformerNet, for_inference


# Operations that launch nothing: allocations, an unchecked view, and reads of a scalar
# (Adam's step counts live on the host).
LAUNCH_NOTHING = {torch.ops.aten.empty.memory_format, torch.ops.aten.empty_strided.default,
                  torch.ops.aten._unsafe_view.default, torch.ops.aten._local_scalar_dense.default}


class Count(TorchDispatchMode):
    """Operations that compute: views (slices, reshapes, detach) only relabel memory and launch
    nothing, nor do LAUNCH_NOTHING's. Inference is counted under no_grad, not inference_mode:
    there the mode would see composite operations whole (instance_norm as one, where it runs as
    four), not the operations they run as."""

    def __init__(self) -> None:
        super().__init__()
        self.operations = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func not in LAUNCH_NOTHING:
            self.operations += 1
        return func(*args, **(kwargs or {}))


def counted(fn) -> int:
    with Count() as count:
        fn()
    return count.operations


def gpu_paths():
    """stylize.deterministic's rule with the device left out: its fixed-order sums, as on a GPU."""
    return mock.patch.object(stylize.deterministic, "_fixed_order_wanted",
                             lambda x: x.requires_grad and torch.is_grad_enabled())


class CudaForm(TrainStep):
    """The step as CUDA runs it: the crops and the shift read from fixed tensors (eagerly here; on
    CUDA each step after the first four is then replayed as one graph, stylize.trainstep)."""

    def __init__(self, *args, static: bool, graph: bool) -> None:
        super().__init__(*args, static=True, graph=False)


def training_step(network: TransformerConfig, config: TrainConfig, folder: Path) -> int:
    """One `stylize train` step: training 3 steps minus training 2."""
    photos, style = photos_and_style(folder)

    def steps(count: int) -> int:
        job = prepare_training(style, photos, folder / f"m{count}.pt", replace(config, steps=count), network,
                               BackboneConfig(), "cpu", overwrite=True)
        # Adam as torch runs it on a GPU: a few multi-tensor operations (on the CPU it loops over
        # the parameters, six operations and a read of the step count each). (On CUDA stylize's
        # also keeps its step count on the device, ``capturable``, which the CPU cannot run.)
        job.optimizer = torch.optim.Adam(job.network.parameters(), lr=config.learning_rate, foreach=True)
        with mock.patch("stylize.train.TrainStep", CudaForm):
            return counted(lambda: train(job))

    return steps(3) - steps(2)


def reference_step(config: TrainConfig, folder: Path) -> int:
    """One step of the training benchmark's reference loop (the pytorch/examples recipe,
    train.py), its photos decoded in a worker process: 2 steps after its warm-up minus 1."""
    photos, style = photos_and_style(folder)
    paths = scan_photos(photos).paths

    def steps(count: int) -> int:
        return counted(lambda: reference(paths, style, config, CLASSIC, torch.device("cpu"), count, workers=1))

    with mock.patch("torch.optim.Adam", functools.partial(torch.optim.Adam, foreach=True)):  # as on a GPU
        return steps(2) - steps(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    # float32, the default on GPUs (bfloat16 autocast is this CPU's, and adds a cast per layer).
    config = TrainConfig(image_size=args.image_size, batch_size=args.batch_size, workers=1, half=False)
    crops = torch.rand(args.batch_size, 3, args.image_size, args.image_size)
    photo = torch.rand(1, 3, 768, 1024)
    print(f"operations dispatched (torch {torch.__version__}; {args.batch_size} crops of {args.image_size} px)")
    with gpu_paths(), tempfile.TemporaryDirectory() as tmp:
        for name, network in (("classic", CLASSIC), ("bundled layout", FAST)):
            step = training_step(network, config, Path(tmp))
            net = TransformerNet(network)
            alone = counted(lambda: net(crops).mean().backward())
            inference = for_inference(net)
            with torch.no_grad():
                as_trained = counted(lambda: net.eval()(photo))
                folded = counted(lambda: inference(photo))
            print(f"  {name}: a `stylize train` step {step}; the network forward+backward {alone}; "
                  f"a 1024x768 pass {as_trained}, folded once {folded}")
            if network == CLASSIC:  # the reference loop, as the recipe computes it
                plain = PlainTransformer(net.train())
                same_loss = replace(config, shift_weight=0.0)
                print(f"    with --shift-weight 0 (the reference's objective): a step "
                      f"{training_step(network, same_loss, Path(tmp))}")
                print(f"    the reference loop (pytorch/examples recipe): a step {reference_step(config, Path(tmp))}; "
                      f"its network forward+backward {counted(lambda: plain(crops).mean().backward())}")


if __name__ == "__main__":
    main()
