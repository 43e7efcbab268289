"""Penalties Ω(W) on the (d, t) weight matrix of a multi-task linear model (paper §3.5).

Every penalty has the same small interface (skglm style):

- ``value(W)``: Ω(W) as a differentiable torch scalar; usable in any loss (the MTL solver,
  end-to-end fine-tuning), float32/float64, CPU/GPU.
- ``prox(V, step)``: argmin_W ½‖W − V‖²_F + step·Ω(W), exact (closed form for all five).
- ``optimality(W, G)``: dist(0, G + ∂Ω(W)) in Frobenius norm; zero iff W minimises
  f + Ω where G = ∇f(W). With G = (W − V)/step it checks a prox output.
- ``is_smooth`` / ``grad(W)`` / ``lipschitz``: smooth penalties (Ridge, ClusteredMTL) expose
  their gradient and its Lipschitz constant; the solver then treats them as part of the
  smooth term.

Conventions (DESIGN §6): W is (d, t), one column per task; ρ multiplies the penalty as
written (never divided by n); intercepts are never penalised.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor

__all__ = ["ClusteredMTL", "Lasso", "NoPenalty", "Penalty", "Ridge", "TraceNorm"]


def _check_W(W: Tensor, where: str) -> None:
    if not isinstance(W, Tensor) or W.ndim != 2:
        shape = tuple(W.shape) if hasattr(W, "shape") else type(W).__name__
        raise ValueError(f"{where}: W must be a 2-D torch tensor (d, t), got {shape}")


def _nonneg(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class Penalty(ABC):
    """Ω(W) for W of shape (d, t). Subclasses give value, prox and optimality."""

    is_smooth: bool = False

    @abstractmethod
    def value(self, W: Tensor) -> Tensor:
        """Ω(W), a 0-d tensor differentiable with respect to W."""

    @abstractmethod
    def prox(self, V: Tensor, step: float) -> Tensor:
        """argmin_W ½‖W − V‖²_F + step·Ω(W) (same shape, dtype and device as V)."""

    @abstractmethod
    def optimality(self, W: Tensor, G: Tensor) -> float:
        """dist(0, G + ∂Ω(W)) in Frobenius norm; G is the loss gradient at W, shape (d, t)."""

    @property
    def lipschitz(self) -> float:
        """Lipschitz constant of ∇Ω (smooth penalties only)."""
        raise NotImplementedError(f"{type(self).__name__} is not smooth")

    def grad(self, W: Tensor) -> Tensor:
        """∇Ω(W) (smooth penalties only)."""
        raise NotImplementedError(f"{type(self).__name__} is not smooth")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class NoPenalty(Penalty):
    """Ω(W) = 0 (ordinary least squares per task)."""

    is_smooth = True

    def value(self, W: Tensor) -> Tensor:
        _check_W(W, "NoPenalty.value")
        return (W * 0).sum()

    def prox(self, V: Tensor, step: float) -> Tensor:
        return V.clone()

    def optimality(self, W: Tensor, G: Tensor) -> float:
        return float(torch.linalg.norm(G))

    @property
    def lipschitz(self) -> float:
        return 0.0

    def grad(self, W: Tensor) -> Tensor:
        return torch.zeros_like(W)


class Ridge(Penalty):
    """Ω(W) = ρ‖W‖²_F (not halved); ∇Ω = 2ρW, Lipschitz 2ρ; prox V / (1 + 2·step·ρ)."""

    is_smooth = True

    def __init__(self, rho: float) -> None:
        self.rho = _nonneg("Ridge: rho", rho)

    def value(self, W: Tensor) -> Tensor:
        _check_W(W, "Ridge.value")
        return self.rho * (W * W).sum()

    def prox(self, V: Tensor, step: float) -> Tensor:
        return V / (1.0 + 2.0 * step * self.rho)

    def optimality(self, W: Tensor, G: Tensor) -> float:
        return float(torch.linalg.norm(G + self.grad(W)))

    @property
    def lipschitz(self) -> float:
        return 2.0 * self.rho

    def grad(self, W: Tensor) -> Tensor:
        return 2.0 * self.rho * W


class Lasso(Penalty):
    """Ω(W) = ρ‖W‖₁ = ρ Σ|W_ji| (eq. 1, all tasks at once); prox = soft threshold at step·ρ."""

    def __init__(self, rho: float) -> None:
        self.rho = _nonneg("Lasso: rho", rho)

    def value(self, W: Tensor) -> Tensor:
        _check_W(W, "Lasso.value")
        return self.rho * W.abs().sum()

    def prox(self, V: Tensor, step: float) -> Tensor:
        return torch.sign(V) * torch.clamp(V.abs() - step * self.rho, min=0.0)

    def optimality(self, W: Tensor, G: Tensor) -> float:
        # ∂|w| = sign(w) for w ≠ 0 and [-1, 1] at 0.
        active = G + self.rho * torch.sign(W)
        inactive = torch.clamp(G.abs() - self.rho, min=0.0)
        return float(torch.linalg.norm(torch.where(W != 0, active, inactive)))


class _NuclearNorm(torch.autograd.Function):
    """Σσ_j(W) with gradient U₊V₊ᵀ over the non-zero singular values.

    U₊V₊ᵀ is the minimum-norm subgradient; it is the gradient wherever the norm is
    differentiable (full rank), and it stays finite when singular values repeat or vanish
    (no 1/(σ_i − σ_j) terms as in the generic SVD backward).
    """

    @staticmethod
    def forward(ctx, W: Tensor) -> Tensor:  # type: ignore[override]
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        tol = _rank_tol(S, W.shape, W.dtype)
        keep = S > tol
        ctx.save_for_backward(U[:, keep] @ Vh[keep])
        return S.sum()

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (UV,) = ctx.saved_tensors
        return g * UV


def _rank_tol(S: Tensor, shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> float:
    if S.numel() == 0:
        return 0.0
    return float(S.max()) * max(shape) * torch.finfo(dtype).eps


class TraceNorm(Penalty):
    """Ω(W) = ρ Σ_j σ_j(W) (eq. 7); prox = singular value thresholding at step·ρ."""

    def __init__(self, rho: float) -> None:
        self.rho = _nonneg("TraceNorm: rho", rho)

    def value(self, W: Tensor) -> Tensor:
        _check_W(W, "TraceNorm.value")
        return self.rho * _NuclearNorm.apply(W)

    def prox(self, V: Tensor, step: float) -> Tensor:
        U, S, Vh = torch.linalg.svd(V, full_matrices=False)
        S = torch.clamp(S - step * self.rho, min=0.0)
        return (U * S) @ Vh

    def optimality(self, W: Tensor, G: Tensor) -> float:
        # ∂‖W‖_* = {U₁V₁ᵀ + Z : U₁ᵀZ = 0, ZV₁ = 0, ‖Z‖₂ ≤ 1} (U₁, V₁: non-zero σ), so with
        # A = −G and B = (I − U₁U₁ᵀ)A(I − V₁V₁ᵀ): dist² = ‖A − B − ρU₁V₁ᵀ‖² + Σ(σ(B) − ρ)₊².
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        keep = S > _rank_tol(S, W.shape, W.dtype)
        U1, V1 = U[:, keep], Vh[keep].T  # (d, r), (t, r)
        A = -G
        AV = A @ V1
        B = A - U1 @ (U1.T @ A) - AV @ V1.T + U1 @ ((U1.T @ AV) @ V1.T)
        inner = A - B - self.rho * (U1 @ V1.T)
        excess = torch.clamp(torch.linalg.svdvals(B) - self.rho, min=0.0)
        return float(torch.sqrt((inner * inner).sum() + (excess * excess).sum()))


def _optimal_gamma(lam: np.ndarray, eta: float, k: float) -> np.ndarray:
    """Eigenvalues γ of the optimal M for min_M tr(W(ηI+M)⁻¹Wᵀ), tr M = k, 0 ⪯ M ⪯ I.

    ``lam`` (t,) are the eigenvalues of WᵀW. With σ = √λ, γ_j = clip(σ_j τ − η, 0, 1)
    where τ solves h(τ) = Σ_j γ_j(τ) = k; h is piecewise linear and non-decreasing with
    breakpoints η/σ_j and (η+1)/σ_j, so τ is found exactly by sorting them. When at most
    k directions have σ > 0 those get γ = 1 and the rest of the trace is spread evenly over
    the null directions (any split is optimal: they do not enter the objective).
    """
    t = lam.shape[0]
    lam = np.maximum(lam, 0.0)
    lam_max = float(lam.max()) if t else 0.0
    pos = lam > lam_max * t * np.finfo(np.float64).eps if lam_max > 0 else np.zeros(t, bool)
    r = int(pos.sum())
    gamma = np.zeros(t)
    if r <= k:
        gamma[pos] = 1.0
        if r < t:
            gamma[~pos] = (k - r) / (t - r)
        return gamma
    sigma = np.sqrt(lam[pos])
    taus = np.sort(np.concatenate([eta / sigma, (eta + 1.0) / sigma]))
    h = np.minimum(np.maximum(np.multiply.outer(taus, sigma) - eta, 0.0), 1.0).sum(axis=1)
    i = int(
        np.searchsorted(h, k, side="left")
    )  # first breakpoint with h >= k (exists: h[-1] = r > k)
    if i == 0 or h[i] == h[i - 1]:
        tau = taus[i]
    else:
        tau = taus[i - 1] + (k - h[i - 1]) * (taus[i] - taus[i - 1]) / (h[i] - h[i - 1])
    gamma[pos] = np.minimum(np.maximum(sigma * tau - eta, 0.0), 1.0)
    return gamma


class ClusteredMTL(Penalty):
    """Convex clustered multi-task penalty (eq. 8; Zhou, Chen & Ye 2011) with M minimised out.

        Ω(W) = c · min_M tr(W (ηI + M)⁻¹ Wᵀ),  tr M = k, 0 ⪯ M ⪯ I,
        c = ρ1·η(1+η),  η = ρ2/ρ1.

    Closed form (DESIGN §6): with WᵀW = Q diag(λ) Qᵀ (``eigh`` of the t×t matrix) and
    σ = √λ, M* = Q diag(γ) Qᵀ with γ from :func:`_optimal_gamma`, and
    Ω = c Σ_j σ_j²/(η + γ_j). Ω is smooth: ∇Ω = 2c·W(ηI + M*)⁻¹ (Danskin), Lipschitz
    2c/η = 2(ρ1 + ρ2); it is also 2ρ2-strongly convex. The prox is exact as well: since
    min_W ½‖W−V‖² + s·c·tr(W P⁻¹Wᵀ) = s·c·tr(V(P + 2scI)⁻¹Vᵀ) for P = ηI + M, the optimal M
    for the prox is M* of V with η replaced by η' = η + 2sc, and
    prox(V) = V (ηI + M')(η'I + M')⁻¹.
    Identities: k = t gives ρ2‖W‖²_F; Ω(aW) = a²Ω(W); W = w1ᵀ (identical tasks) gives
    ρ2‖W‖²_F for any k ≥ 1.
    """

    is_smooth = True

    def __init__(self, rho1: float, rho2: float, k: float) -> None:
        self.rho1 = _nonneg("ClusteredMTL: rho1", rho1)
        self.rho2 = _nonneg("ClusteredMTL: rho2", rho2)
        if self.rho1 <= 0 or self.rho2 <= 0:
            raise ValueError(
                f"ClusteredMTL: rho1 and rho2 must be > 0 (η = rho2/rho1), got {rho1}, {rho2}"
            )
        self.k = float(k)
        if not self.k >= 1:
            raise ValueError(f"ClusteredMTL: k must be >= 1, got {k}")

    @property
    def eta(self) -> float:
        return self.rho2 / self.rho1

    @property
    def c(self) -> float:
        return self.rho1 * self.eta * (1.0 + self.eta)

    def _eig(self, W: Tensor, eta: float) -> tuple[Tensor, Tensor]:
        """(Q (t,t), γ (t,)) of the optimal M for W and the given η, without gradient."""
        t = W.shape[1]
        if self.k > t:
            raise ValueError(f"ClusteredMTL: k = {self.k} exceeds the number of tasks t = {t}")
        with torch.no_grad():
            Wd = W.detach().to(torch.float64)
            lam, Q = torch.linalg.eigh(Wd.T @ Wd)
            gamma = _optimal_gamma(lam.cpu().numpy(), eta, self.k)
        g = torch.as_tensor(gamma, dtype=W.dtype, device=W.device)
        return Q.to(W.dtype), g

    def optimal_M(self, W: Tensor) -> Tensor:
        """M* (t, t) = argmin_M tr(W(ηI + M)⁻¹Wᵀ) over tr M = k, 0 ⪯ M ⪯ I."""
        _check_W(W, "ClusteredMTL.optimal_M")
        Q, g = self._eig(W, self.eta)
        return (Q * g) @ Q.T

    def _inverse(self, W: Tensor) -> Tensor:
        Q, g = self._eig(W, self.eta)
        return (Q / (self.eta + g)) @ Q.T  # (ηI + M*)⁻¹, (t, t)

    def value(self, W: Tensor) -> Tensor:
        _check_W(W, "ClusteredMTL.value")
        A = self._inverse(W)  # constant for autograd: exact gradient by Danskin
        return self.c * (W * (W @ A)).sum()

    def grad(self, W: Tensor) -> Tensor:
        return 2.0 * self.c * (W @ self._inverse(W))

    @property
    def lipschitz(self) -> float:
        return 2.0 * (self.rho1 + self.rho2)

    def prox(self, V: Tensor, step: float) -> Tensor:
        _check_W(V, "ClusteredMTL.prox")
        shift = 2.0 * float(step) * self.c
        Q, g = self._eig(V, self.eta + shift)
        return V @ ((Q * ((self.eta + g) / (self.eta + shift + g))) @ Q.T)

    def optimality(self, W: Tensor, G: Tensor) -> float:
        return float(torch.linalg.norm(G + self.grad(W)))
