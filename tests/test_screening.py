"""Screening metrics (gifemo.eval.screening) against naive loops and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gifemo.eval.metrics import n_tilde, precision_at_recall
from gifemo.eval.screening import (
    checks_to_quota,
    normalised_loss,
    recall_curve,
    recall_curves_figure,
    seed_interval,
    work_saved,
    wss,
)


def naive_checks(labels, n_p):
    found = 0
    for j, y in enumerate(labels, start=1):
        found += bool(y)
        if found == n_p:
            return j
    return None


def naive_loss(labels):
    """ASReview's definition spelt out: areas under the TP curve of the actual, best and worst
    orders, by explicit loops."""
    labels = [bool(x) for x in labels]
    n, p = len(labels), sum(labels)

    def area(seq):
        tp, total = 0, 0
        for y in seq:
            tp += y
            total += tp
        return total

    best = area([True] * p + [False] * (n - p))
    worst = area([False] * (n - p) + [True] * p)
    return (best - area(labels)) / (best - worst)


@pytest.mark.parametrize("seed", range(5))
def test_checks_to_quota_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < rng.uniform(0.05, 0.6)
    for n_p in (1, 2, 5, 17, int(labels.sum()), int(labels.sum()) + 1):
        if n_p >= 1:
            assert checks_to_quota(labels, n_p) == naive_checks(labels, n_p)


def test_hand_computed_values():
    labels = [0, 1, 0, 1, 1, 0, 0, 0]  # N = 8, P = 3
    assert checks_to_quota(labels, 2) == 4
    assert checks_to_quota(labels, 4) is None
    # TP curve 0,1,1,2,3,3,3,3 → Σ = 16; best 1,2,3,3,3,3,3,3 = 21; worst = 6
    assert normalised_loss(labels) == pytest.approx((21 - 16) / (21 - 6))
    assert normalised_loss([1, 1, 0, 0]) == 0.0
    assert normalised_loss([0, 0, 1, 1]) == 1.0
    # WSS@95: ⌈0.95·3⌉ = 3 positives after 5 checks → (8 − 5)/8 − 0.05
    assert wss(labels, 0.95) == pytest.approx(3 / 8 - 0.05)
    x, r = recall_curve(labels)
    assert x.tolist() == list(range(1, 9))
    assert r.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1, 1])
    assert work_saved(75, 100) == pytest.approx(0.25)
    assert math.isnan(work_saved(float("nan"), 100))


@pytest.mark.parametrize("seed", range(4))
def test_loss_matches_naive_and_asreview_formula(seed):
    rng = np.random.default_rng(100 + seed)
    labels = rng.random(60) < 0.3
    n, p = labels.size, int(labels.sum())
    formula = (p * (n - (p - 1) / 2) - np.cumsum(labels).sum()) / (p * (n - p))  # DESIGN §9
    assert normalised_loss(labels) == pytest.approx(naive_loss(labels))
    assert normalised_loss(labels) == pytest.approx(formula)


def test_random_orders_average_wss_zero_and_loss_half():
    rng = np.random.default_rng(7)
    base = np.r_[np.ones(50, bool), np.zeros(450, bool)]
    w = [wss(rng.permutation(base)) for _ in range(400)]
    lo = [normalised_loss(rng.permutation(base)) for _ in range(400)]
    assert abs(np.mean(w)) < 0.01  # WSS is relative to a random order
    assert np.mean(lo) == pytest.approx(0.5, abs=0.01)


def test_quota_count_is_the_papers_n_tilde_for_a_fixed_ranking():
    """For a fixed ranking without ties, checks to the quota ⌈r·P⌉ = N_p/Precision(recall r)·
    ⌈r·P⌉/N_p: exactly the Ñ of eval.metrics at recall r = N_p/N_all."""
    rng = np.random.default_rng(3)
    positives = rng.random(4000) < 0.25
    scores = positives * 0.8 + rng.normal(size=4000)  # a decent, tie-free ranking
    r = 3000 / 50000
    need = math.ceil(r * positives.sum() - 1e-9)
    order = np.argsort(-scores, kind="stable")
    checks = checks_to_quota(positives[order], need)
    reported = n_tilde(precision_at_recall(scores, positives, r), n_p=3000)
    assert reported == pytest.approx(3000 * checks / need, rel=1e-12)


def test_seed_interval_against_scipy_t():
    from scipy import stats

    v = np.array([0.1, 0.2, 0.15, 0.3, 0.25])
    iv = seed_interval(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert (iv.low, iv.high) == pytest.approx((lo, hi))
    assert iv.excludes_zero()
    assert not seed_interval([-0.1, 0.1, 0.05]).excludes_zero()


def test_recall_curves_figure_draws_mean_tp(tmp_path):
    import matplotlib.image

    path = recall_curves_figure(
        {"static": [np.array([1, 0, 1, 1]), np.array([0, 1, 1, 0, 1])]}, tmp_path / "f.png", n_p=2
    )
    assert matplotlib.image.imread(path).shape[2] in (3, 4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="1-d"):
        checks_to_quota(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="n_p"):
        checks_to_quota([1, 0], 0)
    with pytest.raises(ValueError, match="recall"):
        wss([1, 0], 0)
