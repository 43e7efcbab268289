"""The screening simulator: label a candidate pool in the order a strategy gives (issue 15).

Per emotion e, candidates are checked one at a time in the current order of e's queue until
``n_p`` positives have been found or the queue is empty. A check asks the :class:`Oracle`, the
only holder of the truth, which reveals that one (emotion, GIF) label. Strategies:

* ``unsorted`` — a random order per emotion (seeded), never changed;
* ``static`` — the recogniser trained on GIFGIF ranks each emotion's candidates once (the
  paper); ties keep the search order;
* ``active`` — the same start, then after every round in which each unfinished emotion made
  ``k`` new checks, the :class:`gifemo.active.reranker.Reranker` is called with every label
  revealed so far and the remaining ids of each unfinished emotion, exactly as the labelling
  tool calls it every ``rerank_every`` decisions, and the queues take the new order.

Nothing but revealed labels reaches a strategy: the rerankers see ids and the labels the oracle
has revealed; the features they score are fixed before screening starts.

The full order of each emotion (used by WSS@95 and the normalised loss, which need the whole
pool) is the checked prefix followed by the queue's order when the quota was met: beyond the
quota no more refits happen, so those two metrics of ``active`` describe "active until the
quota, then the last ranking".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gifemo.active.reranker import ActiveReranker, Reranker, StaticReranker, order_by_scores
from gifemo.active.simdata import ScreeningData
from gifemo.emotions import EMOTIONS
from gifemo.eval.screening import checks_to_quota, normalised_loss, wss


class Oracle:
    """Holds the hidden truth (m, t); :meth:`check` reveals one label and records it."""

    def __init__(self, truth: np.ndarray, ids: Sequence[str], emotions: Sequence[str] = EMOTIONS):
        self._truth = np.asarray(truth, dtype=bool)
        self._row = {str(g): j for j, g in enumerate(ids)}
        self._task = {e: i for i, e in enumerate(emotions)}
        self.revealed: dict[str, dict[str, bool]] = {e: {} for e in emotions}
        self.n_checks = 0

    def check(self, emotion: str, gif: str) -> bool:
        if gif in self.revealed[emotion]:
            raise RuntimeError(f"{gif} was already checked for {emotion}")
        value = bool(self._truth[self._row[gif], self._task[emotion]])
        self.revealed[emotion][gif] = value
        self.n_checks += 1
        return value

    def truth_of(self, emotion: str, ids: Sequence[str]) -> np.ndarray:
        """For scoring finished runs only (never called while a strategy is running)."""
        return self._truth[[self._row[g] for g in ids], self._task[emotion]]


@dataclass
class Run:
    """One strategy's screening of every emotion."""

    strategy: str
    checked: dict[str, list[str]]  # emotion → ids in check order
    labels: dict[str, np.ndarray]  # emotion → truth of the checks, in order
    full_order: dict[str, list[str]]  # checked prefix + the rest in the last order
    full_labels: dict[str, np.ndarray]  # truth along full_order (scored after the run)
    n_tilde: dict[str, float]  # checks to the quota (NaN: pool ran out first)
    wss95: dict[str, float]
    loss: dict[str, float]
    n_refits: int = 0
    refit_seconds: list[float] = field(default_factory=list)

    def mean_n_tilde(self) -> float:
        v = np.array(list(self.n_tilde.values()), dtype=float)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def screen(
    queues: Mapping[str, Sequence[str]],
    oracle: Oracle,
    n_p: int,
    *,
    reranker: Reranker | None = None,
    k: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[str]], list[float]]:
    """Check each emotion's queue until ``n_p`` positives (module docstring).

    ``reranker`` + ``k``: re-rank the remaining ids after every round of ``k`` checks per
    unfinished emotion. Returns (checked ids per emotion, final remaining order per emotion,
    seconds of each rerank call).
    """
    if reranker is not None and (k is None or k < 1):
        raise ValueError(f"active screening needs k >= 1 checks between re-rankings, got {k}")
    todo = {e: list(q) for e, q in queues.items()}
    checked: dict[str, list[str]] = {e: [] for e in queues}
    found = dict.fromkeys(queues, 0)
    seconds: list[float] = []
    while True:
        open_ = [e for e in todo if found[e] < n_p and todo[e]]
        if not open_:
            break
        for e in open_:
            budget = len(todo[e]) if reranker is None else int(k)  # type: ignore[arg-type]
            while budget and todo[e] and found[e] < n_p:
                g = todo[e].pop(0)
                checked[e].append(g)
                found[e] += oracle.check(e, g)
                budget -= 1
        still = {e: todo[e] for e in todo if found[e] < n_p and todo[e]}
        if reranker is not None and still:
            start = time.perf_counter()
            new = reranker.rerank({e: dict(v) for e, v in oracle.revealed.items()}, still)
            seconds.append(time.perf_counter() - start)
            for e, ids in new.items():
                if sorted(ids) != sorted(still[e]):
                    raise ValueError(f"reranker changed the set of remaining ids of {e}")
                todo[e] = list(ids)
    return checked, todo, seconds


def _finish(strategy: str, oracle: Oracle, checked: dict, rest: dict, n_p: int, **kw: Any) -> Run:
    labels, full, full_labels, nt, w, loss = {}, {}, {}, {}, {}, {}
    for e in checked:
        labels[e] = oracle.truth_of(e, checked[e])
        full[e] = checked[e] + rest[e]
        whole = full_labels[e] = oracle.truth_of(e, full[e])
        q = checks_to_quota(labels[e], n_p)
        nt[e] = float("nan") if q is None else float(q)
        w[e] = wss(whole, 0.95)
        loss[e] = normalised_loss(whole)
    return Run(strategy, checked, labels, full, full_labels, nt, w, loss, **kw)


def candidate_lists(data: ScreeningData) -> dict[str, list[str]]:
    """Each emotion's candidate ids in search order."""
    return {e: [data.pool_ids[j] for j in data.candidates[i]] for i, e in enumerate(data.emotions)}


def unsorted_queues(data: ScreeningData, seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng([seed, 1])
    return {
        e: [ids[j] for j in rng.permutation(len(ids))] for e, ids in candidate_lists(data).items()
    }


def static_queues(data: ScreeningData, scores: np.ndarray) -> dict[str, list[str]]:
    """Order each emotion's candidates by the pool scores (m, t), highest first."""
    out = {}
    for i, e in enumerate(data.emotions):
        rows = data.candidates[i]
        out[e] = order_by_scores([data.pool_ids[j] for j in rows], scores[rows, i])
    return out


def simulate(
    data: ScreeningData,
    strategy: str,
    *,
    estimator: Any = None,
    k: int = 10,
    seed: int = 0,
    warm_start: bool = True,
    label_weight: int = 1,
) -> Run:
    """Screen ``data`` with ``strategy`` ∈ {unsorted, static, active}.

    ``estimator``: a *fitted* estimator (static, active) trained on ``data.X_train``; active
    refits it in place (pass a copy to keep the original).
    """
    oracle = Oracle(data.truth, data.pool_ids, data.emotions)
    if strategy == "unsorted":
        checked, rest, _ = screen(unsorted_queues(data, seed), oracle, data.n_p)
        return _finish(strategy, oracle, checked, rest, data.n_p)
    if estimator is None:
        raise ValueError(f"strategy {strategy!r} needs a fitted estimator")
    queues = static_queues(data, np.asarray(estimator.predict(data.X_pool)))
    if strategy == "static":
        checked, rest, _ = screen(queues, oracle, data.n_p, reranker=None)
        return _finish(strategy, oracle, checked, rest, data.n_p)
    if strategy != "active":
        raise ValueError(f"unknown strategy {strategy!r}; expected unsorted, static or active")
    rr = ActiveReranker(
        estimator,
        data.X_train,
        data.Y_train,
        data.mask_train,
        data.pool_ids,
        data.X_pool,
        warm_start=warm_start,
        label_weight=label_weight,
        emotions=data.emotions,
    )
    checked, rest, secs = screen(queues, oracle, data.n_p, reranker=rr, k=k)
    return _finish(
        strategy, oracle, checked, rest, data.n_p, n_refits=rr.n_refits, refit_seconds=secs
    )


__all__ = [
    "Oracle",
    "Run",
    "StaticReranker",
    "candidate_lists",
    "screen",
    "simulate",
    "static_queues",
    "unsorted_queues",
]
