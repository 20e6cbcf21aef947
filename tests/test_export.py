"""`stylize export`: ONNX and TorchScript files that give the PyTorch network's output, at any size."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stylize.cli import app
from stylize.config import ExportFormat, NormKind
from stylize.exported import (ONNX_MIN_TORCH, ExportError, check_export, export_model, is_exported, load_exported,
                              onnx_export_supported)
from stylize.imageio import load_image
from stylize.modelfile import save_model
from stylize.transformer import TransformerConfig, TransformerNet

from conftest import scene

CPU = torch.device("cpu")
runner = CliRunner()


def random_network(shuffle: int, norm: NormKind = NormKind.instance, upsample: str = "bilinear") -> TransformerNet:
    torch.manual_seed(shuffle)
    net = TransformerNet(TransformerConfig(width=8, blocks=1, norm=norm, shuffle=shuffle, upsample=upsample))
    for module in net.modules():  # non-trivial affine parameters and running statistics
        if isinstance(module, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)):
            module.weight.data.normal_(1.0, 0.5)
            module.bias.data.normal_(0.0, 0.5)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(path, random_network(2), {"style_name": "stripes.png", "steps": 7})
    return path


def needs_onnx_export() -> None:
    """Skip where ONNX cannot be exported: without the [onnx] extra, or on a torch too old for it."""
    pytest.importorskip("onnxscript", reason="ONNX export needs the [onnx] extra")
    if not onnx_export_supported():
        pytest.skip(f"ONNX export needs torch {ONNX_MIN_TORCH} or newer (this is {torch.__version__})")


@pytest.fixture(scope="module")
def onnx_file(model_file, tmp_path_factory) -> Path:
    needs_onnx_export()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    result = runner.invoke(app, ["export", str(model_file), "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert "matches PyTorch" in result.output
    return path


SHAPES = [(1, 3, 64, 64), (1, 3, 75, 101), (2, 3, 40, 33), (1, 3, 9, 200), (1, 3, 1, 1)]


@pytest.mark.parametrize("shuffle,norm,upsample", [
    (1, NormKind.instance, "bilinear"), (2, NormKind.instance, "bilinear"), (1, NormKind.ibn, "bilinear"),
    (2, NormKind.ibn, "bilinear"), (1, NormKind.instance, "nearest"), (2, NormKind.instance, "nearest")])
def test_torchscript_gives_the_same_output_at_any_size(tmp_path, shuffle, norm, upsample):
    net = random_network(shuffle, norm, upsample)
    path = tmp_path / "m.ts"
    export_model(net, {"style_name": "x"}, path, ExportFormat.torchscript)
    exported = load_exported(path, CPU)
    assert exported.meta["style_name"] == "x" and exported.meta["network"]["shuffle"] == shuffle
    for shape in SHAPES:
        image = torch.rand(shape)
        with torch.no_grad():
            expected = net(image)
        assert exported(image).shape == shape
        assert torch.allclose(exported(image), expected, atol=1e-5)


def test_onnx_gives_the_same_output_at_any_size(model_file, onnx_file):
    pytest.importorskip("onnxruntime", reason="running ONNX needs the [onnx] extra")
    from stylize.modelfile import load_model

    net = load_model(model_file).network
    exported = load_exported(onnx_file, CPU)
    assert exported.meta["style_name"] == "stripes.png" and exported.meta["steps"] == 7
    for shape in SHAPES:  # one graph for every size and batch: the padding is inside it
        image = torch.rand(shape)
        with torch.no_grad():
            expected = net(image)
        assert torch.allclose(exported(image), expected, atol=1e-5), shape
    assert check_export(net, exported) < 1e-5


def test_onnx_export_keeps_one_instance_norm_node_a_layer(tmp_path, monkeypatch):
    """In float32 the network's instance norm runs as a group norm (transformer.InstanceNorm),
    which ONNX would get as four nodes a layer; the export is the graph of torch's instance norm."""
    needs_onnx_export()
    import onnx

    from stylize import transformer

    net = random_network(2)
    graphs = []
    for name in ("as_run.onnx", "torchs.onnx"):
        export_model(net, {}, tmp_path / name, ExportFormat.onnx)
        graphs.append(Counter(node.op_type for node in onnx.load(str(tmp_path / name)).graph.node))
        monkeypatch.setattr(transformer, "_group_norm_wanted", lambda x: False)
    assert graphs[0] == graphs[1]
    assert graphs[0]["InstanceNormalization"] == sum(isinstance(m, transformer.InstanceNorm) for m in net.modules())


def test_onnx_of_an_older_nearest_upsampling_model(tmp_path):
    """Model files from before bilinear upsampling export with the nearest-neighbour layers they
    were trained with."""
    pytest.importorskip("onnxruntime", reason="running ONNX needs the [onnx] extra")
    needs_onnx_export()
    net = random_network(2, upsample="nearest")
    path = tmp_path / "old.onnx"
    export_model(net, {"style_name": "x"}, path, ExportFormat.onnx)
    exported = load_exported(path, CPU)
    assert exported.meta["network"]["upsample"] == "nearest"
    for shape in SHAPES[:3]:
        image = torch.rand(shape)
        with torch.no_grad():
            assert torch.allclose(exported(image), net(image), atol=1e-5), shape


def test_run_with_an_exported_model_writes_the_same_picture(tmp_path, model_file, onnx_file):
    photo = tmp_path / "photo.png"
    scene(90, 70).save(photo)
    ts_file = tmp_path / "tiny.ts"
    assert runner.invoke(app, ["export", str(model_file), "-o", str(ts_file)]).exit_code == 0
    outputs = {}
    for name, model in (("pt", model_file), ("onnx", onnx_file), ("ts", ts_file)):
        out = tmp_path / f"{name}.png"
        # float32, as exported models run (a CPU with native bfloat16 would use --half by default)
        result = runner.invoke(app, ["run", str(photo), "--model", str(model), "--no-half", "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs[name] = load_image(out).rgb
    assert outputs["pt"].shape == (1, 3, 70, 90)
    for name in ("onnx", "ts"):
        assert (outputs[name] - outputs["pt"]).abs().max() <= 1.5 / 255, name
    # a folder through an exported model: the batch path
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        scene(64, 48, seed=i).save(folder / f"p{i}.png")
    result = runner.invoke(app, ["run", str(folder), "--model", str(onnx_file), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


def test_export_refuses_bad_requests(tmp_path, model_file):
    existing = tmp_path / "m.ts"
    existing.write_bytes(b"keep me")
    result = runner.invoke(app, ["export", str(model_file), "-o", str(existing)])
    assert result.exit_code == 2 and "exists" in result.stderr and existing.read_bytes() == b"keep me"
    result = runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and "--format" in result.stderr
    for args, message in [(["-o", "d1.onnx", "--format", "torchscript"], "disagree"),
                          (["-o", "d2.ts", "--format", "onnx"], "disagree"),
                          (["-o", "d3.bin", "--format", "onnx"], "name ONNX files .onnx")]:
        args[1] = str(tmp_path / args[1])
        result = runner.invoke(app, ["export", str(model_file), *args])
        assert result.exit_code == 2 and message in result.stderr and not Path(args[1]).exists(), result.output
    model_bytes = model_file.read_bytes()
    result = runner.invoke(app, ["export", str(model_file), "-o", str(model_file), "--format", "torchscript",
                                 "--overwrite"])
    assert result.exit_code == 2 and "never written over" in result.stderr and model_file.read_bytes() == model_bytes
    result = runner.invoke(app, ["export", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "no such model" in result.stderr
    # an exported model does not tile (its instance norms are compiled in)
    photo = tmp_path / "p.png"
    scene(40, 40).save(photo)
    assert runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / "ok.ts")]).exit_code == 0
    result = runner.invoke(app, ["run", str(photo), "--model", str(tmp_path / "ok.ts"), "--tile", "256"])
    assert result.exit_code == 2 and "--tile" in result.stderr
    assert is_exported(tmp_path / "ok.ts") and not is_exported(model_file)
    # Exporting an exported file again was "not a readable stylize model file (UnpicklingError)".
    result = runner.invoke(app, ["export", str(tmp_path / "ok.ts"), "-o", str(tmp_path / "again.ts")])
    assert result.exit_code == 2 and "is an exported model already" in result.stderr, result.output
    assert not (tmp_path / "again.ts").exists()


def test_clear_messages_without_the_onnx_packages(tmp_path, model_file, monkeypatch):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not really")
    for module in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` now raises ImportError
    result = runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "pip install 'stylize[onnx]'" in result.stderr
    assert not (tmp_path / "x.onnx").exists()
    photo = tmp_path / "p.png"
    scene(40, 40).save(photo)
    result = runner.invoke(app, ["run", str(photo), "--model", str(onnx_path)])
    assert result.exit_code == 2 and "onnxruntime" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(ExportError, match="onnxruntime"):
        load_exported(onnx_path, CPU)


def test_onnx_export_on_a_torch_too_old_for_it_is_refused_in_one_line(tmp_path, model_file, monkeypatch):
    """torch's ONNX exporter fails on the network's dynamic sizes before ONNX_MIN_TORCH: the user
    is told what to do instead of getting the exporter's traceback, and no file is written."""
    pytest.importorskip("onnxscript", reason="ONNX export needs the [onnx] extra")
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.9.1"))
    assert not onnx_export_supported()
    result = runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "needs torch 2.10 or newer (this is torch 2.9.1)" in result.stderr and "-o MODEL.ts" in result.stderr
    assert not (tmp_path / "x.onnx").exists()
    assert "needs torch 2.10 or newer" in json.loads(runner.invoke(app, ["info", "--json"]).stdout)["onnx_export"]
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.10.0+cu130"))
    assert onnx_export_supported()
    assert json.loads(runner.invoke(app, ["info", "--json"]).stdout)["onnx_export"] == "available"


def test_onnx_export_without_onnxruntime_is_written_and_said_unchecked(tmp_path, model_file, monkeypatch):
    needs_onnx_export()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = runner.invoke(app, ["export", str(model_file), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 0 and "not checked: onnxruntime is not installed" in result.output
    assert (tmp_path / "x.onnx").stat().st_size > 1000


def test_half_option(tmp_path, model_file):
    photo = tmp_path / "p.png"
    scene(48, 40).save(photo)
    out = tmp_path / "half.png"
    result = runner.invoke(app, ["run", str(photo), "--model", str(model_file), "--half", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load_image(out).rgb.shape == (1, 3, 40, 48)
    for flag in ("--half", "--no-half"):  # the iterative method takes both (bfloat16 here on the CPU)
        out = tmp_path / f"iterative{flag}.png"
        result = runner.invoke(app, ["run", str(photo), str(photo), flag, "--size", "32", "--iterations", "2",
                                     "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        assert load_image(out).rgb.shape == (1, 3, 27, 32)
    ts_file = tmp_path / "m.ts"
    assert runner.invoke(app, ["export", str(model_file), "-o", str(ts_file)]).exit_code == 0
    result = runner.invoke(app, ["run", str(photo), "--model", str(ts_file), "--half"])
    assert result.exit_code == 2 and "--half" in result.stderr
