"""Seeded random splits of GIFs: the hold-out of the SVM baseline and the fine-tuning splits.

(The paper's per-emotion test sets of the regression protocol are :mod:`gifemo.eval.protocol`;
the K folds of cross-validation are :mod:`gifemo.eval.cv`.)
"""

from __future__ import annotations

import numpy as np


def holdout_split(
    n: int, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n): (train indices, test indices), sorted; test ⌈f·n⌉ rows."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    n_test = int(np.ceil(test_fraction * n))
    if n_test >= n:
        raise ValueError(f"{n} GIFs are too few for a {test_fraction:.0%} hold-out")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_indices(
    n: int, *, test_fraction: float, val_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Seeded disjoint train / val / test indices of range(n): test = ``test_fraction`` of all,
    val = ``val_fraction`` of the rest (two :func:`holdout_split` draws, seeds ``seed``, ``seed+1``)."""
    rest, test = holdout_split(n, test_fraction=test_fraction, seed=seed)
    tr, va = holdout_split(len(rest), test_fraction=val_fraction, seed=seed + 1)
    return {"train": rest[tr], "val": rest[va], "test": test}
