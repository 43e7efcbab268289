"""Per-emotion test sets on a hand-made dataset: sizes, both split rules (naive loops), no test
GIF in any training row (shared rule), seeds, tag ties."""

from __future__ import annotations

import numpy as np
import pytest

from gifemo.emotions import EMOTIONS
from gifemo.eval.cv import fold_ids
from gifemo.eval.protocol import GENERIC_TAGS, make_protocol, n_test_of, top_tags

T = len(EMOTIONS)


def _random_dataset(seed=0, n=120):
    rng = np.random.default_rng(seed)
    vocab = [f"tag{j}" for j in range(25)] + ["TV", " Reaction ", "cartoons & comics"]
    tags = [list(rng.choice(vocab, size=rng.integers(0, 5), replace=False)) for _ in range(n)]
    pos = rng.random((n, T)) < 0.2
    return tags, pos


HAND_TAGS = [
    ["cat", "TV"],  # 0
    ["cat"],  # 1
    ["dog", "tv"],  # 2
    ["dog"],  # 3
    ["bird"],  # 4
    ["tv"],  # 5
    ["cat", "dog"],  # 6
    [],  # 7
]


def test_hand_made_three_emotions_shared_split():
    pos = np.zeros((8, 3), bool)
    pos[[0, 1], 0] = True  # a: top tag cat -> pool 0, 1, 6
    pos[[2, 6], 1] = True  # b: top tag dog -> pool 2, 3, 6
    pos[[5], 2] = True  # c: only the generic tag -> empty pool
    with pytest.warns(RuntimeWarning, match="'c'"):
        pr = make_protocol(
            HAND_TAGS, pos, seed=3, test_fraction=0.5, n_top_tags=1, emotions=("a", "b", "c")
        )
    assert pr.split == "shared"
    # union of the pools {0, 1, 2, 3, 6}: T has floor(0.5 * 5 + .5) = 3 of them
    T = set(pr.test_union.tolist())
    assert len(T) == 3 and T <= {0, 1, 2, 3, 6}
    assert pr.test_rows[0].tolist() == sorted(T & {0, 1, 6})
    assert pr.test_rows[1].tolist() == sorted(T & {2, 3, 6})
    assert pr.test_rows[2].size == 0
    for i in range(3):  # every task trains on exactly the rows outside T
        assert set(np.flatnonzero(pr.train_mask[:, i]).tolist()) == set(range(8)) - T
        assert np.flatnonzero(pr.test_mask[:, i]).tolist() == pr.test_rows[i].tolist()  # T_i
    assert set(pr.training_rows.tolist()) == set(range(8)) - T
    assert pr.summary()["split"] == "shared"


def test_hand_made_three_emotions_per_emotion_split():
    emotions = ("a", "b", "c")
    tags = HAND_TAGS
    pos = np.zeros((8, 3), bool)
    pos[[0, 1], 0] = True  # a: positives carry cat (2), tv (generic)
    pos[[2, 6], 1] = True  # b: dog 2, cat 1 -> with n_top 1: dog
    pos[[5], 2] = True  # c: only the generic tag -> empty pool
    with pytest.warns(RuntimeWarning, match="'c'"):
        pr = make_protocol(
            tags,
            pos,
            seed=3,
            test_fraction=0.5,
            n_top_tags=1,
            emotions=emotions,
            split="per_emotion",
        )
    assert pr.top_tags == (("cat",), ("dog",), ())
    np.testing.assert_array_equal(pr.pools[0], [0, 1, 6])
    np.testing.assert_array_equal(pr.pools[1], [2, 3, 6])
    assert pr.pools[2].size == 0 and pr.test_rows[2].size == 0
    assert [r.size for r in pr.test_rows] == [2, 2, 0]  # floor(1.5 + .5) = 2
    for i in range(3):
        assert set(pr.test_rows[i]) <= set(pr.pools[i])
        np.testing.assert_array_equal(~pr.train_mask[:, i], np.isin(np.arange(8), pr.test_rows[i]))
    assert set(pr.training_rows) == set(range(8)) - set(pr.test_rows[0]) - set(pr.test_rows[1])


def test_tag_ties_are_alphabetical_and_order_free():
    tags = [["zeta", "alpha"], ["mid", "zeta"], ["alpha", "mid"], ["beta"]]
    rows = np.arange(4)
    # zeta 2, alpha 2, mid 2, beta 1 -> ties broken alphabetically
    assert top_tags(tags, rows, n_top=2) == ("alpha", "mid")
    assert top_tags(tags[::-1], rows, n_top=2) == ("alpha", "mid")
    assert top_tags([["Movie", "x"], ["movie"]], np.arange(2), n_top=5) == ("x",)


def test_rules_against_naive_loop():
    tags, pos = _random_dataset()
    pr = make_protocol(tags, pos, seed=7, split="per_emotion")
    generic = {g.strip().lower() for g in GENERIC_TAGS}
    n = len(tags)
    for i in range(T):
        counts: dict[str, int] = {}
        for r in range(n):
            if pos[r, i]:
                for tag in {x.strip().lower() for x in tags[r]}:
                    if tag not in generic:
                        counts[tag] = counts.get(tag, 0) + 1
        best = sorted(counts, key=lambda k: (-counts[k], k))[:10]
        assert list(pr.top_tags[i]) == best
        pool = [r for r in range(n) if any(x.strip().lower() in best for x in tags[r])]
        assert pr.pools[i].tolist() == pool
        assert len(pr.test_rows[i]) == int(np.floor(0.33 * len(pool) + 0.5))
        assert len(set(pr.test_rows[i].tolist())) == len(pr.test_rows[i])
        assert set(pr.test_rows[i].tolist()) <= set(pool)
        for r in range(n):
            assert pr.train_mask[r, i] == (r not in pr.test_rows[i])
    s = pr.summary()
    assert s["emotions"]["anger"]["test"] == len(pr.test_rows[1])


def test_seed_determinism_and_independence():
    tags, pos = _random_dataset(1)
    a = make_protocol(tags, pos, seed=11, split="per_emotion")
    b = make_protocol(tags, pos, seed=11, split="per_emotion")
    c = make_protocol(tags, pos, seed=12, split="per_emotion")
    for i in range(T):
        np.testing.assert_array_equal(a.test_rows[i], b.test_rows[i])
    assert any(not np.array_equal(a.test_rows[i], c.test_rows[i]) for i in range(T))
    # changing another emotion's positives leaves emotion 0's draw alone
    pos2 = pos.copy()
    pos2[:, 5] = ~pos2[:, 5]
    d = make_protocol(tags, pos2, seed=11, split="per_emotion")
    np.testing.assert_array_equal(a.test_rows[0], d.test_rows[0])


def test_shared_split_against_naive_loop_and_leak_free():
    """T is ⌊0.33·|U| + ½⌋ distinct rows of the pools' union U; T_i = P_i ∩ T; no row of T is a
    training row of any task, nor in any CV fold; the old rule does leak (its contrast)."""
    tags, pos = _random_dataset(2, n=300)
    pr = make_protocol(tags, pos, seed=5)
    n = len(tags)
    union = sorted({int(r) for p in pr.pools for r in p})
    T = pr.test_union.tolist()
    assert len(T) == int(np.floor(0.33 * len(union) + 0.5)) and set(T) <= set(union)
    for i in range(len(EMOTIONS)):
        assert pr.test_rows[i].tolist() == [r for r in pr.pools[i].tolist() if r in set(T)]
        for r in range(n):
            assert pr.train_mask[r, i] == (r not in set(T))
    folds = fold_ids(pr.train_mask, n_folds=5, seed=0)
    assert (folds[T] == -1).all() and (folds[pr.training_rows] >= 0).all()
    # each emotion still gets about test_fraction of its pool
    share = sum(t.size for t in pr.test_rows) / sum(p.size for p in pr.pools)
    assert 0.25 < share < 0.41
    # seeded: same seed same T, another seed another T
    assert make_protocol(tags, pos, seed=5).test_union.tolist() == T
    assert make_protocol(tags, pos, seed=6).test_union.tolist() != T
    # the earlier rule trains task j on GIFs of emotion i's test set
    old = make_protocol(tags, pos, seed=5, split="per_emotion")
    leaked = [
        (i, j) for i in range(17) for j in range(17) if old.train_mask[old.test_rows[i], j].any()
    ]
    assert leaked and all(i != j for i, j in leaked)


@pytest.mark.parametrize(
    ("size", "frac", "want"),
    [(0, 0.33, 0), (3, 0.33, 1), (100, 0.33, 33), (50, 0.33, 17), (1, 0.33, 0)],
)
def test_n_test(size, frac, want):
    assert n_test_of(size, frac) == want


def test_bad_input():
    tags, pos = _random_dataset()
    with pytest.raises(ValueError, match=r"\(120, 17\) bool"):
        make_protocol(tags, pos[:, :3], seed=0)
    with pytest.raises(ValueError, match="test_fraction"):
        make_protocol(tags, pos, seed=0, test_fraction=1.5)
    with pytest.raises(ValueError, match=r"split must be one of \('shared', 'per_emotion'\)"):
        make_protocol(tags, pos, seed=0, split="random")
