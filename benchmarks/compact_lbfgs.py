"""A candidate not adopted (yet): L-BFGS over one tensor, one evaluation per step, in the compact form.

The steps are those of ``torch.optim.LBFGS(lr, max_iter=1, tolerance_grad=0,
tolerance_change=0)`` without a line search (tested to agree): the first step follows the
gradient with length ``min(1, 1/|g|_1) * lr``; each later step adds the last pair
(s = step taken, y = change of gradient) to a memory of ``history`` pairs when s.y > 1e-10,
scales the initial inverse Hessian by s.y / y.y and moves by ``lr`` times the L-BFGS direction;
a direction that does not descend is not taken.

torch's implementation computes the direction with the two-loop recursion: two Python loops of
a dot product and an update per remembered pair, about 200 small operations a step with 50
pairs, each reading a whole image-sized vector. Here the pairs sit in one [2, m, n] buffer and
the direction comes from the compact representation of Byrd, Nocedal and Schnabel (1994,
eq. 2.6): one matrix product against the memory for every inner product the step needs, small
m x m algebra, and one product back: the memory is read twice instead of about four times, and
a GPU runs a dozen kernels instead of hundreds.

On the 2-core CPU it is slower than the two-loop (levers.py: the memory is read more often, and
the two-loop is already bound by memory bandwidth there). On an H200 it was a little faster than
stylize.lbfgs, the two-loop without torch's host reads (2.5 against 3.0 ms a step), which
stylize runs for being faster on both machines than torch's; levers.py measures all three.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class LBFGS:
    """Minimises ``closure()`` over ``param`` (a leaf tensor with requires_grad); the closure
    zeroes the gradient, evaluates the objective, backpropagates and returns it."""

    def __init__(self, param: torch.Tensor, lr: float = 1.0, history: int = 50) -> None:
        self.param, self.lr, self.history = param, lr, history
        n = param.numel()
        self._memory = torch.empty(2, history, n, dtype=param.dtype, device=param.device)  # s rows, y rows
        self._sy = torch.zeros(history, history, dtype=param.dtype, device=param.device)  # s_i . y_j
        self._yy = torch.zeros(history, history, dtype=param.dtype, device=param.device)  # y_i . y_j
        self._slots: list[int] = []  # memory rows in use, oldest first
        self._gamma: float | torch.Tensor = 1.0  # initial inverse Hessian scale, s.y / y.y
        self._last_grad: torch.Tensor | None = None
        self._last_step: torch.Tensor | None = None  # the step taken (t * d), flat

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One evaluation of the objective and one step; returns the objective before the step."""
        loss = closure()
        grad = self.param.grad.detach().reshape(-1)
        if self._last_grad is None:
            direction = -grad
            step_length = (1.0 / grad.abs().sum()).clamp(max=1.0) * self.lr
        else:
            self._remember(self._last_step, grad - self._last_grad)
            direction = -self._inverse_hessian_times(grad)
            step_length = torch.tensor(self.lr, dtype=grad.dtype, device=grad.device)
        # Not a descent direction: stay (as torch does); the next pair then has s = 0 and is dropped.
        step = direction * (step_length * (grad.dot(direction) <= 0))
        with torch.no_grad():
            self.param.add_(step.view_as(self.param))
        self._last_grad = grad.clone()
        self._last_step = step
        return loss

    def _used(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The remembered s and y rows (views: until the memory is full, its first rows)."""
        count = len(self._slots)
        return self._memory[0, :count], self._memory[1, :count]

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        sy = s.dot(y)
        if not float(sy) > 1e-10:  # the only host synchronisation: whether to keep the pair
            return
        slot = self._slots.pop(0) if len(self._slots) == self.history else len(self._slots)
        self._slots.append(slot)
        self._memory[0, slot] = s
        self._memory[1, slot] = y
        # Inner products of the new pair with every remembered one: one pass over the memory.
        pair = torch.stack([s, y])
        s_rows, y_rows = self._used()
        s_dot, y_dot = (pair @ s_rows.T).T, (pair @ y_rows.T).T  # [count, 2]: (. s, . y)
        self._sy[:len(self._slots), slot] = s_dot[:, 1]  # s_i . y_new
        self._sy[slot, :len(self._slots)] = y_dot[:, 0]  # s_new . y_j
        self._yy[:len(self._slots), slot] = y_dot[:, 1]
        self._yy[slot, :len(self._slots)] = y_dot[:, 1]
        self._gamma = sy / y_dot[slot, 1]

    def _inverse_hessian_times(self, grad: torch.Tensor) -> torch.Tensor:
        """H g with H = gamma I + [S, gamma Y] M [S^T; gamma Y^T] (Byrd et al. 1994, eq. 2.6), M
        made of R (the upper triangle of S^T Y), D (its diagonal) and Y^T Y."""
        gamma = self._gamma
        if not self._slots:
            return grad * gamma
        order = torch.tensor(self._slots, device=grad.device)  # oldest first
        s_rows, y_rows = self._used()
        u, v = (s_rows @ grad)[order], gamma * (y_rows @ grad)[order]  # S^T g, gamma Y^T g
        sy = self._sy[order][:, order]
        upper = torch.triu(sy)
        w = torch.linalg.solve_triangular(upper, u.unsqueeze(1), upper=True).squeeze(1)  # R^-1 S^T g
        inner = torch.diagonal(sy) * w + gamma * (self._yy[order][:, order] @ w) - v
        top = torch.linalg.solve_triangular(upper.T, inner.unsqueeze(1), upper=False).squeeze(1)
        s_coef = torch.zeros(len(self._slots), dtype=grad.dtype, device=grad.device)
        y_coef = torch.zeros_like(s_coef)
        s_coef[order], y_coef[order] = top, -gamma * w
        return gamma * grad + s_coef @ s_rows + y_coef @ y_rows
