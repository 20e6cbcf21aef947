"""L-BFGS over one tensor for the iterative method: one evaluation a step, no line search.

The steps are those of ``torch.optim.LBFGS(lr, max_iter=1, tolerance_grad=0,
tolerance_change=0)`` (``torch_equivalent``; tested to agree): the first step follows the gradient with length
``min(1, 1/|g|_1) * lr``; each later step adds the last pair (s = the last step, taken or not;
y = change of gradient) to a memory of ``history`` pairs when s.y > 1e-10, scales the initial
inverse Hessian by s.y / y.y (Nocedal and Wright, eq. 7.20) and moves by ``lr`` times the
direction of the two-loop recursion (their Algorithm 7.4); a direction that climbs is not taken.
(One difference: at a gradient of exactly zero torch returns before all this; here the step is
a zero.)

Why not torch's: its two-loop passes each of its 2m coefficients to ``add_(..., alpha=)``, which
reads the number back to the host, so a step waits on the GPU about 2m + 4 times (44 at 20
pairs). Here the coefficients stay tensors on the device and a step synchronises twice: whether
to keep the new pair, and whether the direction descends. On the CPU it is the same arithmetic,
a little faster (8.1 against 9.2 ms a step at 20 pairs, 512x384x3; benchmarks/levers.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def torch_equivalent(param: torch.Tensor, history: int, lr: float = 1.0) -> torch.optim.LBFGS:
    """torch's optimiser set to take the steps ``LBFGS(param, history, lr)`` takes: what the
    tests check it against and the benchmarks time it against."""
    return torch.optim.LBFGS([param], lr=lr, max_iter=1, history_size=history, tolerance_grad=0.0,
                             tolerance_change=0.0)


def closure(objective: Callable[[torch.Tensor], torch.Tensor], param: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The closure ``LBFGS.step`` (and torch's optimisers) take for ``objective(param)``: it
    clears the gradient, evaluates the objective, backpropagates and returns it."""
    def evaluate() -> torch.Tensor:
        param.grad = None
        loss = objective(param)
        loss.backward()
        return loss
    return evaluate


class LBFGS:
    """Minimises ``closure()`` over ``param`` (a leaf tensor that requires grad); the closure
    clears the gradient, evaluates the objective, backpropagates and returns it (``closure``
    builds one from a function of ``param``)."""

    def __init__(self, param: torch.Tensor, history: int, lr: float = 1.0) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self.param, self.history, self.lr = param, history, lr
        self._pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1/s.y), oldest first
        self._scale: float | torch.Tensor = 1.0  # the initial inverse Hessian, s.y / y.y of the newest pair
        self._last_grad: torch.Tensor | None = None
        self._last_step: torch.Tensor | None = None  # length times direction, taken or not

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Evaluate the objective and take one step; returns the objective before the step.
        Where the direction climbs (g.d > 0), ``param`` is left untouched (not even written)."""
        with torch.enable_grad():
            loss = closure()
        grad = self.param.grad.reshape(-1)
        if self._last_grad is None:
            direction = grad.neg()
            length: float | torch.Tensor = (1.0 / grad.abs().sum()).clamp(max=1.0) * self.lr
        else:
            self._remember(self._last_step, grad - self._last_grad)
            direction = self._two_loop(grad)
            length = self.lr
        self._last_grad = grad.clone(memory_format=torch.contiguous_format)
        self._last_step = direction * length
        if grad.dot(direction) > 0:  # uphill (torch's test with tolerance_change = 0)
            return loss
        self.param.add_(self._last_step.view_as(self.param))
        return loss

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        sy = y.dot(s)
        if sy > 1e-10:  # a host synchronisation: the memory's length depends on it
            if len(self._pairs) == self.history:
                self._pairs.pop(0)
            self._pairs.append((s, y, 1.0 / sy))
            self._scale = sy / y.dot(y)

    def _two_loop(self, grad: torch.Tensor) -> torch.Tensor:
        """The L-BFGS direction -H g; addcmul_ takes the coefficient as a tensor, where torch's
        add_(alpha=) would read it back to the host."""
        q = grad.neg()
        alphas = []
        for s, y, rho in reversed(self._pairs):
            alpha = s.dot(q) * rho
            q.addcmul_(y, alpha, value=-1)
            alphas.append(alpha)
        r = q.mul_(self._scale)
        for (s, y, rho), alpha in zip(self._pairs, reversed(alphas)):
            beta = y.dot(r) * rho
            r.addcmul_(s, alpha - beta)
        return r
