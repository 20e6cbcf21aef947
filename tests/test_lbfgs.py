"""stylize.lbfgs: torch's L-BFGS steps (one evaluation, no line search) without its host synchronisations."""

import math

import pytest
import torch
from conftest import HostReads
from stylize.lbfgs import LBFGS, closure, torch_equivalent


def _ill_conditioned(x: torch.Tensor) -> torch.Tensor:
    """Curvatures from 1e-3 to 1e3, plus a quartic and a cosine: not quadratic, so the curvature
    pairs differ from step to step (dropped pairs: the concave test below)."""
    curvature = torch.logspace(-3, 3, x.numel(), dtype=x.dtype).view_as(x)
    return (curvature * (x - 0.3) ** 2).sum() + 0.1 * (x**4).sum() + torch.cos(5 * x).sum()


def _closure(x: torch.Tensor, objective=_ill_conditioned):
    return closure(objective, x)


@pytest.mark.parametrize("history", [1, 5, 20])
def test_takes_torchs_steps(history):
    torch.manual_seed(0)
    start = torch.rand(3, 6, 7, dtype=torch.float64) * 2 - 1
    ours, theirs = (start.clone().requires_grad_(True) for _ in range(2))
    ours_opt, theirs_opt = LBFGS(ours, history), torch_equivalent(theirs, history)
    losses = []
    for _ in range(60):  # more steps than the memory holds
        losses.append(ours_opt.step(_closure(ours)).item())
        assert theirs_opt.step(_closure(theirs)).item() == pytest.approx(losses[-1], rel=1e-9)
        # Equal to the last bit here with 5 or 20 pairs; with 1, rounding differs and grows to
        # about 1e-9 by the 60th step on this ill-conditioned objective.
        torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-8)
    assert losses[-1] < losses[0]


def test_drops_pairs_without_positive_curvature():
    """Along a concave objective s.y < 0: the pair is not remembered (torch's rule too)."""
    concave = lambda v: -(v**2).sum()  # noqa: E731
    x, y = (torch.tensor([0.5], dtype=torch.float64, requires_grad=True) for _ in range(2))
    ours, theirs = LBFGS(x, history=5), torch_equivalent(y, 5)
    for _ in range(3):
        ours.step(_closure(x, concave))
        theirs.step(_closure(y, concave))
    assert ours._pairs == [] and x.item() > 1.5  # it still moves, along -g
    torch.testing.assert_close(x, y)


def test_leaves_the_tensor_alone_on_an_uphill_direction():
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    optimizer = LBFGS(x, history=3)
    optimizer.step(_closure(x))
    optimizer._scale = -1.0  # a negative inverse Hessian: the direction climbs
    optimizer._last_step.zero_()  # and the last step adds no pair
    version, before = x._version, x.detach().clone()
    optimizer.step(_closure(x))
    assert x._version == version and torch.equal(x.detach(), before)


def test_a_step_reads_two_values_back_where_torchs_reads_many():
    history = 20
    reads = {}
    for name, make in (("ours", lambda x: LBFGS(x, history)), ("torch", lambda x: torch_equivalent(x, history))):
        torch.manual_seed(0)
        x = (torch.rand(4, 32, dtype=torch.float64) * 2 - 1).requires_grad_(True)
        optimizer = make(x)
        closure = _closure(x, lambda v: (torch.linspace(1, 50, v.numel(), dtype=v.dtype).view_as(v) * v**2).sum())
        for _ in range(history + 5):  # memory full
            optimizer.step(closure)
        with HostReads() as mode:
            optimizer.step(closure)
        reads[name] = mode.count
    assert reads["ours"] <= 2 < 2 * history <= reads["torch"]


def test_rejects_an_empty_memory():
    with pytest.raises(ValueError):
        LBFGS(torch.zeros(2, requires_grad=True), history=0)


def test_first_step_length_is_capped_by_the_gradient():
    """The first step moves by min(1, 1/|g|_1) times -g, as torch's does."""
    x = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    LBFGS(x, history=2).step(_closure(x, lambda v: (v - 10.0).pow(2).sum()))  # g = -20 each, |g|_1 = 80
    torch.testing.assert_close(x.detach(), torch.full((4,), 20.0 / 80, dtype=torch.float64))
    assert math.isclose(x.detach().sum().item(), 1.0)
