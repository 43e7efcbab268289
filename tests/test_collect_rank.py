"""A collected folder goes through extract.py and predict; each emotion is ranked within its
own candidates (the rows whose ``found_for`` holds it, paper §3.2)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gifemo.apps.collect.collector import collect
from gifemo.apps.collect.fake_giphy import FakeGiphy
from gifemo.apps.predict import main as predict_main
from gifemo.apps.predict import rank
from gifemo.data.candidates import candidates_by_emotion
from gifemo.data.metadata import read_dataset
from gifemo.emotions import EMOTIONS
from gifemo.features.normalise import FeatureNormaliser
from gifemo.features.store import FeatureStore
from gifemo.models.saved import save_model
from tests.test_collect import options, pool  # noqa: F401  (fixture)
from tests.test_feature_datamodule import make_store

REPO = Path(__file__).resolve().parents[1]
BY_EMOTION = {"happy": ["happiness"], "smile": ["happiness", "amusement"], "sad": ["sadness"], "angry": ["anger"]}  # fmt: skip


class Linear:
    """scores = X W + b, saved as the project's linear estimator."""

    def __init__(self, d: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(d, len(EMOTIONS))), rng.normal(size=len(EMOTIONS))

    def to_state(self):
        return {"kind": "linear"}, {"W": self.W, "b": self.b}


@pytest.fixture(scope="module")
def collected(pool, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("collected")
    with FakeGiphy.from_dataset(pool, aliases=2) as fake:
        collect(options(out, fake, ["common"]), api_key="k", emotion_queries=BY_EMOTION)
    return out


def expected(
    out: Path, ids: list[str], scores: np.ndarray, top: int, within: bool
) -> list[tuple[str, str]]:
    """(emotion, id) of the ranked lists, computed naively from metadata.jsonl's found_for."""
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    found = {r["id"]: set(r["found_for"]) for r in rows}
    res = []
    for j, e in enumerate(EMOTIONS):
        own = [i for i in range(len(ids)) if not within or e in found[ids[i]]]
        for i in sorted(own, key=lambda i: (-scores[i, j], ids[i]))[:top]:
            res.append((e, ids[i]))
    return res


def test_candidates_by_emotion(collected, tmp_path):
    c = candidates_by_emotion(collected)
    rows = [json.loads(x) for x in (collected / "metadata.jsonl").read_text().splitlines()]
    assert c is not None and set(c) == set(EMOTIONS)
    for e in EMOTIONS:
        assert c[e] == {r["id"] for r in rows if e in r["found_for"]}
    assert c["fear"] == set() and c["happiness"] and c["amusement"] < c["happiness"]
    assert len(rows) > len(c["happiness"])  # "common" found rows that no emotion's tags found
    plain = tmp_path / "metadata.jsonl"
    plain.write_text('{"id": "a", "file": "a.gif"}\n')
    assert candidates_by_emotion(plain) is None
    plain.write_text('{"id": "a", "file": "a.gif", "found_for": ["joy"]}\n')
    with pytest.raises(ValueError, match=r"metadata\.jsonl:1: field 'found_for'"):
        candidates_by_emotion(plain)
    plain.write_text('{"id": "a", "found_for": []}\n{"id": "b", found_for\n')
    with pytest.raises(ValueError, match=r"metadata\.jsonl:2: not a JSON object"):
        candidates_by_emotion(plain)


def test_rank_within_each_emotions_candidates(collected, tmp_path):
    ds = read_dataset(collected)
    store = make_store(tmp_path / "store", ds)
    est = Linear(store.visual.shape[1])
    m = save_model(tmp_path / "m", estimator=est, features="visual",
                   normaliser=FeatureNormaliser("none").fit(store.visual), dictionary=None, store=store)  # fmt: skip
    rows = rank(m, ds, store, top_n=4, candidates=candidates_by_emotion(collected))
    scores = np.asarray(store.visual, np.float64) @ est.W + est.b
    assert [(r["emotion"], r["id"]) for r in rows] == expected(
        collected, list(store.ids), scores, 4, True
    )
    everything = rank(m, ds, store, top_n=4)
    assert [(r["emotion"], r["id"]) for r in everything] == expected(
        collected, list(store.ids), scores, 4, False
    )
    assert {r["emotion"] for r in rows} == {"happiness", "amusement", "sadness", "anger"}


@pytest.mark.slow
def test_extract_py_and_predict_on_the_collected_folder(collected, tmp_path):
    s = tmp_path / "store"
    cmd = [sys.executable, "extract.py", "data=folder", "data.kind=unlabelled", f"data.root={collected}",
           "backbone=c3d_tiny", f"extract.out_dir={s}", "extract.num_workers=0", "extract.progress=false",
           f"hydra.run.dir={tmp_path / 'h'}"]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    store = FeatureStore.open(s)
    ds = read_dataset(collected)
    assert sorted(store.ids) == sorted(ds.ids()) and not store.failures
    est = Linear(store.visual.shape[1], seed=1)
    norm = FeatureNormaliser("l2").fit(np.asarray(store.visual))
    m = save_model(tmp_path / "m", estimator=est, features="visual", normaliser=norm, dictionary=None, store=store)  # fmt: skip
    scores = norm.transform(np.asarray(store.visual)) @ est.W + est.b
    for flag, within in (("auto", True), ("no", False)):
        o = tmp_path / f"ranked-{flag}"
        args = [
            "--model",
            str(m),
            "--data",
            str(collected),
            "--store",
            str(s),
            "--out",
            str(o),
            "--top",
            "3",
        ]
        assert predict_main([*args, "--candidates-by-emotion", flag]) == 0
        with open(o / "ranked.csv") as f:
            got = [(row["emotion"], row["id"]) for row in csv.DictReader(f)]
        assert got == expected(collected, list(store.ids), scores, 3, within)
