"""Models of pytorch/examples' fast_neural_style, read as stylize networks (stylize.foreign)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from stylize.cli import app
from stylize.errors import InputError
from stylize.imageio import load_image
from stylize.modelfile import ModelFileError, load_model

from conftest import scene


class _ConvLayer(nn.Module):
    """fast_neural_style's ConvLayer and UpsampleConvLayer: (nearest 2x,) reflection pad, conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False) -> None:
        super().__init__()
        self.upsample, self.pad = upsample, kernel // 2
        self.conv2d = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.in1 = _ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)
        self.conv2, self.in2 = _ConvLayer(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class FastNeuralStyleNet(nn.Module):
    """The recipe's TransformerNet as its paper draws it, with its state-dict names: pixels in
    0-255 in, the last layer's values out (the recipe clamps them to 0-255 when it saves)."""

    def __init__(self) -> None:
        super().__init__()
        norm = lambda c: nn.InstanceNorm2d(c, affine=True)  # noqa: E731
        self.conv1, self.in1 = _ConvLayer(3, 32, 9), norm(32)
        self.conv2, self.in2 = _ConvLayer(32, 64, 3, 2), norm(64)
        self.conv3, self.in3 = _ConvLayer(64, 128, 3, 2), norm(128)
        for i in range(1, 6):
            setattr(self, f"res{i}", _Residual(128))
        self.deconv1, self.in4 = _ConvLayer(128, 64, 3, upsample=True), norm(64)
        self.deconv2, self.in5 = _ConvLayer(64, 32, 3, upsample=True), norm(32)
        self.deconv3 = _ConvLayer(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


@pytest.fixture
def recipe_model(tmp_path):
    """A fast_neural_style model file: random weights (norms too), an output spread over 0-255,
    and the unused running statistics older torch versions saved."""
    torch.manual_seed(0)
    net = FastNeuralStyleNet().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
        net.deconv3.conv2d.weight.mul_(600.0)
        net.deconv3.conv2d.bias.fill_(127.0)
    state = net.state_dict()
    state["in1.running_mean"], state["in1.running_var"] = torch.zeros(32), torch.ones(32)
    path = tmp_path / "candy.pth"
    torch.save(state, path)
    return net, path


def test_a_fast_neural_style_model_computes_what_the_recipe_does(recipe_model):
    recipe, path = recipe_model
    loaded = load_model(path)
    assert loaded.meta["imported_from"] == "pytorch/examples fast_neural_style" and loaded.meta["style_name"] == "candy"
    assert (loaded.network.config.width, loaded.network.config.blocks) == (32, 5)
    image = load_image(_photo(path.parent, 64, 48)).rgb
    expected = recipe(image * 255).clamp(0, 255) / 255
    assert 0.05 < (expected == 0).float().mean() + (expected == 1).float().mean() < 0.95  # clipped, not all
    ours = loaded.network.train()(image)  # without the edge margin stylize adds at inference
    assert (ours - expected).abs().max() < 1e-4


def test_a_fast_neural_style_model_runs_and_exports_from_the_command_line(recipe_model, tmp_path):
    recipe, path = recipe_model
    photo = _photo(tmp_path, 80, 60)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(photo), "--model", str(path), "-o", str(tmp_path / "out.png"),
                                 "--no-half"])
    assert result.exit_code == 0, result.output
    out = load_image(tmp_path / "out.png").rgb
    # The imported network (the recipe's function, above), with stylize's edge margin at inference.
    expected = load_model(path).network.eval()(load_image(photo).rgb)
    assert out.shape == expected.shape and (out - expected).abs().max() <= 0.5 / 255 + 1e-6
    exported = runner.invoke(app, ["export", str(path), "-o", str(tmp_path / "candy.ts")])
    assert exported.exit_code == 0, exported.output
    again = runner.invoke(app, ["run", str(photo), "--model", str(tmp_path / "candy.ts"), "-o",
                                str(tmp_path / "out_ts.png")])
    assert again.exit_code == 0, again.output
    assert (load_image(tmp_path / "out_ts.png").rgb - out).abs().max() <= 1 / 255


def test_a_fast_neural_style_model_is_not_resumed_and_a_foreign_file_gets_one_line(recipe_model, tmp_path):
    from stylize.config import BackboneConfig, TrainConfig
    from stylize.train import prepare_training
    from stylize.transformer import TransformerConfig

    _, path = recipe_model
    photos = tmp_path / "photos"
    photos.mkdir()
    style = _photo(photos, 40, 40)
    with pytest.raises(InputError, match="trained by pytorch/examples fast_neural_style, not a stylize checkpoint"):
        prepare_training(style, photos, tmp_path / "m.pt", TrainConfig(steps=1), TransformerConfig(),
                         BackboneConfig(), "cpu", overwrite=False, resume=path)
    state = torch.load(path, weights_only=True)
    state["res6.conv9.conv2d.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ModelFileError, match="looks like a fast_neural_style model but does not fit its network"):
        load_model(tmp_path / "odd.pth")


def _photo(folder, width: int, height: int):
    path = folder / "photo.png"
    scene(width, height, seed=3).save(path)
    return path
