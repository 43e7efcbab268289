"""The paper's figures as PNG files (matplotlib, Agg backend): Figs. 6, 7 and 8.

The numbers behind each figure are computed by plain functions (tested against NumPy and
scikit-learn), drawn by ``*_plot`` functions that return the matplotlib Figure (the tests read
the plotted data back from it), and written by ``*_figure`` functions that save ``path`` and
return it.

* Fig. 6 — (a) silhouette of k-means on the columns of W against k
  (:func:`gifemo.models.estimators.silhouette_by_k`); (b) the first two principal components
  of the t task models (columns of W, centred over tasks) coloured by the k-means partition,
  labelled 1–17 in EMOTIONS order.
* Fig. 7 — precision–recall curves: the mean over emotions of every method in one figure
  (:attr:`RankingReport.mean_curve`, recall grid of :mod:`gifemo.eval.metrics`; a sweep draws
  all its methods together, as the paper) and one panel per emotion.
* Fig. 8 — Pearson correlation between the learned models W_i (columns of W), rows and
  columns ordered by CLUSTER_ORDER (positive emotions first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gifemo.emotions import CLUSTER_ORDER, EMOTION_INDEX, EMOTIONS
from gifemo.eval.metrics import RankingReport


def _save(fig: plt.Figure, path: str | Path, *, tight: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path


def model_correlation(W: np.ndarray, order: Sequence[str] = CLUSTER_ORDER) -> np.ndarray:
    """(t, t) Pearson correlation of the columns of W (d, t), rows/cols in ``order``.

    corr_ij = ⟨w_i − w̄_i, w_j − w̄_j⟩ / (‖w_i − w̄_i‖ ‖w_j − w̄_j‖), w̄ the mean over the d
    features; a constant column (e.g. all zero) has NaN correlations.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != len(order):
        raise ValueError(f"W must be (d, {len(order)}), got {W.shape}")
    idx = [EMOTION_INDEX[e] for e in order]
    C = W[:, idx] - W[:, idx].mean(axis=0)
    norm = np.linalg.norm(C, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (C.T @ C) / np.outer(norm, norm)


def task_pca(W: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the t task models: (coords (t, n_components), explained ratio).

    Points are the columns of W (d, t); they are centred over tasks and projected on the top
    right-singular directions (SVD), the sign fixed so that each direction's largest |loading|
    is positive — as ``sklearn.decomposition.PCA`` up to that sign.
    """
    P = np.asarray(W, dtype=np.float64).T  # (t, d)
    P = P - P.mean(axis=0)
    U, S, Vt = np.linalg.svd(P, full_matrices=False)
    signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    signs[signs == 0] = 1.0
    coords = (U * S * signs)[:, :n_components]
    var = S**2
    return coords, (var / var.sum())[:n_components] if var.sum() > 0 else np.zeros(n_components)


def pr_curves_figure(reports: Mapping[str, Any], path: str | Path) -> Path:
    """Fig. 7: :func:`pr_curves_plot` written to ``path``."""
    return _save(pr_curves_plot(reports), path)


def pr_curves_plot(reports: Mapping[str, Any]) -> plt.Figure:
    """Fig. 7: mean PR curve of each method (label → report) in one axes, in the order given,
    with its mean AUC in the legend; a dotted line marks the recall of eq. 9. A report is a
    :class:`RankingReport` or anything with its ``recall_grid``, ``mean_curve``, ``auc_mean``
    and ``recall`` (e.g. a job's ``pr_curve.json`` in a sweep summary)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, rep in reports.items():
        ax.plot(rep.recall_grid, rep.mean_curve, label=f"{label} (AUC {rep.auc_mean:.3f})")
    ax.axvline(next(iter(reports.values())).recall, color="0.7", ls=":", lw=1) if reports else None
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="Mean precision–recall",
    )
    ax.legend(fontsize=8)
    return fig


def per_emotion_pr_figure(report: RankingReport, path: str | Path) -> Path:
    """:func:`per_emotion_pr_plot` written to ``path``."""
    return _save(per_emotion_pr_plot(report), path)


def per_emotion_pr_plot(report: RankingReport) -> plt.Figure:
    """One PR panel per emotion (precision on the recall grid, the positive rate dashed), AUC
    and Ñ in each title. Constrained layout leaves room for every two-line title, so no title
    runs into the panel above it."""
    t = len(report.emotions)
    cols = 6
    rows = -(-t // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.3 * cols, 2.4 * rows), sharex=True, sharey=True, layout="constrained"
    )
    for i, ax in enumerate(np.ravel(axes)):
        if i >= t:
            ax.axis("off")
            continue
        ax.plot(report.recall_grid, report.curves[i])
        ax.axhline(report.positive_rate[i], color="0.6", ls="--", lw=0.8)
        ax.set_title(
            f"{report.emotions[i]}\nAUC {report.auc[i]:.2f}  Ñ {report.n_tilde[i]:.0f}", fontsize=7
        )
        ax.set_ylim(0, 1.02)
    return fig


def correlation_figure(W: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """Fig. 8: :func:`correlation_plot` written to ``path``."""
    return _save(correlation_plot(W, title=title), path)


def correlation_plot(W: np.ndarray, *, title: str = "") -> plt.Figure:
    """Fig. 8: the correlation matrix of :func:`model_correlation` as an image."""
    C = model_correlation(W)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    im = ax.imshow(C, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(CLUSTER_ORDER)), CLUSTER_ORDER, rotation=90, fontsize=7)
    ax.set_yticks(range(len(CLUSTER_ORDER)), CLUSTER_ORDER, fontsize=7)
    ax.set_title(title or "Correlation of the learned W_i")
    fig.colorbar(im, ax=ax)
    return fig


def silhouette_figure(
    scores: Mapping[int, float], W: np.ndarray, labels: np.ndarray, path: str | Path
) -> Path:
    """Fig. 6: :func:`silhouette_plot` written to ``path``."""
    return _save(silhouette_plot(scores, W, labels), path)


def silhouette_plot(scores: Mapping[int, float], W: np.ndarray, labels: np.ndarray) -> plt.Figure:
    """Fig. 6: (a) silhouette against k; (b) first two PCs of W's columns, coloured by ``labels``."""
    ks = sorted(scores)
    coords, ratio = task_pca(W)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    a.plot(ks, [scores[k] for k in ks], marker="o")
    a.set(
        xlabel="number of clusters k", ylabel="silhouette", title="(a) silhouette of k-means on W"
    )
    b.scatter(coords[:, 0], coords[:, 1], c=np.asarray(labels), cmap="tab10", s=40)
    for i, (x, y) in enumerate(coords):
        b.annotate(str(i + 1), (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    b.set(
        xlabel=f"PC1 ({ratio[0]:.0%})",
        ylabel=f"PC2 ({ratio[1]:.0%})",
        title=f"(b) k-means partition, k = {len(set(np.asarray(labels).tolist()))}",
    )
    return fig


def emotion_legend() -> str:
    """'1: amusement, 2: anger, …' — the numbering of Fig. 6b."""
    return ", ".join(f"{i + 1}: {e}" for i, e in enumerate(EMOTIONS))
