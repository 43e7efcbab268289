"""The Table 4 baseline: 17 independent linear SVMs on C3D features (paper §5, binary relevance).

For each emotion e an independent ``sklearn.svm.LinearSVC`` solves

    min_{w_e, b_e}  ½‖w_e‖² + C Σ_n c_{n,e} · max(0, 1 − s_{n,e}(w_eᵀx_n + b_e))²

with x_n the (n, d) C3D feature rows (fc6 averaged over clips, L2-normalised, as stored by
:func:`gifemo.features.extract.extract`), s_{n,e} = ±1 the GIFGIF+ label and c_{n,e} the class
weight (1, or n / (2·n_class) with ``class_weight="balanced"``). A GIF is predicted positive for e
when its decision value is > 0. ``run_svm`` holds out 20 % of the GIFs (seeded) and reports
precision / recall / F1 per emotion and as mean ± std over the 17 (Table 4: 0.20 ± 0.11,
0.55 ± 0.12, 0.29 ± 0.13 with Sports-1M weights).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from gifemo.emotions import EMOTIONS
from gifemo.eval.multilabel import average_precision, precision_recall_f1, summarise, table4_line

log = logging.getLogger(__name__)


class BinaryRelevanceSVM:
    """One ``LinearSVC`` per emotion (column of Y); sklearn-style, ``__init__`` only stores.

    Fitted state: ``estimators_`` (list of LinearSVC or None), ``constant_`` (t,) — for an
    emotion whose training labels are all one class no SVM can be fitted; it then predicts that
    class (decision value ±1) and ``constant_[e]`` is True.
    """

    def __init__(
        self,
        *,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        loss: str = "squared_hinge",
        max_iter: int = 10_000,
        tol: float = 1e-4,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.loss = loss
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        keys = ("C", "class_weight", "loss", "max_iter", "tol", "random_state")
        return {k: getattr(self, k) for k in keys}

    def _make(self) -> LinearSVC:
        return LinearSVC(
            C=self.C,
            class_weight=self.class_weight,
            loss=self.loss,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            dual="auto",
        )

    def fit(self, X: np.ndarray, Y: np.ndarray) -> BinaryRelevanceSVM:
        """X (n, d) float, Y (n, t) binary."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y).astype(bool)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(f"X must be (n, d) and Y (n, t); got X {X.shape}, Y {Y.shape}")
        self.estimators_: list[LinearSVC | None] = []
        self.constant_ = np.zeros(Y.shape[1], dtype=bool)
        self.constant_value_ = np.zeros(Y.shape[1], dtype=bool)
        self.n_features_in_ = X.shape[1]
        for e in range(Y.shape[1]):
            y = Y[:, e]
            if y.all() or not y.any():
                self.estimators_.append(None)
                self.constant_[e] = True
                self.constant_value_[e] = bool(y.all())
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                svm = self._make().fit(X, y)
            if any(issubclass(w.category, ConvergenceWarning) for w in caught):
                log.warning(
                    "LinearSVC for task %d did not converge in %d iterations", e, self.max_iter
                )
            self.estimators_.append(svm)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """(n, t) signed distances w_eᵀx + b_e (±1 for constant tasks)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}); got {X.shape}")
        cols = []
        for e, svm in enumerate(self.estimators_):
            if svm is None:
                cols.append(np.full(X.shape[0], 1.0 if self.constant_value_[e] else -1.0))
            else:
                cols.append(svm.decision_function(X))
        return np.stack(cols, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, t) bool, decision value > 0 (LinearSVC.predict's rule)."""
        return self.decision_function(X) > 0

    def coef(self) -> tuple[np.ndarray, np.ndarray]:
        """W (d, t) and b (t,) of the fitted SVMs (zeros/±1 for constant tasks)."""
        W = np.zeros((self.n_features_in_, len(self.estimators_)))
        b = np.zeros(len(self.estimators_))
        for e, svm in enumerate(self.estimators_):
            if svm is None:
                b[e] = 1.0 if self.constant_value_[e] else -1.0
            else:
                W[:, e], b[e] = svm.coef_.ravel(), float(svm.intercept_[0])
        return W, b


def evaluate_svm(
    estimator: BinaryRelevanceSVM, X: np.ndarray, Y: np.ndarray, *, prefix: str = "test/"
) -> dict[str, float]:
    """Table 4 metrics (precision / recall / F1 at the SVM's own threshold) and AP, flattened."""
    Y = np.asarray(Y).astype(bool)
    scores = estimator.decision_function(X)
    per_emotion: dict[str, np.ndarray] = dict(precision_recall_f1(scores > 0, Y))
    per_emotion["ap"] = average_precision(scores, Y)
    return summarise(per_emotion, prefix=prefix)


def load_features_and_labels(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Extract (or reuse) the C3D feature store of ``cfg.data`` and align GIFGIF+ labels to it.

    Returns X (n, d) float32, Y (n, 17) bool and the GIF ids; GIFs that failed to decode are
    not in the store and are left out (with a log line).
    """
    from hydra.utils import instantiate

    from gifemo.features.extract import extract

    dataset = instantiate(cfg.data)
    if dataset.kind != "gifgif_plus":
        raise ValueError(
            f"model=svm needs binary GIFGIF+ labels (data=gifgif_plus); cfg.data gives kind={dataset.kind!r}"
        )
    store = extract(cfg)
    labels = dataset.binary_labels()  # (n, 17) bool
    in_store = set(store.ids)
    keep = [i for i, gid in enumerate(dataset.ids()) if gid in in_store]
    if len(keep) < len(dataset.records):
        log.warning(
            "%d of %d GIFs have no features (decode failures)",
            len(dataset.records) - len(keep),
            len(dataset.records),
        )
    ids = [dataset.records[i].id for i in keep]
    rows = np.array([store.row_of(gid) for gid in ids], dtype=np.int64)
    X = np.asarray(store.visual[rows], dtype=np.float32)
    return X, labels[keep], ids


def run_svm(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """``python train.py model=svm data=gifgif_plus``: fit on 80 %, report Table 4 on the 20 %.

    Keys read: cfg.model.{C, class_weight, loss, max_iter, tol, test_fraction}, cfg.seed,
    cfg.data / cfg.backbone / cfg.extract (via extract), cfg.paths.output_dir (optional).
    """
    from gifemo.eval.splits import holdout_split
    from gifemo.runners.tracking import build_logger, log_summary

    m = cfg.model
    seed = int(OmegaConf.select(cfg, "seed", default=0) or 0)
    X, Y, ids = load_features_and_labels(cfg)
    train_idx, test_idx = holdout_split(len(ids), test_fraction=float(m.test_fraction), seed=seed)
    estimator = BinaryRelevanceSVM(
        C=float(m.C),
        class_weight=m.class_weight,
        loss=str(m.loss),
        max_iter=int(m.max_iter),
        tol=float(m.tol),
        random_state=seed,
    ).fit(X[train_idx], Y[train_idx])
    metrics = evaluate_svm(estimator, X[test_idx], Y[test_idx], prefix="test/")
    metrics.update(evaluate_svm(estimator, X[train_idx], Y[train_idx], prefix="train/"))
    metrics["n_train"], metrics["n_test"] = float(train_idx.size), float(test_idx.size)
    print(
        f"C3D + linear SVM (Table 4), {test_idx.size} held-out GIFs: {table4_line(metrics, prefix='test/')}"
    )

    out_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        W, b = estimator.coef()
        np.savez(out / "svm.npz", W=W, b=b, emotions=np.array(EMOTIONS))
        split = {"train": [ids[i] for i in train_idx], "test": [ids[i] for i in test_idx]}
        (out / "svm_split.json").write_text(json.dumps(split))
        (out / "svm_metrics.json").write_text(json.dumps(metrics, indent=1))
    logger = build_logger(cfg, name="svm")
    log_summary(logger, metrics)
    objects = {
        "estimator": estimator,
        "train_ids": [ids[i] for i in train_idx],
        "test_ids": [ids[i] for i in test_idx],
        "logger": logger,
    }
    return metrics, objects
