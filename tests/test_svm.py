"""Table 4 baseline: metrics against scikit-learn, SVMs against LinearSVC fitted directly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support
from sklearn.svm import LinearSVC

from gifemo.eval.multilabel import (
    average_precision,
    best_f1_thresholds,
    precision_recall_f1,
    summarise,
)
from gifemo.eval.splits import holdout_split
from gifemo.models.svm import BinaryRelevanceSVM
from gifemo.runners.svm import evaluate_svm


def _toy(seed: int, n: int = 60, t: int = 5, ties: bool = False):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, t)) < 0.3
    labels[0] = True  # every task has a positive
    scores = labels + rng.normal(0, 0.8, (n, t))
    if ties:
        scores = np.round(scores, 1)
    return scores, labels


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_average_precision_matches_sklearn(seed, ties):
    scores, labels = _toy(seed, ties=ties)
    ours = average_precision(scores, labels)
    ref = [average_precision_score(labels[:, e], scores[:, e]) for e in range(labels.shape[1])]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


def test_average_precision_nan_without_positives():
    scores, labels = _toy(3)
    labels[:, 2] = False
    ap = average_precision(scores, labels)
    assert np.isnan(ap[2]) and np.isfinite(np.delete(ap, 2)).all()
    s = summarise({"ap": ap})
    assert s["ap_mean"] == pytest.approx(np.nanmean(ap))


def test_precision_recall_f1_matches_sklearn():
    scores, labels = _toy(4)
    pred = scores > 0.5
    pred[:, 1] = False  # a task with no predicted positive: zero_division=0
    ours = precision_recall_f1(pred, labels)
    for e in range(labels.shape[1]):
        p, r, f, _ = precision_recall_fscore_support(
            labels[:, e], pred[:, e], average="binary", zero_division=0
        )
        assert ours["precision"][e] == pytest.approx(p)
        assert ours["recall"][e] == pytest.approx(r)
        assert ours["f1"][e] == pytest.approx(f)


@pytest.mark.parametrize("ties", [False, True])
def test_best_f1_threshold_is_brute_force_optimum(ties):
    scores, labels = _toy(5, ties=ties)
    thr = best_f1_thresholds(scores, labels)
    for e in range(labels.shape[1]):
        candidates = np.unique(scores[:, e])
        f1s = [f1_score(labels[:, e], scores[:, e] >= c, zero_division=0) for c in candidates]
        best = max(f1s)
        assert f1_score(labels[:, e], scores[:, e] >= thr[e]) == pytest.approx(best)
        assert thr[e] == max(c for c, f in zip(candidates, f1s) if f == pytest.approx(best))


def test_summary_is_mean_and_population_std():
    vals = np.array([0.1, 0.3, 0.5])
    s = summarise({"f1": vals}, prefix="test/")
    assert s["test/f1_mean"] == pytest.approx(0.3)
    assert s["test/f1_std"] == pytest.approx(np.sqrt(((vals - 0.3) ** 2).mean()))


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(n, t\)"):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="binary"):
        average_precision(np.zeros((3, 2)), np.full((3, 2), 2))


def _features(seed: int, n: int = 120, d: int = 12, t: int = 4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, t))
    Y = X @ W + rng.normal(0, 1.0, (n, t)) > 1.0
    return X, Y


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_svms_equal_linearsvc_fitted_directly(class_weight):
    X, Y = _features(0)
    est = BinaryRelevanceSVM(C=0.7, class_weight=class_weight, random_state=0).fit(X, Y)
    W, _ = est.coef()
    scores = est.decision_function(X)
    for e in range(Y.shape[1]):
        ref = LinearSVC(
            C=0.7, class_weight=class_weight, random_state=0, dual="auto", max_iter=10_000, tol=1e-4
        ).fit(X, Y[:, e])
        np.testing.assert_allclose(W[:, e], ref.coef_.ravel(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(scores[:, e], ref.decision_function(X), rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(est.predict(X)[:, e], ref.predict(X))


def test_constant_task_predicts_its_class():
    X, Y = _features(1)
    Y[:, 2] = False
    est = BinaryRelevanceSVM().fit(X, Y)
    assert est.constant_[2] and not est.predict(X)[:, 2].any()


def test_evaluate_svm_uses_decision_zero():
    X, Y = _features(2)
    tr, te = holdout_split(len(X), test_fraction=0.2, seed=3)
    est = BinaryRelevanceSVM().fit(X[tr], Y[tr])
    m = evaluate_svm(est, X[te], Y[te], prefix="test/")
    pred = est.predict(X[te])
    f1 = [f1_score(Y[te][:, e], pred[:, e], zero_division=0) for e in range(Y.shape[1])]
    assert m["test/f1_mean"] == pytest.approx(np.mean(f1))
    assert m["test/f1_std"] == pytest.approx(np.std(f1))


def test_holdout_split_is_seeded_and_disjoint():
    tr, te = holdout_split(101, test_fraction=0.2, seed=7)
    _, te2 = holdout_split(101, test_fraction=0.2, seed=7)
    np.testing.assert_array_equal(te, te2)
    assert te.size == 21 and np.intersect1d(tr, te).size == 0 and tr.size + te.size == 101
    assert not np.array_equal(te, holdout_split(101, test_fraction=0.2, seed=8)[1])
    with pytest.raises(ValueError, match="too few"):
        holdout_split(1, test_fraction=0.5)


# -- the runner: python train.py model=svm data=gifgif_plus ---------------------------------------


@pytest.fixture(scope="module")
def svm_run(tmp_path_factory: pytest.TempPathFactory):
    import json
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from gifemo.runners.train import train

    conf = Path(__file__).resolve().parents[1] / "conf"
    data_dir = tmp_path_factory.getbasetemp() / "gifemo-e2-data"  # shared with test_train
    data_dir.mkdir(exist_ok=True)
    out = tmp_path_factory.mktemp("svm-run")
    overrides = [
        f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "data=synthetic",
        "data.kind=gifgif_plus",
        "data.synthetic_size=tiny", "backbone=c3d_tiny", "extract.num_workers=0",
        "extract.progress=false", "model=svm", "logger=none", "seed=3",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    metrics, objects = train(cfg)
    return {"cfg": cfg, "metrics": metrics, "objects": objects, "out": out, "json": json}


@pytest.mark.slow  # generates and extracts the tiny GIFGIF+ part: ~10 s on 2 cores
def test_run_svm_reports_the_heldout_table4_metrics_of_its_saved_svms(svm_run) -> None:
    """The runner's test metrics are recomputed here from what it wrote (W, b, the split) and the
    feature store, with scikit-learn; the split is the seeded 80/20 hold-out of the store's GIFs."""
    from hydra.utils import instantiate

    from gifemo.runners.extract import extract

    json, out, cfg, metrics = svm_run["json"], svm_run["out"], svm_run["cfg"], svm_run["metrics"]
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    assert json.loads((out / "run.json").read_text())["model"] == "svm"
    dataset, store = instantiate(cfg.data), extract(cfg)  # the store is reused, not re-extracted
    split = json.loads((out / "svm_split.json").read_text())
    n = len(dataset)
    assert sorted(split["train"] + split["test"]) == sorted(dataset.ids()) and len(store.ids) == n
    _, want_test = holdout_split(n, test_fraction=0.2, seed=3)
    assert split["test"] == [dataset.ids()[i] for i in want_test]
    saved = np.load(out / "svm.npz")
    X = np.stack([store.visual[store.row_of(g)] for g in split["test"]]).astype(np.float64)
    Y = dataset.binary_labels()[[dataset.index_of(g) for g in split["test"]]]
    decision = X @ saved["W"] + saved["b"]
    np.testing.assert_allclose(decision, svm_run["objects"]["estimator"].decision_function(X))
    p, r, f, _ = precision_recall_fscore_support(Y, decision > 0, average=None, zero_division=0)
    for name, ref in (("precision", p), ("recall", r), ("f1", f)):
        assert metrics[f"test/{name}_mean"] == pytest.approx(ref.mean(), abs=1e-12)
        assert metrics[f"test/{name}_std"] == pytest.approx(ref.std(), abs=1e-12)
    assert metrics["n_test"] == len(split["test"]) == int(np.ceil(0.2 * n))


@pytest.mark.slow
def test_run_svm_fits_the_estimator_of_its_config(svm_run) -> None:
    est = svm_run["objects"]["estimator"]
    assert isinstance(est, BinaryRelevanceSVM)
    assert (est.C, est.class_weight, est.random_state) == (1.0, "balanced", 3)
