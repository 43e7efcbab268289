"""A saved recogniser: save a fitted one, load it, score new GIFs with it.

A saved model is a directory (no pickle anywhere)::

    model.json          format, emotions, feature kind and block sizes, the estimator's and the
                        normaliser's JSON state, the feature store's identity (backbone,
                        weights_id, preprocessing) and the run's resolved config
    arrays.safetensors  numeric state: "estimator.W", "estimator.b" (linear), GP training rows,
                        "normaliser.mean", "normaliser.scale"
    tags.json           the TagDictionary (when the features use tags)

Scoring new GIFs follows training exactly: visual rows come from a feature store extracted by
the same code (:func:`gifemo.runners.extract.extract`) and must carry the same backbone
identity as the training store (else a ValueError names the difference); tag features use the
saved dictionary; the saved normaliser; then the estimator's scores (n, 17).

Ranked lists for labellers are :mod:`gifemo.apps.predict` (``python -m gifemo predict``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from gifemo.data.metadata import GifDataset
from gifemo.data.tags import TagDictionary
from gifemo.emotions import EMOTIONS
from gifemo.features.datamodule import check_features, feature_blocks, store_rows
from gifemo.features.normalise import FeatureNormaliser
from gifemo.features.store import FeatureStore
from gifemo.models.estimators import GPRegressor, UnsortedBaseline

FORMAT = "gifemo.model/1"
IDENTITY_KEYS = ("backbone", "weights_id", "preprocessing")


def store_identity(store: FeatureStore | None) -> dict[str, Any] | None:
    """What makes features comparable: the store meta's backbone, weights_id, preprocessing."""
    return None if store is None else {k: store.meta.get(k) for k in IDENTITY_KEYS}


def save_model(
    out_dir: str | Path,
    *,
    estimator: Any,
    features: str,
    normaliser: FeatureNormaliser,
    dictionary: TagDictionary | None,
    store: FeatureStore | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a fitted ``estimator`` (with ``to_state()``) and its feature pipeline to ``out_dir``.

    ``config``: the run's *resolved* config as plain containers (used by the CLI to extract
    features of new GIFs with the same backbone/extract settings).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    est_meta, est_arrays = estimator.to_state()
    norm_meta, norm_arrays = normaliser.to_state()
    arrays = {f"estimator.{k}": np.ascontiguousarray(v) for k, v in est_arrays.items()}
    arrays.update({f"normaliser.{k}": np.ascontiguousarray(v) for k, v in norm_arrays.items()})
    save_file(arrays, str(out / "arrays.safetensors"))
    if dictionary is not None:
        dictionary.save(out / "tags.json")
    meta = {
        "format": FORMAT,
        "emotions": list(EMOTIONS),
        "features": check_features(features),
        "estimator": est_meta,
        "normaliser": norm_meta,
        "store": store_identity(store),
        "config": config,
    }
    (out / "model.json").write_text(json.dumps(meta, indent=2, default=str))
    return out


class _Linear:
    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W_, self.b_ = W, b

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.W_ + self.b_


@dataclass
class SavedModel:
    """A loaded model: ``score(visual, tag_lists) -> (n, 17)``."""

    path: Path
    meta: dict[str, Any]
    estimator: Any
    normaliser: FeatureNormaliser
    dictionary: TagDictionary | None

    @property
    def features(self) -> str:
        return str(self.meta["features"])

    def check_store(self, store: FeatureStore | None) -> None:
        """ValueError unless ``store`` was extracted like the training features."""
        want = self.meta.get("store")
        if "visual" not in self.features:
            return
        if store is None:
            raise ValueError(f"{self.path}: features={self.features!r} need a feature store")
        have = store_identity(store) or {}
        diff = [k for k in IDENTITY_KEYS if want and want.get(k) != have.get(k)]
        if diff:
            raise ValueError(
                f"feature store {store.path} was not extracted like the model's features "
                f"({self.path}): {', '.join(f'{k}: model {want.get(k)!r} vs store {have.get(k)!r}' for k in diff)}"  # type: ignore[union-attr]
            )

    def transform(
        self, visual: np.ndarray | None, tag_lists: Sequence[Sequence[str]]
    ) -> np.ndarray:
        raw, _ = feature_blocks(self.features, visual, tag_lists, self.dictionary)
        return self.normaliser.transform(raw)

    def score(self, visual: np.ndarray | None, tag_lists: Sequence[Sequence[str]]) -> np.ndarray:
        return np.asarray(
            self.estimator.predict(self.transform(visual, tag_lists)), dtype=np.float64
        )


def load_model(model_dir: str | Path) -> SavedModel:
    path = Path(model_dir)
    meta_file = path / "model.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: no model.json (not a saved gifemo model)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
    arrays = load_file(str(path / "arrays.safetensors"))
    est = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("estimator.")}
    norm = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("normaliser.")}
    kind = meta["estimator"].get("kind")
    estimator: Any
    if kind == "linear":
        estimator = _Linear(est["W"], est["b"])
    elif kind == "unsorted":
        estimator = UnsortedBaseline(mode=meta["estimator"]["mode"], seed=meta["estimator"]["seed"])
        estimator.n_tasks_ = int(meta["estimator"]["n_tasks"])
    elif kind == "gp":
        estimator = GPRegressor.from_state(meta["estimator"], est)
    else:
        raise ValueError(f"{meta_file}: unknown estimator kind {kind!r}")
    dictionary = TagDictionary.load(path / "tags.json") if (path / "tags.json").is_file() else None
    return SavedModel(
        path, meta, estimator, FeatureNormaliser.from_state(meta["normaliser"], norm), dictionary
    )


def score_dataset(
    model: SavedModel, dataset: GifDataset, store: FeatureStore | None
) -> tuple[list[int], np.ndarray]:
    """(dataset indices scored, scores (n, 17)); GIFs without features are dropped (warned)."""
    model.check_store(store)
    if store is None or "visual" not in model.features:
        keep = list(range(len(dataset)))
        visual = None
    else:
        k, rows, _ = store_rows(dataset, store)
        keep, visual = k.tolist(), np.asarray(store.visual[rows])
    tags = [dataset.records[i].tags for i in keep]
    return keep, model.score(visual, tags)
