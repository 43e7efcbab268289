"""Figure numbers vs numpy.corrcoef / sklearn PCA, and the PNG files are written."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from gifemo.emotions import CLUSTER_ORDER, EMOTION_INDEX, EMOTIONS
from gifemo.eval import figures as F
from gifemo.eval.metrics import evaluate_rankings
from gifemo.models.estimators import silhouette_by_k


def _W(seed=0, d=30):
    return np.random.default_rng(seed).normal(size=(d, len(EMOTIONS)))


def test_model_correlation_matches_corrcoef():
    W = _W()
    C = F.model_correlation(W)
    idx = [EMOTION_INDEX[e] for e in CLUSTER_ORDER]
    np.testing.assert_allclose(C, np.corrcoef(W[:, idx].T), atol=1e-12)
    assert idx[:8] == [EMOTION_INDEX[e] for e in CLUSTER_ORDER[:8]]
    W[:, 3] = 0
    assert np.isnan(F.model_correlation(W)[CLUSTER_ORDER.index(EMOTIONS[3])]).all()
    with pytest.raises(ValueError, match=r"\(d, 17\)"):
        F.model_correlation(W[:, :5])


def test_task_pca_matches_sklearn():
    W = _W(1)
    coords, ratio = F.task_pca(W)
    pca = PCA(n_components=2).fit(W.T)
    ref = pca.transform(W.T)
    for j in range(2):  # equal up to the sign of each component
        s = np.sign(coords[:, j] @ ref[:, j])
        np.testing.assert_allclose(coords[:, j], s * ref[:, j], atol=1e-10)
    np.testing.assert_allclose(ratio, pca.explained_variance_ratio_, atol=1e-12)


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 80, len(EMOTIONS)
    pos = rng.random((n, t)) < 0.3
    rep = evaluate_rankings(pos + rng.normal(size=(n, t)), pos, [np.arange(n)] * t)
    rnd = evaluate_rankings(rng.normal(size=(n, t)), pos, [np.arange(n)] * t)
    W = _W(2)
    scores, labels = silhouette_by_k(W, [2, 3, 4], n_init=2)
    paths = [
        F.pr_curves_figure({"model": rep, "random": rnd}, tmp_path / "fig7.png"),
        F.correlation_figure(W, tmp_path / "sub" / "fig8.png"),
        F.silhouette_figure(scores, W, labels[2], tmp_path / "fig6.png"),
    ]
    for p in paths:
        assert (
            p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
        )
    assert F.emotion_legend().startswith("1: amusement, 2: anger")


@pytest.mark.slow
def test_per_emotion_figure_is_written(tmp_path):  # 17 panels: ~1 s alone, many under load
    rng = np.random.default_rng(0)
    pos = rng.random((60, 17)) < 0.3
    rep = evaluate_rankings(rng.normal(size=(60, 17)), pos, [np.arange(60)] * 17)
    p = F.per_emotion_pr_figure(rep, tmp_path / "fig7_emotions.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
