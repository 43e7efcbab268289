"""cvxpy reference formulations of the multi-task problems (paper eqs. 1, 7, 8).

A test oracle and a benchmark peer, never the training path (DESIGN §6). Each problem is

    min_{W (d,t), b (t,)}  Σ_{n,i} mask[n,i]·(X[n]·W[:,i] + b[i] − Y[n,i])²  +  Ω(W)

with the loss not halved and b unpenalised. Clustered MTL is the joint SDP in (W, M) of
eq. 8: c·tr(W(ηI + M)⁻¹Wᵀ) = c·matrix_frac(Wᵀ, ηI + M), tr M = k, 0 ⪯ M ⪯ I,
c = ρ1·η(1+η), η = ρ2/ρ1. SCS handles every size here; Clarabel is more accurate at small
d but runs out of memory on the CMTL SDP at d ≈ 500.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from gifemo.models.penalties import ClusteredMTL, Lasso, NoPenalty, Penalty, Ridge, TraceNorm

__all__ = ["CvxSolution", "solve_cvx"]


@dataclass
class CvxSolution:
    W: np.ndarray  # (d, t)
    b: np.ndarray  # (t,)
    objective: float  # cvxpy's optimal value
    M: np.ndarray | None  # (t, t) for ClusteredMTL
    status: str
    solve_seconds: float  # wall time of problem.solve (canonicalisation included)


def _solver_options(solver: str, eps: float, time_limit: float | None) -> dict[str, Any]:
    if solver == "SCS":
        opts: dict[str, Any] = {"eps_abs": eps, "eps_rel": eps, "max_iters": 1_000_000}
        if time_limit is not None:
            opts["time_limit_secs"] = time_limit
        return opts
    if solver == "CLARABEL":
        return {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "max_iter": 500}
    return {}


def solve_cvx(
    X: np.ndarray,
    Y: np.ndarray,
    mask: np.ndarray | None,
    penalty: Penalty,
    *,
    solver: str = "SCS",
    eps: float = 1e-9,
    verbose: bool = False,
    time_limit: float | None = None,
) -> CvxSolution:
    """Solve the multi-task problem for ``penalty`` with cvxpy.

    X (n, d), Y (n, t) (entries outside the mask are ignored, NaN allowed), mask (n, t) bool
    or None (all rows). ``eps`` sets the solver's tolerances (SCS eps_abs/eps_rel, Clarabel
    gap/feasibility tolerances); ``time_limit`` (seconds) caps an SCS solve.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"solve_cvx: need X (n, d) and Y (n, t), got {X.shape} and {Y.shape}")
    n, d = X.shape
    t = Y.shape[1]
    m = np.ones((n, t), bool) if mask is None else np.asarray(mask, bool)
    if m.shape != (n, t):
        raise ValueError(f"solve_cvx: mask must be {(n, t)}, got {m.shape}")
    Y0 = np.where(m, Y, 0.0)

    W = cp.Variable((d, t))
    b = cp.Variable(t)
    ones = np.ones((n, 1))
    resid = cp.multiply(m.astype(np.float64), X @ W + ones @ cp.reshape(b, (1, t), order="C") - Y0)
    loss = cp.sum_squares(resid)
    constraints: list[cp.Constraint] = []
    M = None
    if isinstance(penalty, NoPenalty):
        reg: cp.Expression | float = 0.0
    elif isinstance(penalty, Ridge):
        reg = penalty.rho * cp.sum_squares(W)
    elif isinstance(penalty, Lasso):
        reg = penalty.rho * cp.sum(cp.abs(W))
    elif isinstance(penalty, TraceNorm):
        reg = penalty.rho * cp.normNuc(W)
    elif isinstance(penalty, ClusteredMTL):
        M = cp.Variable((t, t), symmetric=True)
        reg = penalty.c * cp.matrix_frac(W.T, penalty.eta * np.eye(t) + M)
        constraints = [M >> 0, np.eye(t) - M >> 0, cp.trace(M) == penalty.k]
    else:
        raise TypeError(f"solve_cvx: no cvxpy formulation for {type(penalty).__name__}")
    problem = cp.Problem(cp.Minimize(loss + reg), constraints)
    start = time.perf_counter()
    problem.solve(solver=solver, verbose=verbose, **_solver_options(solver, eps, time_limit))
    seconds = time.perf_counter() - start
    if W.value is None:
        raise RuntimeError(f"solve_cvx: {solver} returned status {problem.status} and no solution")
    return CvxSolution(
        W=np.asarray(W.value),
        b=np.asarray(b.value),
        objective=float(problem.value),
        M=None if M is None else np.asarray(M.value),
        status=str(problem.status),
        solve_seconds=seconds,
    )
