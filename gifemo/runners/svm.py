"""Runner of the Table 4 baseline: ``python train.py model=svm data=gifgif_plus``.

Extracts (or reuses) the feature store of ``cfg.data``, aligns the binary labels with it
(:func:`gifemo.features.datamodule.load_features_and_labels`), fits
:class:`gifemo.models.svm.BinaryRelevanceSVM` on a seeded (``cfg.seed``) 80 % of the GIFs
(:func:`gifemo.eval.splits.holdout_split`) and reports precision / recall / F1 at the SVM's own
threshold (decision > 0) and AP on the held-out 20 %, per emotion and as mean ± std.

Writes ``metrics.json`` / ``run.json`` (:mod:`gifemo.runners.results`), ``svm.npz`` (W, b),
``svm_split.json`` (the ids of each side) and ``svm_metrics.json`` to ``cfg.paths.output_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from gifemo.emotions import EMOTIONS
from gifemo.eval.multilabel import average_precision, precision_recall_f1, summarise, table4_line
from gifemo.eval.splits import holdout_split
from gifemo.models.svm import BinaryRelevanceSVM
from gifemo.runners import results, tracking


def evaluate_svm(
    estimator: BinaryRelevanceSVM, X: np.ndarray, Y: np.ndarray, *, prefix: str = "test/"
) -> dict[str, float]:
    """Table 4 metrics (precision / recall / F1 at the SVM's own threshold) and AP, flattened."""
    Y = np.asarray(Y).astype(bool)
    scores = estimator.decision_function(X)
    per_emotion: dict[str, np.ndarray] = dict(precision_recall_f1(scores > 0, Y))
    per_emotion["ap"] = average_precision(scores, Y)
    return summarise(per_emotion, prefix=prefix)


def run(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit on 80 %, report Table 4 on the 20 %; returns (metrics, objects).

    Keys read: cfg.model.{estimator, test_fraction}, cfg.seed, cfg.data / cfg.backbone /
    cfg.extract (via extract), cfg.paths.output_dir, cfg.logger.
    """
    from gifemo.features.datamodule import load_features_and_labels
    from gifemo.runners.extract import extract

    seed = int(cfg.seed)
    dataset = instantiate(cfg.data)
    store = extract(cfg)  # the same code as extract.py
    X, Y, ids = load_features_and_labels(dataset, store)
    train_idx, test_idx = holdout_split(
        len(ids), test_fraction=float(cfg.model.test_fraction), seed=seed
    )
    estimator: BinaryRelevanceSVM = instantiate(cfg.model.estimator, random_state=seed)
    estimator.fit(X[train_idx], Y[train_idx])
    metrics = evaluate_svm(estimator, X[test_idx], Y[test_idx], prefix="test/")
    metrics.update(evaluate_svm(estimator, X[train_idx], Y[train_idx], prefix="train/"))
    metrics["n_train"], metrics["n_test"] = float(train_idx.size), float(test_idx.size)
    print(
        f"Visual features ({store.meta.get('weights_id')}) + linear SVM (Table 4), "
        f"{test_idx.size} held-out GIFs: {table4_line(metrics, prefix='test/')}"
    )

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    W, b = estimator.coef()
    np.savez(out / "svm.npz", W=W, b=b, emotions=np.array(EMOTIONS))
    split = {"train": [ids[i] for i in train_idx], "test": [ids[i] for i in test_idx]}
    (out / "svm_split.json").write_text(json.dumps(split))
    (out / "svm_metrics.json").write_text(json.dumps(metrics, indent=1))
    results.write_run(out, metrics, model=str(cfg.model.name), features="visual")
    logger = tracking.build_logger(cfg, name=results.run_name(str(cfg.model.name), "visual"))
    try:
        tracking.log_summary(logger, metrics)
    finally:
        tracking.finish(logger)
    objects = {
        "estimator": estimator,
        "train_ids": split["train"],
        "test_ids": split["test"],
        "logger": logger,
    }
    return metrics, objects
