"""5-fold cross-validation and grid search over the tasks' training rows (DESIGN §7).

Folds are drawn over **rows** (GIFs), not per task: every row that trains at least one task
(``train_mask.any(1)``) is shuffled by ``numpy.random.default_rng(seed)`` and row number j of
the shuffled order goes to fold ``j mod n_folds``. For fold f, task i fits on
``train_mask[:, i] & (fold != f)`` and is validated on ``train_mask[:, i] & (fold == f)``, so
test sets are never touched and every task's mask is respected.

**Score** (what sweeps optimise, logged as ``cv/score``): for each fold, the mean over emotions
of the validation AUC (average precision, :func:`gifemo.eval.metrics.average_precision`) of the
estimator's scores against the validation positives ``Y > MU0``; emotions without a validation
positive are left out of that mean; the CV score is the mean over folds.

**Grid** — ``param_grid`` maps a parameter name (as accepted by the estimator's ``set_params``)
to a list of values or a scalar (held fixed); every combination is cross-validated and the best
mean score wins (first in grid order on ties). Numeric lists are visited from the largest value
down — strong regularisation first — and, when the estimator supports it
(``estimator.warm_start_ok``), each fit starts from the previous fit on the same fold (a
regularisation path). The problems are convex, so the start changes the cost, not the answer.
The chosen configuration is then **refitted on all training rows** (``train_mask``).

**Nothing to choose** — a grid of one configuration (e.g. the GP, whose kernel
hyper-parameters come from the marginal likelihood, or the unsorted baseline) is fitted once on
all training rows without cross-validation (K fits that choose nothing cost ~500 s each for the
GP at GIFGIF size); its ``cv/score`` is NaN and ``validated`` False. ``validate_single=True``
cross-validates it anyway (fast_dev_run does, to exercise the CV path).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gifemo.emotions import MU0
from gifemo.eval.metrics import average_precision


class Estimator(Protocol):
    """The sklearn-style interface of :mod:`gifemo.models.estimators`."""

    def fit(self, X: np.ndarray, Y: np.ndarray, mask: np.ndarray, **kw: Any) -> Estimator: ...
    def predict(self, X: np.ndarray) -> np.ndarray: ...
    def get_params(self) -> dict[str, Any]: ...
    def set_params(self, **params: Any) -> Estimator: ...


def clone(estimator: Estimator, **params: Any) -> Estimator:
    """A fresh, unfitted estimator with the same parameters (updated by ``params``)."""
    return type(estimator)(**{**estimator.get_params(), **params})  # type: ignore[call-arg]


def fold_ids(train_mask: np.ndarray, *, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n,) int fold of each row; −1 for rows that train no task."""
    train_mask = np.asarray(train_mask, dtype=bool)
    rows = np.flatnonzero(train_mask.any(axis=1))
    if n_folds < 2 or rows.size < n_folds:
        raise ValueError(
            f"need n_folds >= 2 and at least n_folds training rows, got {n_folds} / {rows.size}"
        )
    folds = np.full(train_mask.shape[0], -1, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(rows)] = np.arange(rows.size) % n_folds
    return folds


def validation_score(scores: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> float:
    """Mean over tasks of the AP of ``scores[mask[:, i], i]`` vs ``Y > MU0`` (NaN tasks skipped)."""
    aps = []
    for i in range(Y.shape[1]):
        rows = mask[:, i]
        pos = Y[rows, i] > MU0
        if pos.any():
            aps.append(average_precision(scores[rows, i], pos))
    return float(np.mean(aps)) if aps else math.nan


def expand_grid(param_grid: Mapping[str, Any], *, descending: bool = True) -> list[dict[str, Any]]:
    """All combinations; scalars are fixed, lists are axes (numeric ones sorted high → low)."""
    axes = []
    for name, values in param_grid.items():
        vals = (
            list(values)
            if isinstance(values, Sequence) and not isinstance(values, str)
            else [values]
        )
        if not vals:
            raise ValueError(f"param_grid[{name!r}] is an empty list")
        if descending and all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            vals = sorted(vals, reverse=True)
        axes.append([(name, v) for v in vals])
    return [dict(combo) for combo in itertools.product(*axes)]


@dataclass
class CVResult:
    """Grid-search outcome. ``scores`` is (n_configs, n_folds); ``estimator`` is the refit."""

    params: list[dict[str, Any]]
    scores: np.ndarray
    best_index: int
    estimator: Estimator | None
    seconds: float
    fold: np.ndarray = field(repr=False)
    validated: bool = True  # False: one configuration, fitted without CV (scores are NaN)

    @property
    def mean_scores(self) -> np.ndarray:
        return np.array([_nanmean(s) for s in self.scores])

    @property
    def best_params(self) -> dict[str, Any]:
        return self.params[self.best_index]

    @property
    def best_score(self) -> float:
        """The best configuration's mean fold score; NaN when unvalidated or when no fold
        scored (no validation positive anywhere): a sweep then records a failed trial."""
        return _finite_or_nan(self.mean_scores[self.best_index]) if self.validated else math.nan

    def to_metrics(self, prefix: str = "cv") -> dict[str, float]:
        """``cv/score`` (best mean), ``cv/score_std`` (over folds), ``cv/best/<param>`` (numeric)."""
        out = {
            f"{prefix}/score": self.best_score,
            f"{prefix}/score_std": float(np.nanstd(self.scores[self.best_index]))
            if self.validated
            else math.nan,
            f"{prefix}/n_configs": float(len(self.params)),
            f"{prefix}/seconds": self.seconds,
        }
        for k, v in self.best_params.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[f"{prefix}/best/{k}"] = float(v)
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per configuration: its parameters, mean and per-fold scores."""
        means = self.mean_scores if self.validated else np.full(len(self.params), math.nan)
        return [
            {**p, "cv_score": _finite_or_nan(m), "fold_scores": [float(x) for x in s]}
            for p, m, s in zip(self.params, means, self.scores)
        ]


def _nanmean(a: np.ndarray) -> float:
    """Mean of the finite values; −inf when there is none (ranks last in the selection)."""
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else -math.inf


def _finite_or_nan(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def grid_search(
    estimator: Estimator,
    X: np.ndarray,
    Y: np.ndarray,
    train_mask: np.ndarray,
    *,
    param_grid: Mapping[str, Any] | None = None,
    n_folds: int = 5,
    seed: int = 0,
    refit: bool = True,
    warm_start: bool = True,
    log: Any = None,
    validate_single: bool = False,
) -> CVResult:
    """Cross-validate every configuration of ``param_grid`` on the training rows and refit.

    X (n, d) features; Y (n, t) scores y = μ − 3σ; train_mask (n, t) bool (the protocol's).
    ``log``: optional callable receiving one progress string per configuration.
    """
    X, Y = np.asarray(X), np.asarray(Y, dtype=np.float64)
    train_mask = np.asarray(train_mask, dtype=bool)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or train_mask.shape != Y.shape:
        raise ValueError(f"X {X.shape}, Y {Y.shape}, train_mask {train_mask.shape} do not match")
    t0 = time.perf_counter()
    configs = expand_grid(param_grid or {}, descending=warm_start)
    fold = fold_ids(train_mask, n_folds=n_folds, seed=seed)
    if len(configs) == 1 and not validate_single:  # nothing to choose: no CV
        if log is not None:
            log(f"one configuration {configs[0]}: fitted on all training rows without CV")
        final = clone(estimator, **configs[0]).fit(X, Y, train_mask) if refit else None
        nan = np.full((1, n_folds), np.nan)
        return CVResult(configs, nan, 0, final, time.perf_counter() - t0, fold, validated=False)
    use_init = warm_start and getattr(estimator, "warm_start_ok", False)
    scores = np.full((len(configs), n_folds), np.nan)
    previous: list[Estimator | None] = [None] * n_folds
    for c, params in enumerate(configs):
        for f in range(n_folds):
            fit_mask = train_mask & (fold != f)[:, None]
            val_mask = train_mask & (fold == f)[:, None]
            est = clone(estimator, **params)
            kw = {"init": previous[f]} if use_init and previous[f] is not None else {}
            est.fit(X, Y, fit_mask, **kw)
            scores[c, f] = validation_score(est.predict(X), Y, val_mask)
            previous[f] = est
        if log is not None:
            log(f"cv {c + 1}/{len(configs)} {params}: {_nanmean(scores[c]):.4f}")
    means = np.array([_nanmean(s) for s in scores])
    best = int(np.argmax(means))
    final = None
    if refit:
        final = clone(estimator, **configs[best]).fit(X, Y, train_mask)
    return CVResult(configs, scores, best, final, time.perf_counter() - t0, fold)
