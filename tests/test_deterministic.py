"""The fixed-order padding and repeats that GPU training uses: the same values as torch's own
operations, gradients equal to rounding. Exercised here on the CPU by forcing them on."""

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_gradients_close, output_and_gradients
from stylize import deterministic
from stylize.deterministic import _fixed_order_wanted, _FixedOrderPad, pad2d, repeat_each
from stylize.transformer import TransformerConfig, TransformerNet


@pytest.fixture
def forced(monkeypatch):
    """The fixed-order versions on the CPU too, wherever a gradient flows."""
    monkeypatch.setattr(deterministic, "_fixed_order_wanted", lambda x: x.requires_grad and torch.is_grad_enabled())


def test_only_gradients_off_the_cpu_take_the_fixed_order():
    assert not _fixed_order_wanted(torch.zeros(2, requires_grad=True))  # the CPU's kernels are deterministic
    assert _fixed_order_wanted(torch.zeros(2, device="meta", requires_grad=True))
    assert not _fixed_order_wanted(torch.zeros(2, device="meta"))
    with torch.no_grad():
        assert not _fixed_order_wanted(torch.zeros(2, device="meta", requires_grad=True))


@pytest.mark.parametrize("mode,pad", [("reflect", 1), ("reflect", 4), ("replicate", 1), ("replicate", 3)])
def test_fixed_order_padding_gives_torchs_values_and_gradients(mode, pad):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 9 + 2 * pad, 11 + 2 * pad, dtype=torch.float64)
    ours = _FixedOrderPad.apply(x, pad, mode)
    (ours_grad,) = torch.autograd.grad(ours, x, upstream)
    theirs = F.pad(x, (pad,) * 4, mode=mode)
    (theirs_grad,) = torch.autograd.grad(theirs, x, upstream)
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: _FixedOrderPad.apply(t, pad, mode), (x,))


@pytest.mark.parametrize("mode,size", [(mode, size) for mode in ("reflect", "replicate")
                                       for size in ((2, 5), (3, 4), (6, 9))] + [("replicate", (4, 1))])
def test_padding_by_one_folds_its_edges_as_the_general_fold_does(mode, size):
    """A padding of 1 adds both edges in one operation (four per padding backward instead of
    ten, where narrow maps fall back to the general fold): the same additions in the same
    order, so the same float32 values bit for bit, and torch's gradient to rounding."""
    x = torch.randn(2, 3, *size, requires_grad=True)
    upstream = torch.randn(2, 3, size[0] + 2, size[1] + 2)
    (ours,) = torch.autograd.grad(_FixedOrderPad.apply(x, 1, mode), x, upstream)
    general = upstream
    for dim in (-1, -2):  # the general fold, written out: the centre, then each edge in turn
        n = general.shape[dim] - 2
        out = general.narrow(dim, 1, n).clone()
        first, last = (1, n - 2) if mode == "reflect" else (0, n - 1)
        out.narrow(dim, first, 1).add_(general.narrow(dim, 0, 1))
        out.narrow(dim, last, 1).add_(general.narrow(dim, n + 1, 1))
        general = out
    assert torch.equal(ours, general)
    (theirs,) = torch.autograd.grad(F.pad(x, (1,) * 4, mode=mode), x, upstream)
    torch.testing.assert_close(ours, theirs)


def test_pad2d_takes_the_fixed_order_where_it_is_wanted(monkeypatch):
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    assert "Reflection" in type(pad2d(x, 1, "reflect").grad_fn).__name__  # the CPU: torch's own
    monkeypatch.setattr(deterministic, "_fixed_order_wanted", lambda x: True)
    assert "FixedOrderPad" in type(pad2d(x, 1, "reflect").grad_fn).__name__


def test_fixed_order_repeat_matches_torchs(forced):
    bias = torch.randn(5, requires_grad=True)
    upstream = torch.randn(20)
    (ours,) = torch.autograd.grad(repeat_each(bias, 4), bias, upstream)
    (theirs,) = torch.autograd.grad(bias.repeat_interleave(4), bias, upstream)
    assert torch.equal(repeat_each(bias, 4), bias.repeat_interleave(4))
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("shuffle", [1, 2])
def test_a_network_trains_alike_through_the_fixed_order_versions(shuffle, monkeypatch):
    """Both layouts (the classic one's block convolution, the shuffled one's upsampling head):
    the same output, and the same gradients to rounding, with every pad folded in fixed order."""
    torch.manual_seed(0)
    net = TransformerNet(TransformerConfig(width=8, blocks=1, shuffle=shuffle)).train()
    batch = torch.rand(2, 3, 40, 36)

    plain_out, plain_grads = output_and_gradients(net, batch)
    folds = []
    for name in ("_fold_reflected", "_fold_replicated"):
        fold = getattr(deterministic, name)
        monkeypatch.setattr(deterministic, name, lambda g, p, d, fold=fold: folds.append(p) or fold(g, p, d))
    monkeypatch.setattr(deterministic, "_fixed_order_wanted", lambda x: x.requires_grad and torch.is_grad_enabled())
    fixed_out, fixed_grads = output_and_gradients(net, batch)
    assert folds  # the fixed-order backward ran
    assert torch.equal(fixed_out, plain_out)
    assert_gradients_close(fixed_grads, plain_grads, rtol=1e-5, atol_of_largest=1e-6)
