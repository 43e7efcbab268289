"""k=auto and Fig. 6 (paper §3.6): k comes from the trace-norm model fitted once with its own
CV-chosen ρ — recomputed here independently — not inside CMTL's folds with CMTL's ρ1."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from gifemo.emotions import EMOTION_INDEX, POSITIVE_EMOTIONS
from gifemo.eval.cv import grid_search
from gifemo.models.estimators import MTLRegressor, choose_k, silhouette_by_k
from gifemo.models.penalties import TraceNorm
from gifemo.runners.features import cross_validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def _data(n=160, d=12, seed=0):
    """Two groups of tasks (the positive emotions and the others), each sharing one model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    pos = [EMOTION_INDEX[e] for e in POSITIVE_EMOTIONS]
    w_pos, w_neg = rng.normal(size=d), rng.normal(size=d)
    W = np.stack([w_pos if i in pos else w_neg for i in range(17)], axis=1)
    Y = 25 + 3 * (X @ W) + rng.normal(size=(n, 17))
    mask = np.ones((n, 17), bool)
    mask[rng.permutation(n)[:40]] = False
    return SimpleNamespace(X=X, Y=Y, protocol=SimpleNamespace(train_mask=mask))


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["model=cmtl", "cv.folds=3", *overrides])


@pytest.mark.slow  # several MTL solves: ~10 s alone, much more under load
def test_k_auto_uses_the_trace_model_with_its_own_cv_rho():
    data = _data()
    cfg = _cfg("model.k=auto", "model.trace_rho=[0.3,30.0]", "model.rho=[3.0]", "model.rho2=[0.1]")
    cv = cross_validate(cfg, data)
    # the reference: the trace model's own CV over trace_rho on the same rows and folds
    ref = grid_search(MTLRegressor(TraceNorm, tol=1e-6, max_iter=5000, seed=0), data.X, data.Y,
                      data.protocol.train_mask, param_grid={"rho": [0.3, 30.0]}, n_folds=3, seed=0)  # fmt: skip
    np.testing.assert_allclose(cv.estimator.W_trace_, ref.estimator.W_, atol=1e-8)
    assert cv.estimator.trace_rho_ == ref.best_params["rho"]
    scores, _ = silhouette_by_k(ref.estimator.W_, seed=0)
    k = choose_k(scores)
    assert k == 2  # the two planted groups
    assert cv.best_params["k"] == k and cv.estimator.k_ == k
    # CMTL's folds received a number, never "auto" (no trace fit inside them)
    assert all(p["k"] == k for p in cv.params)


@pytest.mark.slow
def test_fixed_k_cmtl_still_draws_fig6_from_the_trace_model():
    data = _data(seed=1)
    cfg = _cfg("model.k=3", "model.trace_rho=[3.0]", "model.rho=[3.0]", "model.rho2=[0.1]")
    cv = cross_validate(cfg, data)
    trace = MTLRegressor(TraceNorm, rho=3.0, tol=1e-6, max_iter=5000).fit(
        data.X, data.Y, data.protocol.train_mask
    )
    np.testing.assert_allclose(cv.estimator.W_trace_, trace.W_, atol=1e-8)
    assert cv.best_params["k"] == 3
