"""Labels y = μ − 3σ, positives y > 25, tag normalisation and the sparsity-thresholded dictionary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gifemo.data.labels import positives, score_labels
from gifemo.data.tags import TagDictionary, normalise_tag
from gifemo.emotions import MU0, SIGMA0


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
