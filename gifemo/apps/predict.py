"""Rank new GIFs per emotion with a saved recogniser: the lists labellers check (paper §4).

``python -m gifemo predict --model DIR --data ROOT [--store DIR] [--out DIR] [--top N]``

:func:`rank` writes ``ranked.csv`` and ``ranked.jsonl`` with the top-N GIFs per emotion
(columns emotion, rank, id, path, score; ties by id), the order in which labellers check them.
The model is a directory written by ``train.py`` (``<run>/model``, :mod:`gifemo.models.saved`);
without ``--store`` the GIFs' features are extracted with the backbone and extraction settings
saved in the model.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gifemo.data.metadata import GifDataset
from gifemo.features.store import FeatureStore
from gifemo.models.saved import SavedModel, load_model, score_dataset


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
    p = argparse.ArgumentParser(prog="python -m gifemo predict", description=__doc__.split("\n")[0])
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
