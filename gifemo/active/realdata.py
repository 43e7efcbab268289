"""Screening data from dataset folders: a GIFGIF-style training set and a labelled candidate pool.

The pool is any dataset folder whose labels are known: GIFGIF+-style rows (``emotions``), or
unlabelled rows plus a ``truth.jsonl`` with ``{"id", "emotions"}`` per GIF (the generated
``candidates`` part writes one). Emotion e's candidates are the rows whose ``found_for`` holds e
when the metadata has ``found_for`` (as ``collect.py`` writes it), else every row. Features are
built as ``train.py`` builds them: the feature stores' visual rows and/or the tag bag of words
(dictionary fitted on the training GIFs), each block L2-normalised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gifemo.active.simdata import ScreeningData
from gifemo.data.candidates import candidates_by_emotion
from gifemo.data.metadata import GifDataset, read_dataset
from gifemo.data.tags import TagDictionary
from gifemo.emotions import EMOTION_INDEX, EMOTIONS, N_EMOTIONS
from gifemo.eval.metrics import N_ALL, N_P
from gifemo.features.datamodule import feature_blocks, store_rows
from gifemo.features.normalise import FeatureNormaliser
from gifemo.features.store import FeatureStore


def _rows(dataset: GifDataset, store: FeatureStore | None, features: str) -> tuple:
    if "visual" in features:
        if store is None:
            raise ValueError(f"features={features!r} need the feature store of {dataset.root}")
        keep, rows, _ = store_rows(dataset, store)
        return keep, np.asarray(store.visual[rows])
    return np.arange(len(dataset)), None


def _truth(pool: GifDataset, truth_file: Path | None) -> np.ndarray:
    if pool.kind == "gifgif_plus":
        return pool.binary_labels()
    if truth_file is None:
        raise ValueError(
            f"{pool.root}: the pool has no labels; give a truth file (JSON lines with id, emotions)"
        )
    out = np.zeros((len(pool), N_EMOTIONS), dtype=bool)
    seen = set()
    for n, line in enumerate(Path(truth_file).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{truth_file}:{n}: not a JSON line ({exc})") from exc
        if not isinstance(row, dict):
            raise ValueError(
                f"{truth_file}:{n}: a truth row must be a JSON object with 'id' and 'emotions', "
                f"got {row!r}"
            )
        if "id" not in row:
            raise ValueError(f"{truth_file}:{n}: the truth row has no 'id' (keys: {sorted(row)})")
        if not isinstance(row["id"], str):
            raise ValueError(
                f"{truth_file}:{n}: 'id' must be a string (the GIF's id in the pool's "
                f"metadata), got {row['id']!r}"
            )
        try:
            i = pool.index_of(row["id"])
        except KeyError:
            continue  # a GIF of the truth file that the pool does not hold
        for e in row.get("emotions", []):
            if e not in EMOTION_INDEX:
                raise ValueError(f"{truth_file}:{n}: unknown emotion {e!r}")
            out[i, EMOTION_INDEX[e]] = True
        seen.add(i)
    if len(seen) != len(pool):
        raise ValueError(f"{truth_file}: {len(pool) - len(seen)} pool GIFs have no truth row")
    return out


def screening_data_from_folders(
    train: str | Path,
    pool: str | Path,
    *,
    train_store: str | Path | None = None,
    pool_store: str | Path | None = None,
    truth: str | Path | None = None,
    features: str = "visual+tag",
    n_p: int | None = None,
) -> ScreeningData:
    """Build :class:`ScreeningData` from folders (module docstring).

    ``n_p``: the quota (default: the mean per-emotion candidate count × 3,000 / 50,000).
    """
    tr = read_dataset(str(train))
    po = read_dataset(str(pool))
    ts = FeatureStore.open(train_store) if train_store else None
    ps = FeatureStore.open(pool_store) if pool_store else None
    keep_tr, vis_tr = _rows(tr, ts, features)
    keep_po, vis_po = _rows(po, ps, features)
    tags_tr = [tr.records[int(i)].tags for i in keep_tr]
    tags_po = [po.records[int(i)].tags for i in keep_po]
    dictionary = TagDictionary().fit(tags_tr) if "tag" in features else None
    raw_tr, blocks = feature_blocks(features, vis_tr, tags_tr, dictionary)
    raw_po, _ = feature_blocks(features, vis_po, tags_po, dictionary)
    norm = FeatureNormaliser("l2").fit(raw_tr, blocks)
    Y = tr.subset(keep_tr).labels()
    truth_all = _truth(po, Path(truth) if truth else None)[keep_po]
    ids = [po.records[int(i)].id for i in keep_po]
    found = candidates_by_emotion(po.root / "metadata.jsonl")
    cands = []
    for e in EMOTIONS:
        rows = [j for j, g in enumerate(ids) if found is None or g in found[e]]
        cands.append(np.array(rows, dtype=np.int64))
    if n_p is None:
        n_p = max(1, round(np.mean([c.size for c in cands]) * N_P / N_ALL))
    return ScreeningData(
        X_train=norm.transform(raw_tr),
        Y_train=Y,
        mask_train=np.isfinite(Y),
        X_pool=norm.transform(raw_po),
        pool_ids=ids,
        truth=truth_all,
        candidates=tuple(cands),
        n_p=int(n_p),
    )
