"""The paper's per-emotion test sets (§3.6, DESIGN §7).

For emotion i:

1. **Top tags** — among emotion i's positives (y > 25), count for each normalised tag the
   number of positive GIFs that carry it (once per GIF); drop the generic tags; keep the
   ``n_top_tags`` (10) most frequent. Ties in the count are broken alphabetically (sort key
   ``(−count, tag)``), so the choice never depends on the input order.
2. **Pool** P_i — every labelled GIF (positive or not) that carries at least one top tag.
3. **Test sets and training rows** — by one of two split rules (``split=``):

   * ``"shared"`` (the default, leak-free) — one test subset T of the union U = ∪_i P_i:
     ``⌊test_fraction · |U| + ½⌋`` GIFs of U drawn without replacement by
     ``numpy.random.Generator(PCG64(SeedSequence(seed)))``; emotion i's test set is
     T_i = P_i ∩ T, and **every** task trains on the labelled GIFs outside T
     (``train_mask[:, i] = ~in T``). No test GIF is in any task's training rows, so nothing
     of T reaches a model through its sibling tasks (multi-task penalties couple the tasks),
     the CV folds or the feature normaliser's fit (both use the training rows).
   * ``"per_emotion"`` (gifemo's earlier rule, the paper's text read literally) — T_i =
     ``⌊test_fraction · |P_i| + ½⌋`` GIFs of P_i drawn from ``SeedSequence(seed).spawn(t)[i]``
     (one independent stream per emotion), and task i trains on every labelled GIF not in T_i.
     Task j then trains on GIFs of emotion i's test set (i ≠ j): a multi-task model (trace
     norm, CMTL) sees T_i through task j's labels, a single-task one (lasso) does not, which
     favours the multi-task models. Kept to reproduce earlier runs.

   In both, ``test_fraction`` of each pool is held out (exactly under ``per_emotion``, in
   expectation under ``shared``).

An emotion without positives (or whose positives carry only generic tags) has no top tag, an
empty pool and an empty test set (a warning names it); its metrics are then NaN
(:mod:`gifemo.eval.metrics`). Row indices refer to the arrays handed in (the labelled GIFs).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gifemo.data.tags import GENERIC_TAGS, normalise_tag
from gifemo.emotions import EMOTIONS

SPLITS: tuple[str, ...] = ("shared", "per_emotion")


@dataclass(frozen=True)
class EvalProtocol:
    """Test sets and training masks of the t tasks (t = len(emotions)).

    test_rows[i]: sorted int64 row indices of T_i; pools[i]: sorted rows of P_i;
    top_tags[i]: emotion i's top tags, most frequent first; train_mask (n, t) bool.
    """

    test_rows: tuple[np.ndarray, ...]
    pools: tuple[np.ndarray, ...]
    top_tags: tuple[tuple[str, ...], ...]
    train_mask: np.ndarray  # (n, t) bool
    emotions: tuple[str, ...]
    seed: int
    test_fraction: float
    split: str = "shared"

    @property
    def n(self) -> int:
        return int(self.train_mask.shape[0])

    @property
    def test_mask(self) -> np.ndarray:
        """(n, t) bool, True where row n is in T_i. (Not ``~train_mask``: a row outside
        pool_i, or in the shared T of another task, is in neither.)"""
        mask = np.zeros_like(self.train_mask)
        for i, rows in enumerate(self.test_rows):
            mask[rows, i] = True
        return mask

    @property
    def training_rows(self) -> np.ndarray:
        """Rows in no emotion's test set, sorted (where the feature normaliser is fitted; under
        the ``shared`` split these are exactly every task's training rows)."""
        return np.flatnonzero(self.train_mask.all(axis=1))

    @property
    def test_union(self) -> np.ndarray:
        """Rows in at least one emotion's test set (T under the ``shared`` split), sorted."""
        return np.flatnonzero(~self.train_mask.all(axis=1))

    def summary(self) -> dict[str, object]:
        """JSON-friendly description (sizes and top tags per emotion)."""
        return {
            "seed": self.seed,
            "split": self.split,
            "test_fraction": self.test_fraction,
            "n": self.n,
            "n_training_rows": int(self.training_rows.size),
            "emotions": {
                e: {
                    "pool": int(self.pools[i].size),
                    "test": int(self.test_rows[i].size),
                    "top_tags": list(self.top_tags[i]),
                }
                for i, e in enumerate(self.emotions)
            },
        }


def top_tags(
    tag_lists: Sequence[Iterable[str]],
    rows: np.ndarray,
    *,
    n_top: int = 10,
    generic: Iterable[str] = GENERIC_TAGS,
) -> tuple[str, ...]:
    """The ``n_top`` most frequent non-generic tags among ``rows`` (ties alphabetical)."""
    skip = {normalise_tag(g) for g in generic}
    counts: Counter[str] = Counter()
    for r in rows:
        counts.update({normalise_tag(t) for t in tag_lists[int(r)]} - skip - {""})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(tag for tag, _ in ranked[:n_top])


def n_test_of(pool_size: int, test_fraction: float) -> int:
    """Test-set size ⌊f·|P| + ½⌋ (round half up)."""
    return math.floor(test_fraction * pool_size + 0.5)


def split_shared(
    pools: Sequence[np.ndarray], n: int, *, test_fraction: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The leak-free rule: one test subset T of the pools' union, T_i = P_i ∩ T.

    pools: t sorted int64 row arrays; n: number of rows. Returns (test rows per task,
    train_mask (n, t) bool with ``train_mask[:, i] = ~in T`` for every i).
    """
    union = np.unique(np.concatenate([np.zeros(0, np.int64), *pools])).astype(np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    test = np.sort(rng.choice(union, size=n_test_of(union.size, test_fraction), replace=False))
    in_test = np.zeros(n, dtype=bool)
    in_test[test] = True
    tests = [p[in_test[p]] for p in (np.asarray(p, dtype=np.int64) for p in pools)]
    train_mask = np.repeat(~in_test[:, None], len(pools), axis=1)
    return tests, train_mask


def split_per_emotion(
    pools: Sequence[np.ndarray], n: int, *, test_fraction: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The earlier rule: T_i = ⌊f·|P_i| + ½⌋ rows of P_i (stream i of ``SeedSequence(seed)``),
    task i trains on every row not in T_i. Same returns as :func:`split_shared`."""
    streams = np.random.SeedSequence(int(seed)).spawn(len(pools))
    train_mask = np.ones((n, len(pools)), dtype=bool)
    tests = []
    for i, pool in enumerate(pools):
        rng = np.random.Generator(np.random.PCG64(streams[i]))
        test = np.sort(rng.choice(pool, size=n_test_of(pool.size, test_fraction), replace=False))
        train_mask[test, i] = False
        tests.append(test.astype(np.int64))
    return tests, train_mask


def make_protocol(
    tag_lists: Sequence[Iterable[str]],
    positives: np.ndarray,
    *,
    seed: int,
    test_fraction: float = 0.33,
    n_top_tags: int = 10,
    generic_tags: Iterable[str] = GENERIC_TAGS,
    emotions: Sequence[str] = EMOTIONS,
    split: str = "shared",
) -> EvalProtocol:
    """Build the per-emotion test sets of the labelled GIFs.

    tag_lists: n lists of tags (normalised here again, so raw tags work too);
    positives (n, t) bool (y > 25); seed: the config seed; split: ``"shared"`` (leak-free,
    default) or ``"per_emotion"`` (see the module docstring).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    positives = np.asarray(positives)
    n, t = len(tag_lists), len(emotions)
    if positives.shape != (n, t) or positives.dtype != bool:
        raise ValueError(
            f"positives must be a ({n}, {t}) bool array matching {n} tag lists, "
            f"got {positives.shape} {positives.dtype}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    generic = tuple(generic_tags)
    tag_sets = [{normalise_tag(x) for x in tags} for tags in tag_lists]
    pools, tops = [], []
    for i in range(t):
        top = top_tags(
            tag_lists, np.flatnonzero(positives[:, i]), n_top=n_top_tags, generic=generic
        )
        wanted = set(top)
        pools.append(np.array([r for r in range(n) if tag_sets[r] & wanted], dtype=np.int64))
        tops.append(top)
    rule = split_shared if split == "shared" else split_per_emotion
    tests, train_mask = rule(pools, n, test_fraction=test_fraction, seed=seed)
    empty = [emotions[i] for i in range(t) if tests[i].size == 0]
    if empty:
        warnings.warn(
            f"empty test set for {empty} (no positive carries a non-generic tag, or the pool is "
            f"too small); their metrics will be NaN",
            RuntimeWarning,
            stacklevel=2,
        )
    return EvalProtocol(
        test_rows=tuple(tests),
        pools=tuple(pools),
        top_tags=tuple(tops),
        train_mask=train_mask,
        emotions=tuple(emotions),
        seed=int(seed),
        test_fraction=float(test_fraction),
        split=split,
    )
