"""Precomputed features + labels + the evaluation protocol's split, for the closed-form recognisers.

:func:`build_feature_arrays` (GIFGIF-style [μ, σ] scores) — rows are the labelled GIFs of a
dataset that have a row in the feature store, in dataset order. GIFs that failed extraction (or
are missing from the store) are dropped with a warning that names them and the store's reason.
For each row n:

* ``Y[n]`` (17,) = μ − 3σ (:meth:`gifemo.data.metadata.GifDataset.labels`), ``positives = Y > 25``;
* ``protocol(tag_lists, positives)`` — a callable given by the caller, in the runs
  :func:`gifemo.eval.protocol.make_protocol` configured by ``cfg.protocol`` — gives the
  per-emotion test sets and ``train_mask`` (n, 17);
* **tag dictionary** — ``tag_dictionary_fit="all"`` (default, as the paper §3.4: "from the
  tags of all the 6113 GIFs"): fitted on the tags of every kept GIF. Building the vocabulary
  reads tags, never labels or the split, so it leaks no label (the tests check that permuting
  the labels leaves it unchanged). ``"training"`` (gifemo's earlier rule): fitted on the
  protocol's training rows only (``protocol.training_rows``, the GIFs in no test set) — on the
  default data that is 38 of 250 GIFs under the per-emotion split, and most emotions' top tags
  fall out of the vocabulary.
* ``X[n]`` = the ``features`` blocks: ``"visual"`` (the store's backbone features, D), ``"tag"``
  (the bag of words, V) or ``"visual+tag"`` (their concatenation, D + V, visual first), passed
  through :class:`gifemo.features.normalise.FeatureNormaliser` (default ``"l2"``: each block
  unit-norm) fitted on the training rows.

:func:`load_features_and_labels` — binary labels (GIFGIF+ emotions, or y > 25 of GIFGIF scores)
aligned with the store's visual rows: what the SVM baseline trains on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gifemo.data.labels import positives as positives_of
from gifemo.data.metadata import GifDataset
from gifemo.data.tags import TagDictionary
from gifemo.features.normalise import FeatureNormaliser
from gifemo.features.store import FeatureStore

FEATURE_KINDS = ("visual", "tag", "visual+tag")
DICTIONARY_FITS = ("all", "training")  # which GIFs' tags choose the tag vocabulary


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


class RowSplit(Protocol):
    """What the features need of the evaluation protocol (:class:`gifemo.eval.protocol.EvalProtocol`)."""

    @property
    def train_mask(self) -> np.ndarray: ...  # (n, t) bool: row n trains task i
    @property
    def test_mask(self) -> np.ndarray: ...  # (n, t) bool: row n is in task i's test set
    @property
    def test_rows(self) -> tuple[np.ndarray, ...]: ...  # per task, the rows of its test set
    @property
    def training_rows(self) -> np.ndarray: ...  # rows in no test set
    def summary(self) -> dict[str, Any]: ...


# protocol(tag_lists, positives) -> the split; e.g. functools.partial(make_protocol, seed=0)
ProtocolFn = Callable[[list[tuple[str, ...]], np.ndarray], RowSplit]


@dataclass(frozen=True)
class FeatureArrays:
    """Everything a closed-form recogniser and the evaluation need. n rows, t = 17 tasks."""

    ids: list[str]
    X: np.ndarray  # (n, d) float64, normalised
    Y: np.ndarray  # (n, t) y = mu - 3 sigma
    positives: np.ndarray  # (n, t) bool
    protocol: RowSplit
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
    protocol: ProtocolFn,
    features: str = "visual+tag",
    tag_min_fraction: float = 0.005,
    tag_dictionary_fit: str = "all",
    normalisation: str = "l2",
) -> FeatureArrays:
    """Labels, the protocol's split, tag dictionary and normalised X.

    ``store`` may be None only for ``features="tag"`` (then every GIF is kept). The dataset must
    carry GIFGIF-style scores (:meth:`GifDataset.labels` says so otherwise) and tags (the
    protocol's pools come from them). ``tag_dictionary_fit``: ``"all"`` or ``"training"``.
    """
    check_features(features)
    if tag_dictionary_fit not in DICTIONARY_FITS:
        raise ValueError(
            f"tag_dictionary_fit must be one of {DICTIONARY_FITS}, got {tag_dictionary_fit!r}"
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
    kept = dataset.subset(keep)
    Y = kept.labels()  # (n, 17) y = mu - 3 sigma
    pos = positives_of(Y)
    tags = kept.tag_lists()
    if not any(tags):
        uses = f" and features={features!r} use tags" if "tag" in features else ""
        raise ValueError(
            f"no GIF of {dataset.name!r} ({dataset.root}) has a tag: the evaluation protocol "
            f"builds each emotion's test pool from its positives' top tags{uses}. Give the rows "
            f"of metadata.jsonl their 'tags' (python -m gifemo gifgif imports them from GIFGIF's "
            f"API records; python -m gifemo votes --tags adds them to a vote import)"
        )
    split = protocol(tags, pos)
    train_rows = split.training_rows
    dictionary = None
    if "tag" in features:
        fit_rows = np.arange(len(tags)) if tag_dictionary_fit == "all" else train_rows
        dictionary = TagDictionary(min_fraction=tag_min_fraction).fit(
            [tags[int(r)] for r in fit_rows]
        )
        if len(dictionary) == 0:
            raise ValueError(
                f"features={features!r}: no tag of {dataset.name!r} reaches tag_min_fraction="
                f"{tag_min_fraction} of the {dictionary.n_documents_} GIFs the dictionary is "
                f"fitted on; lower features.arrays.tag_min_fraction or use features=visual"
            )
    visual = None if rows is None or store is None else np.asarray(store.visual[rows])  # (n, D)
    raw, blocks = feature_blocks(features, visual, tags, dictionary)
    normaliser = FeatureNormaliser(normalisation).fit(raw[train_rows], blocks)
    return FeatureArrays(
        ids=kept.ids(),
        X=normaliser.transform(raw),
        Y=Y,
        positives=pos,
        protocol=split,
        features=features,
        blocks=blocks,
        dictionary=dictionary,
        normaliser=normaliser,
        dropped=dropped,
    )


def load_features_and_labels(
    dataset: GifDataset, store: FeatureStore
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X (n, d) float32 visual rows of ``store``, Y (n, 17) bool binary labels, the GIF ids.

    Rows follow the dataset's order; GIFs without features (decode failures) are left out with
    a warning naming them (:func:`store_rows`). Y is :meth:`GifDataset.binary_labels`: the
    GIFGIF+ emotions, or the positives y > 25 of a GIFGIF-style dataset.
    """
    labels = dataset.binary_labels()  # (n, 17) bool; raises for an unlabelled dataset
    keep, rows, _ = store_rows(dataset, store)
    if keep.size == 0:
        raise ValueError(f"no GIF of {dataset.name!r} has features in {store.path}")
    X = np.asarray(store.visual[rows], dtype=np.float32)
    return X, labels[keep], [dataset.records[int(i)].id for i in keep]
