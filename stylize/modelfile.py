"""The model file: a trained transformer network plus everything needed to trust and rebuild it.

One ``torch.save`` file holding only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``::

    {"format": "stylize-model", "version": 1, "network": {...TransformerConfig...},
     "state_dict": {...}, "meta": {"style_name", "style_sha256", "training": {...},
     "stylize_version", "steps"}}

Checkpoints are model files with an extra "resume" entry (optimiser state and step). The
``.pth`` files of pytorch/examples' fast_neural_style load too (stylize.foreign).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from stylize import __version__
from stylize.atomic import atomic_write
from stylize.errors import InputError
from stylize.foreign import SOURCE, from_fast_neural_style, is_fast_neural_style
from stylize.paths import did_you_mean, file_problem
from stylize.transformer import TransformerConfig, TransformerNet

FORMAT = "stylize-model"
VERSION = 1


class ModelFileError(InputError):
    """A model file is missing, corrupt, foreign or of a newer format."""


@dataclass
class LoadedModel:
    network: TransformerNet
    meta: dict[str, Any]
    resume: dict[str, Any] | None
    path: Path


def save_model(path: Path, network: TransformerNet, meta: dict[str, Any], resume: dict[str, Any] | None = None,
               overwrite: bool = False) -> None:
    """Write a model (or, with ``resume``, a checkpoint) atomically; weights in float32."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "network": network.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "meta": {**meta, "stylize_version": __version__},
    }
    if resume is not None:
        payload["resume"] = resume
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()), overwrite)


def load_model(path: Path) -> LoadedModel:
    """Load a model file (a path, or the name of a bundled model) and rebuild its network."""
    path = resolve_model(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise ModelFileError(f"{path}: not a readable stylize model file ({type(exc).__name__}); "
                             "was it written by `stylize train`?") from None
    if is_fast_neural_style(payload):
        try:
            network = from_fast_neural_style(payload)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: looks like a fast_neural_style model but does not fit its network "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        return LoadedModel(network, {"style_name": path.stem, "imported_from": SOURCE}, None, path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a stylize model file (no '{FORMAT}' header); "
                             "train one with `stylize train`")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(f"{path}: model format {version} is newer than this stylize ({__version__}) "
                             f"reads (format {VERSION}); upgrade stylize")
    try:
        network = TransformerNet(TransformerConfig.from_dict(payload["network"]))
        network.load_state_dict(payload["state_dict"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the model file is damaged ({type(exc).__name__})") from None
    network.eval()
    return LoadedModel(network, dict(payload.get("meta", {})), payload.get("resume"), path)


def bundled_models_dir() -> Path:
    return Path(str(resources.files("stylize") / "models"))


def bundled_models() -> list[Path]:
    """The model files shipped inside the package."""
    folder = bundled_models_dir()
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def resolve_model(name_or_path: Path | str) -> Path:
    """A path that exists, or the name of a bundled model (``starry`` for ``starry.pt``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in bundled_models():
        if candidate.stem == str(name_or_path):
            return candidate
    if os.path.lexists(path):  # a folder, a device, a pipe, a broken link
        raise ModelFileError(f"{path}: {file_problem(path, 'a model file')}")
    bundled = [p.stem for p in bundled_models()]
    raise ModelFileError(f"{name_or_path}: no such model file or bundled model (bundled: "
                         f"{', '.join(bundled) or 'none'}){did_you_mean(path, bundled)}")
