"""Feature scaling fitted on training rows and saved with a model (:class:`FeatureNormaliser`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class FeatureNormaliser:
    """Feature scaling fitted on training rows and saved with the model.

    ``method="l2"`` (default): each feature block (visual 4096, tags V) of each row is divided
    by its L2 norm — what DESIGN §1/§5 prescribes for C3D and tag features; it is stateless and
    idempotent on features that already are unit-norm, and keeps ρ on the paper's scale (a
    visual+tag row has norm √2, or 1 without tags). All-zero blocks stay zero.
    ``"standard"``: z-score every column with the training rows' mean and std (std 0 → 1).
    ``"none"``: identity. ``blocks``: column sizes of the blocks, summing to d.
    """

    def __init__(self, method: str = "l2") -> None:
        if method not in ("l2", "standard", "none"):
            raise ValueError(f"FeatureNormaliser: method must be l2|standard|none, got {method!r}")
        self.method = method

    def fit(self, X: np.ndarray, blocks: Sequence[int] | None = None) -> FeatureNormaliser:
        X = np.asarray(X, dtype=np.float64)
        self.blocks_ = [X.shape[1]] if blocks is None else [int(b) for b in blocks]
        if sum(self.blocks_) != X.shape[1]:
            raise ValueError(
                f"FeatureNormaliser: blocks {self.blocks_} do not sum to d = {X.shape[1]}"
            )
        self.mean_ = X.mean(axis=0) if self.method == "standard" else np.zeros(X.shape[1])
        std = X.std(axis=0) if self.method == "standard" else np.ones(X.shape[1])
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != sum(self.blocks_):
            raise ValueError(
                f"FeatureNormaliser: expected (n, {sum(self.blocks_)}) features, got {X.shape}"
            )
        if self.method == "standard":
            return (X - self.mean_) / self.scale_
        if self.method == "none":
            return X.copy()
        out, start = X.copy(), 0
        for size in self.blocks_:
            part = out[:, start : start + size]
            norm = np.linalg.norm(part, axis=1, keepdims=True)
            part /= np.where(norm > 0, norm, 1.0)
            start += size
        return out

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"method": self.method, "blocks": self.blocks_}, {
            "mean": self.mean_,
            "scale": self.scale_,
        }

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FeatureNormaliser:
        self = cls(meta["method"])
        self.blocks_ = [int(b) for b in meta["blocks"]]
        self.mean_, self.scale_ = np.asarray(arrays["mean"]), np.asarray(arrays["scale"])
        return self
