"""Multi-label metrics of the GIFGIF+ task (paper §5, Table 4).

Every function takes per-GIF ``scores`` (n, t) — logits, SVM decision values or any score where
larger means "more likely positive" — and binary ``labels`` (n, t) in :data:`gifemo.emotions.EMOTIONS`
order, and returns one value per emotion (t,). Averages over emotions are plain means and
population standard deviations (``ddof=0``), the "mean ± std" of Table 4.

Conventions decided here, once:

- Average precision (AP) is the step-wise area under the precision–recall curve,
  ``AP = Σ_k (R_k − R_{k−1}) P_k`` over the distinct score thresholds taken in decreasing order
  (no interpolation; the same definition as ``sklearn.metrics.average_precision_score``).
  An emotion without a positive has AP = NaN and is left out of the mean ("nan-mean").
- Prediction at threshold ``θ_e`` is ``score ≥ θ_e``.
- Precision, recall and F1 with no predicted positives (or no positives) are 0 (sklearn's
  ``zero_division=0``).
- The validation threshold of emotion e maximises F1 on validation data over all distinct scores;
  ties go to the highest threshold. Without a validation positive, θ_e = +∞ (predict nothing).
"""

from __future__ import annotations

import numpy as np

from gifemo.emotions import EMOTIONS
from gifemo.eval.metrics import average_precision as ranking_ap
from gifemo.eval.metrics import ranking_cuts


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(
            f"scores and labels must both be (n, t); got scores {scores.shape}, labels {labels.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be binary (0/1 or bool)")
        labels = labels.astype(bool)
    return scores, labels


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AP per emotion, (t,); NaN where an emotion has no positive
    (:func:`gifemo.eval.metrics.average_precision` column by column)."""
    scores, labels = _check(scores, labels)
    return np.array([ranking_ap(scores[:, e], labels[:, e]) for e in range(scores.shape[1])])


def precision_recall_f1(predictions: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per emotion from binary predictions (n, t); each (t,)."""
    predictions = np.asarray(predictions, dtype=bool)
    _, labels = _check(predictions.astype(np.float64), labels)
    tp = (predictions & labels).sum(0).astype(np.float64)
    n_pred = predictions.sum(0)
    n_pos = labels.sum(0)
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_pos, out=np.zeros_like(tp), where=n_pos > 0)
    denom = n_pred + n_pos
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1}


def best_f1_thresholds(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-emotion threshold θ (t,) maximising F1 of ``score ≥ θ`` on these (validation) data.

    F1(θ) = 2·tp / (2·tp + fp + fn) evaluated at every distinct score; ties → highest θ.
    """
    scores, labels = _check(scores, labels)
    out = np.full(scores.shape[1], np.inf)
    for e in range(scores.shape[1]):
        n_pos = labels[:, e].sum()
        if n_pos == 0:
            continue
        tp, fp, thresholds = ranking_cuts(scores[:, e], labels[:, e])
        f1 = 2 * tp / (tp + fp + n_pos)
        out[e] = thresholds[int(np.argmax(f1))]  # argmax: first max = highest threshold
    return out


def summarise(per_emotion: dict[str, np.ndarray], *, prefix: str = "") -> dict[str, float]:
    """Flatten per-emotion arrays into ``{prefix}{name}_mean``, ``_std`` and ``{name}/{emotion}``.

    Means and stds skip NaN (emotions without positives); std is the population std (ddof=0).
    """
    out: dict[str, float] = {}
    for name, values in per_emotion.items():
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        out[f"{prefix}{name}_mean"] = float(finite.mean()) if finite.size else float("nan")
        out[f"{prefix}{name}_std"] = float(finite.std()) if finite.size else float("nan")
        names = EMOTIONS if values.size == len(EMOTIONS) else [str(i) for i in range(values.size)]
        for emotion, v in zip(names, values, strict=True):
            out[f"{prefix}{name}/{emotion}"] = float(v)
    return out


def table4_line(metrics: dict[str, float], *, prefix: str = "") -> str:
    """``precision 0.20 ± 0.11  recall 0.55 ± 0.12  F1 0.29 ± 0.13`` from :func:`summarise` output."""
    parts = []
    for name, label in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
        m, s = metrics[f"{prefix}{name}_mean"], metrics[f"{prefix}{name}_std"]
        parts.append(f"{label} {m:.3f} ± {s:.3f}")
    return "  ".join(parts)
