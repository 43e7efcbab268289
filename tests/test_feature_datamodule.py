"""Feature arrays: rows, dropped GIFs, labels, tag dictionary on training rows, blocks; the
SVM baseline's binary features and labels."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest

from gifemo.data.metadata import GifDataset, GifRecord
from gifemo.data.tags import TagDictionary
from gifemo.emotions import EMOTIONS, N_EMOTIONS
from gifemo.eval.protocol import make_protocol
from gifemo.features.datamodule import build_feature_arrays, load_features_and_labels
from gifemo.features.store import FeatureStore


def make_dataset(n=60, seed=0, kind="gifgif", root=Path("/nonexistent")):
    rng = np.random.default_rng(seed)
    vocab = ["cat", "dog", "happy", "sad", "lol", "wow", "tv", "reaction", "fail", "win"]
    recs = []
    for i in range(n):
        tags = tuple(rng.choice(vocab, size=rng.integers(1, 4), replace=False).tolist())
        if i == 5:
            tags = (*tags, "onlyhere")
        scores = np.stack(
            [rng.uniform(15, 45, N_EMOTIONS), rng.uniform(0.5, 3, N_EMOTIONS)], axis=1
        )
        recs.append(
            GifRecord(id=f"g{i:03d}", path=root / f"g{i:03d}.gif", tags=tags, scores=scores)
        )
    return GifDataset(root=root, kind=kind, records=recs, name="hand")


def make_store(path, dataset, *, missing=(), d=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = [r.id for r in dataset.records if r.id not in missing][
        ::-1
    ]  # store order != dataset order
    visual = rng.normal(size=(len(ids), d)).astype(np.float32)
    visual /= np.linalg.norm(visual, axis=1, keepdims=True)
    fails = [{"index": 0, "id": g, "path": "x", "reason": "truncated header"} for g in missing[:1]]
    return FeatureStore(
        path=Path(path),
        ids=ids,
        visual=visual,
        meta={"weights_id": "random-init", "backbone": {"fc_dim": d}, "fingerprint": "f"},
        failures=fails,
        n_frames=np.ones(len(ids), np.int64),
        mean_delay_ms=np.full(len(ids), 100.0),
    )


def test_arrays_rows_labels_and_dictionary(tmp_path):
    ds = make_dataset()
    store = make_store(tmp_path, ds, missing=("g003", "g010"))
    with pytest.warns(
        RuntimeWarning, match=r"g003 \(truncated header\).*g010 \(not in the store\)"
    ):
        a = build_feature_arrays(
            ds, store, protocol=protocol(4), features="visual+tag", tag_min_fraction=0.05
        )
    kept = [r for r in ds.records if r.id not in ("g003", "g010")]
    assert a.ids == [r.id for r in kept] and a.dropped == ["g003", "g010"]
    y = np.stack([r.scores[:, 0] - 3 * r.scores[:, 1] for r in kept])
    np.testing.assert_allclose(a.Y, y)
    np.testing.assert_array_equal(a.positives, y > 25)
    ref = make_protocol([r.tags for r in kept], y > 25, seed=4)
    np.testing.assert_array_equal(a.train_mask, ref.train_mask)
    # the dictionary is fitted on every kept GIF's tags (tag_dictionary_fit="all", the default)
    want = TagDictionary(min_fraction=0.05).fit([r.tags for r in kept]).vocabulary_
    assert a.dictionary.vocabulary_ == want
    assert a.blocks == [8, len(want)] and a.X.shape == (len(kept), 8 + len(want))
    # visual block = the store row of the same id (unit norm already), tag block = L2 bag of words
    for n, r in enumerate(kept[:10]):
        np.testing.assert_allclose(a.X[n, :8], store.visual[store.row_of(r.id)], rtol=1e-6)
    tags = a.dictionary.transform([r.tags for r in kept])
    np.testing.assert_allclose(a.X[:, 8:], tags, atol=1e-6)


def test_feature_kinds_and_errors(tmp_path):
    ds = make_dataset(40, seed=1)
    store = make_store(tmp_path, ds)
    split = protocol(0)
    assert build_feature_arrays(ds, store, protocol=split, features="visual").X.shape == (40, 8)
    t = build_feature_arrays(ds, None, protocol=split, features="tag", tag_min_fraction=0.0)
    assert t.X.shape[1] == len(t.dictionary.vocabulary_) and t.blocks == [t.X.shape[1]]
    with pytest.raises(ValueError, match="features must be one of"):
        build_feature_arrays(ds, store, protocol=split, features="audio")
    with pytest.raises(ValueError, match="needs a feature store"):
        build_feature_arrays(ds, None, protocol=split, features="visual")
    plus = GifDataset(root=ds.root, kind="gifgif_plus", records=ds.records, name="plus")
    with pytest.raises(ValueError, match="gifgif_plus"):
        build_feature_arrays(plus, store, protocol=split)


def test_load_features_and_labels_aligns_rows_with_a_naive_loop(tmp_path):
    """GIFGIF+ emotions → Y; X = each kept GIF's store row (store order differs from the
    dataset's); decode failures are dropped with a warning naming them."""
    ds = make_dataset(30, seed=3)
    rng = np.random.default_rng(5)
    emotions = [
        frozenset(np.array(EMOTIONS)[rng.random(N_EMOTIONS) < 0.2].tolist()) for _ in ds.records
    ]
    plus = GifDataset(
        root=ds.root,
        kind="gifgif_plus",
        records=[
            dataclasses.replace(r, scores=None, emotions=e)
            for r, e in zip(ds.records, emotions, strict=True)
        ],
        name="plus",
    )
    store = make_store(tmp_path, plus, missing=("g004", "g017"))
    with pytest.warns(RuntimeWarning, match=r"g004 \(truncated header\).*g017"):
        X, Y, ids = load_features_and_labels(plus, store)
    want_ids, want_x, want_y = [], [], []
    for r, e in zip(plus.records, emotions, strict=True):
        if r.id in ("g004", "g017"):
            continue
        want_ids.append(r.id)
        want_x.append(store.visual[store.ids.index(r.id)])
        want_y.append([name in e for name in EMOTIONS])
    assert ids == want_ids
    assert X.dtype == np.float32 and X.shape == (28, 8)
    np.testing.assert_array_equal(X, np.array(want_x))
    np.testing.assert_array_equal(Y, np.array(want_y))
    # a GIFGIF-style dataset gives its positives y > 25; an unlabelled one is refused
    _, Y2, ids2 = load_features_and_labels(ds, make_store(tmp_path / "s2", ds))
    assert ids2 == ds.ids()
    kept = [ds.records[ds.index_of(g)] for g in ids2]
    np.testing.assert_array_equal(
        Y2, np.stack([r.scores[:, 0] - 3 * r.scores[:, 1] > 25 for r in kept])
    )
    unlabelled = GifDataset(root=ds.root, kind="unlabelled", records=ds.records, name="u")
    with pytest.raises(ValueError, match="unlabelled"):
        load_features_and_labels(unlabelled, store)


def protocol(seed):
    return functools.partial(make_protocol, seed=seed)
