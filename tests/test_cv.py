"""Cross-validation: folds over rows, masks respected, score vs scikit-learn, grid, refit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from gifemo.eval.cv import expand_grid, fold_ids, grid_search, validation_score

FITS: list[dict] = []


class Ridge:
    """Per-task closed-form ridge on masked rows (test double with the estimator interface)."""

    warm_start_ok = True

    def __init__(self, alpha=1.0, shift=0.0):
        self.alpha, self.shift = alpha, shift

    def get_params(self):
        return {"alpha": self.alpha, "shift": self.shift}

    def set_params(self, **p):
        for k, v in p.items():
            setattr(self, k, v)
        return self

    def fit(self, X, Y, mask, init=None):
        FITS.append({"mask": mask.copy(), "alpha": self.alpha, "init": init})
        d, t = X.shape[1], Y.shape[1]
        self.W_ = np.zeros((d, t))
        for i in range(t):
            x, y = X[mask[:, i]], Y[mask[:, i], i]
            self.W_[:, i] = np.linalg.solve(x.T @ x + self.alpha * np.eye(d), x.T @ y)
        return self

    def predict(self, X):
        return X @ self.W_ + self.shift


def _data(seed=0, n=150, d=4, t=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = 25 + 3 * X @ rng.normal(size=(d, t)) + rng.normal(size=(n, t)) * 4
    mask = np.ones((n, t), bool)
    mask[rng.random((n, t)) < 0.2] = False
    mask[:5] = False  # rows that train no task
    return X, Y, mask


def test_fold_ids():
    _, _, mask = _data()
    f = fold_ids(mask, n_folds=5, seed=1)
    assert (f[:5] == -1).all()
    counts = np.bincount(f[f >= 0])
    assert counts.size == 5 and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(f, fold_ids(mask, n_folds=5, seed=1))
    assert not np.array_equal(f, fold_ids(mask, n_folds=5, seed=2))
    with pytest.raises(ValueError, match="n_folds"):
        fold_ids(mask[:6], n_folds=5)


def test_validation_score_matches_sklearn():
    X, Y, mask = _data()
    s = X @ np.ones((4, 3))
    want = np.mean(
        [average_precision_score(Y[mask[:, i], i] > 25, s[mask[:, i], i]) for i in range(3)]
    )
    assert validation_score(s, Y, mask) == pytest.approx(want, abs=1e-12)
    Y2 = Y.copy()
    Y2[:, 1] = 0  # no positives: left out of the mean
    want2 = np.mean(
        [average_precision_score(Y2[mask[:, i], i] > 25, s[mask[:, i], i]) for i in (0, 2)]
    )
    assert validation_score(s, Y2, mask) == pytest.approx(want2, abs=1e-12)


def test_expand_grid():
    g = expand_grid({"alpha": [0.1, 10.0, 1.0], "shift": 0.0, "name": ["a", "b"]})
    assert [c["alpha"] for c in g[::2]] == [10.0, 1.0, 0.1]
    assert len(g) == 6 and all(c["shift"] == 0.0 for c in g)
    with pytest.raises(ValueError, match="alpha"):
        expand_grid({"alpha": []})


def test_grid_search_naive_and_masks():
    X, Y, mask = _data()
    FITS.clear()
    res = grid_search(
        Ridge(), X, Y, mask, param_grid={"alpha": [1e-3, 30.0, 3000.0]}, n_folds=5, seed=3
    )
    # naive re-computation of every fold score
    fold = res.fold
    for c, params in enumerate(res.params):
        for f in range(5):
            m = mask & (fold != f)[:, None]
            v = mask & (fold == f)[:, None]
            est = Ridge(**params).fit(X, Y, m)
            assert res.scores[c, f] == pytest.approx(
                validation_score(est.predict(X), Y, v), abs=1e-12
            )
    assert res.best_index == int(np.argmax(res.scores.mean(axis=1)))
    # masks: fits never see rows outside train_mask; the refit uses exactly train_mask
    cv_fits = FITS[:15]
    assert all(not (fit["mask"] & ~mask).any() for fit in cv_fits)
    np.testing.assert_array_equal(FITS[15]["mask"], mask)
    assert FITS[15]["alpha"] == res.best_params["alpha"] and FITS[15]["init"] is None
    # warm start: the second config of a fold starts from the first's fit
    assert cv_fits[0]["init"] is None and cv_fits[5]["init"] is not None
    np.testing.assert_allclose(res.estimator.W_, Ridge(**res.best_params).fit(X, Y, mask).W_)
    m = res.to_metrics()
    assert m["cv/score"] == pytest.approx(res.scores[res.best_index].mean())
    assert m["cv/best/alpha"] == res.best_params["alpha"]
    assert len(res.table()) == 3


def test_grid_search_bad_shapes():
    X, Y, mask = _data()
    with pytest.raises(ValueError, match="do not match"):
        grid_search(Ridge(), X[:10], Y, mask)


def test_one_configuration_is_fitted_once_without_cv():
    X, Y, mask = _data()
    FITS.clear()
    res = grid_search(Ridge(), X, Y, mask, param_grid={"alpha": 3.0}, n_folds=5, seed=3)
    assert len(FITS) == 1 and FITS[0]["alpha"] == 3.0
    np.testing.assert_array_equal(FITS[0]["mask"], mask)  # the refit on all training rows
    assert not res.validated and np.isnan(res.scores).all() and res.scores.shape == (1, 5)
    m = res.to_metrics()
    assert np.isnan(m["cv/score"]) and m["cv/n_configs"] == 1.0 and m["cv/best/alpha"] == 3.0
    assert np.isnan(res.table()[0]["cv_score"])
    np.testing.assert_allclose(res.estimator.W_, Ridge(alpha=3.0).fit(X, Y, mask).W_)
    FITS.clear()
    again = grid_search(Ridge(), X, Y, mask, param_grid={"alpha": 3.0}, validate_single=True)
    assert again.validated and len(FITS) == 6 and np.isfinite(again.best_score)


def test_no_validation_positive_scores_nan_not_minus_infinity():
    """No fold has a positive: every fold score is NaN. The search still picks a configuration,
    but its score is NaN (a failed sweep trial), not −inf (a completed one ranked last)."""
    from gifemo.models.estimators import UnsortedBaseline

    n, t = 20, 2
    res = grid_search(UnsortedBaseline(), np.zeros((n, 1)), np.full((n, t), 10.0),
                      np.ones((n, t), bool), param_grid={"mode": ["constant", "random"]},
                      n_folds=2)  # fmt: skip
    assert np.isnan(res.scores).all()
    assert np.isnan(res.best_score) and np.isnan(res.to_metrics()["cv/score"])
    assert all(np.isnan(row["cv_score"]) for row in res.table())
