"""Precomputed features + labels + the evaluation protocol, for the closed-form recognisers.

Rows are the labelled (GIFGIF-style) GIFs of a dataset that have a row in the feature store,
in dataset order. GIFs that failed extraction (or are missing from the store) are dropped with
a warning that names them and the store's reason.

For each row n:

* ``Y[n]`` (17,) = μ − 3σ (:func:`gifemo.data.labels.score_labels`), ``positives = Y > 25``;
* the protocol (:func:`gifemo.eval.protocol.make_protocol`, seeded by ``seed``) gives the
  per-emotion test sets and ``train_mask`` (n, 17);
* **tag dictionary** — fitted on the *training rows*, the labelled GIFs in no emotion's test
  set (``protocol.training_rows``), so no test GIF's tags shape the vocabulary. (Task i also
  trains on GIFs of other emotions' test sets; their tags are still featurised with this
  dictionary, they just do not choose it.)
* ``X[n]`` = the ``features`` blocks: ``"visual"`` (the store's C3D fc6, D), ``"tag"`` (the
  bag of words, V) or ``"visual+tag"`` (their concatenation, D + V, visual first), passed through
  :class:`gifemo.features.normalise.FeatureNormaliser` (default ``"l2"``: each block unit-norm)
  fitted on the training rows.

:class:`FeatureDataModule` wraps :func:`build_feature_arrays` as a LightningDataModule:
``setup()`` builds ``.arrays`` (what train.py hands to the estimators) and the dataloaders
yield dict batches {"x", "y", "mask", "index"} for gradient-based heads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gifemo.data.labels import positives as positives_of
from gifemo.data.labels import score_labels
from gifemo.data.metadata import GifDataset
from gifemo.data.tags import TagDictionary
from gifemo.eval.protocol import GENERIC_TAGS, EvalProtocol, make_protocol
from gifemo.features.normalise import FeatureNormaliser
from gifemo.features.store import FeatureStore

FEATURE_KINDS = ("visual", "tag", "visual+tag")


def check_features(kind: str) -> str:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"features must be one of {FEATURE_KINDS}, got {kind!r}")
    return kind


def feature_blocks(
    kind: str,
    visual: np.ndarray | None,
    tag_lists: Sequence[Iterable[str]],
    dictionary: TagDictionary | None,
) -> tuple[np.ndarray, list[int]]:
    """Raw (un-normalised) feature matrix (n, d) float64 and its block sizes for ``kind``."""
    parts: list[np.ndarray] = []
    if "visual" in check_features(kind):
        if visual is None:
            raise ValueError(f"features={kind!r} needs visual features")
        parts.append(np.asarray(visual, dtype=np.float64))
    if "tag" in kind:
        if dictionary is None:
            raise ValueError(f"features={kind!r} needs a fitted tag dictionary")
        parts.append(np.asarray(dictionary.transform(tag_lists), dtype=np.float64))
    return np.concatenate(parts, axis=1), [p.shape[1] for p in parts]


def store_rows(
    dataset: GifDataset, store: FeatureStore
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(dataset indices kept, their store rows, ids dropped) — drops GIFs without features, warning by id."""
    reasons = {f.get("id"): f.get("reason", "") for f in store.failures}
    keep, rows, dropped = [], [], []
    for i, rec in enumerate(dataset.records):
        try:
            rows.append(store.row_of(rec.id))
            keep.append(i)
        except KeyError:
            dropped.append(rec.id)
    if dropped:
        shown = [f"{g} ({reasons.get(g) or 'not in the store'})" for g in dropped[:20]]
        more = f" and {len(dropped) - 20} more" if len(dropped) > 20 else ""
        warnings.warn(
            f"{len(dropped)} GIFs of {dataset.name!r} have no features in {store.path} and are dropped: "
            f"{', '.join(shown)}{more}",
            RuntimeWarning,
            stacklevel=2,
        )
    return np.array(keep, dtype=np.int64), np.array(rows, dtype=np.int64), dropped


@dataclass(frozen=True)
class FeatureArrays:
    """Everything a closed-form recogniser and the evaluation need. n rows, t = 17 tasks."""

    ids: list[str]
    X: np.ndarray  # (n, d) float64, normalised
    Y: np.ndarray  # (n, t) y = mu - 3 sigma
    positives: np.ndarray  # (n, t) bool
    protocol: EvalProtocol
    features: str
    blocks: list[int]  # column sizes of the blocks of X, in order (visual, tag)
    dictionary: TagDictionary | None
    normaliser: FeatureNormaliser
    dropped: list[str]  # ids without features

    @property
    def train_mask(self) -> np.ndarray:
        return self.protocol.train_mask

    @property
    def test_rows(self) -> tuple[np.ndarray, ...]:
        return self.protocol.test_rows

    @property
    def training_rows(self) -> np.ndarray:
        return self.protocol.training_rows


def build_feature_arrays(
    dataset: GifDataset,
    store: FeatureStore | None,
    *,
    features: str = "visual+tag",
    seed: int = 0,
    test_fraction: float = 0.33,
    n_top_tags: int = 10,
    generic_tags: Iterable[str] = GENERIC_TAGS,
    tag_min_fraction: float = 0.005,
    normalisation: str = "l2",
) -> FeatureArrays:
    """Labels, protocol, tag dictionary (training rows only) and normalised X for ``dataset``.

    ``store`` may be None only for ``features="tag"`` (then every GIF is kept).
    """
    check_features(features)
    if dataset.kind != "gifgif":
        raise ValueError(
            f"dataset {dataset.name!r} ({dataset.root}) is {dataset.kind!r}: the regression protocol "
            f"needs GIFGIF-style [mu, sigma] scores"
        )
    if store is None:
        if "visual" in features:
            raise ValueError(f"features={features!r} needs a feature store")
        keep, rows, dropped = np.arange(len(dataset)), None, list[str]()
    else:
        keep, rows, dropped = store_rows(dataset, store)
    if keep.size == 0:
        raise ValueError(
            f"no GIF of {dataset.name!r} has features in {getattr(store, 'path', None)}"
        )
    records = [dataset.records[int(i)] for i in keep]
    Y = score_labels(np.stack([r.scores for r in records]))  # type: ignore[misc]
    pos = positives_of(Y)
    tags = [r.tags for r in records]
    protocol = make_protocol(
        tags,
        pos,
        seed=seed,
        test_fraction=test_fraction,
        n_top_tags=n_top_tags,
        generic_tags=generic_tags,
    )
    train_rows = protocol.training_rows
    dictionary = None
    if "tag" in features:
        dictionary = TagDictionary(min_fraction=tag_min_fraction).fit(
            [tags[int(r)] for r in train_rows]
        )
    visual = None if rows is None or store is None else np.asarray(store.visual[rows])  # (n, D)
    raw, blocks = feature_blocks(features, visual, tags, dictionary)
    normaliser = FeatureNormaliser(normalisation).fit(raw[train_rows], blocks)
    return FeatureArrays(
        ids=[r.id for r in records],
        X=normaliser.transform(raw),
        Y=Y,
        positives=pos,
        protocol=protocol,
        features=features,
        blocks=blocks,
        dictionary=dictionary,
        normaliser=normaliser,
        dropped=dropped,
    )


class _Rows(Dataset):
    def __init__(self, arrays: FeatureArrays, rows: np.ndarray, mask: np.ndarray) -> None:
        self.x = torch.as_tensor(arrays.X[rows], dtype=torch.float32)
        self.y = torch.as_tensor(arrays.Y[rows], dtype=torch.float32)
        self.mask = torch.as_tensor(mask[rows])
        self.rows = torch.as_tensor(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i], "mask": self.mask[i], "index": self.rows[i]}


class FeatureDataModule(L.LightningDataModule):
    """LightningDataModule over :func:`build_feature_arrays` (keyword arguments as there).

    train: rows that train at least one task, with mask = ``train_mask`` (a loss should use
    only the masked entries); test: rows in at least one test set, with mask = test membership.
    There is no separate validation split here (cross-validation is :mod:`gifemo.eval.cv`).
    """

    def __init__(
        self,
        dataset: GifDataset,
        store: FeatureStore | None,
        *,
        batch_size: int = 256,
        num_workers: int = 0,
        **build_kwargs: Any,
    ) -> None:
        super().__init__()
        self.dataset, self.store = dataset, store
        self.batch_size, self.num_workers = batch_size, num_workers
        self.build_kwargs = build_kwargs
        self.arrays: FeatureArrays | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is None:
            self.arrays = build_feature_arrays(self.dataset, self.store, **self.build_kwargs)

    def _loader(self, rows: np.ndarray, mask: np.ndarray, shuffle: bool) -> DataLoader:
        assert self.arrays is not None, "call setup() first"
        return DataLoader(
            _Rows(self.arrays, rows, mask),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(int(self.build_kwargs.get("seed", 0)))
            if shuffle
            else None,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        a = self.arrays
        assert a is not None
        return self._loader(np.flatnonzero(a.train_mask.any(axis=1)), a.train_mask, True)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        a = self.arrays
        assert a is not None
        test_mask = a.protocol.test_mask
        return self._loader(np.flatnonzero(test_mask.any(axis=1)), test_mask, False)
