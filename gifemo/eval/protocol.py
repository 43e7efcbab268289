"""The paper's per-emotion test sets (§3.6, DESIGN §7).

For emotion i:

1. **Top tags** — among emotion i's positives (y > 25), count for each normalised tag the
   number of positive GIFs that carry it (once per GIF); drop the generic tags; keep the
   ``n_top_tags`` (10) most frequent. Ties in the count are broken alphabetically (sort key
   ``(−count, tag)``), so the choice never depends on the input order.
2. **Pool** P_i — every labelled GIF (positive or not) that carries at least one top tag.
3. **Test set** T_i — ``n_test = ⌊test_fraction · |P_i| + ½⌋`` GIFs of P_i drawn without
   replacement by ``numpy.random.Generator`` from ``SeedSequence(seed).spawn(t)[i]`` (one
   independent stream per emotion, so emotion i's draw does not depend on the other emotions).
4. **Training rows** of task i: every labelled GIF not in T_i, ``train_mask[:, i] = ~in T_i``.

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

from gifemo.data.tags import normalise_tag
from gifemo.emotions import EMOTIONS

GENERIC_TAGS: tuple[str, ...] = (
    "tv",
    "movies",
    "movie",
    "cartoons & comics",
    "cartoon",
    "anime",
    "reaction",
    "animals",
    "sports",
    "giphytrending",
    "disney",
)


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

    @property
    def n(self) -> int:
        return int(self.train_mask.shape[0])

    @property
    def test_mask(self) -> np.ndarray:
        """(n, t) bool, True where row n is in T_i."""
        return ~self.train_mask

    @property
    def training_rows(self) -> np.ndarray:
        """Rows in no emotion's test set (where the tag dictionary is fitted), sorted."""
        return np.flatnonzero(self.train_mask.all(axis=1))

    def summary(self) -> dict[str, object]:
        """JSON-friendly description (sizes and top tags per emotion)."""
        return {
            "seed": self.seed,
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


def make_protocol(
    tag_lists: Sequence[Iterable[str]],
    positives: np.ndarray,
    *,
    seed: int,
    test_fraction: float = 0.33,
    n_top_tags: int = 10,
    generic_tags: Iterable[str] = GENERIC_TAGS,
    emotions: Sequence[str] = EMOTIONS,
) -> EvalProtocol:
    """Build the per-emotion test sets of the labelled GIFs.

    tag_lists: n lists of tags (normalised here again, so raw tags work too);
    positives (n, t) bool (y > 25); seed: the config seed.
    """
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
    streams = np.random.SeedSequence(int(seed)).spawn(t)
    train_mask = np.ones((n, t), dtype=bool)
    tests, pools, tops, empty = [], [], [], []
    for i in range(t):
        top = top_tags(
            tag_lists, np.flatnonzero(positives[:, i]), n_top=n_top_tags, generic=generic
        )
        wanted = set(top)
        pool = np.array([r for r in range(n) if tag_sets[r] & wanted], dtype=np.int64)
        rng = np.random.Generator(np.random.PCG64(streams[i]))
        test = np.sort(rng.choice(pool, size=n_test_of(pool.size, test_fraction), replace=False))
        train_mask[test, i] = False
        tests.append(test.astype(np.int64))
        pools.append(pool)
        tops.append(top)
        if test.size == 0:
            empty.append(emotions[i])
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
    )
