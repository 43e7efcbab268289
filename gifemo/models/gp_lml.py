"""Log marginal likelihood of one exact RBF + noise GP, and its maximisation (used by gp.py).

The formulas, the profiling of the signal variance and the warm-started quasi-Newton stage are
described in :mod:`gifemo.models.gp`. Everything here is float64 NumPy/SciPy (OpenBLAS LAPACK).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.optimize as sopt
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

# Below this many rows BLAS runs on one thread: the work is milliseconds, and on a busy 2-core
# machine OpenBLAS's thread hand-offs made 500-row evaluations 10-50x slower than one thread.
SINGLE_THREAD_ROWS = 1024


def sq_distances(A: np.ndarray, B: np.ndarray | None = None, *, chunk: int = 4096) -> np.ndarray:
    """Squared Euclidean distances ‖a_i − b_j‖² in float64, (n_a, d), (n_b, d) → (n_a, n_b).

    Computed as ‖a‖² + ‖b‖² − 2 a·b (one GEMM) in row chunks, clamped at 0; with ``B=None`` the
    matrix is symmetric with an exact zero diagonal.
    """
    same = B is None
    Bm = A if B is None else B
    nb = (Bm.astype(np.float64, copy=False) ** 2).sum(1)
    out = np.empty((A.shape[0], Bm.shape[0]), dtype=np.float64)
    B64 = Bm.astype(np.float64, copy=False)
    for lo in range(0, A.shape[0], chunk):
        a = A[lo : lo + chunk].astype(np.float64, copy=False)
        blk = out[lo : lo + chunk]
        np.matmul(a, B64.T, out=blk)
        blk *= -2.0
        blk += (a**2).sum(1)[:, None]
        blk += nb[None, :]
        np.maximum(blk, 0.0, out=blk)
    if same:
        np.fill_diagonal(out, 0.0)
        out += out.T  # exact symmetry: both triangles from the same sums
        out *= 0.5
    return out


def _rbf(D: np.ndarray, ell: float) -> np.ndarray:
    """exp(−D/(2ℓ²)) elementwise, (a, b) → (a, b) float64 (a new array).

    Entries below e^−708 (≈ 3e−308, 1e−292 of the diagonal's 1) are set to exactly 0 instead of
    becoming subnormal numbers, which make the Cholesky and GEMMs that follow many times slower.
    """
    R = D * (-0.5 / ell**2)
    np.putmask(R, R < -708.0, -np.inf)
    return np.exp(R, out=R)


def _blas_threads(n: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for problems with fewer than SINGLE_THREAD_ROWS rows, else unchanged."""
    if n < SINGLE_THREAD_ROWS:
        return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


def _cholesky(M: np.ndarray, what: str) -> np.ndarray:
    """Lower Cholesky factor of M, overwriting M (upper triangle zeroed)."""
    L, info = sla.lapack.dpotrf(M, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"{what}: matrix not positive definite (dpotrf info={info})")
    return L


def exact_lml(D: np.ndarray, y: np.ndarray, s: float, ell: float, noise: float) -> float:
    """Exact log p(y | X, s, ℓ, σ²) (eq. 4) for squared distances D (n, n) and centred y (n,)."""
    n = y.shape[0]
    A = _rbf(D, ell)
    A *= s
    A.flat[:: n + 1] += noise
    L = _cholesky(A, "exact_lml")
    alpha = sla.cho_solve((L, True), y)
    logdet = 2.0 * np.log(np.diag(L)).sum()
    return float(-0.5 * y @ alpha - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi))


class _Profiled:
    """L_p at x = (log ℓ, log g) from one Cholesky; its gradient (one ``potri``) on request.

    Holds R (n, n), the factor L of B and α = B⁻¹y between the two steps; formulas in the
    module docstring.
    """

    def __init__(self, D: np.ndarray, y: np.ndarray, log_ell: float, log_g: float) -> None:
        n = y.shape[0]
        self.D, self.ell2, self.g = D, math.exp(2.0 * log_ell), math.exp(log_g)
        self.R = _rbf(D, math.sqrt(self.ell2))  # (n, n)
        B = self.R.copy()
        B.flat[:: n + 1] += self.g
        self.L = _cholesky(B, f"profiled_lml(ℓ={math.sqrt(self.ell2):.4g}, g={self.g:.4g})")
        self.alpha = sla.cho_solve((self.L, True), y)  # B⁻¹y
        self.s_star = float(y @ self.alpha) / n
        if not self.s_star > 0.0:
            raise ValueError("profiled_lml: yᵀB⁻¹y = 0 (constant targets); the GP is ill-defined")
        logdet = 2.0 * np.log(np.diag(self.L)).sum()
        self.value = float(
            -0.5 * n * (1 + math.log(2 * math.pi) + math.log(self.s_star)) - 0.5 * logdet
        )

    def gradient(self) -> np.ndarray:
        """∇L_p (2,) in (log ℓ, log g); consumes R and L (call once)."""
        R, alpha, s_star, ell2, g = self.R, self.alpha, self.s_star, self.ell2, self.g
        R *= self.D  # R∘D, zero diagonal
        quad_ell = float(alpha @ (R @ alpha))
        W, info = sla.lapack.dpotri(self.L, lower=1, overwrite_c=1)  # lower of B⁻¹, upper 0
        if info != 0:
            raise np.linalg.LinAlgError(f"profiled_lml: dpotri info={info}")
        trace_ell = 2.0 * float(np.vdot(W, R))  # Σ B⁻¹∘(R∘D), both triangles (diag of R∘D is 0)
        del self.R, self.L
        return np.array(
            [
                0.5 * quad_ell / (ell2 * s_star) - 0.5 * trace_ell / ell2,
                0.5 * g * float(alpha @ alpha) / s_star - 0.5 * g * float(np.trace(W)),
            ]
        )


def profiled_lml(
    D: np.ndarray, y: np.ndarray, log_ell: float, log_g: float, *, grad: bool = True
) -> tuple[float, np.ndarray, float, np.ndarray]:
    """Log marginal likelihood maximised over s, its gradient in (log ℓ, log g), s*, α = A⁻¹y.

    D: (n, n) squared distances, y: (n,) centred targets. Returns ``(L_p, grad (2,), s*,
    alpha_A (n,))`` where ``alpha_A = B⁻¹y / s*`` is A⁻¹y at s = s* (σ² = g·s*); ``grad`` is
    zeros when ``grad=False`` (then no ``potri`` is done). Formulas in the module docstring.
    """
    p = _Profiled(D, y, log_ell, log_g)
    gradient = p.gradient() if grad else np.zeros(2)
    return p.value, gradient, p.s_star, p.alpha / p.s_star


class _Objective:
    """x = (log ℓ, log g) ↦ (−L_p/n, −∇L_p/n): per-row scale, so tolerances do not depend on n.

    Counts evaluations (Choleskys) and keeps the best point with its s* and α = A⁻¹y, so that
    the fit needs no extra factorisation at the end. ``value`` alone skips the ``potri``.
    """

    def __init__(self, D: np.ndarray, y: np.ndarray) -> None:
        self.D, self.y, self.n_eval = D, y, 0
        self.best_value, self.best_x, self.best_s = -np.inf, np.zeros(2), 0.0
        self.best_alpha = np.zeros_like(y)

    def value(self, x: np.ndarray) -> tuple[float, _Profiled]:
        self.n_eval += 1
        p = _Profiled(self.D, self.y, float(x[0]), float(x[1]))
        if p.value > self.best_value:
            self.best_value, self.best_x = p.value, x.copy()
            self.best_s, self.best_alpha = p.s_star, p.alpha / p.s_star
        return -p.value / self.y.shape[0], p

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, p = self.value(x)
        return f, -p.gradient() / self.y.shape[0]


def _lbfgs(obj: _Objective, x0: np.ndarray, bounds: np.ndarray, max_iter: int, gtol: float) -> None:
    """L-BFGS-B on ``obj`` (scipy); the result is ``obj.best_x``."""
    options = {"maxiter": max_iter, "gtol": gtol, "ftol": 1e-12}
    sopt.minimize(obj, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)


def _fd_hessian(obj: _Objective, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Per-row Hessian (2, 2) of ``obj`` at x by central differences of its exact gradient,
    made positive definite (eigenvalues floored at 1e-3 of the largest)."""
    H = np.empty((2, 2))
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        H[:, j] = (obj(x + e)[1] - obj(x - e)[1]) / (2 * h)
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    w = np.maximum(np.abs(w), 1e-3 * max(np.abs(w).max(), 1e-12))
    return (V * w) @ V.T


def _quasi_newton(
    obj: _Objective,
    x: np.ndarray,
    H: np.ndarray,
    bounds: np.ndarray,
    *,
    max_evals: int,
    gtol: float,
    lml_tol: float,
) -> None:
    """Projected BFGS from x with initial per-row Hessian H (from a subset), Armijo backtracking.

    Trial points cost one Cholesky; the gradient (``potri``) is computed only at accepted ones.
    Stops when every per-row gradient component is below ``gtol``, when the quadratic model
    predicts (½ gᵀH⁻¹g) or a step gains less than ``lml_tol`` nats, or after ``max_evals``
    Choleskys. Steps are capped at 2 (log units) per coordinate. The result is ``obj.best_x``.
    """
    n = obj.y.shape[0]
    f, state = obj.value(x)
    g = -state.gradient() / n
    while obj.n_eval < max_evals and np.abs(g).max() >= gtol:
        p = -np.linalg.solve(H, g)
        if -0.5 * float(g @ p) * n < lml_tol:  # predicted gain of the full Newton step
            return
        p *= min(1.0, 2.0 / np.abs(p).max())
        step = 1.0
        while True:
            x_new = np.clip(x + step * p, bounds[:, 0], bounds[:, 1])
            f_new, state = obj.value(x_new)
            if f_new <= f + 1e-4 * float(g @ (x_new - x)) or obj.n_eval >= max_evals:
                break
            step *= 0.3
        gain = (f - f_new) * n
        if f_new > f or gain < lml_tol:  # no acceptable step left, or converged
            return
        g_new = -state.gradient() / n
        s_k, y_k = x_new - x, g_new - g
        if s_k @ y_k > 1e-12 * (s_k @ s_k):  # BFGS update of the Hessian approximation
            Hs = H @ s_k
            H = H - np.outer(Hs, Hs) / (s_k @ Hs) + np.outer(y_k, y_k) / (s_k @ y_k)
        x, f, g = x_new, f_new, g_new
