"""Estimators on hand-solvable problems; they reproduce fit_mtl; silhouette-chosen k."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from gifemo.eval.cv import clone, grid_search
from gifemo.features.normalise import FeatureNormaliser
from gifemo.models import mtl
from gifemo.models.estimators import (
    MTLRegressor,
    UnsortedBaseline,
    choose_k,
    silhouette_by_k,
)
from gifemo.models.penalties import ClusteredMTL, Lasso, Ridge, TraceNorm


def _data(seed=0, n=60, d=5, t=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, t))
    Y = 25 + X @ W + 0.3 * rng.normal(size=(n, t))
    mask = rng.random((n, t)) > 0.25
    return X, Y, mask


def _naive_silhouette(P, lab):
    D = np.linalg.norm(P[:, None] - P[None], axis=-1)
    s = []
    for i in range(len(P)):
        same = (lab == lab[i]) & (np.arange(len(P)) != i)
        if not same.any():
            s.append(0.0)
            continue
        a = D[i, same].mean()
        b = min(D[i, lab == c].mean() for c in set(lab.tolist()) if c != lab[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def test_unsorted_baseline():
    X, Y, mask = _data()
    s = UnsortedBaseline().fit(X, Y, mask).predict(X[:7])
    assert s.shape == (7, 4) and (s == 0).all()
    r1 = UnsortedBaseline(mode="random", seed=3).fit(X, Y, mask).predict(X)
    r2 = clone(UnsortedBaseline(mode="random", seed=3)).fit(X, Y, mask).predict(X)
    np.testing.assert_array_equal(r1, r2)
    assert len(np.unique(r1)) == r1.size
    with pytest.raises(ValueError, match="mode"):
        UnsortedBaseline(mode="sorted")


def test_silhouette_two_clusters_and_naive_reference():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 6)) * 5
    lab_true = np.array([0] * 8 + [1] * 9)
    W = (centres[lab_true] + 0.1 * rng.normal(size=(17, 6))).T  # (d, t)
    scores, labels = silhouette_by_k(W)
    assert sorted(scores) == list(range(2, 17))
    assert choose_k(scores) == 2
    # the k = 2 partition is the true one (up to label names)
    assert len({(a, b) for a, b in zip(labels[2], lab_true)}) == 2
    for k in (2, 3, 5):
        assert scores[k] == pytest.approx(_naive_silhouette(W.T, labels[k]), abs=1e-10)
    assert choose_k({2: 0.5, 3: 0.5, 4: np.nan}) == 2
    assert choose_k({2: np.nan, 3: np.nan}) == 2
    with pytest.raises(ValueError, match="2 <= k"):
        silhouette_by_k(W, [1])


def test_feature_normaliser():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 7))
    X[3, 4:] = 0
    f = FeatureNormaliser("l2").fit(X, [4, 3])
    Z = f.transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z[:, :4], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(Z[[0, 1, 2, 4], 4:], axis=1), 1.0)
    assert (Z[3, 4:] == 0).all()
    np.testing.assert_allclose(f.transform(Z), Z)  # idempotent
    s = FeatureNormaliser("standard").fit(X)
    np.testing.assert_allclose(s.transform(X).mean(0), 0, atol=1e-12)
    g = FeatureNormaliser.from_state(*s.to_state())
    np.testing.assert_array_equal(g.transform(X), s.transform(X))
    with pytest.raises(ValueError, match="sum to d"):
        FeatureNormaliser().fit(X, [3, 3])
    with pytest.raises(ValueError, match=r"\(n, 7\)"):
        f.transform(X[:, :5])


def test_params_and_bad_input():
    m = MTLRegressor(ClusteredMTL, rho1=1.0, rho2=0.5, k=2, tol=1e-7)
    p = m.get_params()
    assert p["rho1"] == 1.0 and p["tol"] == 1e-7 and p["penalty"] is ClusteredMTL
    c = clone(m, rho1=3.0)
    assert (
        c.penalty_params == {"rho1": 3.0, "rho2": 0.5, "k": 2} and m.penalty_params["rho1"] == 1.0
    )
    assert repr(c.build_penalty()) == repr(ClusteredMTL(3.0, 0.5, 2))
    with pytest.raises(ValueError, match="built"):
        MTLRegressor(Lasso(1.0), rho=2.0)
    X, Y, mask = _data()
    mask[:, 2] = False
    with pytest.raises(ValueError, match=r"tasks \[2\]"):
        MTLRegressor(Lasso, rho=1.0).fit(X, Y, mask)


# ---- through helper D's fit_mtl ---------------------------------------------------------------


def _ridge_closed_form(X, Y, mask, rho):
    d, t = X.shape[1], Y.shape[1]
    W, b = np.zeros((d, t)), np.zeros(t)
    for i in range(t):
        x, y = X[mask[:, i]], Y[mask[:, i], i]
        xc, yc = x - x.mean(0), y - y.mean()
        W[:, i] = np.linalg.solve(xc.T @ xc + rho * np.eye(d), xc.T @ yc)
        b[i] = y.mean() - x.mean(0) @ W[:, i]
    return W, b


def test_ridge_matches_closed_form():
    X, Y, mask = _data()
    m = MTLRegressor(Ridge, rho=2.0, tol=1e-10, max_iter=20000).fit(X, Y, mask)
    W, b = _ridge_closed_form(X, Y, mask, 2.0)
    np.testing.assert_allclose(m.W_, W, atol=1e-5)
    np.testing.assert_allclose(m.b_, b, atol=1e-5)
    np.testing.assert_allclose(m.predict(X), X @ W + b, atol=1e-4)


def test_lasso_zero_above_threshold():
    X, Y, mask = _data()
    # W = 0 iff rho >= 2 max |X_i^T (y_i - ybar_i)| (centred, loss not halved)
    lam = max(
        np.abs(
            2
            * (X[mask[:, i]] - X[mask[:, i]].mean(0)).T
            @ (Y[mask[:, i], i] - Y[mask[:, i], i].mean())
        ).max()
        for i in range(4)
    )
    m = MTLRegressor(Lasso, rho=lam * 1.001, tol=1e-10).fit(X, Y, mask)
    assert np.abs(m.W_).max() < 1e-8
    np.testing.assert_allclose(m.b_, [Y[mask[:, i], i].mean() for i in range(4)], atol=1e-6)
    m2 = MTLRegressor(Lasso, rho=lam * 0.9, tol=1e-10).fit(X, Y, mask)
    assert np.abs(m2.W_).max() > 1e-4


@pytest.mark.parametrize(
    "penalty",
    [
        functools.partial(Lasso, rho=3.0),
        functools.partial(TraceNorm, rho=5.0),
        functools.partial(ClusteredMTL, rho1=2.0, rho2=1.0, k=2),
    ],
)
def test_reproduces_fit_mtl_and_warm_start(penalty):

    X, Y, mask = _data(1)
    est = MTLRegressor(penalty, tol=1e-9, max_iter=20000).fit(X, Y, mask)
    ref = mtl.fit_mtl(
        torch.as_tensor(X),
        torch.as_tensor(Y),
        torch.as_tensor(mask),
        penalty(),
        tol=1e-9,
        max_iter=20000,
    )
    np.testing.assert_allclose(est.W_, np.asarray(ref.W, dtype=float), atol=1e-7)
    np.testing.assert_allclose(est.b_, np.asarray(ref.b, dtype=float), atol=1e-7)
    warm = MTLRegressor(penalty, tol=1e-9, max_iter=20000).fit(X, Y, mask, init=est)
    np.testing.assert_allclose(warm.W_, est.W_, atol=1e-6)
    assert warm.n_iter_ <= est.n_iter_


@pytest.mark.parametrize(
    "penalty",
    [functools.partial(ClusteredMTL, rho1=2.0, rho2=1.0, k=2), functools.partial(Lasso, rho=3.0)],
)
def test_precondition_reaches_fit_mtl(penalty, monkeypatch):
    X, Y, mask = _data(1)
    seen = []
    real = mtl.fit_mtl
    monkeypatch.setattr(mtl, "fit_mtl", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    ref = MTLRegressor(penalty, tol=1e-10, precondition=0).fit(X, Y, mask)
    est = MTLRegressor(penalty, tol=1e-10, precondition=3).fit(X, Y, mask)
    assert est.get_params()["precondition"] == 3
    smooth = penalty().is_smooth
    assert [kw.get("precondition") for kw in seen] == ([0, 3] if smooth else [None, None])
    np.testing.assert_allclose(est.W_, ref.W_, atol=1e-7)


def test_k_auto_uses_trace_norm_silhouette():
    rng = np.random.default_rng(2)
    n, d = 80, 6
    X = rng.normal(size=(n, d))
    u, v = rng.normal(size=d) * 3, rng.normal(size=d) * 3
    Wt = np.stack([u] * 4 + [v] * 3, axis=1) + 0.05 * rng.normal(size=(d, 7))
    Y = 25 + X @ Wt + 0.1 * rng.normal(size=(n, 7))
    mask = np.ones((n, 7), bool)
    m = MTLRegressor(ClusteredMTL, rho1=1.0, rho2=1.0, k="auto", k_trace_rho=1.0, tol=1e-8).fit(
        X, Y, mask
    )
    scores, _ = silhouette_by_k(m.W_trace_)
    assert m.silhouette_ == scores and m.k_ == choose_k(scores) == 2
    assert repr(m.penalty_) == repr(ClusteredMTL(1.0, 1.0, 2))
    ref = MTLRegressor(ClusteredMTL, rho1=1.0, rho2=1.0, k=2, tol=1e-8).fit(X, Y, mask)
    np.testing.assert_allclose(m.W_, ref.W_, atol=1e-6)


def test_grid_search_over_rho():
    X, Y, mask = _data(3, n=80)
    res = grid_search(
        MTLRegressor(Lasso, rho=1.0, tol=1e-5),
        X,
        Y,
        mask,
        param_grid={"rho": [0.1, 10.0, 1e4]},
        n_folds=3,
        seed=0,
    )
    assert [p["rho"] for p in res.params] == [1e4, 10.0, 0.1]
    assert res.best_params["rho"] in (0.1, 10.0)  # rho = 1e4 zeroes W: AP of a constant
    assert res.estimator.penalty_params["rho"] == res.best_params["rho"]


@pytest.mark.parametrize("penalty", [Ridge, Lasso])
def test_unconverged_fit_warns(penalty):
    # a fit cut by max_iter was silent (only converged_ = False): CV folds far from the optimum
    # went unnoticed. The reference: the closed-form ridge W is far from the 2-iteration one
    X, Y, mask = _data()
    with pytest.warns(ConvergenceWarning, match=r"did not converge in 2 iterations"):
        cut = MTLRegressor(penalty, rho=2.0, max_iter=2).fit(X, Y, mask)
    assert not cut.converged_
    if penalty is Ridge:
        W, _ = _ridge_closed_form(X, Y, mask, 2.0)
        assert np.abs(cut.W_ - W).max() > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert MTLRegressor(penalty, rho=2.0).fit(X, Y, mask).converged_


def test_predict_refuses_a_wrong_shape_naming_it():
    # a 1-d row gave (t,) scores from MTLRegressor and (d, t) zeros from UnsortedBaseline, and a
    # wrong width a bare matmul error
    X, Y, mask = _data()
    mtl_est = MTLRegressor(Ridge, rho=2.0).fit(X, Y, mask)
    base = UnsortedBaseline().fit(X, Y, mask)
    np.testing.assert_allclose(mtl_est.predict(X[:1]), X[:1] @ mtl_est.W_ + mtl_est.b_)
    assert base.predict(X).shape == (X.shape[0], Y.shape[1])
    with pytest.raises(ValueError, match=r"expected X \(n, 5\), got \(5,\)"):
        mtl_est.predict(X[0])
    with pytest.raises(ValueError, match=r"expected X \(n, 5\), got \(60, 4\)"):
        mtl_est.predict(X[:, :4])
    with pytest.raises(ValueError, match=r"expected X \(n, d\), got \(5,\)"):
        base.predict(X[0])
