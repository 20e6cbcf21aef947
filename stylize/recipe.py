"""How an output was made: its inputs, every option that shapes its pixels, and the command
that makes it again.

stylize writes a recipe into each image it makes (``imageio`` keeps it in the file's EXIF), so
that a result chosen among many variants says which settings made it, and ``stylize info
IMAGE`` prints them. A recipe holds only what decides the pixels: the inputs' file names
(without their folders, which may be private) and SHA-256, the options with their resolved
values (the schedule the run took, the precision, the device), the versions, and the final
loss; never a time or the output's own name, so that the same run writes the same file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from stylize import __version__
from stylize.config import Backbone, BackboneConfig, OptimizerKind, RunConfig, format_layer_weights, number
from stylize.errors import InputError

MADE_BY = f"stylize {__version__}"
METHODS = ("iterative", "model")
# Inputs that the command line takes as an option's value rather than as an argument.
OPTION_INPUTS = ("model", "init-image", "mask", "weights")


class RecipeError(InputError):
    """A file holds no recipe of stylize's, or a damaged one."""


@dataclass(frozen=True)
class Input:
    role: str  # photo, style, model, init-image, mask, weights, or previous (a video's frame before)
    file: str  # the file's name, without its folder (or a bundled model's name)
    sha256: str | None = None  # of the file's bytes (bundled models' too: they change between versions)


@dataclass(frozen=True)
class Recipe:
    """What made an output; see the module's docstring."""

    method: str  # "iterative" (Gatys et al.) or "model" (a trained network)
    inputs: tuple[Input, ...]
    options: tuple[tuple[str, str | None], ...]  # ("--size", "512"), ("--preserve-color", None)
    device: str
    torch: str
    loss: tuple[tuple[str, float], ...] = ()  # the iterative method's final losses
    stopped: str = ""  # "": the run ended; else where it stopped (Ctrl-C, a --save-every snapshot)
    made_by: str = MADE_BY
    # A video frame (--init previous) that started from the previous frame's result (an input of
    # role "previous"), moved along the optical flow; the camera moved by (dy, dx) pixels.
    moved: tuple[float, float] | None = None

    def finished(self, losses: dict[str, float], stopped: str = "") -> Recipe:
        """The recipe with the run's final ``losses`` (and where it ``stopped``, if it did)."""
        return replace(self, loss=tuple((k, float(v)) for k, v in losses.items()), stopped=stopped)

    def following(self, previous: Input, moved: tuple[float, float]) -> Recipe:
        """A video frame's recipe: it started from ``previous`` (a result) moved by ``moved``."""
        return replace(self, inputs=(*self.inputs, previous), moved=(round(moved[0], 3), round(moved[1], 3)))

    @property
    def is_frame(self) -> bool:
        return self.moved is not None

    def command(self) -> list[str]:
        """The arguments of the `stylize run` that makes the output again (from a folder that
        holds the inputs under these names). A video frame that followed the one before comes of
        its batch: FRAMES/ stands for its photos' folder and OUT/ for the results'."""
        if self.is_frame:
            args = ["stylize", "run", "FRAMES/", *(a for i in self.inputs if i.role == "style" for a in ("-s", i.file))]
        else:
            args = ["stylize", "run", *(i.file for i in self.inputs if i.role in ("photo", "style"))]
        for item in self.inputs:
            if item.role in OPTION_INPUTS:
                args += [f"--{item.role}", item.file]
        # A sequence's first frame (or one after a cut) started from its photo, as one photo would
        # (a trained network's: its output as it is).
        first_frame = not self.is_frame and ("--init", "previous") in self.options
        for name, value in self.options:
            if first_frame and name == "--init":
                if self.method == "model":
                    continue
                value = "content"
            if first_frame and name == "--temporal-weight":
                continue
            args += [name] if value is None else [name, value]
        return args + (["-o", "OUT/"] if self.is_frame else [])

    def command_line(self) -> str:
        return shlex.join(self.command())

    def to_text(self) -> str:
        """One line of JSON (ASCII: EXIF text is)."""
        data = {"made_by": self.made_by, "torch": self.torch, "method": self.method, "device": self.device,
                "inputs": [{"role": i.role, "file": i.file, **({"sha256": i.sha256} if i.sha256 else {})}
                           for i in self.inputs],
                "options": dict(self.options), "loss": dict(self.loss)}
        if self.stopped:
            data["stopped"] = self.stopped
        if self.moved is not None:
            data["moved"] = list(self.moved)
        return json.dumps(data, ensure_ascii=True)

    @classmethod
    def from_text(cls, text: str) -> Recipe:
        """Read ``to_text``'s JSON; raise RecipeError if it is not a recipe of stylize's."""
        try:
            data = json.loads(text)
            if not str(data["made_by"]).startswith("stylize ") or data["method"] not in METHODS:
                raise ValueError("not a recipe")
            inputs = tuple(Input(str(i["role"]), str(i["file"]), i.get("sha256")) for i in data["inputs"])
            options = tuple((str(k), None if v is None else str(v)) for k, v in data["options"].items())
            loss = tuple((str(k), float(v)) for k, v in data.get("loss", {}).items())
            moved = data.get("moved")
            return cls(data["method"], inputs, options, str(data["device"]), str(data["torch"]), loss,
                       str(data.get("stopped", "")), str(data["made_by"]),
                       None if moved is None else (float(moved[0]), float(moved[1])))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise RecipeError("it holds text that is not a recipe of stylize's") from None


def iterative_recipe(config: RunConfig, backbone: BackboneConfig, schedule: list[tuple[tuple[int, int], int]],
                     device: torch.device, photo: Path, styles: list[Path], init: Path | None = None,
                     mask: Path | None = None, invert_mask: bool = False, tile: int | None = None,
                     frames: bool = False) -> Recipe:
    """An iterative run's recipe: ``config`` with its precision resolved, and the ``schedule``
    the run takes (its scales and iterations, whatever the defaults of a later version); ``tile``:
    the tiles it was evaluated in (the same objective, its rounding another); ``frames``: of video
    frames (--init previous or an animation), whose --temporal-weight it names."""
    loss = config.loss
    options: list[tuple[str, str | None]] = [
        ("--size", str(config.size)),
        ("--scales", ",".join(str(max(hw)) for hw, _ in schedule[:-1]) or "1"),
        ("--iterations", ",".join(str(n) for _, n in schedule)),
        ("--content-weight", number(loss.content_weight)), ("--style-weight", number(loss.style_weight)),
        ("--tv-weight", number(loss.tv_weight)), ("--content-layers", format_layer_weights(loss.content_layers)),
        ("--style-layers", format_layer_weights(loss.style_layers)), ("--style-loss", loss.style_loss.value),
        ("--optimizer", config.optimizer.value)]
    if config.optimizer is OptimizerKind.adam:
        options.append(("--lr", number(config.learning_rate)))
    options += [("--init", config.init.value), ("--seed", str(config.seed)),
                ("--style-scale", number(config.style_scale))]
    if frames:
        options.append(("--temporal-weight", number(config.temporal_weight)))
    if config.style_blend is not None:
        options.append(("--style-blend", ",".join(number(w) for w in config.style_blend)))
    options += [(flag, None) for flag, on in (("--preserve-color", config.preserve_color),
                                              ("--match-color", config.match_color)) if on]
    if backbone.name is not None or backbone.weights is None:  # with --weights alone, the file says which
        options.append(("--backbone", (backbone.name or Backbone.vgg16).value))
    options += [("--pooling", backbone.pooling.value), ("--half" if config.half else "--no-half", None)]
    options += [("--tile", str(tile))] if tile is not None else []
    inputs = [file_input("photo", photo), *(file_input("style", s) for s in styles)]
    inputs += [file_input(role, path) for role, path in (("init-image", init), ("mask", mask),
                                                         ("weights", backbone.weights)) if path is not None]
    return _recipe("iterative", inputs, options, device, invert_mask and mask is not None)


def model_recipe(model: Path, bundled: bool, photo: Path, device: torch.device, size: int | None,
                 keep_color: bool, strength: float, tile: int | None, half: bool | None,
                 mask: Path | None = None, invert_mask: bool = False, temporal_weight: float = 0.0,
                 animated: bool = False) -> Recipe:
    """A trained network's run: ``bundled``, a bundled model, named by its name; ``half`` None
    for an exported model (it runs as exported); ``temporal_weight`` above 0: of video frames,
    each held to the one before (a folder's, --init previous; or an ``animated`` photo's)."""
    options: list[tuple[str, str | None]] = [] if size is None else [("--size", str(size))]
    options += [("--preserve-color", None)] if keep_color else []
    options += [("--strength", number(strength))] if strength != 1 else []
    options += [("--init", "previous")] if temporal_weight and not animated else []
    options += [("--temporal-weight", number(temporal_weight))] if temporal_weight else []
    options += [("--tile", str(tile))] if tile is not None else []
    options += [] if half is None else [("--half" if half else "--no-half", None)]
    model_input = file_input("model", model)
    if bundled:
        model_input = replace(model_input, file=model.stem)
    inputs = [file_input("photo", photo), model_input]
    inputs += [file_input("mask", mask)] if mask is not None else []
    return _recipe("model", inputs, options, device, invert_mask and mask is not None)


def _recipe(method: str, inputs: list[Input], options: list[tuple[str, str | None]], device: torch.device,
            invert_mask: bool) -> Recipe:
    options += [("--invert-mask", None)] if invert_mask else []
    return Recipe(method, tuple(inputs), (*options, ("--device", str(device))), str(device), torch.__version__)


def file_input(role: str, path: Path) -> Input:
    """An input file by its name and its SHA-256."""
    return Input(role, Path(path).name, file_sha256(Path(path)))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, computed once per file version (a style image of a batch)."""
    stat = path.stat()
    return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(recipe: Recipe) -> list[tuple[str, str]]:
    """(label, text) rows for people: the method, the inputs with a short hash, the loss."""
    method = "Gatys et al.'s iterative method" if recipe.method == "iterative" else "a trained network, one pass"
    rows = [("made by", f"{recipe.made_by} (torch {recipe.torch}) on {recipe.device}"), ("method", method)]
    rows += [(item.role, item.file + (f"  (sha256 {item.sha256[:16]}...)" if item.sha256 else ""))
             for item in recipe.inputs]
    if recipe.loss:
        rows.append(("loss", ", ".join(f"{k} {v:.4g}" for k, v in recipe.loss)))
    if recipe.stopped:
        rows.append(("stopped", recipe.stopped))
    if recipe.moved is not None:
        dy, dx = recipe.moved
        how = "held to" if recipe.method == "model" else "started from"
        rows.append(("frame", f"{how} the previous frame's result along the optical flow; the camera "
                              f"moved {abs(dy):.1f} px {'down' if dy >= 0 else 'up'} and {abs(dx):.1f} px "
                              f"{'right' if dx >= 0 else 'left'}"))
    return rows


def as_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON data, with the command that makes the output again."""
    return {**json.loads(recipe.to_text()), "command": recipe.command_line()}
