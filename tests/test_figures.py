"""Figure numbers vs numpy.corrcoef / sklearn PCA; the plotted data read back from each Figure;
the per-emotion grid's titles do not overlap; the PNG files are written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
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


def _reports():
    rng = np.random.default_rng(0)
    n, t = 80, len(EMOTIONS)
    pos = rng.random((n, t)) < 0.3
    rep = evaluate_rankings(pos + rng.normal(size=(n, t)), pos, [np.arange(n)] * t)
    rnd = evaluate_rankings(rng.normal(size=(n, t)), pos, [np.arange(n)] * t)
    return rep, rnd


def test_pr_curves_plot_draws_every_method_mean_curve():
    rep, rnd = _reports()
    fig = F.pr_curves_plot({"model": rep, "random": rnd})
    ax = fig.axes[0]
    curves = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in curves] == [
        f"model (AUC {rep.auc_mean:.3f})",
        f"random (AUC {rnd.auc_mean:.3f})",
    ]
    for ln, r in zip(curves, (rep, rnd)):
        np.testing.assert_array_equal(ln.get_xdata(), r.recall_grid)
        np.testing.assert_allclose(ln.get_ydata(), r.curves.mean(axis=0))  # all 17 defined
    # the dotted marker at the recall of eq. 9 (N_p / N_all = 0.06)
    marks = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(marks) == 1 and marks[0].get_xdata()[0] == pytest.approx(0.06)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [c.get_label() for c in curves]


def test_per_emotion_plot_data_and_titles_do_not_overlap():
    rep, _ = _reports()
    fig = F.per_emotion_pr_plot(rep)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(panels) == len(EMOTIONS)
    for i, ax in enumerate(panels):
        curve, rate = ax.get_lines()
        np.testing.assert_allclose(curve.get_ydata(), rep.curves[i])
        assert rate.get_ydata()[0] == pytest.approx(rep.positive_rate[i])
        assert ax.get_title().startswith(f"{EMOTIONS[i]}\nAUC {rep.auc[i]:.2f}")
    # every title lies above its own panel and below the panel above it (no overlap)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for i, ax in enumerate(panels):
        title = ax.title.get_window_extent(renderer)
        box = ax.get_window_extent(renderer)
        assert title.y0 >= box.y1 - 1
        if i >= 6:
            above = panels[i - 6].get_window_extent(renderer)
            assert title.y1 <= above.y0 + 1, (EMOTIONS[i], title, above)
        for j, other in enumerate(panels):
            if j != i:
                assert not title.overlaps(other.title.get_window_extent(renderer))


def test_correlation_and_silhouette_plots_show_their_numbers():
    W = _W(2)
    im = F.correlation_plot(W).axes[0].get_images()[0]
    np.testing.assert_allclose(im.get_array(), F.model_correlation(W))
    scores, labels = silhouette_by_k(W, [2, 3, 4], n_init=2)
    fig = F.silhouette_plot(scores, W, labels[2])
    a, b = fig.axes
    (line,) = a.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [2, 3, 4])
    np.testing.assert_allclose(line.get_ydata(), [scores[k] for k in (2, 3, 4)])
    coords, _ = F.task_pca(W)
    np.testing.assert_allclose(b.collections[0].get_offsets(), coords[:, :2])
    np.testing.assert_array_equal(b.collections[0].get_array(), labels[2])
    assert b.get_title() == "(b) k-means partition, k = 2"
    assert F.emotion_legend().startswith("1: amusement, 2: anger")


def test_figure_files_are_written(tmp_path):
    rep, rnd = _reports()
    W = _W(2)
    scores, labels = silhouette_by_k(W, [2, 3], n_init=2)
    for p in (
        F.pr_curves_figure({"model": rep, "random": rnd}, tmp_path / "fig7.png"),
        F.correlation_figure(W, tmp_path / "sub" / "fig8.png"),
        F.silhouette_figure(scores, W, labels[2], tmp_path / "fig6.png"),
    ):
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 200
