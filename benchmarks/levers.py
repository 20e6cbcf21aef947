"""Levers measured and not kept, side by side with what stylize does, in one process.

    python benchmarks/levers.py [--device cuda] [--repeats 5] [--compile]

1. the classic transformer's forward+backward (training, 4 crops of 256 px): as stylize runs
   it, in channels-last, with in-place ReLUs, (--compile) through torch.compile, and on a GPU
   replayed as a CUDA graph;
2. VGG-16 forward+backward to relu5_1 (the iterative run at 512x384, a training batch):
   ReLUs as stylize runs them against in-place ones;
3. the Gram matrices of the style layers at 512x384 (the iterative run's, forward and the
   one-product backward): stylize's product against a sum of chunked products, a product on
   halves of the channels (3/4 of the multiply-adds: the Gram is symmetric), and bfloat16;
4. an L-BFGS step's own cost with its memory full (stylize's LBFGS_HISTORY pairs; 512x384x3
   pixels, a cheap objective): stylize.lbfgs (the two-loop recursion, its coefficients kept on
   the device) against torch.optim.LBFGS (the same recursion, reading each coefficient back to
   the host) and the compact form (compact_lbfgs.py), after checking that all three take the
   same steps (float64).
Each row is a median over alternating calls (the machine's drift hits both sides alike).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from common import alternate, backbone_pass, device_name, setup_device, sync
from compact_lbfgs import LBFGS as CompactLBFGS
import stylize.deterministic as padding_module  # where the network pads
from stylize.config import BackboneConfig
from stylize.cudagraph import record
from stylize.device import reuse_freed_memory
from stylize.features import load_extractor
from stylize.lbfgs import LBFGS, closure, torch_equivalent
from stylize.optimize import LBFGS_HISTORY
from stylize.transformer import CLASSIC, ConvNormAct, TransformerNet

STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def show(title: str, medians: dict[str, float]) -> None:
    """Each contender's median time and how much faster than the first it is."""
    print(f"\n{title}")
    base = next(iter(medians.values()))
    for name, seconds in medians.items():
        print(f"   {name:44s} {1000 * seconds:9.1f} ms   {base / seconds:5.2f}x")


def _inplace_forward(self: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    x = self.norm(self.conv(self.pad(x)))
    return F.relu_(x) if self.relu else x  # the norm's backward needs its input, not its output


class _CatPadFunctional:
    """torch.nn.functional, but a one-pixel replicate pad is two concatenations."""

    def __getattr__(self, name: str) -> object:
        return getattr(F, name)

    def pad(self, x: torch.Tensor, pad: tuple[int, ...], mode: str = "constant",
            value: float | None = None) -> torch.Tensor:
        if mode != "replicate" or tuple(pad) != (1, 1, 1, 1):
            return F.pad(x, pad, mode, value)
        x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], -2)
        return torch.cat([x[..., :1], x, x[..., -1:]], -1)


def transformer_levers(device: torch.device, repeats: int, compile_too: bool) -> None:
    torch.manual_seed(0)
    batch = torch.rand(4, 3, 256, 256, device=device)
    net = TransformerNet(CLASSIC).to(device).train()
    last = TransformerNet(CLASSIC).to(device).train().to(memory_format=torch.channels_last)
    batch_last = batch.contiguous(memory_format=torch.channels_last)

    def step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
        return run

    original = ConvNormAct.forward

    def inplace() -> None:
        ConvNormAct.forward = _inplace_forward
        try:
            step(net, batch)()
        finally:
            ConvNormAct.forward = original

    contenders = {"as stylize runs it": step(net, batch), "channels-last": step(last, batch_last),
                  "in-place ReLU": inplace}
    if compile_too:
        compiled = torch.compile(net)

        def compiled_step() -> None:
            # Inductor (torch 2.14, CPU) fails a stride assertion in replication_pad2d_backward;
            # the same pad written as two concatenations compiles (only while this one runs).
            padding_module.F = _CatPadFunctional()  # type: ignore[assignment]
            try:
                step(compiled, batch)()
            finally:
                padding_module.F = F
        contenders["torch.compile (first call not timed)"] = compiled_step
    # On a GPU: the same step replayed as a CUDA graph (as the iterative method's objective is);
    # a candidate for training, where a step is launch-bound too (benchmarks/RESULTS.md).
    replay = record(step(TransformerNet(CLASSIC).to(device).train(), batch.clone()), device)
    if replay is not None:
        contenders["replayed as a CUDA graph"] = replay
    show("1. classic transformer, forward+backward, 4 x 256 px", alternate(contenders, device, repeats))


def vgg_levers(device: torch.device, repeats: int) -> None:
    extractor = load_extractor(BackboneConfig(), [*STYLE_LAYERS, "relu4_2"], device)
    relus = [m for m in extractor.body if isinstance(m, torch.nn.ReLU)]

    def step(image: torch.Tensor, inplace: bool) -> Callable[[], None]:
        def run() -> None:
            for relu in relus:
                relu.inplace = inplace
            backbone_pass(extractor, image.clone().requires_grad_(True), device)
            for relu in relus:
                relu.inplace = False
        return run

    for label, image in (("iterative, 1 x 512x384", torch.rand(1, 3, 384, 512, device=device)),
                         ("training, 4 x 256x256", torch.rand(4, 3, 256, 256, device=device))):
        show(f"2. VGG-16 forward+backward to relu5_1, {label}",
             alternate({"as stylize runs it": step(image, False), "in-place ReLU": step(image, True)}, device, repeats))


def gram_levers(device: torch.device, repeats: int) -> None:
    extractor = load_extractor(BackboneConfig(), STYLE_LAYERS, device)
    with torch.no_grad():
        feats = extractor(torch.rand(1, 3, 384, 512, device=device))
    # Channels-last features read as [positions, channels], as losses.gram_matrix does.
    flats = [f.permute(0, 2, 3, 1).reshape(f.shape[2] * f.shape[3], f.shape[1]) for f in feats.values()]
    grads = [torch.randn(f.shape[1], f.shape[1], device=device) for f in flats]
    halves = [f.shape[1] // 2 for f in flats]
    chunks = [f.reshape(8, -1, f.shape[1]) if f.shape[0] % 8 == 0 else f.unsqueeze(0) for f in flats]
    bf16 = [f.bfloat16() for f in flats]

    def each(fn: Callable[[int], object]) -> Callable[[], None]:
        return lambda: [fn(i) for i in range(len(flats))] and None

    def halves_product(i: int) -> object:
        a, b = flats[i][:, :halves[i]], flats[i][:, halves[i]:]
        return a.T @ a, a.T @ b, b.T @ b

    show("3a. Gram forward, the five style layers at 512x384", alternate({
        "X^T X (as stylize computes it)": each(lambda i: flats[i].T @ flats[i]),
        "sum of 8 chunked products": each(lambda i: (chunks[i].transpose(1, 2) @ chunks[i]).sum(0)),
        "on halves of the channels (3 products)": each(halves_product),
        "bfloat16 (features converted first)": each(lambda i: (lambda b: b.T @ b)(flats[i].bfloat16())),
    }, device, repeats))
    show("3b. Gram backward (one product), the same layers", alternate({
        "X dG (as stylize computes it)": each(lambda i: flats[i] @ grads[i]),
        "bfloat16 (features already converted)": each(lambda i: bf16[i] @ grads[i].bfloat16()),
    }, device, repeats))


def _ill_conditioned(shape: tuple[int, ...], device: torch.device,
                     dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """A quadratic with curvatures from 1e-3 to 1e3: L-BFGS keeps finding pairs to remember."""
    count = math.prod(shape)
    generator = torch.Generator().manual_seed(0)
    curvature = torch.logspace(-3, 3, count, dtype=dtype)[torch.randperm(count, generator=generator)]
    curvature = curvature.view(shape).to(device)
    return lambda x: (curvature * (x - 0.3) ** 2).sum()


def _lbfgs_steps(kind: str, objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 steps: int) -> Callable[[], object]:
    """An L-BFGS of ``kind`` (stylize's, torch's or the compact one) on ``objective`` after
    ``steps`` steps, as a call that takes one more."""
    if kind == "torch":
        optimiser = torch_equivalent(x, LBFGS_HISTORY)
    elif kind == "compact":
        optimiser = CompactLBFGS(x, lr=1.0, history=LBFGS_HISTORY)
    else:
        optimiser = LBFGS(x, LBFGS_HISTORY)
    evaluate = closure(objective, x)
    for _ in range(steps):
        optimiser.step(evaluate)
    return lambda: optimiser.step(evaluate)


KINDS = ("stylize", "torch", "compact")


def lbfgs_levers(device: torch.device, repeats: int) -> None:
    torch.manual_seed(0)
    small = _ill_conditioned((4, 7, 9), device, torch.float64)
    start = torch.rand(4, 7, 9, dtype=torch.float64, device=device)
    iterates = []
    for kind in KINDS:
        x = start.clone().requires_grad_(True)
        _lbfgs_steps(kind, small, x, 80)  # more steps than the memory holds
        iterates.append(x.detach())
    difference = max(float((iterates[0] - other).abs().max()) for other in iterates[1:])
    shape = (1, 3, 384, 512)
    objective = _ill_conditioned(shape, device, torch.float32)
    contenders = {f"{kind} (objective included)": _lbfgs_steps(kind, objective, torch.rand(shape, device=device)
                                                               .requires_grad_(True), LBFGS_HISTORY + 10)  # memory full
                  for kind in KINDS}
    contenders["the objective alone"] = closure(objective, torch.rand(shape, device=device).requires_grad_(True))
    show(f"4. L-BFGS step, {LBFGS_HISTORY} pairs, 512x384x3 (the three agree within {difference:.1e} after 80 "
         "float64 steps)", alternate(contenders, device, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does
    device = setup_device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    transformer_levers(device, args.repeats, args.compile)
    vgg_levers(device, args.repeats)
    gram_levers(device, args.repeats)
    lbfgs_levers(device, args.repeats)
    sync(device)


if __name__ == "__main__":
    main()
