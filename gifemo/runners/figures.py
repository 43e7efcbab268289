"""Which of the paper's figures a run draws, from what (the drawing is :mod:`gifemo.eval.figures`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def model_figures(
    out: Path, report: Any, estimator: Any, *, label: str, cluster_figure: bool, seed: int
) -> dict[str, Path]:
    """The paper's figures of a fitted recogniser as PNGs under ``out/figures`` → {tracker key: path}.

    Fig. 7 (mean and per-emotion PR curves) always; for linear models Fig. 8 (correlation of
    the W_i, emotions in cluster order); Fig. 6 (silhouette of k-means on the columns of the
    trace-norm W and its first two principal components with the k-means partition of the best
    k) when the estimator fitted a trace-norm W for k=auto (``W_trace_``) or when
    ``cluster_figure`` (the model config's ``cluster_figure: true``, multi-task models) asks for
    it on this model's own W.
    """
    from gifemo.eval import figures as F
    from gifemo.models.estimators import choose_k, silhouette_by_k

    fig_dir = out / "figures"
    paths = {
        "figures/fig7_pr_mean": F.pr_curves_figure({label: report}, fig_dir / "fig7_pr_mean.png"),
        "figures/fig7_pr_per_emotion": F.per_emotion_pr_figure(
            report, fig_dir / "fig7_pr_per_emotion.png"
        ),
    }
    W = getattr(estimator, "W_", None)
    if W is not None and np.any(W):
        paths["figures/fig8_correlation"] = F.correlation_figure(
            W, fig_dir / "fig8_correlation.png", title=f"{label}: correlation of the W_i"
        )
    W6 = getattr(estimator, "W_trace_", None)
    if W6 is None and cluster_figure:
        W6 = W
    if W6 is not None and np.any(W6):
        scores, labels = silhouette_by_k(W6, seed=seed)
        k = choose_k(scores)
        paths["figures/fig6_silhouette"] = F.silhouette_figure(
            scores, W6, labels[k], fig_dir / "fig6_silhouette.png"
        )
    return paths


def dataset_figures(out: Path, dataset: Any, store: Any, ids: list[str]) -> dict[str, Path]:
    """Figs. 9-10 of the GIFs ``ids`` this run used (:func:`gifemo.data.stats.dataset_statistics`):
    frame counts and mean delays (from the feature store), emotion overlap, flag shares."""
    from gifemo.data.stats import dataset_statistics

    keep = np.array([dataset.index_of(gid) for gid in ids], dtype=np.int64)
    rows = np.array([store.row_of(gid) for gid in ids], dtype=np.int64)
    stats = dataset_statistics(
        dataset.subset(keep),
        out / "figures",
        n_frames=np.asarray(store.n_frames)[rows],
        mean_delay_ms=np.asarray(store.mean_delay_ms)[rows],
    )
    return {f"figures/{k}_dataset": Path(v) for k, v in stats["figures"].items()}
