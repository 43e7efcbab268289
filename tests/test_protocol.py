"""Per-emotion test sets on a hand-made dataset: sizes, rules (naive loop), seeds, tag ties."""

from __future__ import annotations

import numpy as np
import pytest

from gifemo.emotions import EMOTIONS
from gifemo.eval.protocol import GENERIC_TAGS, make_protocol, n_test_of, top_tags

T = len(EMOTIONS)


def _random_dataset(seed=0, n=120):
    rng = np.random.default_rng(seed)
    vocab = [f"tag{j}" for j in range(25)] + ["TV", " Reaction ", "cartoons & comics"]
    tags = [list(rng.choice(vocab, size=rng.integers(0, 5), replace=False)) for _ in range(n)]
    pos = rng.random((n, T)) < 0.2
    return tags, pos


def test_hand_made_three_emotions():
    emotions = ("a", "b", "c")
    tags = [
        ["cat", "TV"],  # 0
        ["cat"],  # 1
        ["dog", "tv"],  # 2
        ["dog"],  # 3
        ["bird"],  # 4
        ["tv"],  # 5
        ["cat", "dog"],  # 6
        [],  # 7
    ]
    pos = np.zeros((8, 3), bool)
    pos[[0, 1], 0] = True  # a: positives carry cat (2), tv (generic)
    pos[[2, 6], 1] = True  # b: dog 2, cat 1 -> with n_top 1: dog
    pos[[5], 2] = True  # c: only the generic tag -> empty pool
    with pytest.warns(RuntimeWarning, match="'c'"):
        pr = make_protocol(tags, pos, seed=3, test_fraction=0.5, n_top_tags=1, emotions=emotions)
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
    pr = make_protocol(tags, pos, seed=7)
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
    a = make_protocol(tags, pos, seed=11)
    b = make_protocol(tags, pos, seed=11)
    c = make_protocol(tags, pos, seed=12)
    for i in range(T):
        np.testing.assert_array_equal(a.test_rows[i], b.test_rows[i])
    assert any(not np.array_equal(a.test_rows[i], c.test_rows[i]) for i in range(T))
    # changing another emotion's positives leaves emotion 0's draw alone
    pos2 = pos.copy()
    pos2[:, 5] = ~pos2[:, 5]
    d = make_protocol(tags, pos2, seed=11)
    np.testing.assert_array_equal(a.test_rows[0], d.test_rows[0])


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
