import pytest
import torch

from stylize.config import LossConfig, StyleLossKind
from stylize.losses import (PerceptualLoss, gram_matrix, guided_statistic, mean_std, relative_error, required_layers,
                            shift_consistency, style_statistic, style_targets, tv_loss)


def test_gram_of_known_tensor_is_normalised_by_positions():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2, H*W=2
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 2
    assert torch.allclose(gram_matrix(f)[0], expected)


def test_gram_does_not_grow_with_image_size():
    f = torch.rand(1, 4, 8, 8)
    tiled = f.repeat(1, 1, 2, 2)  # same statistics, four times the positions
    assert torch.allclose(gram_matrix(f), gram_matrix(tiled), atol=1e-6)


@pytest.mark.parametrize("batch", [1, 2])  # one image takes a 2-D product (losses._matmul)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_of_bfloat16_features_is_float32_and_near_the_float32_one(layout, batch):
    """--half: bfloat16 features give a float32 Gram matrix from a bfloat16 product (accumulated
    in float32, the result rounded), and a bfloat16 gradient near float32's."""
    torch.manual_seed(0)
    f = torch.rand(batch, 8, 16, 12).contiguous(memory_format=layout)
    half = f.bfloat16().requires_grad_(True)
    full = half.detach().float().requires_grad_(True)  # the same values, in float32
    g_half, g_full = gram_matrix(half), gram_matrix(full)
    assert g_half.dtype == torch.float32 and g_half.shape == (batch, 8, 8)
    assert torch.allclose(g_half, g_full, rtol=1e-2)
    assert not torch.equal(g_half, g_full)  # it did round the product
    weights = torch.rand(batch, 8, 8)
    (g_half * weights).sum().backward()
    (g_full * weights).sum().backward()
    assert half.grad.dtype == torch.bfloat16
    assert torch.allclose(half.grad.float(), full.grad, rtol=2e-2, atol=1e-4)


def test_gram_of_float16_features_is_computed_in_float32():
    """float16 sums over many positions could overflow: they are cast to float32 first."""
    f = torch.full((1, 2, 64, 64), 16.0)  # each product 256, summed over 4096 positions: over float16's 65504
    assert torch.equal(gram_matrix(f.half()), gram_matrix(f))
    assert gram_matrix(f.half()).isfinite().all()


def test_mean_std_of_known_channels():
    f = torch.tensor([[1.0, 3.0], [5.0, 5.0]]).view(1, 2, 1, 2)
    stats = mean_std(f)[0]
    assert torch.allclose(stats[0], torch.tensor([2.0, 5.0]))
    assert torch.allclose(stats[1], torch.tensor([1.0, 0.0]), atol=1e-3)


def test_tv_of_checkerboard_and_constant():
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    board = ((i + j) % 2).float().expand(1, 3, 6, 6)
    assert tv_loss(board).item() == pytest.approx(2.0)
    assert tv_loss(torch.full((1, 3, 6, 6), 0.4)).item() == 0.0


def test_relative_error_scale():
    t = torch.rand(2, 5) + 0.1
    assert relative_error(t, t).item() == 0.0
    assert relative_error(torch.zeros_like(t), t).item() == pytest.approx(1.0)
    assert relative_error(3 * t, t).item() == pytest.approx(4.0, rel=1e-5)


def test_style_targets_blend_is_weighted_average():
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    blended = style_targets([{"relu1_1": a}, {"relu1_1": b}], [0.7, 0.3], StyleLossKind.gram)["relu1_1"]
    assert torch.allclose(blended, 0.7 * gram_matrix(a) + 0.3 * gram_matrix(b), atol=1e-6)


def test_perceptual_loss_terms_and_layer_weights():
    cfg = LossConfig(content_weight=2.0, style_weight=10.0, tv_weight=0.5,
                     content_layers=(("relu2_1", 1.0),), style_layers=(("relu1_1", 1.0), ("relu2_1", 3.0)))
    assert required_layers(cfg) == ["relu2_1", "relu1_1"]
    feats = {"relu1_1": torch.rand(1, 3, 4, 4), "relu2_1": torch.rand(1, 5, 2, 2)}
    style = {"relu1_1": torch.rand(1, 3, 4, 4), "relu2_1": torch.rand(1, 5, 2, 2)}
    targets = style_targets([style], [1.0], StyleLossKind.gram)
    loss = PerceptualLoss(cfg, targets)
    image = torch.rand(1, 3, 8, 8)
    parts = loss(image, feats, {"relu2_1": feats["relu2_1"]})
    assert parts.content.item() == 0.0  # content features equal their targets
    expected_style = 10.0 * (0.25 * relative_error(gram_matrix(feats["relu1_1"]), targets["relu1_1"])
                             + 0.75 * relative_error(gram_matrix(feats["relu2_1"]), targets["relu2_1"]))
    assert parts.style.item() == pytest.approx(expected_style.item(), rel=1e-5)
    assert parts.tv.item() == pytest.approx(0.5 * tv_loss(image).item())
    assert parts.total.item() == pytest.approx(parts.style.item() + parts.tv.item(), rel=1e-6)


@pytest.mark.parametrize("kind", list(StyleLossKind))
def test_a_guided_statistic_is_the_statistic_of_the_positions_it_selects(kind):
    features = torch.rand(1, 8, 6, 10) * torch.linspace(0, 3, 10)  # the right side stronger than the left
    left = torch.zeros(1, 1, 6, 10)
    left[..., :4] = 1.0
    plain = style_statistic(kind, features)
    assert torch.allclose(guided_statistic(kind, features, left), style_statistic(kind, features[..., :4]), atol=1e-5)
    assert torch.allclose(guided_statistic(kind, features, torch.ones(1, 1, 6, 10)), plain, atol=1e-5)
    assert not torch.allclose(guided_statistic(kind, features, left), plain, atol=1e-2)
    # Normalised by the guide's own weight: a uniformly fainter guide selects the same statistics.
    half = left * 0.5
    assert torch.allclose(guided_statistic(kind, features, half), guided_statistic(kind, features, left), atol=1e-5)


def test_meanstd_statistic_differs_from_gram():
    f = torch.rand(1, 4, 3, 3)
    assert style_statistic(StyleLossKind.meanstd, f).shape == (1, 2, 4)
    assert style_statistic(StyleLossKind.gram, f).shape == (1, 4, 4)


def test_negative_weights_rejected():
    from stylize.errors import InputError

    with pytest.raises(InputError, match="style weight"):
        LossConfig(style_weight=-1.0)


def test_shift_consistency_is_zero_for_a_shift_equivariant_map_and_sees_a_grid_fixed_to_the_lattice():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 40, 44)

    def moved(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:  # up and left, reflected back to size
        return torch.nn.functional.pad(x[..., dy:, dx:], (0, dx, 0, dy), mode="reflect")

    blur = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")  # equivariant away from the borders
    grid = 0.1 * torch.cos(torch.arange(44) * torch.pi / 2).expand(40, 44)  # fixed to a 4-px lattice
    with torch.no_grad():
        assert shift_consistency(blur(image), blur(moved(image, 1, 3)), 1, 3, band=8) < 1e-12
        assert shift_consistency(blur(image) + grid, blur(moved(image, 1, 3)) + grid, 1, 3, band=8) > 0.005
        # Moved by a whole period the grid matches itself: only shifts of 1-3 px can see it.
        assert shift_consistency(image + grid, moved(image, 4, 4) + grid, 4, 4, band=8) < 1e-12
