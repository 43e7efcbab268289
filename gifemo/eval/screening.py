"""Screening metrics: what a labelling order costs (issue 15; DESIGN §9, ASReview insights).

Every function takes ``labels``: the truth of the checked candidates *in check order* (bool,
shape (N,)), as a simulation reveals them. When the whole pool is ordered (N = pool size, P its
positives) the ASReview metrics are defined; for a quota the order may stop early.

* **Ñ (empirical, eq. 9)** — checks until ``n_p`` positives have been found: the smallest j with
  Σ_{i ≤ j} labels_i = n_p (``None`` when the order holds fewer than ``n_p`` positives). For a
  fixed ranking this is n_p / Precision(Recall = n_p / P), the quantity the paper's Ñ estimates
  from a test set (:func:`gifemo.eval.metrics.n_tilde` of ``precision_at_recall``).
* **Recall curve** — recall_j = Σ_{i ≤ j} labels_i / P after j = 1 … N checks.
* **WSS@r** (work saved over sampling, Cohen et al. 2006, as in ASReview insights) — with
  n_r the checks needed to reach ⌈r·P⌉ positives, WSS@r = (N − n_r) / N − (1 − r): the share of
  the pool left unchecked at recall r, minus what a random order leaves unchecked on average.
  (ASReview insights' plot instead compares with a rounded linear "random" curve; at r = 0.95
  the two differ by at most 1/N.)
* **Normalised loss** (ASReview insights) — Loss = (P·(N − (P − 1)/2) − Σ_j TP_j) / (P·(N − P)),
  TP_j = Σ_{i ≤ j} labels_i: 0 for the perfect order (all positives first), 1 for the worst (all
  positives last); lower is better.
* **Work saved vs static** — 1 − Ñ_active / Ñ_static: the share of the static ranking's checks a
  strategy avoids for the same quota (the honest headline for a quota; positive is better).
* **Interval over seeds** — mean ± t_{0.975, s−1}·sd/√s (Student t, s seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _labels(labels: Sequence[bool] | np.ndarray) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 1:
        raise ValueError(f"labels must be 1-d (truth of the checks in order), got shape {a.shape}")
    if a.dtype != bool and a.size and not np.isin(a, (0, 1)).all():
        raise ValueError("labels must be bool or 0/1")
    return a.astype(bool)


def checks_to_quota(labels: Sequence[bool] | np.ndarray, n_p: int) -> int | None:
    """Empirical Ñ: checks until ``n_p`` positives are found (None: the order has fewer)."""
    if int(n_p) < 1:
        raise ValueError(f"n_p must be >= 1, got {n_p}")
    tp = np.cumsum(_labels(labels))
    j = int(np.searchsorted(tp, int(n_p), side="left"))
    return None if j >= tp.size else j + 1


def recall_curve(labels: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(checks 1…N, recall after each check) for an order of the whole pool (P > 0)."""
    a = _labels(labels)
    p = int(a.sum())
    if p == 0:
        raise ValueError("recall curve of an order without positives")
    return np.arange(1, a.size + 1), np.cumsum(a) / p


def wss(labels: Sequence[bool] | np.ndarray, recall: float = 0.95) -> float:
    """WSS@recall = (N − n_r)/N − (1 − recall) for an order of the whole pool (module docstring)."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    a = _labels(labels)
    p = int(a.sum())
    if p == 0:
        return math.nan
    need = max(1, math.ceil(recall * p - 1e-9))
    n_r = checks_to_quota(a, need)
    assert n_r is not None
    return (a.size - n_r) / a.size - (1.0 - recall)


def normalised_loss(labels: Sequence[bool] | np.ndarray) -> float:
    """ASReview's normalised loss of an order of the whole pool (NaN if P = 0 or P = N)."""
    a = _labels(labels)
    n, p = a.size, int(a.sum())
    if p == 0 or p == n:
        return math.nan
    return float((p * (n - (p - 1) / 2) - np.cumsum(a).sum()) / (p * (n - p)))


def work_saved(n_strategy: float, n_static: float) -> float:
    """1 − Ñ_strategy / Ñ_static (NaN when either is undefined)."""
    if not (np.isfinite(n_strategy) and np.isfinite(n_static)) or n_static <= 0:
        return math.nan
    return 1.0 - float(n_strategy) / float(n_static)


@dataclass(frozen=True)
class Interval:
    """Mean over seeds with a Student-t confidence interval."""

    mean: float
    sd: float
    low: float
    high: float
    n: int
    level: float

    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, float]:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "level": self.level,
        }


def seed_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """mean ± t_{(1+level)/2, s−1}·sd/√s over the finite values (one per seed)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    s = v.size
    if s == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, level)
    mean = float(v.mean())
    if s == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1, level)
    sd = float(v.std(ddof=1))
    half = float(student_t.ppf((1 + level) / 2, s - 1)) * sd / math.sqrt(s)
    return Interval(mean, sd, mean - half, mean + half, s, level)


def checks_limit(summary: Mapping[str, Any], factor: float = 1.2) -> int | None:
    """x-axis limit of the recall figure: ``factor`` × the largest mean unsorted Ñ of a
    :func:`gifemo.active.experiment.run_experiment` summary (None when undefined)."""
    values = [m["n_tilde_unsorted_mean"]["mean"] for m in summary.get("models", {}).values()]
    finite = [v for v in values if np.isfinite(v)]
    return int(factor * max(finite)) if finite else None


def recall_curves_figure(
    curves: Mapping[str, Sequence[np.ndarray]],
    path: str | Path,
    *,
    n_p: int | None = None,
    max_checks: int | None = None,
    title: str = "Screening: positives found vs checks",
) -> Path:
    """Mean (over emotions and seeds) positives found vs checks, one line per strategy.

    ``curves[strategy]``: the per-(emotion, seed) label sequences in check order. Each is
    turned into TP_j (positives found after j checks); sequences are compared on the common
    prefix length so that the mean is over the same runs at every j (pass whole-pool orders
    to see past the quota). ``n_p`` draws the quota; ``max_checks`` limits the x axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, seqs in curves.items():
        tps = [np.cumsum(_labels(s)) for s in seqs if len(s)]
        if not tps:
            continue
        m = min(t.size for t in tps)
        m = m if max_checks is None else min(m, int(max_checks))
        mean = np.mean([t[:m] for t in tps], axis=0)
        ax.plot(np.arange(1, m + 1), mean, label=name)
    if n_p is not None:
        ax.axhline(n_p, color="grey", lw=0.8, ls="--", label=f"quota N_p = {n_p}")
    ax.set_xlabel("GIFs checked")
    ax.set_ylabel("positives found (mean over emotions, seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
