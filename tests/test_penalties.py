"""Penalties: shared interface over all of them, closed forms, CMTL identities, gradchecks."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch

from gifemo.models.heads import MultiTaskHead
from gifemo.models.penalties import (
    ClusteredMTL,
    Lasso,
    NoPenalty,
    Penalty,
    Ridge,
    TraceNorm,
    _optimal_gamma,
)

PENALTIES = [
    NoPenalty(),
    Ridge(0.7),
    Lasso(0.4),
    TraceNorm(0.9),
    ClusteredMTL(0.8, 0.3, 2),
    ClusteredMTL(2.0, 0.5, 1.5),
]
SHAPES = [(7, 4), (3, 5)]  # d > t and d < t


def _rand(shape, seed, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
@pytest.mark.parametrize("shape", SHAPES)
def test_shared_interface(pen: Penalty, shape):
    V = _rand(shape, 0)
    zero = torch.zeros(shape, dtype=torch.float64)
    assert float(pen.value(zero)) == 0.0
    assert float(pen.value(V)) >= 0.0
    for step in (0.05, 1.0, 7.0):
        P = pen.prox(V, step)
        assert P.shape == V.shape and P.dtype == V.dtype
        # prox optimality: (V − P)/step ∈ ∂Ω(P)
        assert pen.optimality(P, (P - V) / step) < 1e-10 * max(1.0, float(V.norm())) / step

        # prox minimises ½‖W − V‖² + step·Ω(W): no random perturbation does better
        def obj(W, step=step):
            return 0.5 * float(((W - V) ** 2).sum()) + step * float(pen.value(W))

        best = obj(P)
        for s in range(5):
            assert obj(P + 1e-3 * _rand(shape, 10 + s)) >= best - 1e-12
    # a non-optimal point is detected
    if not isinstance(pen, NoPenalty):
        assert pen.optimality(V, torch.zeros_like(V)) > 1e-3
    # value() is differentiable at a generic point and agrees with finite differences
    W = V.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(pen.value, (W,), eps=1e-6, atol=1e-6)
    # float32 works and agrees with float64
    v32 = float(pen.value(V.float()))
    assert v32 == pytest.approx(float(pen.value(V)), rel=1e-5)


@pytest.mark.parametrize("pen", [p for p in PENALTIES if p.is_smooth], ids=repr)
def test_smooth_gradient_and_lipschitz(pen: Penalty):
    for seed in range(5):
        A, B = _rand((6, 5), seed), _rand((6, 5), 100 + seed) * (seed + 1)
        W = A.clone().requires_grad_(True)
        pen.value(W).backward()
        torch.testing.assert_close(pen.grad(A), W.grad, rtol=1e-10, atol=1e-12)
        # ∇Ω is L-Lipschitz and the optimality check is ‖G + ∇Ω(W)‖
        lhs = float((pen.grad(A) - pen.grad(B)).norm())
        assert lhs <= pen.lipschitz * float((A - B).norm()) * (1 + 1e-12)
        assert pen.optimality(A, -pen.grad(A)) < 1e-12


def test_lasso_prox_is_soft_threshold():
    V = _rand((9, 4), 1)
    expected = np.sign(V.numpy()) * np.maximum(np.abs(V.numpy()) - 0.3 * 0.5, 0)
    np.testing.assert_allclose(Lasso(0.3).prox(V, 0.5).numpy(), expected, rtol=0, atol=1e-15)


def test_trace_prox_is_svt_and_value_is_nuclear_norm():
    V = _rand((9, 4), 2)
    U, s, Vt = np.linalg.svd(V.numpy(), full_matrices=False)
    expected = U @ np.diag(np.maximum(s - 1.2 * 0.8, 0)) @ Vt
    np.testing.assert_allclose(TraceNorm(1.2).prox(V, 0.8).numpy(), expected, atol=1e-12)
    assert float(TraceNorm(1.2).value(V)) == pytest.approx(1.2 * s.sum(), rel=1e-13)


def test_trace_gradient_finite_with_repeated_and_zero_singular_values():
    Q, _ = torch.linalg.qr(_rand((8, 4), 3))
    for W in (2.0 * Q, Q @ torch.diag(torch.tensor([3.0, 3.0, 0.0, 0.0], dtype=torch.float64))):
        W = W.clone().requires_grad_(True)
        TraceNorm(1.5).value(W).backward()
        assert torch.isfinite(W.grad).all()
        # the minimum-norm subgradient U₊V₊ᵀ, and a valid one: optimality(W, −grad) = 0
        assert TraceNorm(1.5).optimality(W.detach(), -W.grad) < 1e-12


def test_cmtl_identities():
    W = _rand((6, 5), 4)
    rho1, rho2 = 0.8, 0.3
    ridge = rho2 * float((W * W).sum())
    assert float(ClusteredMTL(rho1, rho2, 5).value(W)) == pytest.approx(ridge, rel=1e-12)  # k = t
    pen = ClusteredMTL(rho1, rho2, 2)
    for a in (0.5, 3.0, -2.0):
        assert float(pen.value(a * W)) == pytest.approx(a * a * float(pen.value(W)), rel=1e-12)
    same = _rand((6, 1), 5) @ torch.ones(1, 5, dtype=torch.float64)  # identical tasks
    for k in (1, 2, 4.5):
        v = float(ClusteredMTL(rho1, rho2, k).value(same))
        assert v == pytest.approx(rho2 * float((same * same).sum()), rel=1e-12)
    # between ridge ρ2‖W‖² (k = t) and the k = 1 value, decreasing in k
    vals = [float(ClusteredMTL(rho1, rho2, k).value(W)) for k in (1, 2, 3, 4, 5)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(vals))


@pytest.mark.parametrize("shape,k", [((6, 5), 2), ((2, 5), 3), ((6, 5), 1), ((4, 4), 2.5)])
def test_cmtl_optimal_M_against_cvxpy_and_random_feasible_M(shape, k):
    W = _rand(shape, 6)
    pen = ClusteredMTL(0.7, 0.4, k)
    t = shape[1]
    M = pen.optimal_M(W).numpy()
    ev = np.linalg.eigvalsh(M)
    assert np.trace(M) == pytest.approx(k, abs=1e-12)
    assert ev.min() >= -1e-12 and ev.max() <= 1 + 1e-12
    Wn = W.numpy()
    frac = lambda M: np.trace(Wn @ np.linalg.inv(pen.eta * np.eye(t) + M) @ Wn.T)  # noqa: E731
    assert float(pen.value(W)) == pytest.approx(pen.c * frac(M), rel=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(20):  # random feasible M never does better
        Q, _ = np.linalg.qr(rng.standard_normal((t, t)))
        g = rng.random(t)
        g = g * k / g.sum()
        while g.max() > 1:  # push excess mass into the other coordinates
            g = np.minimum(g, 1.0)
            g = g + (k - g.sum()) * (1 - g) / (1 - g).sum()
        assert frac(M) <= frac(Q @ np.diag(g) @ Q.T) + 1e-10
    Mv = cp.Variable((t, t), symmetric=True)
    prob = cp.Problem(
        cp.Minimize(cp.matrix_frac(Wn.T, pen.eta * np.eye(t) + Mv)),
        [Mv >> 0, np.eye(t) - Mv >> 0, cp.trace(Mv) == k],
    )
    prob.solve(solver="CLARABEL")
    assert frac(M) == pytest.approx(prob.value, rel=1e-6)


def test_cmtl_zero_and_rank_deficient():
    pen = ClusteredMTL(0.7, 0.4, 3)
    Z = torch.zeros(4, 5, dtype=torch.float64)
    assert float(pen.value(Z)) == 0.0
    assert torch.count_nonzero(pen.grad(Z)) == 0
    assert float(torch.trace(pen.optimal_M(Z))) == pytest.approx(3.0)
    g = _optimal_gamma(np.array([0.0, 0.0, 4.0, 9.0, 0.0]), 0.5, 3)  # rank 2 < k
    np.testing.assert_allclose(g, [1 / 3, 1 / 3, 1, 1, 1 / 3])
    g = _optimal_gamma(np.array([1.0, 4.0, 9.0, 16.0]), 0.5, 2)
    assert g.sum() == pytest.approx(2.0) and np.all(np.diff(g) >= 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rho"):
        Lasso(-1.0)
    with pytest.raises(ValueError, match="rho1 and rho2"):
        ClusteredMTL(0.0, 1.0, 2)
    with pytest.raises(ValueError, match="exceeds the number of tasks"):
        ClusteredMTL(1.0, 1.0, 6).value(torch.ones(3, 5))
    with pytest.raises(ValueError, match="2-D"):
        TraceNorm(1.0).value(torch.ones(3))


def test_head_forward_regularizer_and_solution():
    class Sol:
        W = np.arange(12.0).reshape(4, 3)
        b = np.array([1.0, -1.0, 0.5])

    head = MultiTaskHead.from_solution(Sol, penalty=Lasso(0.5), dtype=torch.float64)
    x = _rand((5, 4), 7)
    torch.testing.assert_close(head(x), x @ torch.as_tensor(Sol.W) + torch.as_tensor(Sol.b))
    reg = head.regularizer()
    assert float(reg.detach()) == pytest.approx(0.5 * np.abs(Sol.W).sum())
    reg.backward()
    torch.testing.assert_close(head.W.grad, 0.5 * torch.sign(torch.as_tensor(Sol.W)))
    assert float(head.regularizer(Ridge(1.0)).detach()) == pytest.approx((Sol.W**2).sum())
    with pytest.raises(ValueError, match=r"expected input \(B, 4\)"):
        head(torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="do not match"):
        head.load_solution(np.zeros((3, 3)), np.zeros(3))
