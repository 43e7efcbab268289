"""Ranking metrics against scikit-learn, torchmetrics and a naive loop (ties, no positives)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from sklearn.metrics import precision_recall_curve as sk_pr_curve
from torchmetrics.functional.classification import binary_precision_recall_curve

from gifemo.emotions import EMOTIONS
from gifemo.eval import metrics as M


def _cases():
    rng = np.random.default_rng(0)
    out = [
        (np.array([0.9, 0.8, 0.8, 0.8, 0.5, 0.3, 0.3, 0.1]), np.array([1, 0, 1, 1, 0, 1, 0, 0])),
        (np.ones(6), np.array([0, 1, 0, 0, 1, 0])),  # every score tied
        (np.arange(5.0), np.array([1, 1, 1, 1, 1])),  # all positive
        (np.array([3.0, 2.0, 1.0]), np.array([0, 0, 1])),  # worst ranking
    ]
    for n in (7, 40, 300):
        s = rng.integers(0, 6, n).astype(float)  # many ties
        p = rng.random(n) < 0.3
        p[0] = True
        out.append((s, p))
        out.append((rng.normal(size=n), p))
    return out


def _naive_cuts(s, p):
    """(precision, recall) at each distinct threshold, high to low, by a plain loop."""
    pts = []
    for tau in sorted(set(s.tolist()), reverse=True):
        sel = [i for i in range(len(s)) if s[i] >= tau]
        tp = sum(bool(p[i]) for i in sel)
        pts.append((tp / len(sel), tp / sum(bool(x) for x in p), tp))
    return pts


@pytest.mark.parametrize("case", range(len(_cases())))
def test_curve_and_ap_match_sklearn_and_torchmetrics(case):
    s, p = _cases()[case]
    prec, rec, thr = M.precision_recall_curve(s, p)
    sp, sr, st = sk_pr_curve(p, s)
    np.testing.assert_allclose(prec, sp, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec, sr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(thr, st)
    assert M.average_precision(s, p) == pytest.approx(average_precision_score(p, s), abs=1e-12)
    tp, tr, _ = binary_precision_recall_curve(torch.tensor(s), torch.tensor(p.astype(int)))
    np.testing.assert_allclose(prec, tp.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(rec, tr.double().numpy(), atol=1e-6)


@pytest.mark.parametrize("case", range(len(_cases())))
@pytest.mark.parametrize("r", [1e-6, 0.06, 0.25, 0.5, 1 / 3, 1.0])
def test_precision_at_recall_naive_loop(case, r):
    s, p = _cases()[case]
    expected = next(pr for pr, rc, _ in _naive_cuts(s, p) if rc >= r - 1e-12)
    assert M.precision_at_recall(s, p, r) == pytest.approx(expected, abs=1e-12)


def test_precision_at_recall_exact_fraction_not_lost_to_rounding():
    # a float ceil of r·P can overshoot (0.07 * 100 = 7.000000000000001 -> 8 positives)
    assert math.ceil(0.07 * 100) == 8
    p = np.zeros(400, bool)
    p[:7] = True
    p[300:393] = True  # 100 positives, the 8th at rank 300
    s = -np.arange(400.0)
    assert M.precision_at_recall(s, p, 0.07) == 1.0
    assert M.precision_at_recall(s, p, 0.08) == pytest.approx(8 / 301)


def test_ties_enter_together():
    s = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    p = np.array([1, 0, 0, 0, 1], bool)
    # the first cut holds all four tied GIFs: precision 1/4, not 1
    assert M.precision_at_recall(s, p, 0.5) == 0.25
    assert M.average_precision(s, p) == pytest.approx(0.5 * 0.25 + 0.5 * 0.4)


def test_no_positives_nan_and_means_over_defined():
    rng = np.random.default_rng(1)
    n, t = 60, len(EMOTIONS)
    scores = rng.normal(size=(n, t))
    pos = rng.random((n, t)) < 0.3
    pos[:, 4] = False  # disgust has no positive
    rows = [np.arange(n)] * t
    rows = list(rows)
    rows[7] = np.array([], dtype=np.int64)  # fear has an empty test set
    with pytest.warns(RuntimeWarning, match=r"disgust.*fear"):
        rep = M.evaluate_rankings(scores, pos, rows)
    assert math.isnan(rep.auc[4]) and math.isnan(rep.n_tilde[4]) and math.isnan(rep.auc[7])
    assert rep.n_defined == t - 2
    ok = [i for i in range(t) if i not in (4, 7)]
    expect = np.mean([average_precision_score(pos[:, i], scores[:, i]) for i in ok])
    assert rep.auc_mean == pytest.approx(expect, abs=1e-12)
    m = rep.to_metrics("test")
    assert m["test/auc_mean"] == pytest.approx(expect)
    assert math.isnan(m["test/auc/disgust"])
    assert m["test/n_tilde/anger"] == pytest.approx(
        M.N_P / M.precision_at_recall(scores[:, 1], pos[:, 1], 0.06)
    )
    assert rep.positive_rate[4] == 0.0 and math.isnan(rep.positive_rate[7])
    # the unsorted list's AUC and Ñ: over the same emotions as auc_mean (disgust's 0 left out)
    rate = np.mean([pos[:, i].mean() for i in ok])
    assert m["test/positive_rate_mean"] == pytest.approx(rate, abs=1e-12)
    assert m["test/n_tilde_unsorted_mean"] == pytest.approx(M.N_P / rate)
    mean_row = M.format_report(rep).splitlines()[-1]
    assert "disgust" in M.format_report(rep) and f"{rate:>7.3f}" in mean_row


def test_random_ranking_n_tilde_is_np_over_rate():
    # Ñ of a random ranking ≈ N_p / rate: rate 0.25 -> ≈ 12 000 (Table 2's unsorted 11 996).
    rng = np.random.default_rng(1234)
    n, t = 20000, len(EMOTIONS)
    pos = rng.random((n, t)) < 0.25
    scores = rng.random((n, t))
    rep = M.evaluate_rankings(scores, pos, [np.arange(n)] * t)
    rate = pos.mean(axis=0)
    # precision of the first ~300 of ~5000 positives: binomial sd ≈ sqrt(.25*.75/1200) ≈ 0.0125
    # per emotion; the mean over 17 emotions has sd ≈ 0.003 -> Ñ within ~3 % at 2.5 sd.
    assert rep.n_tilde_mean == pytest.approx(M.N_P / np.mean(rate), rel=0.03)
    assert rep.n_tilde_emotion_mean == pytest.approx(np.mean(M.N_P / rate), rel=0.03)
    assert rep.n_tilde_mean == pytest.approx(12000, rel=0.03)
    assert rep.auc_mean == pytest.approx(0.25, abs=0.01)
    # constant scores (the unsorted baseline) give exactly the rate
    const = M.evaluate_rankings(np.zeros((n, t)), pos, [np.arange(n)] * t)
    np.testing.assert_allclose(const.precision_at_recall, rate)
    np.testing.assert_allclose(const.n_tilde, M.N_P / rate)
    np.testing.assert_allclose(const.auc, rate)
    m = const.to_metrics("test")
    assert m["test/n_tilde_mean"] == pytest.approx(M.N_P / rate.mean(), rel=1e-12)
    assert m["test/n_tilde_unsorted_mean"] == pytest.approx(M.N_P / rate.mean(), rel=1e-12)
    assert m["test/n_tilde_unsorted_emotion_mean"] == pytest.approx(np.mean(M.N_P / rate))


def test_mean_n_tilde_is_np_over_mean_precision_hand_example():
    """Table 2's mean Ñ is N_p over the precision averaged over emotions (paper: unsorted
    3000 / 0.2501 = 11,996), not the mean of the per-emotion Ñ_i.

    Three emotions, 8 test GIFs each, 4 positives (recall 0.06 -> the first positive):
    a ranks a positive first (P = 1), b has it second (P = 1/2), c fourth (P = 1/4).
    Ñ_i = 3000, 6000, 12000: their mean is 7000; Table 2's is 3000 / (1.75 / 3) = 5142.857….
    """
    emotions = ("a", "b", "c")
    scores = np.tile(-np.arange(8.0)[:, None], (1, 3))  # rank = row
    pos = np.zeros((8, 3), bool)
    pos[[0, 4, 5, 6], 0] = True
    pos[[1, 4, 5, 6], 1] = True
    pos[[3, 4, 5, 6], 2] = True
    rep = M.evaluate_rankings(scores, pos, [np.arange(8)] * 3, emotions=emotions)
    np.testing.assert_allclose(rep.precision_at_recall, [1.0, 0.5, 0.25])
    np.testing.assert_allclose(rep.n_tilde, [3000.0, 6000.0, 12000.0])
    assert rep.n_tilde_mean == pytest.approx(3000 / (1.75 / 3), rel=1e-12)
    assert rep.n_tilde_emotion_mean == pytest.approx(7000.0, rel=1e-12)
    m = rep.to_metrics("test")
    assert m["test/n_tilde_mean"] == pytest.approx(36000 / 7, rel=1e-12)
    assert m["test/n_tilde_emotion_mean"] == pytest.approx(7000.0, rel=1e-12)
    assert m["test/n_tilde_unsorted_mean"] == pytest.approx(3000 / 0.5, rel=1e-12)
    assert "5143" in M.format_report(rep)
    # the paper's own unsorted row: mean precision 0.2501 -> 11,995 (printed 11,996)
    assert M.n_tilde(0.2501) == pytest.approx(11995.2, abs=0.1)


def test_mean_curve_and_bad_input():
    s, p = _cases()[0]
    c = M.interpolated_curve(s, p)
    assert c.shape == M.RECALL_GRID.shape
    for r, v in zip(M.RECALL_GRID[1:], c[1:]):
        assert v == M.precision_at_recall(s, p, r)
    with pytest.raises(ValueError, match="shapes"):
        M.average_precision(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="recall"):
        M.precision_at_recall(s, p, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        M.average_precision(np.array([np.nan, 1.0]), np.array([1, 0]))
