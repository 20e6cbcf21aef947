import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import assert_gradients_close, output_and_gradients
from stylize import transformer
from stylize.config import NormKind
from stylize.transformer import (CLASSIC, EDGE_MARGIN, FAST, SMALL, STRIDE, BlockConv2d, ConvNormAct, FoldedConv,
                                 InstanceNorm, TransformerConfig, TransformerNet, UpsampleConv2d, _group_norm_wanted,
                                 bilinear_upsample_conv3x3, block_matrix, fold_block, for_inference, stylize_image,
                                 upsample_conv3x3)


@pytest.mark.parametrize("config", [SMALL, FAST], ids=["small", "fast"])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (31, 17), (64, 48), (3, 100)])
def test_any_size_comes_back_the_same_size_in_range(size, config):
    net = TransformerNet(config).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shuffle", [1, 2])
@pytest.mark.parametrize("norm", list(NormKind))
def test_every_norm_runs_forward_and_backward(norm, shuffle):
    net = TransformerNet(TransformerConfig(width=8, blocks=2, norm=norm, shuffle=shuffle))
    x = torch.rand(2, 3, 20, 24)
    net(x).mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_batch_norm_uses_running_statistics_at_inference():
    net = TransformerNet(TransformerConfig(width=8, blocks=1, norm=NormKind.batch))
    net.train()
    for _ in range(3):
        net(torch.rand(4, 3, 16, 16))
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    # In eval mode an image's output does not depend on what else is in the batch.
    single = stylize_image(net, a, torch.device("cpu"))
    paired = stylize_image(net, torch.cat([a, b]), torch.device("cpu"))[:1]
    assert torch.allclose(single, paired, atol=1e-5)
    assert net.training  # restored


def test_ibn_mixes_instance_and_batch_norm_early_only():
    net = TransformerNet(TransformerConfig(width=8, blocks=4, norm=NormKind.ibn))
    names = [type(m).__name__ for m in net.encoder.modules()]
    assert "IBNorm" in names
    assert "IBNorm" not in [type(m).__name__ for m in net.decoder.modules()]


def test_presets_and_stable_state_dict_keys():
    classic = TransformerNet(CLASSIC)
    keys = list(classic.state_dict())
    assert keys[:4] == ["encoder.0.conv.weight", "encoder.0.conv.bias", "encoder.0.norm.weight", "encoder.0.norm.bias"]
    assert "head.1.weight" in keys and "residuals.4.conv2.conv.weight" in keys
    n_classic = sum(p.numel() for p in classic.parameters())
    n_small = sum(p.numel() for p in TransformerNet(SMALL).parameters())
    assert 1.5e6 < n_classic < 2e6 and n_small < n_classic / 4
    fast = TransformerNet(FAST)
    assert set(fast.state_dict()) <= set(classic.state_dict())  # same layer names, other shapes
    assert fast.encoder[0].conv.in_channels == 12 and fast.head[1].out_channels == 3  # upsampling head
    subpixel = TransformerNet(dataclasses.replace(FAST, head="subpixel"))
    assert set(subpixel.state_dict()) == set(fast.state_dict()) and subpixel.head[1].out_channels == 12


@pytest.mark.parametrize("head,upsample", [("upsample", "bilinear"), ("upsample", "nearest"),
                                           ("subpixel", "bilinear")])
def test_shuffled_heads_on_a_flat_image(head, upsample):
    """The upsampling head cannot draw a 2-pixel grid into a flat area: every output pixel of a
    flat input is the same. The sub-pixel head's four phases have their own weights, so with
    random weights a flat input comes out as a 2x2 pattern (what the first bundled models
    learned to show in skies)."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(width=8, blocks=1, shuffle=2, head=head, upsample=upsample)).eval()
    with torch.no_grad():
        out = net(torch.full((1, 3, 32, 40), 0.3) + 0.1 * torch.rand(1, 3, 1, 1))
    phases = F.pixel_unshuffle(out, 2).view(3, 4, -1).mean(-1)  # each channel's mean per phase
    spread = (phases.max(1).values - phases.min(1).values).max().item()
    if head == "upsample":
        assert out.std(dim=(2, 3)).max() < 1e-6
    else:
        assert spread > 1e-3


def test_shuffled_network_is_a_network_on_two_by_two_blocks():
    """Every layer of a shuffled network works at half resolution; only the pixel (un)shuffle
    touches full resolution, and the output is still pixel-aligned with the input. Training
    crops go in as they are; at inference the image gets its reflected margin first."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(width=8, blocks=1, shuffle=2)).train()
    shapes = []
    net.encoder[0].conv.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    out = net(torch.rand(1, 3, 64, 48))
    assert shapes == [(1, 12, 32 + 2, 24 + 2)]  # half size, plus the 3x3 conv's reflection pad
    assert out.shape == (1, 3, 64, 48)
    residual_input = []
    net.residuals[0].register_forward_hook(lambda m, i, o: residual_input.append(tuple(i[0].shape)))
    odd = net(torch.rand(1, 3, 61, 45))  # padded to the stride of 4, cropped back
    assert odd.shape == (1, 3, 61, 45) and STRIDE == 4
    assert residual_input == [(1, 32, 16, 12)]  # the residual blocks at a quarter, as in Johnson et al.
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 48))
    m = EDGE_MARGIN
    assert shapes[-1] == (1, 12, (64 + 2 * m) // 2 + 2, (48 + 2 * m) // 2 + 2) and out.shape == (1, 3, 64, 48)


def test_config_round_trip_and_validation():
    config = TransformerConfig(width=24, blocks=3, norm=NormKind.ibn, shuffle=2)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    old = {"width": 16, "blocks": 3, "norm": "instance"}  # a model file from before `shuffle`
    assert TransformerConfig.from_dict(old) == dataclasses.replace(SMALL, upsample="nearest")
    shuffled = {**old, "shuffle": 2}  # from before `head`: the sub-pixel head it was trained with
    assert TransformerConfig.from_dict(shuffled) == dataclasses.replace(FAST, head="subpixel", upsample="nearest")
    # From before `upsample`: nearest-neighbour copies, as they were trained.
    before_upsample = {**shuffled, "head": "upsample"}
    assert TransformerConfig.from_dict(before_upsample) == dataclasses.replace(FAST, upsample="nearest")
    assert FAST.upsample == CLASSIC.upsample == "bilinear"
    from stylize.errors import InputError

    with pytest.raises(InputError, match="--width"):
        TransformerConfig(width=2)
    with pytest.raises(InputError, match="--shuffle"):
        TransformerConfig(shuffle=3)
    with pytest.raises(InputError, match="head"):
        TransformerConfig(head="transposed")
    with pytest.raises(InputError, match="upsampling"):
        TransformerConfig(upsample="bicubic")


def test_half_precision_inference_is_close_to_float32():
    """--half: autocast (bfloat16 on the CPU); the result is float32 and near the full-precision one."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(width=8, blocks=2, shuffle=2))
    image = torch.rand(1, 3, 40, 56)
    full = stylize_image(net, image, torch.device("cpu"))
    half = stylize_image(net, image, torch.device("cpu"), half=True)
    assert half.dtype == torch.float32 and half.shape == full.shape
    difference = (half - full).abs()
    assert difference.mean() < 0.01 and difference.max() < 0.08
    assert not torch.equal(half, full)  # it did run in lower precision


@pytest.mark.parametrize("kernel", [3, 5, 9])
def test_block_convolution_is_the_plain_convolution(kernel):
    """BlockConv2d computes nn.Conv2d's function on 2x2 blocks: same output, same gradients for
    the input and for the (shared) parameters."""
    torch.manual_seed(kernel)
    block = BlockConv2d(6, 3, kernel)
    x = torch.randn(2, 6, 9 + kernel, 13 + kernel, requires_grad=True)  # even sizes
    grad = torch.randn(2, 3, 10, 14)
    out = block(x)
    plain = F.conv2d(x, block.weight, block.bias)
    assert out.shape == plain.shape == grad.shape
    assert torch.allclose(out, plain, atol=1e-5)
    got = torch.autograd.grad(out, [x, block.weight, block.bias], grad)
    want = torch.autograd.grad(plain, [x, block.weight, block.bias], grad)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-4)
    with pytest.raises(ValueError):
        BlockConv2d(6, 3, 4)


@pytest.mark.parametrize("kernel", [1, 3, 9])
def test_block_weights_select_the_kernels_taps_exactly(kernel):
    """fold_block's product picks each tap itself (no rounding), tap 2A+r-p of row phase p, input
    row phase r, block offset A (and so for columns); zero outside the kernel."""
    weight = torch.randn(2, 3, kernel, kernel)
    blocks = fold_block(weight, block_matrix(kernel))
    n = (kernel + 1) // 2
    assert blocks.shape == (8, 12, n, n)
    for o, c, p, q, r, s, a, b in itertools.product(range(2), range(3), *[range(2)] * 4, range(n), range(n)):
        row, col = 2 * a + r - p, 2 * b + s - q
        inside = 0 <= row < kernel and 0 <= col < kernel
        assert blocks[4 * o + 2 * p + q, 4 * c + 2 * r + s, a, b] == (weight[o, c, row, col] if inside else 0)


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 3)])
def test_upsample_convolution_is_upsample_pad_and_convolve(size):
    """upsample_conv3x3 at the input's resolution equals nearest 2x upsampling, a reflection pad
    of 1 and a 3x3 convolution, in value and in gradients."""
    torch.manual_seed(sum(size))
    x = torch.randn(2, 4, *size, requires_grad=True)
    weight = torch.randn(5, 4, 3, 3, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    out = upsample_conv3x3(x, weight, bias)
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    plain = F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect"), weight, bias)
    assert out.shape == plain.shape == (2, 5, 2 * size[0], 2 * size[1])
    assert torch.allclose(out, plain, atol=1e-5)
    grad = torch.randn_like(plain)
    ours, theirs = (torch.autograd.grad(y, [x, weight, bias], grad) for y in (out, plain))
    for g, w in zip(ours, theirs):
        assert torch.allclose(g, w, atol=1e-4)
    with pytest.raises(ValueError):
        ConvNormAct(4, 5, 5, upsample=2)


@pytest.mark.parametrize("size", [(5, 7), (8, 8), (1, 3)])
def test_bilinear_upsample_convolution_is_upsample_and_convolve(size):
    """bilinear_upsample_conv3x3 at the input's resolution equals bilinear 2x upsampling of the
    input replicated by a pixel, and a 3x3 convolution over it, in value and in gradients."""
    torch.manual_seed(sum(size))
    x = torch.randn(2, 4, *size, requires_grad=True)
    weight = torch.randn(5, 4, 3, 3, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    out = bilinear_upsample_conv3x3(x, weight, bias)
    h, w = size
    up = F.interpolate(F.pad(x, (1, 1, 1, 1), mode="replicate"), scale_factor=2.0, mode="bilinear",
                       align_corners=False)
    plain = F.conv2d(up[..., 1:2 * h + 3, 1:2 * w + 3], weight, bias)
    assert out.shape == plain.shape == (2, 5, 2 * h, 2 * w)
    assert torch.allclose(out, plain, atol=1e-5)
    grad = torch.randn_like(plain)
    inputs = [x, weight, bias]
    for g, w in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(plain, inputs, grad)):
        assert torch.allclose(g, w, atol=1e-4)


def test_upsampling_mode_is_a_function_of_the_weights_only():
    """A model's upsampling is recorded in its configuration, not its weights: the same weights
    under nearest and bilinear upsampling give different images, and the state dicts match."""
    torch.manual_seed(0)
    nearest = TransformerNet(dataclasses.replace(FAST, upsample="nearest")).eval()
    bilinear = TransformerNet(FAST).eval()
    bilinear.load_state_dict(nearest.state_dict())
    x = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert (nearest(x) - bilinear(x)).abs().max() > 1e-3


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsample_layer_folds_its_kernel_in_a_few_float32_operations(mode):
    """UpsampleConv2d computes its function (bilinear_upsample_conv3x3 / upsample_conv3x3); its
    phase kernels come from one product, a few operations forward and backward (on a GPU,
    launches), in float32 under --half too; the constant
    it folds with is not in the state dict."""
    torch.manual_seed(1)
    layer = UpsampleConv2d(4, 5, mode)
    x = torch.randn(2, 4, 6, 7)
    function = bilinear_upsample_conv3x3 if mode == "bilinear" else upsample_conv3x3
    assert torch.allclose(layer(x), function(x, layer.weight, layer.bias), atol=1e-6)
    assert list(layer.state_dict()) == ["weight", "bias"]
    with _OpCounter() as counter:
        phases, bias = layer.folded()
        (phases.sum() + bias.sum()).backward()
    assert counter.count <= 30  # 27 and 23 here; tap by tap, 175 and 73
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.folded()[0].dtype == torch.float32


@pytest.mark.parametrize("config", [
    CLASSIC, FAST, dataclasses.replace(CLASSIC, upsample="nearest", norm=NormKind.ibn),
    dataclasses.replace(FAST, head="subpixel", upsample="nearest", norm=NormKind.batch),
], ids=["classic", "fast", "classic-nearest-ibn", "subpixel-nearest-batch"])
@pytest.mark.parametrize("half", [False, True], ids=["float32", "bfloat16"])
def test_inference_copy_gives_the_same_output_from_fewer_operations(config, half):
    """for_inference folds the upsampling and block kernels once: bit for bit the network's
    output, in float32 and under --half, from far fewer operations; the original is untouched."""
    torch.manual_seed(0)
    net = TransformerNet(config)
    for _ in range(2):  # batch norm's running statistics away from their start
        net(torch.rand(2, 3, 24, 28))
    keys = list(net.state_dict())
    copy = for_inference(net)
    assert not any(isinstance(m, (BlockConv2d, UpsampleConv2d)) for m in copy.modules())
    folded = sum(isinstance(m, FoldedConv) for m in copy.modules())
    assert folded == (3 if config.shuffle == 1 else 2 if config.head == "upsample" else 1)
    assert net.training and all(p.requires_grad for p in net.parameters()) and list(net.state_dict()) == keys
    x = torch.rand(2, 3, 37, 50)
    counts = []
    with torch.inference_mode():
        outputs = []
        for network in (net.eval(), copy):
            with _OpCounter() as counter, torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                outputs.append(network(x))
            counts.append(counter.count)
    assert torch.equal(outputs[0], outputs[1])
    assert counts[1] <= counts[0] - 5 * folded  # 6-11 fewer a folded layer (FAST: 55 instead of 67)


def test_inference_copy_is_a_snapshot_the_original_trains_on():
    net = TransformerNet(FAST)
    copy = for_inference(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert not torch.equal(net.eval()(x), copy(x))
        assert torch.equal(for_inference(net)(x), net(x))


def test_instance_norm_is_group_norm_in_float32_and_torchs_under_autocast():
    """The network's instance norm keeps nn.InstanceNorm2d's keys; in float32 it computes a group
    norm of a group per channel (equal to torch's instance norm to rounding), and under autocast
    torch's instance norm, bit for bit (the bundled models, trained in bfloat16, train alike)."""
    torch.manual_seed(0)
    ours, theirs = InstanceNorm(6), torch.nn.InstanceNorm2d(6, affine=True)
    ours.weight.data.normal_(1.0, 0.5)
    ours.bias.data.normal_(0.0, 0.5)
    theirs.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == ["weight", "bias"] and isinstance(ours, torch.nn.InstanceNorm2d)
    x = torch.randn(3, 6, 9, 11)
    for mode in (True, False):
        ours.train(mode), theirs.train(mode)
        assert torch.equal(ours(x), F.group_norm(x, 6, ours.weight, ours.bias, ours.eps))
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = x.bfloat16()
            assert not _group_norm_wanted(half) and not _group_norm_wanted(x)
            assert torch.equal(ours(half), theirs(half)) and torch.equal(ours(x), theirs(x))
    assert _group_norm_wanted(x) and not _group_norm_wanted(x.double())
    assert not _group_norm_wanted(torch.zeros(1, device="meta"))


@pytest.mark.parametrize("shuffle", [1, 2])
def test_instance_norm_as_group_norm_trains_alike_in_fewer_operations(shuffle, monkeypatch):
    """A group per channel is the same normalisation: the network's output and gradients equal
    to rounding with torch's instance norm, and each norm layer launches two operations forward
    and backward where torch's instance norm launches seven."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(width=8, blocks=1, shuffle=shuffle)).train()
    for module in net.modules():
        if isinstance(module, InstanceNorm):
            module.weight.data.normal_(1.0, 0.5)
            module.bias.data.normal_(0.0, 0.5)
    norms = sum(isinstance(m, InstanceNorm) for m in net.modules())
    batch = torch.rand(2, 3, 40, 36)

    def output_grads_and_count():
        with _OpCounter() as counter:
            out, grads = output_and_gradients(net, batch)
        return out, grads, counter.count

    group_out, group_grads, group_count = output_grads_and_count()
    monkeypatch.setattr(transformer, "_group_norm_wanted", lambda x: False)
    plain_out, plain_grads, plain_count = output_grads_and_count()
    torch.testing.assert_close(group_out, plain_out, rtol=0, atol=1e-5)
    assert_gradients_close(group_grads, plain_grads, rtol=1e-4, atol_of_largest=1e-5)
    assert group_count <= plain_count - 4 * norms
