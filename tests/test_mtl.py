"""fit_mtl against cvxpy, scikit-learn and closed forms; ρ_max; warm starts; input handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso as SkLasso

from gifemo.models.mtl import fit_mtl, lasso_rho_max, mtl_objective, trace_rho_max
from gifemo.models.penalties import ClusteredMTL, Lasso, NoPenalty, Ridge, TraceNorm
from gifemo.solvers.cvx import solve_cvx


def _problem(seed: int, n: int = 50, d: int = 10, t: int = 5, frac: float = 0.75):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + rng.standard_normal(d)  # non-centred features
    W = rng.standard_normal((d, t)) * (rng.random((d, t)) < 0.5)
    Y = X @ W + rng.standard_normal((n, t)) + 5.0 * rng.standard_normal(t)
    mask = rng.random((n, t)) < frac
    Y[~mask] = np.nan  # never read outside the mask
    return X, Y, mask


def _ref(X, Y, mask, pen):
    """The better of Clarabel and SCS (tight tolerances), by our exact objective."""
    best = None
    for solver in ("CLARABEL", "SCS"):
        sol = solve_cvx(X, Y, mask, pen, solver=solver, eps=1e-10)
        obj = mtl_objective(X, Y, mask, pen, sol.W, sol.b)
        if best is None or obj < best[0]:
            best = (obj, sol)
    assert best is not None
    return best


# (penalty kind, its argument, the problem's seed): fixed seeds, so every run solves the same
# problems (never hash() of a string, which Python randomises per process).
CASES = [
    ("lasso", 0.05, 101),
    pytest.param("lasso", 0.4, 102, marks=pytest.mark.slow),
    ("trace", 0.1, 103),
    pytest.param("trace", 0.5, 104, marks=pytest.mark.slow),
    ("cmtl", (3.0, 1.0, 2), 105),
    pytest.param("cmtl", (20.0, 2.0, 3), 106, marks=pytest.mark.slow),
]


def _penalty(kind, arg, X, Y, mask):
    if kind == "lasso":
        return Lasso(arg * lasso_rho_max(X, Y, mask))
    if kind == "trace":
        return TraceNorm(arg * trace_rho_max(X, Y, mask))
    return ClusteredMTL(*arg)


@pytest.mark.parametrize("kind,arg,seed", CASES)
def test_matches_cvxpy(kind, arg, seed):
    X, Y, mask = _problem(seed, d=8 if kind == "cmtl" else 12)
    pen = _penalty(kind, arg, X, Y, mask)
    sol = fit_mtl(X, Y, mask, pen)
    ref_obj, ref = _ref(X, Y, mask, pen)
    assert sol.converged
    assert sol.objective == pytest.approx(mtl_objective(X, Y, mask, pen, sol.W, sol.b), rel=1e-12)
    assert sol.objective <= ref_obj * (1 + 1e-6)
    assert sol.objective == pytest.approx(ref_obj, rel=1e-6)
    np.testing.assert_allclose(sol.W, ref.W, atol=1e-4)
    np.testing.assert_allclose(sol.b, ref.b, atol=1e-4)
    if kind == "lasso":  # the sparsity pattern is real: exact zeros where cvxpy is ~0
        assert np.all((sol.W == 0) | (np.abs(ref.W) > 1e-6))


@pytest.mark.parametrize("rho_frac", [0.02, 0.3])
def test_lasso_equals_sklearn_per_task(rho_frac):
    X, Y, mask = _problem(3, n=80, d=15, t=4)
    rho = rho_frac * lasso_rho_max(X, Y, mask)
    sol = fit_mtl(X, Y, mask, Lasso(rho), tol=1e-10)
    for i in range(Y.shape[1]):
        Xi, yi = X[mask[:, i]], Y[mask[:, i], i]
        sk = SkLasso(alpha=rho / (2 * len(yi)), tol=1e-14, max_iter=100_000).fit(Xi, yi)
        np.testing.assert_allclose(sol.W[:, i], sk.coef_, atol=1e-6)
        assert sol.b[i] == pytest.approx(sk.intercept_, abs=1e-6)


def test_ridge_and_least_squares_closed_form():
    X, Y, mask = _problem(4, n=40, d=6, t=3)
    for pen in (Ridge(2.5), NoPenalty()):
        sol = fit_mtl(X, Y, mask, pen, tol=1e-11)
        rho = pen.rho if isinstance(pen, Ridge) else 0.0
        for i in range(3):
            Xi, yi = X[mask[:, i]], Y[mask[:, i], i]
            Xc, yc = Xi - Xi.mean(0), yi - yi.mean()
            w = np.linalg.solve(Xc.T @ Xc + rho * np.eye(6), Xc.T @ yc)
            np.testing.assert_allclose(sol.W[:, i], w, atol=1e-8)
            assert sol.b[i] == pytest.approx(yi.mean() - Xi.mean(0) @ w, abs=1e-8)


def test_lasso_rho_max_gives_exact_zero():
    X, Y, mask = _problem(5)
    rho_max = lasso_rho_max(X, Y, mask)
    for rho in (rho_max, 1.5 * rho_max):
        sol = fit_mtl(X, Y, mask, Lasso(rho))
        assert np.count_nonzero(sol.W) == 0 and sol.converged
        np.testing.assert_allclose(sol.b, np.nanmean(np.where(mask, Y, np.nan), axis=0))
    assert np.count_nonzero(fit_mtl(X, Y, mask, Lasso(0.99 * rho_max)).W) > 0


def test_trace_rho_max_is_spectral_norm():
    X, Y, mask = _problem(6)
    rho_max = trace_rho_max(X, Y, mask)
    G = np.column_stack(
        [
            -2 * X[mask[:, i]].T @ (Y[mask[:, i], i] - Y[mask[:, i], i].mean())
            for i in range(Y.shape[1])
        ]
    )
    assert rho_max == pytest.approx(np.linalg.norm(G, 2), rel=1e-12)
    assert np.abs(fit_mtl(X, Y, mask, TraceNorm(rho_max)).W).max() == 0
    assert np.abs(fit_mtl(X, Y, mask, TraceNorm(0.98 * rho_max)).W).max() > 0


def test_cmtl_reduces_to_ridge():
    X, Y, mask = _problem(7, t=4)
    # k = t: Ω = ρ2‖W‖²
    a = fit_mtl(X, Y, mask, ClusteredMTL(3.0, 1.5, 4), tol=1e-11)
    b = fit_mtl(X, Y, mask, Ridge(1.5), tol=1e-11)
    np.testing.assert_allclose(a.W, b.W, atol=1e-8)
    # identical tasks (same rows and targets): W = w1ᵀ and Ω(w1ᵀ) = ρ2‖W‖² for any k, so
    # CMTL equals single-task ridge with constant ρ2 on every task
    Yi = np.repeat(np.where(mask[:, :1], Y[:, :1], 0.0), 4, axis=1)
    mi = np.repeat(mask[:, :1], 4, axis=1)
    c = fit_mtl(X, Yi, mi, ClusteredMTL(3.0, 1.5, 2), tol=1e-11)
    r = fit_mtl(X, Yi, mi, Ridge(1.5), tol=1e-11)
    np.testing.assert_allclose(c.W, r.W, atol=1e-8)
    np.testing.assert_allclose(c.W, np.repeat(c.W[:, :1], 4, axis=1), atol=1e-8)


def test_warm_start_path():
    X, Y, mask = _problem(8, n=80, d=20)
    rmax = lasso_rho_max(X, Y, mask)
    prev = fit_mtl(X, Y, mask, Lasso(0.3 * rmax))
    n_cold = n_warm = 0
    for frac in (0.28, 0.26, 0.24):
        pen = Lasso(frac * rmax)
        cold = fit_mtl(X, Y, mask, pen)
        warm = fit_mtl(X, Y, mask, pen, W0=prev.W, lipschitz=prev.lipschitz)
        assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
        n_cold, n_warm = n_cold + cold.n_iter, n_warm + warm.n_iter
        prev = warm
    assert n_warm < n_cold


def test_inputs_torch_float32_mask_none():
    X, Y, mask = _problem(9)
    pen = TraceNorm(0.2 * trace_rho_max(X, Y, mask))
    ref = fit_mtl(X, Y, mask, pen)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    sol = fit_mtl(Xt, Yt, None, pen)  # mask None: the finite entries of Y
    assert isinstance(sol.W, torch.Tensor) and sol.W.dtype == torch.float64
    np.testing.assert_allclose(sol.W.numpy(), ref.W, atol=1e-10)
    s32 = fit_mtl(Xt.float(), Yt.float(), torch.as_tensor(mask), pen, dtype=torch.float32, tol=1e-5)
    assert s32.W.dtype == torch.float32
    assert s32.objective == pytest.approx(ref.objective, rel=1e-4)


def test_task_without_rows_and_bad_input():
    X, Y, mask = _problem(10, t=3)
    mask[:, 1] = False
    sol = fit_mtl(X, Y, mask, Ridge(1.0))
    assert np.all(sol.W[:, 1] == 0) and sol.b[1] == 0
    with pytest.raises(ValueError, match=r"mask must have Y's shape \(50, 3\)"):
        fit_mtl(X, Y, mask[:, :2], Ridge(1.0))
    with pytest.raises(ValueError, match="need X"):
        fit_mtl(X[:10], Y, mask, Ridge(1.0))
    with pytest.raises(ValueError, match="W0 must be"):
        fit_mtl(X, Y, mask, Ridge(1.0), W0=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="penalty"):
        fit_mtl(X, Y, mask, "lasso")  # type: ignore[arg-type]


@pytest.mark.gpu
def test_gpu_float32_matches_cpu():
    X, Y, mask = _problem(11, n=200, d=30)
    pen = ClusteredMTL(5.0, 1.0, 2)
    ref = fit_mtl(X, Y, mask, pen)
    Xg = torch.as_tensor(X, dtype=torch.float32, device="cuda")
    Yg = torch.as_tensor(np.nan_to_num(Y), dtype=torch.float32, device="cuda")
    sol = fit_mtl(Xg, Yg, torch.as_tensor(mask, device="cuda"), pen, tol=1e-5)
    assert sol.W.device.type == "cuda"
    assert sol.objective == pytest.approx(ref.objective, rel=1e-4)


def _spiked(seed: int, n: int = 300, d: int = 120, t: int = 6, rank: int = 6):
    """Non-negative features with a few dominant directions (like C3D fc6), random masks."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    X = np.maximum(rng.standard_normal((n, d)) + latent, 0.0)
    Y = X @ rng.standard_normal((d, t)) / d + rng.standard_normal((n, t)) + 25.0
    mask = rng.random((n, t)) < 0.8
    return X, Y, mask


@pytest.mark.parametrize("pen", [ClusteredMTL(40.0, 4.0, 2), Ridge(3.0), NoPenalty()])
def test_preconditioned_same_minimiser_fewer_iterations(pen):
    X, Y, mask = _spiked(12)
    plain = fit_mtl(X, Y, mask, pen, tol=1e-10, precondition=0)
    pre = fit_mtl(X, Y, mask, pen, tol=1e-10, precondition=8)
    assert plain.converged and pre.converged
    assert pre.objective == pytest.approx(plain.objective, rel=1e-12)
    np.testing.assert_allclose(pre.W, plain.W, atol=1e-7 * np.abs(plain.W).max())
    np.testing.assert_allclose(pre.b, plain.b, atol=1e-7 * np.abs(plain.b).max())
    # the stopping rule is on ∇F(W) itself, recomputed here independently with autograd
    W = torch.tensor(pre.W, requires_grad=True)
    b = torch.tensor(pre.b, requires_grad=True)
    Xt, Yt, mt = torch.as_tensor(X), torch.as_tensor(Y), torch.as_tensor(mask)
    E = torch.where(mt, Xt @ W + b - Yt, 0.0)
    ((E * E).sum() + pen.value(W)).backward()
    g0 = 2 * torch.where(mt, Yt - Yt.where(mt, 0).sum(0) / mt.sum(0), 0.0).T @ Xt
    assert float(torch.linalg.norm(W.grad)) <= 1e-10 * float(torch.linalg.norm(g0)) * 1.001
    assert float(b.grad.abs().max()) < 1e-6
    # the spike sets FISTA's iteration count; the preconditioner removes it
    assert pre.n_iter < plain.n_iter / 2


def test_preconditioned_cmtl_matches_cvxpy_and_warm_starts():
    X, Y, mask = _problem(13, n=60, d=8)
    pen = ClusteredMTL(3.0, 1.0, 2)
    sol = fit_mtl(X, Y, mask, pen, precondition=3)
    ref_obj, ref = _ref(X, Y, mask, pen)
    assert sol.objective == pytest.approx(ref_obj, rel=1e-6)
    np.testing.assert_allclose(sol.W, ref.W, atol=1e-4)
    warm = fit_mtl(X, Y, mask, pen, W0=sol.W, precondition=3, tol=1e-10)
    assert warm.objective == pytest.approx(sol.objective, rel=1e-8)
    again = fit_mtl(X, Y, mask, pen, W0=warm.W, precondition=3, tol=1e-10)
    assert again.n_iter == 0 and again.converged  # W0 is the optimum: nothing left to do


def test_precondition_argument_errors():
    X, Y, mask = _problem(14)
    with pytest.raises(ValueError, match="smooth penalties only, not Lasso"):
        fit_mtl(X, Y, mask, Lasso(1.0), precondition=4)
    with pytest.raises(ValueError, match=r"must be 'auto' or an int >= 0, got -1"):
        fit_mtl(X, Y, mask, Ridge(1.0), precondition=-1)
    with pytest.raises(ValueError, match=r"rank 10 must be < min\(n, d\) = 10"):
        fit_mtl(X, Y, mask, Ridge(1.0), precondition=10)


@pytest.mark.parametrize("pen", [Ridge(1.0), ClusteredMTL(3.0, 1.0, 2), NoPenalty()])
def test_preconditioned_rank_deficient_matches_cvxpy(pen):
    # centred X of rank 3 < r = 5: s_r = 0, so q_j = s_r/s_j (the old rule) froze the leading
    # directions and the solver ran to max_iter far from the optimum
    rng = np.random.default_rng(15)
    n, d, t = 60, 10, 4
    X = rng.standard_normal((n, 3)) @ rng.standard_normal((3, d)) + rng.standard_normal(d)
    Y = X @ rng.standard_normal((d, t)) + rng.standard_normal((n, t))
    mask = rng.random((n, t)) < 0.75
    plain = fit_mtl(X, Y, mask, pen, precondition=0)
    sol = fit_mtl(X, Y, mask, pen, precondition=5)
    ref_obj, _ = _ref(X, Y, mask, pen)
    assert plain.converged and sol.converged
    assert sol.objective == pytest.approx(ref_obj, rel=1e-6)
    assert sol.objective <= ref_obj * (1 + 1e-6)
    assert sol.n_iter <= 2 * plain.n_iter  # never much slower than no preconditioner


def test_preconditioner_counts_the_penalty_curvature():
    # ρ far above the spike: F is well conditioned as it stands, and p_j = s_j²/s_r² (without
    # the penalty's ν) flattened the leading directions: 11 iterations became 66
    X, Y, mask = _spiked(12)
    pen = Ridge(1e5)
    plain = fit_mtl(X, Y, mask, pen, tol=1e-10, precondition=0)
    pre = fit_mtl(X, Y, mask, pen, tol=1e-10, precondition=8)
    assert plain.converged and pre.converged
    assert pre.objective == pytest.approx(plain.objective, rel=1e-12)
    assert pre.n_iter <= 2 * plain.n_iter


def _relative_gradient(X, Y, mask, pen, W, b):
    """‖∇_W F(W, b)‖_F / ‖∇f(0)‖_F by autograd, b at its optimum for W (independent of fit_mtl)."""
    Wt = torch.tensor(W, requires_grad=True)
    Xt, Yt, mt = torch.as_tensor(X), torch.as_tensor(Y), torch.as_tensor(mask)
    E = torch.where(mt, Xt @ Wt + torch.as_tensor(b) - Yt, 0.0)
    ((E * E).sum() + pen.value(Wt)).backward()
    g0 = 2 * torch.where(mt, Yt - Yt.where(mt, 0).sum(0) / mt.sum(0), 0.0).T @ Xt
    return float(torch.linalg.norm(Wt.grad)) / float(torch.linalg.norm(g0))


@pytest.mark.parametrize("precondition", [0, 3])
@pytest.mark.parametrize("pen", [Ridge(1.0), ClusteredMTL(3.0, 1.0, 2), NoPenalty()])
def test_max_iter_reports_the_returned_iterate(pen, precondition):
    # stopped by max_iter, a smooth fit reported the residual (and converged) of the point
    # before its last step: NoPenalty, 30 iterations: 1.25e-6 reported, 1.05e-6 at the W returned
    X, Y, mask = _problem(3, n=60, d=10, t=4)
    cut = fit_mtl(X, Y, mask, pen, tol=0.0, max_iter=30, precondition=precondition)
    true = _relative_gradient(X, Y, mask, pen, cut.W, cut.b)
    assert cut.n_iter == 30 and not cut.converged
    assert cut.optimality == pytest.approx(true, rel=1e-6)
    # a tolerance the returned W meets (and the point before it does not) is convergence
    sol = fit_mtl(X, Y, mask, pen, tol=1.01 * true, max_iter=30, precondition=precondition)
    assert sol.converged and sol.optimality <= 1.01 * true
    assert _relative_gradient(X, Y, mask, pen, sol.W, sol.b) <= 1.01 * true
