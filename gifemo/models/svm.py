"""The Table 4 baseline: 17 independent linear SVMs on C3D features (paper §5, binary relevance).

For each emotion e an independent ``sklearn.svm.LinearSVC`` solves

    min_{w_e, b_e}  ½‖w_e‖² + C Σ_n c_{n,e} · max(0, 1 − s_{n,e}(w_eᵀx_n + b_e))²

with x_n the (n, d) C3D feature rows (fc6 averaged over clips, L2-normalised, as stored by
:func:`gifemo.runners.extract.extract`), s_{n,e} = ±1 the GIFGIF+ label and c_{n,e} the class
weight (1, or n / (2·n_class) with ``class_weight="balanced"``). A GIF is predicted positive for e
when its decision value is > 0. The runner (:mod:`gifemo.runners.svm`, ``model=svm``) holds
out 20 % of the GIFs (seeded) and reports precision / recall / F1 per emotion and as
mean ± std over the 17 (Table 4: 0.20 ± 0.11, 0.55 ± 0.12, 0.29 ± 0.13 with Sports-1M weights).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

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
