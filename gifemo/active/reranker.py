"""Active re-ranking: refit the recogniser on GIFGIF + the consensus labels so far, re-score
what is left (issue 15; the protocol is fixed in the labelling tool's interface).

**How binary consensus labels enter a model trained on continuous y = μ − 3σ.** A consensus
decision "GIF g shows emotion e: yes/no" becomes a training row of task e only (mask), with the
**mapped target** ȳ⁺_e (yes) or ȳ⁻_e (no): the mean of y over the GIFGIF training rows of task e
that are positive (y > 25) or not. Why:

* The solvers (:func:`gifemo.models.mtl.fit_mtl`) minimise one squared loss over all rows with
  exact, unweighted intercepts; mapped targets keep that objective — and its warm start, its
  preconditioner and clustered MTL's coupling — unchanged, and put the new rows on the same scale
  as GIFGIF's, so one decision weighs like one GIFGIF row and ρ keeps its meaning.
* The class-conditional mean is the least-squares surrogate of the unknown score: replacing a
  positive's unknown y by E[y | positive] is what minimises the expected squared error given
  the label. Least squares on class-mean targets is also a classical classifier (it is Fisher's
  discriminant direction for two classes), so the new rows push the ranking the right way.
* A classification loss (logistic, hinge) would need a second solver and a relative weight
  between two losses on different scales — a hyper-parameter nobody can tune while labelling.
* Only emotion e's entry of the row is set: the labeller judged e alone. Clustered MTL lets the
  other emotions of e's cluster borrow through W's shared structure, which helps emotions with
  few decisions so far.

The refit is warm-started from the previous W (``warm_start=True``), so each refit costs a
fraction of a cold fit. :class:`ActiveReranker` is thread-safe: refits are serialised by a
lock, and ``rerank`` returns new lists (the caller swaps its queue atomically).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gifemo.emotions import EMOTIONS, MU0


@runtime_checkable
class Reranker(Protocol):
    """What the labelling tool's ``active`` queue calls (see docs/active.md)."""

    def rerank(
        self,
        labels: Mapping[str, Mapping[str, bool]],
        remaining: Mapping[str, Sequence[str]],
    ) -> dict[str, list[str]]: ...


def class_mean_targets(Y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ȳ⁺ (t,), ȳ⁻ (t,)): mean y of each task's training positives (y > 25) / non-positives.

    A task without positives (or without negatives) falls back to 25 + 1 (or 25 − 1) so that the
    two targets still order a yes above a no. Entries outside ``mask`` are never read (they may
    be NaN, as :func:`gifemo.models.mtl.fit_mtl` allows).
    """
    Y, mask = np.asarray(Y, dtype=np.float64), np.asarray(mask, dtype=bool)
    pos = mask & (Y > MU0)
    neg = mask & ~(Y > MU0)
    with np.errstate(invalid="ignore", divide="ignore"):
        y_pos = np.where(pos.any(0), np.where(pos, Y, 0.0).sum(0) / pos.sum(0), MU0 + 1.0)
        y_neg = np.where(neg.any(0), np.where(neg, Y, 0.0).sum(0) / neg.sum(0), MU0 - 1.0)
    return y_pos, y_neg


def order_by_scores(ids: Sequence[str], scores: np.ndarray) -> list[str]:
    """``ids`` by decreasing score; ties keep their current order (a stable sort)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [ids[int(j)] for j in order]


class ActiveReranker:
    """Refit on training rows + consensus labels, then order each emotion's remaining ids.

    ``estimator``: a fitted estimator with ``fit(X, Y, mask, init=...)``/``predict`` (e.g.
    :class:`gifemo.models.estimators.MTLRegressor`; a ``k="auto"`` clustered MTL is refitted with
    the k it chose). ``X_train`` (n, d), ``Y_train`` (n, t), ``mask_train`` (n, t): the rows it
    was trained on. ``candidate_ids`` / ``X_candidates`` (m, d): the features of every GIF that
    may be labelled or ranked, already transformed like ``X_train``. ``targets``: (ȳ⁺, ȳ⁻) per
    task (default :func:`class_mean_targets` of the training rows).

    Counters for monitoring: ``n_refits``, ``last_refit_seconds``, ``version`` (incremented by
    each refit).
    """

    def __init__(
        self,
        estimator: Any,
        X_train: np.ndarray,
        Y_train: np.ndarray,
        mask_train: np.ndarray,
        candidate_ids: Sequence[str],
        X_candidates: np.ndarray,
        *,
        warm_start: bool = True,
        targets: tuple[np.ndarray, np.ndarray] | None = None,
        label_weight: int = 1,
        emotions: Sequence[str] = EMOTIONS,
    ) -> None:
        if isinstance(label_weight, bool) or int(label_weight) != label_weight or label_weight < 1:
            raise ValueError(f"label_weight must be an integer >= 1, got {label_weight!r}")
        self.label_weight = int(label_weight)
        self.X_train = np.asarray(X_train, dtype=np.float64)
        self.Y_train = np.asarray(Y_train, dtype=np.float64)
        self.mask_train = np.asarray(mask_train, dtype=bool)
        self.X_candidates = np.asarray(X_candidates, dtype=np.float64)
        t = len(emotions)
        if self.Y_train.shape != self.mask_train.shape or self.Y_train.shape[1:] != (t,):
            raise ValueError(
                f"Y_train {self.Y_train.shape} and mask_train {self.mask_train.shape} must be "
                f"(n, {t})"
            )
        if self.X_train.shape[0] != self.Y_train.shape[0]:
            raise ValueError(f"X_train {self.X_train.shape} vs Y_train {self.Y_train.shape}")
        if self.X_candidates.shape != (len(candidate_ids), self.X_train.shape[1]):
            raise ValueError(
                f"X_candidates must be ({len(candidate_ids)}, {self.X_train.shape[1]}) for "
                f"{len(candidate_ids)} candidate ids, got {self.X_candidates.shape}"
            )
        self.row_of = {str(g): j for j, g in enumerate(candidate_ids)}
        if len(self.row_of) != len(candidate_ids):
            raise ValueError("candidate_ids contain duplicates")
        self.emotions = tuple(emotions)
        self.index = {e: i for i, e in enumerate(self.emotions)}
        self.targets = (
            class_mean_targets(self.Y_train, self.mask_train) if targets is None else targets
        )
        self.estimator = estimator
        self.warm_start = bool(warm_start)
        if getattr(estimator, "penalty_params", {}).get("k") == "auto" and getattr(
            estimator, "k_", None
        ):
            estimator.set_params(k=estimator.k_)  # refits keep the k chosen on GIFGIF
        self._lock = threading.Lock()
        self._scores = np.asarray(estimator.predict(self.X_candidates), dtype=np.float64)
        self.n_refits = 0
        self.last_refit_seconds = 0.0
        self.version = 0

    # -- the protocol ------------------------------------------------------------------------
    def rerank(
        self,
        labels: Mapping[str, Mapping[str, bool]],
        remaining: Mapping[str, Sequence[str]],
    ) -> dict[str, list[str]]:
        """Refit with ``labels`` (emotion → {id: consensus positive?}) when there are any, then
        return each emotion's ``remaining`` ids highest predicted first."""
        with self._lock:
            if any(len(v) for v in labels.values()):
                self.refit(labels)
            scores = self._scores
        out: dict[str, list[str]] = {}
        for emotion, ids in remaining.items():
            i = self._task(emotion)
            out[emotion] = order_by_scores(list(ids), scores[self._rows(ids), i])
        return out

    # -- pieces ------------------------------------------------------------------------------
    def _task(self, emotion: str) -> int:
        if emotion not in self.index:
            raise KeyError(f"unknown emotion {emotion!r}; expected one of {self.emotions}")
        return self.index[emotion]

    def _rows(self, ids: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self.row_of[str(g)] for g in ids], dtype=np.int64)
        except KeyError as err:
            raise KeyError(
                f"GIF id {err.args[0]!r} has no features among the {len(self.row_of)} candidates"
            ) from None

    def training_problem(
        self, labels: Mapping[str, Mapping[str, bool]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, Y, mask) = training rows stacked with one row per labelled GIF (module docstring)."""
        y_pos, y_neg = self.targets
        gifs = sorted({str(g) for per in labels.values() for g in per})
        where = {g: j for j, g in enumerate(gifs)}
        t = len(self.emotions)
        Y_new = np.zeros((len(gifs), t))
        M_new = np.zeros((len(gifs), t), dtype=bool)
        for emotion, per in labels.items():
            i = self._task(emotion)
            for g, positive in per.items():
                j = where[str(g)]
                Y_new[j, i] = y_pos[i] if positive else y_neg[i]
                M_new[j, i] = True
        X_new = self.X_candidates[self._rows(gifs)] if gifs else self.X_candidates[:0]
        if self.label_weight > 1:  # integer weight w ≡ the row repeated w times (exact)
            X_new, Y_new, M_new = (
                np.repeat(a, self.label_weight, axis=0) for a in (X_new, Y_new, M_new)
            )
        return (
            np.concatenate([self.X_train, X_new]),
            np.concatenate([self.Y_train, Y_new]),
            np.concatenate([self.mask_train, M_new]),
        )

    def refit(self, labels: Mapping[str, Mapping[str, bool]]) -> None:
        """Refit on training rows + ``labels`` (warm-started) and re-score every candidate."""
        start = time.perf_counter()
        X, Y, mask = self.training_problem(labels)
        init = self.estimator if self.warm_start else None
        self.estimator.fit(X, Y, mask, init=init)
        self._scores = np.asarray(self.estimator.predict(self.X_candidates), dtype=np.float64)
        self.n_refits += 1
        self.version += 1
        self.last_refit_seconds = time.perf_counter() - start

    def scores(self, emotion: str, ids: Sequence[str]) -> np.ndarray:
        """Current predicted scores of ``ids`` for ``emotion``."""
        return self._scores[self._rows(ids), self._task(emotion)]


class StaticReranker:
    """The paper's ``static`` strategy as a Reranker: the order never changes."""

    def rerank(
        self,
        labels: Mapping[str, Mapping[str, bool]],
        remaining: Mapping[str, Sequence[str]],
    ) -> dict[str, list[str]]:
        del labels
        return {e: list(ids) for e, ids in remaining.items()}
