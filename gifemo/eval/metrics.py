"""Ranking metrics of the paper's evaluation (§3.6, Table 2, eq. 9, Fig. 7).

A recogniser scores the GIFs of emotion i's test set T_i; the ranking by decreasing score is
compared against the positives (y = μ − 3σ > μ0 = 25, see :mod:`gifemo.data.labels`).

Conventions (decided here, used everywhere):

* **Precision–recall curve** — exactly scikit-learn's ``precision_recall_curve``: one point per
  distinct score (tied scores enter the ranking together), cut k keeps every GIF with
  score ≥ τ_k (τ_1 > τ_2 > …), TP_k / FP_k count its positives / negatives,
  precision_k = TP_k / (TP_k + FP_k), recall_k = TP_k / P; the arrays are returned with
  decreasing recall and the end point (recall 0, precision 1) appended, as scikit-learn does.
* **AUC** — the step-wise area (average precision), ``AP = Σ_k (R_k − R_{k−1}) P_k`` with
  R_0 = 0; identical to ``sklearn.metrics.average_precision_score`` (ties included).
* **Precision at recall r** — the precision of the first cut (highest threshold, ties kept
  together) holding at least ⌈r·P⌉ positives, i.e. the smallest k with recall_k ≥ r. Compared
  in integers, so r = 3000 / 50000 is never lost to rounding.
* **Ñ (eq. 9)** — Ñ = N_p / Precision at Recall = N_p / N_all, with N_p = 3000 and
  N_all = 50000 (recall 0.06). A random ranking has precision ≈ positive rate, so the unsorted
  baseline gives Ñ ≈ N_p / rate.
* **Mean Ñ as Table 2 reports it** — N_p over the precision *averaged over emotions first*:
  Ñ_mean = N_p / mean_i P_i(R = N_p / N_all) (``test/n_tilde_mean``; the paper's unsorted row is
  3000 / 0.2501 = 11,996). The mean of the per-emotion Ñ_i = N_p / P_i is a different number
  (larger, by Jensen's inequality, whenever the precisions differ) and is kept as
  ``test/n_tilde_emotion_mean``.
* **No positives** — an emotion whose test set has no positive (or is empty) has AUC, precision
  at recall and Ñ = NaN, with a warning naming it; means are taken over the emotions where the
  value is defined (``nanmean``), and ``n_defined`` says how many those are.

Implemented in float64 NumPy rather than torchmetrics: torchmetrics' binary curve agrees with
scikit-learn (the tests check both) but returns float32, which can move a recall that should
equal r exactly across the threshold.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gifemo.emotions import EMOTIONS

N_P = 3000  # eq. 9: positives a labeller wants per emotion
N_ALL = 50000  # eq. 9: candidates available per emotion
RECALL_GRID = np.linspace(0.0, 1.0, 101)  # recall points of the averaged curve (Fig. 7)


def _check_pair(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(positives)
    if s.ndim != 1 or p.shape != s.shape:
        raise ValueError(f"scores {s.shape} and positives {p.shape} must be equal 1-d shapes")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int(np.sum(~np.isfinite(s)))} non-finite values")
    return s, p.astype(bool)


def ranking_cuts(
    scores: np.ndarray, positives: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (TP_k, FP_k, τ_k) of ``score ≥ τ_k`` at each distinct score, τ decreasing;
    scores (n,) float, positives (n,) bool. Ties are cut together (never split)."""
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positives[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each tie group
    tp = np.cumsum(p)[last].astype(np.float64)
    fp = (last + 1) - tp
    return tp, fp, s[last]


def precision_recall_curve(
    scores: np.ndarray, positives: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's PR curve: ``(precision (K+1,), recall (K+1,), thresholds (K,))``.

    Thresholds increase, recall decreases to the appended end point (recall 0, precision 1).
    With no positive the recall is NaN (0/0) — callers check :func:`has_positives` first.
    """
    s, p = _check_pair(scores, positives)
    if s.size == 0:
        raise ValueError("precision_recall_curve of an empty ranking")
    tp, fp, thr = ranking_cuts(s, p)
    precision = tp / (tp + fp)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / tp[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AUC of the PR curve as the step-wise area Σ_k (R_k − R_{k−1}) P_k (NaN without positives)."""
    s, p = _check_pair(scores, positives)
    if not p.any():
        return math.nan
    tp, fp, _ = ranking_cuts(s, p)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tp / (tp + fp)))


def precision_at_recall(scores: np.ndarray, positives: np.ndarray, recall: float) -> float:
    """Precision of the first cut holding ≥ ⌈recall·P⌉ positives (NaN without positives)."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    s, p = _check_pair(scores, positives)
    n_pos = int(p.sum())
    if n_pos == 0:
        return math.nan
    need = max(1, math.ceil(recall * n_pos - 1e-9))
    tp, fp, _ = ranking_cuts(s, p)
    k = int(np.searchsorted(tp, need, side="left"))  # tp is non-decreasing
    return float(tp[k] / (tp[k] + fp[k]))


def n_tilde(precision: float, *, n_p: int = N_P) -> float:
    """Eq. 9: GIFs a labeller checks to find ``n_p`` positives, Ñ = n_p / precision."""
    return math.nan if not precision > 0 else n_p / precision


def interpolated_curve(
    scores: np.ndarray, positives: np.ndarray, grid: np.ndarray = RECALL_GRID
) -> np.ndarray:
    """Precision at each recall of ``grid`` (same rule as :func:`precision_at_recall`; r = 0 is
    the first cut), the per-emotion curve that Fig. 7 averages. Shape (len(grid),)."""
    s, p = _check_pair(scores, positives)
    n_pos = int(p.sum())
    if n_pos == 0:
        return np.full(len(grid), np.nan)
    tp, fp, _ = ranking_cuts(s, p)
    need = np.maximum(1, np.ceil(np.asarray(grid) * n_pos - 1e-9))
    k = np.searchsorted(tp, need, side="left")
    return tp[k] / (tp[k] + fp[k])


@dataclass(frozen=True)
class RankingReport:
    """Per-emotion results of scoring the test sets; arrays are (t,) in EMOTIONS order."""

    emotions: tuple[str, ...]
    auc: np.ndarray
    precision_at_recall: np.ndarray
    n_tilde: np.ndarray
    positive_rate: np.ndarray  # the unsorted baseline's precision
    n_test: np.ndarray  # (t,) int
    n_positive: np.ndarray  # (t,) int
    curves: np.ndarray  # (t, len(RECALL_GRID)) precision on the recall grid
    recall_grid: np.ndarray
    recall: float  # the recall of eq. 9 (N_p / N_all)
    n_p: int

    @property
    def n_defined(self) -> int:
        return int(np.sum(np.isfinite(self.auc)))

    @property
    def auc_mean(self) -> float:
        return _nanmean(self.auc)

    @property
    def n_tilde_mean(self) -> float:
        """Table 2's mean Ñ: N_p / (mean over defined emotions of the precision at recall)."""
        return n_tilde(_nanmean(self.precision_at_recall), n_p=self.n_p)

    @property
    def n_tilde_emotion_mean(self) -> float:
        """The mean over defined emotions of the per-emotion Ñ_i = N_p / P_i (not Table 2's)."""
        return _nanmean(self.n_tilde)

    @property
    def mean_curve(self) -> np.ndarray:
        """Fig. 7's averaged PR curve: mean precision over defined emotions at each grid recall."""
        ok = np.isfinite(self.curves).all(axis=1)
        return self.curves[ok].mean(axis=0) if ok.any() else np.full(len(self.recall_grid), np.nan)

    def to_metrics(self, prefix: str = "test") -> dict[str, float]:
        """Flat ``{"<prefix>/auc_mean": …, "<prefix>/auc/<emotion>": …}`` for metrics.json / loggers.

        Keys: auc_mean; n_tilde_mean (Table 2's: N_p / precision_at_recall_mean);
        n_tilde_emotion_mean (mean of the per-emotion Ñ); precision_at_recall_mean;
        positive_rate_mean; n_tilde_unsorted_mean (N_p / positive_rate_mean, Table 2's unsorted
        row) and n_tilde_unsorted_emotion_mean (mean of N_p / rate_i); n_defined; and per emotion
        auc/, n_tilde/, precision_at_recall/, positive_rate/. NaN stays NaN (JSON writers should
        allow it). Means are over the emotions where the value is defined; positive_rate_mean
        (the unsorted list's AUC) over the emotions whose AUC is, as auc_mean.
        """
        rate_mean = _nanmean(self.positive_rate[np.isfinite(self.auc)])
        out: dict[str, float] = {
            f"{prefix}/auc_mean": self.auc_mean,
            f"{prefix}/n_tilde_mean": self.n_tilde_mean,
            f"{prefix}/n_tilde_emotion_mean": self.n_tilde_emotion_mean,
            f"{prefix}/precision_at_recall_mean": _nanmean(self.precision_at_recall),
            f"{prefix}/positive_rate_mean": rate_mean,  # the unsorted AUC: over AUC's emotions
            f"{prefix}/n_tilde_unsorted_mean": n_tilde(rate_mean, n_p=self.n_p),
            f"{prefix}/n_tilde_unsorted_emotion_mean": _nanmean(
                np.array([n_tilde(r, n_p=self.n_p) for r in self.positive_rate])
            ),
            f"{prefix}/n_defined": float(self.n_defined),
        }
        for name, values in (
            ("auc", self.auc),
            ("n_tilde", self.n_tilde),
            ("precision_at_recall", self.precision_at_recall),
            ("positive_rate", self.positive_rate),
        ):
            for e, v in zip(self.emotions, values):
                out[f"{prefix}/{name}/{e}"] = float(v)
        return out


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else math.nan


def evaluate_rankings(
    scores: np.ndarray,
    positives: np.ndarray,
    rows: Sequence[np.ndarray],
    *,
    n_p: int = N_P,
    n_all: int = N_ALL,
    emotions: Sequence[str] = EMOTIONS,
    grid: np.ndarray = RECALL_GRID,
) -> RankingReport:
    """Score every emotion's test rows.

    scores (n, t) ranking scores; positives (n, t) bool; rows[i] the row indices of T_i.
    Emotions with no positive in T_i get NaN (warned, by name) and are left out of the means.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    t = len(emotions)
    if scores.ndim != 2 or scores.shape != positives.shape or scores.shape[1] != t:
        raise ValueError(f"scores {scores.shape} / positives {positives.shape} must be (n, {t})")
    if len(rows) != t:
        raise ValueError(f"rows has {len(rows)} test sets, expected {t}")
    if not 0 < n_p <= n_all:
        raise ValueError(f"need 0 < n_p <= n_all, got n_p={n_p}, n_all={n_all}")
    recall = n_p / n_all
    auc, par, nt, rate = (np.full(t, np.nan) for _ in range(4))
    n_test, n_pos = np.zeros(t, dtype=np.int64), np.zeros(t, dtype=np.int64)
    curves = np.full((t, len(grid)), np.nan)
    undefined = []
    for i in range(t):
        r = np.asarray(rows[i], dtype=np.int64)
        s, p = scores[r, i], positives[r, i]
        n_test[i], n_pos[i] = r.size, int(p.sum())
        if r.size:
            rate[i] = n_pos[i] / r.size
        if n_pos[i] == 0:
            undefined.append(emotions[i])
            continue
        auc[i] = average_precision(s, p)
        par[i] = precision_at_recall(s, p, recall)
        nt[i] = n_tilde(par[i], n_p=n_p)
        curves[i] = interpolated_curve(s, p, grid)
    if undefined:
        warnings.warn(
            f"no positive in the test set of {undefined}: AUC and Ñ are NaN there and the means "
            f"are over the other {t - len(undefined)} emotions",
            RuntimeWarning,
            stacklevel=2,
        )
    return RankingReport(
        emotions=tuple(emotions),
        auc=auc,
        precision_at_recall=par,
        n_tilde=nt,
        positive_rate=rate,
        n_test=n_test,
        n_positive=n_pos,
        curves=curves,
        recall_grid=np.asarray(grid, dtype=np.float64),
        recall=recall,
        n_p=n_p,
    )


def format_report(report: RankingReport) -> str:
    """A readable per-emotion table (emotion, n, positives, rate, AUC, P@R, Ñ) plus the mean."""
    lines = [f"{'emotion':<14}{'n':>6}{'pos':>6}{'rate':>7}{'AUC':>7}{'P@R':>7}{'Ñ':>9}"]
    rate_mean = _nanmean(report.positive_rate[np.isfinite(report.auc)])  # AUC's emotions
    for i, e in enumerate(report.emotions):
        lines.append(
            f"{e:<14}{report.n_test[i]:>6}{report.n_positive[i]:>6}{report.positive_rate[i]:>7.3f}"
            f"{report.auc[i]:>7.3f}{report.precision_at_recall[i]:>7.3f}{report.n_tilde[i]:>9.0f}"
        )
    lines.append(
        f"{'mean':<14}{'':>6}{'':>6}{rate_mean:>7.3f}{report.auc_mean:>7.3f}"
        f"{_nanmean(report.precision_at_recall):>7.3f}{report.n_tilde_mean:>9.0f}"
        f"   ({report.n_defined}/{len(report.emotions)} emotions defined)"
    )
    return "\n".join(lines)
