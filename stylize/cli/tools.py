"""The small commands: `stylize models`, `stylize export` and `stylize info`."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Annotated, Optional

import typer

from stylize import __version__
from stylize.cli.app import app, choice, command_context, package_version
from stylize.cli.display import console
from stylize.config import Backbone, ExportFormat
from stylize.errors import InputError


# ------------------------------------------------------------------------------------- models

@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the bundled models (name, style, size, how trained)."""
    from stylize.modelfile import bundled_models, load_model
    from stylize.train import recorded_shift_weight

    rows = []
    for path in bundled_models():
        loaded = load_model(path)
        meta, net = loaded.meta, loaded.network.config
        training = meta.get("training", {})
        rows.append({"name": path.stem, "style": meta.get("style_name", "?"), "mb": round(path.stat().st_size / 1e6, 1),
                     "network": f"{net.width}-{2 * net.width}-{4 * net.width}, {net.blocks} blocks, {net.norm.value}"
                                f"{f', on 2x2 blocks, {net.head} head' if net.shuffle == 2 else ''}, "
                                f"{net.upsample} upsampling",
                     "steps": meta.get("steps"), "image_size": training.get("image_size"),
                     "style_weight": training.get("style_weight"), "content_layers": training.get("content_layers"),
                     "shift_weight": recorded_shift_weight(training), "photos": training.get("photos")})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no bundled models", markup=False, soft_wrap=True)
    for r in rows:
        console.print(f"{r['name']:<12} style {r['style']:<18} {r['mb']} MB  {r['network']}; {r['steps']} steps at "
                      f"{r['image_size']} px, style weight {r['style_weight']}, content {r['content_layers']}, "
                      f"shift weight {r['shift_weight']}, {r['photos']} photos",
                      markup=False, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------- export

@app.command()
def export(
    model: Annotated[str, typer.Argument(help="A model file from `stylize train`, or a bundled model's name.",
                                         show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The file to write \\[default: the "
                      "model's name, .onnx or .ts].", show_default=False, dir_okay=False)] = None,
    export_format: Annotated[Optional[ExportFormat], choice("--format", help="onnx or torchscript "
                             "\\[default: from -o's suffix, else onnx].", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file.")] = False,
) -> None:
    """Export a trained network as ONNX (onnxruntime) or TorchScript (libtorch); `run --model` takes either."""
    import torch

    from stylize import exported
    from stylize.atomic import check_writable
    from stylize.modelfile import load_model

    with command_context():
        if Path(model).is_file() and exported.is_exported(Path(model)):
            raise InputError(f"{model}: is an exported model already; export starts from the .pt file that "
                             "`stylize train` wrote (or a bundled model's name)")
        loaded = load_model(model)
        if output is None:
            fmt = export_format or ExportFormat.onnx
            output = Path(loaded.path.stem + (".onnx" if fmt is ExportFormat.onnx else ".ts"))
        fmt = exported.format_for(output, export_format)
        if output.resolve() == loaded.path.resolve():
            raise InputError(f"{output}: is the model being exported and is never written over; choose another -o")
        check_writable(output, overwrite)
        exported.export_model(loaded.network, loaded.meta, output, fmt, overwrite)
        try:
            runner = exported.load_exported(output, torch.device("cpu"))
        except exported.MissingRuntime:  # ONNX written, but no onnxruntime here to run it
            console.print(f"saved {output} ({fmt.value}); not checked: onnxruntime is not installed", markup=False,
                          soft_wrap=True)
            return
        difference = exported.check_export(loaded.network, runner)
        if difference > 1e-3:
            raise exported.ExportError(f"{output}: the exported model's output differs from PyTorch's by "
                                       f"{difference:.2g}; please report this")
        console.print(f"saved {output} ({fmt.value}); output matches PyTorch's within {difference:.1g}",
                      markup=False, highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------- info

def _onnx_export_status() -> str:
    from stylize.exported import ONNX_MIN_TORCH, onnx_export_supported

    if not onnx_export_supported():
        return f"needs torch {ONNX_MIN_TORCH} or newer (TorchScript export works)"
    if package_version("onnxscript") is None or package_version("onnx") is None:
        return "not installed (pip install 'stylize[onnx]')"
    return "available"


def _reads_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def _image_info(image: Path, as_json: bool) -> None:
    """How ``image`` was made: the recipe stylize wrote into it, and the command that makes it again."""
    from stylize.imageio import read_comment
    from stylize.recipe import Recipe, RecipeError, as_dict, describe

    with command_context():
        text = read_comment(image)
        try:
            recipe = Recipe.from_text(text or "")
        except RecipeError:  # none, or another program's comment (a camera's, kept from a photo)
            raise RecipeError(f"{image}: holds no recipe of stylize's (made by another program, with --no-recipe, "
                              "or its EXIF was removed since)") from None
    if as_json:
        console.print_json(json.dumps(as_dict(recipe)))
        return
    rows = describe(recipe)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"{label:<{width}}  {value}", markup=False, highlight=False, soft_wrap=True)
    # A snapshot or an interrupted run's image is on the way to what the command makes.
    again = "to make the finished image" if recipe.stopped else "to make it again"
    where = ("with its sequence: FRAMES/ the photos' folder, OUT/ the results'" if recipe.is_frame
             else "in a folder that holds these files")
    console.print(f"{again}, {where}:", markup=False, highlight=False)
    console.print(f"  {recipe.command_line()}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def info(
    image: Annotated[Optional[Path], typer.Argument(help="An image stylize made: show how it was made (its "
                     "inputs, options, device) and the command that makes it again.", metavar="IMAGE",
                     show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show versions, devices, the device `auto` picks, and where each backbone's weights are;
    with an IMAGE, how stylize made it."""
    if image is not None:
        return _image_info(image, as_json)
    import torch

    from stylize.batchrun import io_threads
    from stylize.device import available_devices, resolve_device, resolve_half
    from stylize.features import weights_status

    auto = resolve_device("auto")
    data = {
        "stylize": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),  # importing it would take 2 s
        "devices": [{"device": d.spec, "name": d.name, "memory_bytes": d.memory_bytes} for d in available_devices()],
        "auto_device": str(auto),
        "half_by_default": resolve_half(auto, None),
        "cpu_threads": torch.get_num_threads(),
        "batch_io_threads": io_threads(),
        "cuda_graphs": auto.type == "cuda",
        "backbones": {b.value: weights_status(b) for b in Backbone},
        "onnxruntime": package_version("onnxruntime"),
        "onnx_export": _onnx_export_status(),
        "heic": package_version("pillow-heif"),
        "avif": _reads_avif(),
    }
    if as_json:
        console.print_json(json.dumps(data))
        return
    rows = [("stylize", data["stylize"]), ("python", data["python"]), ("torch", data["torch"]),
            ("torchvision", data["torchvision"])]
    for d in data["devices"]:
        memory = f", {d['memory_bytes'] / 2**30:.1f} GiB" if d["memory_bytes"] else ""
        rows.append((f"device {d['device']}", f"{d['name']}{memory}"))
    half = ("on by default (bfloat16 is native on this CPU; --no-half to turn it off)" if data["half_by_default"]
            else "off by default (--half to turn it on)")
    graphs = ("on (iterative steps, training steps, --model passes of same-size photos)" if data["cuda_graphs"]
              else "off (CUDA only)")
    rows += [("auto picks", data["auto_device"]), ("half precision", half), ("cpu threads", str(data["cpu_threads"])),
             ("batch i/o threads", f"{data['batch_io_threads']} reading, {data['batch_io_threads']} writing "
                                   "(folders through a --model)"),
             ("cuda graphs", graphs),
             ("onnxruntime", data["onnxruntime"] or "not installed (for .onnx models: pip install 'stylize[onnx]')"),
             ("onnx export", data["onnx_export"]),
             ("heic photos", f"readable (pillow-heif {data['heic']})" if data["heic"] else
              "not readable (for phones' .heic photos: pip install 'stylize[heif]')"),
             ("avif images", "readable" if data["avif"] else "not readable (Pillow 11.3 or newer reads them)")]
    rows += [(f"backbone {name}", status) for name, status in data["backbones"].items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        console.print(f"{key:<{width}}  {value}", markup=False, highlight=False, soft_wrap=True)
