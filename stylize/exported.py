"""Trained networks as ONNX or TorchScript files: writing them, and running them again.

An exported file runs without stylize's Python code: ONNX in onnxruntime (any language, or a
browser), TorchScript in libtorch. Both take ``image`` ``[B,3,H,W]`` floats in [0,1] of any
height and width of at least ``min_side`` pixels and return ``stylized`` of the same shape;
padding to the network's stride happens inside the graph. The model file's metadata (style,
training) travels along: as ONNX metadata properties, or a ``meta.json`` extra file.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylize.atomic import atomic_write
from stylize.config import ExportFormat
from stylize.errors import InputError
from stylize.transformer import MIN_SIDE, TransformerNet, for_inference, pad_to_min_side

ONNX_OPSET = 18
# torch.onnx's exporter (torch.export) fails on the network's dynamic height and width before
# torch 2.10 (tried: 2.5.1, 2.6.0, 2.8.0, 2.9.1); TorchScript export works on every supported torch.
ONNX_MIN_TORCH = "2.10"
SUFFIXES = {".onnx": ExportFormat.onnx, ".ts": ExportFormat.torchscript, ".torchscript": ExportFormat.torchscript}
_INSTALL = "pip install 'stylize[onnx]' (onnx, onnxscript and onnxruntime)"


class ExportError(InputError):
    """A model cannot be exported, or an exported file cannot be run."""


class MissingRuntime(ExportError):
    """onnxruntime is not installed, so an ONNX file cannot be run here."""


def format_for(path: Path, requested: ExportFormat | None) -> ExportFormat:
    """The format asked for, else the one -o's suffix names (.onnx, .ts, .torchscript). An ONNX
    file must end in .onnx: that is how `stylize run --model` tells it from the others."""
    named = SUFFIXES.get(path.suffix.lower())
    if requested is None and named is None:
        raise ExportError(f"{path}: cannot tell the format from '{path.suffix}'; name it .onnx or .ts, "
                          "or pass --format")
    if requested is not None and named is not None and requested is not named:
        raise ExportError(f"-o {path} and --format {requested.value} disagree; give one of them")
    if requested is ExportFormat.onnx and named is None:
        raise ExportError(f"-o {path}: name ONNX files .onnx (stylize run --model recognises them by it)")
    return requested or named


def export_model(network: TransformerNet, meta: dict[str, Any], path: Path, fmt: ExportFormat,
                 overwrite: bool = False) -> None:
    """Write ``network`` (in eval mode, on the CPU) as an ONNX or TorchScript file, atomically;
    its kernels folded once (``for_inference``), not at every call of the exported graph."""
    network = for_inference(network.cpu())
    meta = {**meta, "network": network.config.to_dict(), "min_side": network.min_side}
    data = _onnx_bytes(network, meta) if fmt is ExportFormat.onnx else _torchscript_bytes(network, meta)
    atomic_write(path, lambda handle: handle.write(data), overwrite)


def onnx_export_supported() -> bool:
    """Whether this torch's ONNX exporter handles the network's dynamic image sizes."""
    return torch.__version__ >= ONNX_MIN_TORCH


def _onnx_bytes(network: TransformerNet, meta: dict[str, Any]) -> bytes:
    try:
        import onnx  # noqa: F401  (torch's exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError(f"ONNX export needs optional packages: {_INSTALL}") from None
    if not onnx_export_supported():
        raise ExportError(f"ONNX export needs torch {ONNX_MIN_TORCH} or newer (this is torch {torch.__version__}): "
                          "upgrade torch, or export TorchScript instead (-o MODEL.ts)")
    from torch.export import Dim

    side = network.min_side
    # The example's size is off the stride, so the traced graph keeps the padding branch.
    example = torch.rand(1, 3, side * 2 + 3, side * 2 + 5)
    shapes = {"image": {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=side, max=65536),
                        3: Dim("width", min=side, max=65536)}}
    with _quiet():
        program = torch.onnx.export(network, (example,), dynamo=True, dynamic_shapes=shapes, opset_version=ONNX_OPSET,
                                    input_names=["image"], output_names=["stylized"], verbose=False)
    model = program.model_proto
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    return model.SerializeToString()


def _torchscript_bytes(network: TransformerNet, meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with _quiet():
        torch.jit.save(torch.jit.script(network), buffer, _extra_files={"meta.json": json.dumps(meta)})
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporters print progress and deprecation notices; stylize reports for itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def is_exported(path: Path) -> bool:
    """An ONNX file, or a TorchScript archive (a zip with compiled code, unlike a model file)."""
    if path.suffix.lower() == ".onnx":
        return True
    import zipfile

    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist()[:200])


@dataclass
class ExportedModel:
    """An exported network, ready to run: ``model(images)`` on ``[B,3,H,W]`` in [0,1] (on the CPU)."""

    path: Path
    format: ExportFormat
    meta: dict[str, Any]
    runner: Any  # onnxruntime.InferenceSession or torch.jit.ScriptModule
    device: torch.device

    @property
    def min_side(self) -> int:
        return int(self.meta.get("min_side", MIN_SIDE))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        images = pad_to_min_side(images, self.min_side)  # as the network does; the graph's own pad needs it
        if self.format is ExportFormat.onnx:
            out = torch.from_numpy(self.runner.run(None, {"image": images.float().contiguous().numpy()})[0])
        else:
            with torch.inference_mode():
                out = self.runner(images.to(self.device)).float().cpu()
        return out[..., :h, :w]


def load_exported(path: Path, device: torch.device) -> ExportedModel:
    """Open an exported file to run on ``device`` (ONNX: CUDA through onnxruntime-gpu when present)."""
    if path.suffix.lower() == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            raise MissingRuntime(f"{path}: running ONNX models needs onnxruntime: {_INSTALL}, "
                                 "or use the .pt model") from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise ExportError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        props = session.get_modelmeta().custom_metadata_map
        meta = {key: _json_or_text(value) for key, value in props.items()}
        return ExportedModel(path, ExportFormat.onnx, meta, session, torch.device("cpu"))
    extra = {"meta.json": ""}
    try:
        with _quiet():
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:  # torch raises many types for foreign archives
        raise ExportError(f"{path}: not a readable TorchScript model ({type(exc).__name__})") from None
    meta = json.loads(extra["meta.json"]) if extra["meta.json"] else {}
    return ExportedModel(path, ExportFormat.torchscript, meta, module.eval(), device)


def check_export(network: TransformerNet, exported: ExportedModel, seed: int = 0) -> float:
    """Largest difference between the exported file's output and the network's, on two random
    images: one off the stride and one smaller than the minimum side (both padding paths)."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    network = network.cpu().eval()
    for shape in ((1, 3, 75, 101), (1, 3, 9, 40)):
        image = torch.rand(shape, generator=generator)
        with torch.inference_mode():
            expected = network(image)
        worst = max(worst, float((exported(image) - expected).abs().max()))
    return worst


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
