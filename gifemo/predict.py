"""Save a fitted recogniser, load it, score new GIFs and write ranked lists for labellers (§4).

A saved model is a directory (no pickle anywhere)::

    model.json          format, emotions, feature kind and block sizes, the estimator's and the
                        normaliser's JSON state, the feature store's identity (backbone,
                        weights_id, preprocessing) and the run's resolved config
    arrays.safetensors  numeric state: "estimator.W", "estimator.b" (linear), GP training rows,
                        "normaliser.mean", "normaliser.scale"
    tags.json           the TagDictionary (when the features use tags)

Scoring new GIFs follows training exactly: visual rows come from a feature store extracted by
the same code (:func:`gifemo.features.extract.extract`) and must carry the same backbone
identity as the training store (else a ValueError names the difference); tag features use the
saved dictionary; the saved normaliser; then the estimator's scores (n, 17).

:func:`rank` writes ``ranked.csv`` and ``ranked.jsonl`` with the top-N GIFs per emotion
(columns emotion, rank, id, path, score; ties by id), the order in which labellers check them.
CLI: ``python -m gifemo.predict --model DIR --data ROOT [--store DIR] [--out DIR] [--top N]``.
"""

from __future__ import annotations

import argparse
import csv
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


def rank(
    model: str | Path | SavedModel,
    dataset: GifDataset,
    store: FeatureStore | None,
    *,
    top_n: int = 100,
    out_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Top-``top_n`` GIFs per emotion by score (ties by id); written to out_dir when given."""
    m = model if isinstance(model, SavedModel) else load_model(model)
    keep, scores = score_dataset(m, dataset, store)
    rows: list[dict[str, Any]] = []
    for j, emotion in enumerate(m.meta["emotions"]):
        order = sorted(range(len(keep)), key=lambda r: (-scores[r, j], dataset.records[keep[r]].id))
        for pos, r in enumerate(order[:top_n]):
            rec = dataset.records[keep[r]]
            rows.append(
                {
                    "emotion": emotion,
                    "rank": pos + 1,
                    "id": rec.id,
                    "path": str(rec.path),
                    "score": float(scores[r, j]),
                }
            )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "ranked.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["emotion", "rank", "id", "path", "score"])
            w.writeheader()
            w.writerows(rows)
        (out / "ranked.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
    return rows


def _extract_store(m: SavedModel, data_root: str, out: Path) -> FeatureStore:
    """Extract the new GIFs' features with the model's saved backbone/extract config."""
    from omegaconf import OmegaConf

    from gifemo.features.extract import extract

    cfg = m.meta.get("config") or {}
    missing = [k for k in ("backbone", "extract", "paths") if k not in cfg]
    if missing:
        raise ValueError(f"{m.path}/model.json: config lacks {missing}; pass --store instead")
    c = OmegaConf.create(cfg)
    c.data = {"_target_": "gifemo.data.metadata.read_dataset", "root": data_root}
    c.extract.out_dir = str(out / "features")
    store = extract(c)
    return store


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gifemo.predict", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="saved model directory (model.json)")
    p.add_argument("--data", required=True, help="dataset folder with metadata.jsonl")
    p.add_argument(
        "--store", help="feature store of --data (extracted with the model's backbone when absent)"
    )
    p.add_argument("--out", default="ranked", help="output directory for ranked.csv / ranked.jsonl")
    p.add_argument("--top", type=int, default=100, help="GIFs per emotion")
    a = p.parse_args(argv)
    from gifemo.data.metadata import read_dataset

    m = load_model(a.model)
    dataset = read_dataset(a.data)
    if a.store:
        store: FeatureStore | None = FeatureStore.open(a.store)
    elif "visual" in m.features:
        store = _extract_store(m, a.data, Path(a.out))
    else:
        store = None
    rows = rank(m, dataset, store, top_n=a.top, out_dir=a.out)
    print(
        f"ranked {len(rows)} rows ({a.top} per emotion) of {len(dataset)} GIFs → {Path(a.out) / 'ranked.csv'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
