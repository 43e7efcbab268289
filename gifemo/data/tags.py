"""Tag normalisation and the bag-of-words tag dictionary (paper §3.4, DESIGN §5).

A tag is normalised by lower-casing, stripping, and collapsing inner whitespace to one space
(``"  Eye   Roll "`` → ``"eye roll"``). The dictionary keeps every tag whose *document
frequency* (number of GIFs carrying it, once per GIF) is at least ``min_fraction`` of the GIFs
it is fitted on — the paper's sparsity threshold 0.995 is ``min_fraction = 0.005`` (139 tags out
of 11,042 on GIFGIF). Which GIFs those are is the caller's choice
(:func:`gifemo.features.datamodule.build_feature_arrays`: every kept GIF by default,
``tag_dictionary_fit="all"`` as the paper; the protocol's training GIFs with ``"training"``).
For a fit on ``n`` GIFs the count threshold is the integer

    min_count = max(1, ⌈min_fraction · n⌉)

(computed with a 1e-9 guard so that 0.005 · 200 = 1 is not rounded up to 2). The vocabulary is
sorted, so it depends only on the set of kept tags. A GIF's tag feature ``x`` (V,) counts the
occurrences of each vocabulary entry among its normalised tags and is L2-normalised,
``x / ‖x‖₂``; a GIF without dictionary tags gets the all-zero row.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_WS = re.compile(r"\s+")
FORMAT = "gifemo.tags/1"


def normalise_tag(tag: str) -> str:
    """Lower-case, strip and collapse inner whitespace: ``" Thumbs  UP"`` → ``"thumbs up"``."""
    if not isinstance(tag, str):
        raise TypeError(f"a tag must be a string, got {type(tag).__name__}: {tag!r}")
    return _WS.sub(" ", tag.strip().lower())


def _normalised(tags: Iterable[str]) -> list[str]:
    out = [normalise_tag(t) for t in tags]
    return [t for t in out if t]


class TagDictionary:
    """Sparsity-thresholded tag vocabulary → L2-normalised bag-of-words features.

    Fitted state: ``vocabulary_`` (sorted list of V tags), ``document_frequency_`` (V,) ints,
    ``n_documents_`` (the number of GIFs it was fitted on).
    """

    def __init__(self, *, min_fraction: float = 0.005) -> None:
        if not 0.0 <= float(min_fraction) <= 1.0:
            raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction}")
        self.min_fraction = float(min_fraction)

    # -- fitting ----------------------------------------------------------------------------
    def min_count(self, n_documents: int) -> int:
        """Smallest document frequency kept for a fit on ``n_documents`` GIFs."""
        return max(1, math.ceil(self.min_fraction * n_documents - 1e-9))

    def fit(self, tag_lists: Sequence[Iterable[str]]) -> TagDictionary:
        """Build the vocabulary from the tag lists of the GIFs to fit on (one list per GIF)."""
        n = len(tag_lists)
        if n == 0:
            raise ValueError("cannot fit a tag dictionary on zero GIFs")
        df: Counter[str] = Counter()
        for tags in tag_lists:
            df.update(set(_normalised(tags)))
        threshold = self.min_count(n)
        self.vocabulary_: list[str] = sorted(t for t, c in df.items() if c >= threshold)
        self.document_frequency_ = np.array([df[t] for t in self.vocabulary_], dtype=np.int64)
        self.n_documents_ = n
        self._index = {t: j for j, t in enumerate(self.vocabulary_)}
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocabulary_"):
            raise RuntimeError("TagDictionary is not fitted: call fit(tag_lists) or load(path)")

    def __len__(self) -> int:
        self._check_fitted()
        return len(self.vocabulary_)

    # -- features ---------------------------------------------------------------------------
    def counts(self, tag_lists: Sequence[Iterable[str]]) -> np.ndarray:
        """Raw counts ``(n, V)`` float32 of dictionary entries per GIF (no normalisation)."""
        self._check_fitted()
        out = np.zeros((len(tag_lists), len(self.vocabulary_)), dtype=np.float32)
        for row, tags in enumerate(tag_lists):
            for t in _normalised(tags):
                j = self._index.get(t)
                if j is not None:
                    out[row, j] += 1.0
        return out

    def transform(self, tag_lists: Sequence[Iterable[str]]) -> np.ndarray:
        """``(n, V)`` float32: counts / their L2 norm; rows without dictionary tags stay 0."""
        c = self.counts(tag_lists).astype(np.float64)
        norm = np.linalg.norm(c, axis=1, keepdims=True)
        return np.divide(c, norm, out=np.zeros_like(c), where=norm > 0).astype(np.float32)

    def fit_transform(self, tag_lists: Sequence[Iterable[str]]) -> np.ndarray:
        return self.fit(tag_lists).transform(tag_lists)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format": FORMAT,
            "min_fraction": self.min_fraction,
            "n_documents": self.n_documents_,
            "vocabulary": list(self.vocabulary_),
            "document_frequency": [int(c) for c in self.document_frequency_],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TagDictionary:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a tag dictionary (expected format {FORMAT!r})")
        vocab, df = d.get("vocabulary"), d.get("document_frequency")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ValueError("tag dictionary: 'vocabulary' must be a list of strings")
        if vocab != sorted(set(vocab)) or any(normalise_tag(t) != t for t in vocab):
            raise ValueError("tag dictionary: 'vocabulary' must be sorted, unique and normalised")
        if not isinstance(df, list) or len(df) != len(vocab):
            raise ValueError(
                f"tag dictionary: 'document_frequency' must have {len(vocab)} entries, "
                f"got {len(df) if isinstance(df, list) else type(df).__name__}"
            )
        obj = cls(min_fraction=float(d["min_fraction"]))
        obj.vocabulary_ = list(vocab)
        obj.document_frequency_ = np.asarray(df, dtype=np.int64)
        obj.n_documents_ = int(d["n_documents"])
        obj._index = {t: j for j, t in enumerate(obj.vocabulary_)}
        return obj

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the dictionary as JSON (atomically: temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TagDictionary:
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from e
        try:
            return cls.from_dict(d)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from e

    def __repr__(self) -> str:
        v = len(self.vocabulary_) if hasattr(self, "vocabulary_") else "unfitted"
        return f"TagDictionary(min_fraction={self.min_fraction}, V={v})"


# The paper's Table 1: the most common tags of each emotion's positives on GIFGIF, by frequency,
# generic tags (struck through in the paper) included. Used by the synthetic dataset.
TABLE1_TAGS: dict[str, tuple[str, ...]] = {
    "amusement": ("laughing", "happy", "laugh", "excited", "smile", "lol", "tv", "dancing", "exciting", "movies", "funny", "smiling"),
    "anger": ("angry", "movies", "tv", "frustrated", "cartoons & comics", "funny", "hate", "anger", "anime", "mad", "movie", "upset", "no", "rage", "annoyed"),
    "contempt": ("angry", "tv", "eye roll", "no", "frustrated", "smh", "movies", "unimpressed", "annoyed", "confused", "reaction", "suspicious", "smdh"),
    "contentment": ("happy", "smile", "dancing", "excited", "laughing", "animals", "cute", "smiling", "cartoons & comics", "movies", "thumbs up", "tv", "funny", "baby", "laugh"),
    "disgust": ("no", "tv", "movies", "angry", "disgusted", "eye roll", "confused", "frustrated", "shocked", "smh", "gross", "reaction", "scared"),
    "embarrassment": ("facepalm", "tv", "awkward", "embarrassed", "frustrated", "nervous", "embarassed", "funny", "movies", "cartoons & comics", "sad", "annoyed", "cartoon", "disappointed"),
    "excitement": ("happy", "excited", "exciting", "dancing", "tv", "laughing", "funny", "cartoons & comics", "laugh", "reaction", "smile", "adventure time", "cute"),
    "fear": ("scared", "shocked", "movies", "cat", "nervous", "cartoons & comics", "tv", "surprised", "screaming", "animals", "funny", "reaction", "lol", "scream", "terrified"),
    "guilt": ("sad", "movies", "crying", "tv", "nervous", "cartoons & comics", "facepalm", "embarrassed", "sorry", "cartoon", "cry", "disappointed", "movie", "awkward", "pout"),
    "happiness": ("happy", "laughing", "excited", "laugh", "tv", "smile", "dancing", "movies", "exciting", "lol", "funny", "cartoons & comics", "smiling"),
    "pleasure": ("happy", "excited", "laughing", "smile", "tv", "laugh", "dancing", "exciting", "funny", "movies", "cute", "love", "cartoons & comics"),
    "pride": ("happy", "tv", "excited", "yes", "dancing", "smile", "movies", "smiling", "sports", "exciting", "laughing", "thumbs up", "cartoons & comics", "celebration"),
    "relief": ("happy", "smile", "movies", "excited", "giphytrending", "laughing", "yes", "sigh", "smiling", "exciting", "cartoons & comics", "animals", "cute", "jennifer lawrence"),
    "sadness": ("sad", "crying", "movies", "tv", "cry", "disappointed", "upset", "sadness", "tears", "anime", "cartoons & comics", "love", "pout", "movie", "cartoon", "disney", "frustrated"),
    "satisfaction": ("happy", "excited", "tv", "dancing", "laughing", "smile", "exciting", "smiling", "cartoons & comics", "funny", "movies", "thumbs up", "yes"),
    "shame": ("sad", "facepalm", "tv", "movies", "crying", "frustrated", "disappointed", "embarrassed", "nervous", "cartoons & comics", "embarassed", "sorry", "awkward"),
    "surprise": ("shocked", "scared", "surprised", "tv", "excited", "reaction", "movies", "happy", "funny", "omg", "exciting", "cat", "confused"),
}  # fmt: skip
# Generic tags (DESIGN §7): describe the source, not the emotion; struck through in Table 1.
GENERIC_TAGS: tuple[str, ...] = (
    "tv", "movies", "movie", "cartoons & comics", "cartoon", "anime", "reaction", "animals",
    "sports", "giphytrending", "disney",
)  # fmt: skip
