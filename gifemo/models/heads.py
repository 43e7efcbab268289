"""Linear multi-task head: one linear regressor per emotion on a shared feature vector.

    ŷ = x W + b,   x (B, d), W (d, t), b (t,), ŷ (B, t)

The same W layout as :mod:`gifemo.models.mtl`, so a solver solution initialises the head
(:meth:`MultiTaskHead.from_solution`) and any :class:`~gifemo.models.penalties.Penalty`
regularises it in an end-to-end loss (``head.regularizer()`` = Ω(W), differentiable).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gifemo.models.penalties import NoPenalty, Penalty

__all__ = ["MultiTaskHead"]


class MultiTaskHead(nn.Module):
    """x (B, d) → x W + b (B, t). ``penalty`` (default none) defines :meth:`regularizer`."""

    def __init__(self, d: int, t: int, *, penalty: Penalty | None = None) -> None:
        super().__init__()
        if d < 1 or t < 1:
            raise ValueError(f"MultiTaskHead: need d >= 1 and t >= 1, got d={d}, t={t}")
        self.W = nn.Parameter(torch.zeros(d, t))  # (d, t)
        self.b = nn.Parameter(torch.zeros(t))  # (t,)
        self.penalty: Penalty = NoPenalty() if penalty is None else penalty

    @property
    def in_features(self) -> int:
        return self.W.shape[0]

    @property
    def num_tasks(self) -> int:
        return self.W.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"MultiTaskHead: expected input (B, {self.in_features}), got {tuple(x.shape)}"
            )
        return x @ self.W + self.b  # (B, t)

    def regularizer(self, penalty: Penalty | None = None) -> Tensor:
        """Ω(W) for ``penalty`` (default: the head's own), differentiable w.r.t. W."""
        return (self.penalty if penalty is None else penalty).value(self.W)

    @torch.no_grad()
    def load_solution(self, W: Any, b: Any) -> MultiTaskHead:
        """Copy W (d, t) and b (t,) (numpy or torch) into the parameters."""
        Wt = torch.as_tensor(np.asarray(W) if not isinstance(W, Tensor) else W)
        bt = torch.as_tensor(np.asarray(b) if not isinstance(b, Tensor) else b)
        if tuple(Wt.shape) != tuple(self.W.shape) or tuple(bt.shape) != tuple(self.b.shape):
            raise ValueError(
                f"MultiTaskHead: solution shapes W {tuple(Wt.shape)}, b {tuple(bt.shape)} do not "
                f"match the head's W {tuple(self.W.shape)}, b {tuple(self.b.shape)}"
            )
        self.W.copy_(Wt.to(self.W))
        self.b.copy_(bt.to(self.b))
        return self

    @classmethod
    def from_solution(
        cls, sol: Any, *, penalty: Penalty | None = None, dtype: torch.dtype = torch.float32
    ) -> MultiTaskHead:
        """A head holding ``sol.W`` (d, t) and ``sol.b`` (t,) (e.g. an MTLSolution)."""
        d, t = tuple(sol.W.shape)
        head = cls(d, t, penalty=penalty).to(dtype)
        return head.load_solution(sol.W, sol.b)

    def extra_repr(self) -> str:
        return f"d={self.in_features}, t={self.num_tasks}, penalty={self.penalty!r}"
