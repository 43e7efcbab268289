"""Exact GP (eqs. 2–5) against scikit-learn, finite differences and hand computations."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel
from sklearn.gaussian_process.kernels import ConstantKernel as C
from threadpoolctl import threadpool_limits

from gifemo.bench.gp import make_problem, run
from gifemo.models.gp import ExactGP, exact_lml, profiled_lml, rank_scores, sq_distances


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The problems here are tiny: one BLAS thread is faster, above all on a busy machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _problem(n: int = 70, d: int = 5, t: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.stack(
        [20 + 4 * np.sin(X[:, i % d]) + 2 * X[:, (i + 1) % d] for i in range(t)], axis=1
    ) + 0.5 * rng.standard_normal((n, t))
    mask = rng.random((n, t)) < 0.8
    return X, Y, mask


def _sklearn(s: float, ell: float, noise: float, fixed: bool = True) -> GaussianProcessRegressor:
    b = "fixed" if fixed else (1e-5, 1e5)
    kernel = C(s, b) * RBF(ell, b) + WhiteKernel(noise, b)
    if fixed:
        return GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None)  # no added jitter
    return GaussianProcessRegressor(kernel, n_restarts_optimizer=2, random_state=0)


def test_sq_distances_match_naive():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((9, 4)), rng.standard_normal((6, 4))
    naive = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(sq_distances(A, B, chunk=4), naive, rtol=1e-12, atol=1e-12)
    D = sq_distances(A)
    assert np.array_equal(D, D.T) and (np.diag(D) == 0).all()


def test_fixed_hyperparameters_match_sklearn():
    X, Y, mask = _problem()
    hps = [
        {"signal_variance": 6.0, "lengthscale": 1.7, "noise_variance": 0.3},
        {"signal_variance": 2.5, "lengthscale": 0.9, "noise_variance": 1.1},
        {"signal_variance": 9.0, "lengthscale": 3.0, "noise_variance": 0.05},
    ]
    gp = ExactGP(optimize=False, init=hps).fit(X, Y, mask)
    Xq = np.random.default_rng(2).standard_normal((11, X.shape[1]))
    mean, var = gp.predict(Xq)
    _, var_y = gp.predict(Xq, include_noise=True)
    for i, hp in enumerate(hps):
        y = Y[mask[:, i], i]
        sk = _sklearn(hp["signal_variance"], hp["lengthscale"], hp["noise_variance"])
        sk.fit(X[mask[:, i]], y - y.mean())  # our mean function: the training mean
        sk_mean, sk_std = sk.predict(Xq, return_std=True)  # sklearn's std includes the white noise
        np.testing.assert_allclose(mean[:, i], y.mean() + sk_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(var_y[:, i], sk_std**2, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(var[:, i], sk_std**2 - hp["noise_variance"], atol=1e-9)
        assert gp.log_marginal_likelihood(i) == pytest.approx(
            sk.log_marginal_likelihood_value_, rel=1e-10
        )
    np.testing.assert_allclose(gp.predict_mean(Xq), mean, rtol=1e-12)
    np.testing.assert_allclose(gp.raw_params_[1], np.log([2.5, 0.9, 1.1]))


@pytest.mark.parametrize("seed", [0, 3])
def test_optimised_lml_reaches_sklearn_optimum(seed):
    X, Y, mask = _problem(n=80, t=1, seed=seed)
    gp = ExactGP(warm_start_size=None).fit(X, Y, mask)
    y = Y[mask[:, 0], 0]
    hp = gp.hyperparams_[0]
    sk = _sklearn(float(y.var()), 1.0, 0.1 * float(y.var()), fixed=False)
    sk.fit(X[mask[:, 0]], y - y.mean())
    assert gp.log_marginal_likelihood(0) >= sk.log_marginal_likelihood_value_ - 1e-5
    # the stored value is the exact eq. 4 at the stored hyper-parameters
    D = sq_distances(X[mask[:, 0]])
    lml = exact_lml(D, y - y.mean(), hp["signal_variance"], hp["lengthscale"], hp["noise_variance"])
    assert lml == pytest.approx(gp.log_marginal_likelihood(0), rel=1e-12)


def test_warm_start_reaches_the_full_data_optimum():
    X, Y, mask = _problem(n=160, t=1, seed=5)
    full = ExactGP(warm_start_size=None, gtol=1e-8).fit(X, Y, mask)
    tight = ExactGP(warm_start_size=40, seed=1, lml_tol=1e-9, gtol=1e-8, max_full_evals=30)
    tight.fit(X, Y, mask)
    default = ExactGP(warm_start_size=40, seed=1).fit(X, Y, mask)
    best = full.log_marginal_likelihood(0)
    assert tight.log_marginal_likelihood(0) == pytest.approx(best, abs=1e-7)
    assert best - 1e-2 < default.log_marginal_likelihood(0) <= best + 1e-9  # lml_tol = 1e-3
    assert default.hyperparams_[0]["n_evals_full"] <= 8
    hp = tight.hyperparams_[0]
    x = np.log([hp["lengthscale"], hp["noise_variance"] / hp["signal_variance"]])
    y = Y[mask[:, 0], 0]
    _, grad, _, _ = profiled_lml(sq_distances(X[mask[:, 0]]), y - y.mean(), *x)
    assert np.abs(grad).max() / y.size < 1e-6


class _ProfiledLML(torch.autograd.Function):
    """Wraps the NumPy value and analytic gradient so that torch.autograd.gradcheck can test it."""

    @staticmethod
    def forward(ctx, x, D, y):
        value, grad, _, _ = profiled_lml(D, y, float(x[0]), float(x[1]))
        ctx.save_for_backward(torch.from_numpy(grad))
        return torch.tensor(value, dtype=torch.float64)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None


def test_profiled_lml_gradient_gradcheck_and_profile_identities():
    X, Y, _ = _problem(n=30, t=1)
    D, y = sq_distances(X), Y[:, 0] - Y[:, 0].mean()
    for x0 in ([0.4, -2.0], [-0.5, -5.0]):
        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x: _ProfiledLML.apply(x, D, y), (x,), eps=1e-6, atol=1e-6, rtol=1e-5
        )
    value, _, s, alpha = profiled_lml(D, y, 0.4, -2.0)
    ell, noise = math.exp(0.4), math.exp(-2.0) * s
    assert value == pytest.approx(exact_lml(D, y, s, ell, noise), rel=1e-12)  # L_p = L at s*
    h = 1e-5  # s* maximises eq. 4 over s at fixed ℓ and g = σ²/s
    up = exact_lml(D, y, s * math.exp(h), ell, noise * math.exp(h))
    down = exact_lml(D, y, s * math.exp(-h), ell, noise * math.exp(-h))
    assert abs(up - down) / (2 * h) < 1e-5 and up < value and down < value
    K = s * np.exp(-D / (2 * ell**2)) + noise * np.eye(y.size)
    np.testing.assert_allclose(K @ alpha, y, atol=1e-8)


def test_rows_outside_a_task_mask_do_not_change_its_fit():
    X, Y, mask = _problem(n=60, t=2, seed=4)
    gp = ExactGP(warm_start_size=None).fit(X, Y, mask)
    out0 = np.flatnonzero(~mask[:, 0] & mask[:, 1])  # rows only task 1 trains on
    assert out0.size > 0
    X2, Y2 = X.copy(), Y.copy()
    Y2[~mask[:, 0], 0] = np.nan  # never read
    X2[out0] += 3.0  # moves task 1's data, not task 0's
    Y2[out0, 1] += 5.0
    gp2 = ExactGP(warm_start_size=None).fit(X2, Y2, mask)
    Xq = np.random.default_rng(0).standard_normal((5, X.shape[1]))
    (m1, v1), (m2, v2) = gp.predict(Xq), gp2.predict(Xq)
    assert gp.hyperparams_[0] == gp2.hyperparams_[0]
    np.testing.assert_allclose(m2[:, 0], m1[:, 0], rtol=1e-12)
    np.testing.assert_allclose(v2[:, 0], v1[:, 0], rtol=1e-10, atol=1e-14)
    assert not np.allclose(m2[:, 1], m1[:, 1])


def test_pickle_round_trip_drops_the_distance_cache():
    X, Y, mask = _problem(n=40, t=2)
    gp = ExactGP(warm_start_size=None).fit(X, Y, mask)
    gp2 = pickle.loads(pickle.dumps(gp))
    assert gp2._D is None if hasattr(gp2, "_D") else True
    np.testing.assert_allclose(gp2.predict(X[:4])[1], gp.predict(X[:4])[1], rtol=1e-12)


def test_bad_input_is_reported():
    X, Y, mask = _problem(n=20, t=2)
    with pytest.raises(ValueError, match=r"mask \(n, t\)"):
        ExactGP().fit(X, Y, mask[:, :1])
    with pytest.raises(ValueError, match="bool"):
        ExactGP().fit(X, Y, mask.astype(int))
    Yn = Y.copy()
    Yn[np.argmax(mask[:, 0]), 0] = np.nan
    with pytest.raises(ValueError, match="inside the mask"):
        ExactGP().fit(X, Yn, mask)
    gp = ExactGP(warm_start_size=None).fit(X, Y, mask)
    with pytest.raises(ValueError, match=r"X \(m, 5\)"):
        gp.predict(X[:, :3])
    with pytest.raises(ValueError, match="unknown rule"):
        rank_scores(np.zeros((1, 1)), np.ones((1, 1)), rule="nope")


def test_rank_scores_eq5_by_hand():
    mean = np.array([[30.0, 10.0], [45.0, 49.0]])
    var = np.array([[4.0, 100.0], [2.5, 0.5]])
    got = rank_scores(mean, var, rule="eq5")
    for (a, b), mu in np.ndenumerate(mean):
        assert got[a, b] == pytest.approx(math.exp(-(50 - mu) / (2 * var[a, b])), rel=1e-14)
    # as printed, eq. 5 prefers the uncertain GIF at equal mean, even far below the positive cut
    assert rank_scores(np.array([10.0, 10.0]), np.array([1.0, 50.0]), rule="eq5").argmax() == 1


def test_default_rule_is_log_posterior_probability_of_a_positive():
    mean = np.array([30.0, 20.0, 25.0, -200.0, -300.0])
    var = np.array([4.0, 9.0, 1.0, 1.0, 1.0])
    got = rank_scores(mean, var)
    hand = [
        math.log(0.5 * math.erfc(-(m - 25.0) / math.sqrt(2 * v))) for m, v in zip(mean[:3], var[:3])
    ]
    np.testing.assert_allclose(got[:3], hand, rtol=1e-12)
    assert got[3] > got[4] > -np.inf  # far tails stay ordered where Φ underflows
    np.testing.assert_allclose(rank_scores(mean, var, rule="prob"), np.exp(got), rtol=1e-12)
    assert rank_scores(mean[:2], var[:2], rule="prob")[0] == pytest.approx(
        0.5 * math.erfc(-2.5 / math.sqrt(2))
    )
    # uncertainty helps a GIF predicted below the cut and hurts one predicted above it
    below = rank_scores(np.array([20.0, 20.0]), np.array([1.0, 25.0]))
    above = rank_scores(np.array([30.0, 30.0]), np.array([1.0, 25.0]))
    assert below[1] > below[0] and above[1] < above[0]
    np.testing.assert_array_equal(rank_scores(mean, var, rule="mean"), mean)


def test_bench_runs_at_a_tiny_size():
    X, _, mask = make_problem(90, 12, 4)
    assert X.dtype == np.float32 and 50 < mask[:, 0].sum() < 90
    out = run(True, size={"n": 90, "d": 12, "t": 4, "n_test": 7, "n_peer": 50})
    assert out["gifgif_fit_s"] > 0 and out["gifgif_predict_s"] > 0
    assert out["peer_ours_lml"] >= out["peer_sklearn_lml"] - 1e-3
