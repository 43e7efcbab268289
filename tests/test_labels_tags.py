"""Labels y = μ − 3σ, positives y > 25, tag normalisation, the sparsity-thresholded dictionary,
and where the pipeline fits it: on every GIF's tags, unchanged when the labels are permuted."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from gifemo.data import synthetic
from gifemo.data.labels import positives, score_labels
from gifemo.data.metadata import GifDataset, GifRecord
from gifemo.data.tags import TagDictionary, normalise_tag
from gifemo.emotions import EMOTIONS, MU0, SIGMA0
from gifemo.eval.protocol import make_protocol
from gifemo.features.datamodule import build_feature_arrays


def test_score_labels_and_positives():
    s = np.zeros((3, 17, 2))
    s[..., 0], s[..., 1] = MU0, SIGMA0
    s[1, 4] = [31.0, 2.0]  # y = 25 exactly: not positive (strict >)
    s[2, 16] = [40.0, 4.9]  # y = 25.3: positive
    y = score_labels(s)
    assert y.shape == (3, 17)
    np.testing.assert_allclose(y[0], 0.0, atol=1e-12)  # prior: 25 - 3·25/3 = 0
    assert y[1, 4] == 25.0 and np.isclose(y[2, 16], 25.3)
    p = positives(y)
    assert p.dtype == bool and p.sum() == 1 and p[2, 16]
    # naive loop reference
    for n in range(3):
        for i in range(17):
            assert y[n, i] == s[n, i, 0] - 3 * s[n, i, 1]
    assert score_labels(s[0]).shape == (17,)
    with pytest.raises(ValueError, match="shape"):
        score_labels(np.zeros((3, 16, 2)))


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Happy", "happy"),
        ("  Eye   Roll\t", "eye roll"),
        ("cartoons & comics", "cartoons & comics"),
        ("THUMBS\nUP", "thumbs up"),
        ("   ", ""),
    ],
)
def test_normalise_tag(raw, norm):
    assert normalise_tag(raw) == norm


def test_normalise_rejects_non_strings():
    with pytest.raises(TypeError):
        normalise_tag(3)  # type: ignore[arg-type]


def test_threshold_boundary_200_gifs():
    # 200 GIFs: a tag in exactly 1 GIF is 0.5 % → kept; 0.5 % of 201 is 1.005 → 1 GIF is dropped
    lists = [["common"] for _ in range(200)]
    lists[0] = ["Rare", "common", "rare"]  # counted once per GIF for the threshold
    d = TagDictionary().fit(lists)
    assert d.vocabulary_ == ["common", "rare"] and d.document_frequency_.tolist() == [200, 1]
    d2 = TagDictionary().fit([*lists, ["common"]])
    assert d2.vocabulary_ == ["common"]
    # 400 GIFs: min count 2
    lists4 = [["a"] for _ in range(400)]
    lists4[0] += ["two"]
    lists4[1] += ["two"]
    lists4[2] += ["one"]
    assert TagDictionary().fit(lists4).vocabulary_ == ["a", "two"]
    assert TagDictionary().min_count(199) == 1 and TagDictionary().min_count(1000) == 5
    assert TagDictionary(min_fraction=0.0).fit([["x"], ["y"]]).vocabulary_ == ["x", "y"]
    assert TagDictionary(min_fraction=0.6).fit([["x"], ["x", "y"]]).vocabulary_ == ["x"]


def test_fit_uses_only_given_lists_and_sorted_vocabulary():
    train = [["zeta", "alpha"], ["Mid"], ["alpha"]]
    d = TagDictionary(min_fraction=0.0).fit(train)
    assert d.vocabulary_ == ["alpha", "mid", "zeta"]
    # tags only in the transformed lists do not enter the vocabulary
    x = d.transform([["unseen"], ["alpha", "ALPHA", "zeta", "unseen"], []])
    assert x.shape == (3, 3) and x.dtype == np.float32
    assert not x[0].any() and not x[2].any()
    np.testing.assert_allclose(x[1], np.array([2, 0, 1]) / np.sqrt(5), rtol=1e-6)
    # order of the training lists does not matter
    assert TagDictionary(min_fraction=0.0).fit(train[::-1]).vocabulary_ == d.vocabulary_


def test_transform_against_naive_loop():
    rng = np.random.default_rng(0)
    pool = [f"t{i}" for i in range(30)]
    lists = [list(rng.choice(pool, size=rng.integers(0, 6))) for _ in range(300)]
    d = TagDictionary(min_fraction=0.05).fit(lists)
    x = d.transform(lists)
    for n, tags in enumerate(lists):
        c = np.array([sum(t == v for t in tags) for v in d.vocabulary_], dtype=float)
        ref = c / np.linalg.norm(c) if c.any() else c
        np.testing.assert_allclose(x[n], ref, rtol=1e-6, atol=1e-7)
    for v, df in zip(d.vocabulary_, d.document_frequency_, strict=True):
        assert df == sum(v in set(tags) for tags in lists) and df >= 15
    dropped = {t for tags in lists for t in tags} - set(d.vocabulary_)
    assert all(sum(t in set(tags) for tags in lists) < 15 for t in dropped)


def test_save_load_roundtrip(tmp_path):
    d = TagDictionary(min_fraction=0.25).fit([["a", "b"], ["a"], ["c"], ["a", "c"]])
    p = tmp_path / "sub" / "tags.json"
    d.save(p)
    e = TagDictionary.load(p)
    assert e.vocabulary_ == d.vocabulary_ == ["a", "b", "c"] and e.min_fraction == 0.25
    q = [["a", "c", "c"], ["zzz"]]
    np.testing.assert_array_equal(e.transform(q), d.transform(q))
    assert json.loads(p.read_text())["vocabulary"] == ["a", "b", "c"]
    assert TagDictionary.from_dict(d.to_dict()).n_documents_ == 4


def test_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        TagDictionary().transform([["a"]])
    with pytest.raises(ValueError, match="zero GIFs"):
        TagDictionary().fit([])
    with pytest.raises(ValueError, match="min_fraction"):
        TagDictionary(min_fraction=1.5)
    with pytest.raises(ValueError, match="format"):
        TagDictionary.from_dict({"vocabulary": []})
    bad = TagDictionary(min_fraction=0).fit([["b"], ["a"]]).to_dict()
    bad["vocabulary"] = ["b", "a"]
    with pytest.raises(ValueError, match="sorted"):
        TagDictionary.from_dict(bad)


def test_load_bad_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("{nope")
    with pytest.raises(ValueError, match=r"t\.json"):
        TagDictionary.load(p)


def _synthetic_records(n=300, seed=0):
    """GIFGIF-like scores and tags from the generator's label model (no GIF files needed)."""
    rng = np.random.default_rng(seed)
    lat = synthetic.sample_latents(rng, n)
    return [
        GifRecord(
            id=f"g{k}",
            path=Path(f"/nonexistent/g{k}.gif"),
            tags=tuple(
                normalise_tag(t)
                for t in synthetic.sample_tags(rng, EMOTIONS[lat["primary"][k]], cartoon=False)
            ),
            scores=lat["scores"][k],
        )
        for k in range(n)
    ]


def _arrays(records, fit="all", split="shared"):
    ds = GifDataset(root=Path("/nonexistent"), kind="gifgif", records=records, name="syn")
    protocol = functools.partial(make_protocol, seed=3, split=split)
    return build_feature_arrays(ds, None, protocol=protocol, features="tag",
                                tag_dictionary_fit=fit)  # fmt: skip


@pytest.mark.parametrize("split", ["shared", "per_emotion"])
def test_dictionary_is_fitted_on_all_tags_and_ignores_the_labels(split):
    records = _synthetic_records()
    a = _arrays(records, split=split)
    ref = TagDictionary().fit([r.tags for r in records])
    assert a.dictionary.vocabulary_ == ref.vocabulary_ and a.dictionary.n_documents_ == 300
    # permute the labels (scores) over the GIFs: other positives, other test sets, same vocabulary
    perm = np.random.default_rng(1).permutation(len(records))
    shuffled = [
        GifRecord(id=r.id, path=r.path, tags=r.tags, scores=records[int(j)].scores)
        for r, j in zip(records, perm, strict=True)
    ]
    b = _arrays(shuffled, split=split)
    assert not np.array_equal(a.protocol.train_mask, b.protocol.train_mask)
    assert b.dictionary.vocabulary_ == a.dictionary.vocabulary_
    np.testing.assert_array_equal(
        b.dictionary.document_frequency_, a.dictionary.document_frequency_
    )
    np.testing.assert_array_equal(b.X, a.X)
    # the earlier rule (training rows only) depends on the labels through the split: a contrast
    # showing this test can fail
    old_a, old_b = _arrays(records, "training", split), _arrays(shuffled, "training", split)
    assert old_a.dictionary.n_documents_ == a.protocol.training_rows.size < 300
    assert old_a.dictionary.vocabulary_ != old_b.dictionary.vocabulary_


def test_dictionary_fit_option_and_tagless_data_errors():
    records = _synthetic_records(60)
    with pytest.raises(
        ValueError, match=r"tag_dictionary_fit must be one of \('all', 'training'\)"
    ):
        _arrays(records, fit="test")
    bare = [GifRecord(id=r.id, path=r.path, tags=(), scores=r.scores) for r in records]
    with pytest.raises(ValueError, match=r"no GIF of 'syn' \(/nonexistent\) has a tag.*'tags'"):
        _arrays(bare)


def test_no_test_gif_in_the_normaliser_fit_or_any_training_row():
    records = _synthetic_records()
    ds = GifDataset(root=Path("/nonexistent"), kind="gifgif", records=records, name="syn")
    a = build_feature_arrays(ds, None, protocol=functools.partial(make_protocol, seed=3),
                             features="tag", normalisation="standard")  # fmt: skip
    test = a.protocol.test_union
    assert test.size > 50 and not (a.protocol.train_mask[test]).any()
    raw = a.dictionary.transform([r.tags for r in records]).astype(np.float64)
    train = np.setdiff1d(np.arange(len(records)), test)
    np.testing.assert_array_equal(a.protocol.training_rows, train)
    np.testing.assert_allclose(a.normaliser.mean_, raw[train].mean(axis=0), atol=1e-12)
    assert not np.allclose(a.normaliser.mean_, raw.mean(axis=0), atol=1e-6)
