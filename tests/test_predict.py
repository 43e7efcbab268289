"""Saved models reload and score identically; ranked lists; store identity is checked."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from gifemo.apps.predict import main, rank
from gifemo.emotions import EMOTIONS
from gifemo.features.datamodule import build_feature_arrays
from gifemo.models.estimators import GPRegressor, MTLRegressor, UnsortedBaseline
from gifemo.models.penalties import Ridge
from gifemo.models.saved import load_model, save_model, score_dataset
from tests.test_feature_datamodule import make_dataset, make_store, protocol


@pytest.fixture
def fitted(tmp_path):
    ds = make_dataset(50, seed=3)
    store = make_store(tmp_path / "store", ds, missing=("g007",))
    with pytest.warns(RuntimeWarning, match="g007"):
        a = build_feature_arrays(
            ds, store, protocol=protocol(1), features="visual+tag", tag_min_fraction=0.05
        )
    est = MTLRegressor(Ridge, rho=1.0, tol=1e-6).fit(a.X, a.Y, a.train_mask)
    return ds, store, a, est


def test_linear_model_roundtrip_scores_identically(tmp_path, fitted):
    ds, store, a, est = fitted
    d = save_model(
        tmp_path / "m",
        estimator=est,
        features=a.features,
        normaliser=a.normaliser,
        dictionary=a.dictionary,
        store=store,
        config={"seed": 1},
    )
    assert sorted(p.name for p in d.iterdir()) == ["arrays.safetensors", "model.json", "tags.json"]
    m = load_model(d)
    with pytest.warns(RuntimeWarning, match="g007"):
        keep, scores = score_dataset(m, ds, store)
    assert [ds.records[i].id for i in keep] == a.ids
    np.testing.assert_allclose(scores, est.predict(a.X), rtol=0, atol=1e-12)
    assert json.loads((d / "model.json").read_text())["store"]["weights_id"] == "random-init"


def test_rank_writes_top_n(tmp_path, fitted):
    ds, store, a, est = fitted
    d = save_model(
        tmp_path / "m",
        estimator=est,
        features=a.features,
        normaliser=a.normaliser,
        dictionary=a.dictionary,
        store=store,
    )
    with pytest.warns(RuntimeWarning):
        rows = rank(d, ds, store, top_n=5, out_dir=tmp_path / "out")
    assert len(rows) == 5 * len(EMOTIONS)
    s = est.predict(a.X)
    for j, e in enumerate(EMOTIONS):
        want = [a.ids[i] for i in np.argsort(-s[:, j], kind="stable")[:5]]
        assert [r["id"] for r in rows if r["emotion"] == e] == want
    with open(tmp_path / "out" / "ranked.csv") as f:
        got = list(csv.DictReader(f))
    assert got[0]["emotion"] == "amusement" and got[0]["rank"] == "1" and len(got) == len(rows)
    assert len((tmp_path / "out" / "ranked.jsonl").read_text().splitlines()) == len(rows)


def test_rank_replaces_the_lists_whole_or_not_at_all(tmp_path, fitted, monkeypatch):
    """A run that dies while writing (disk full, Ctrl-C) leaves the previous ranked.csv and
    ranked.jsonl as they were: never a half list, nor a new csv beside an old jsonl, which the
    labelling tool would read as a complete ranking."""
    import gifemo.apps.predict as predict

    ds, store, a, est = fitted
    d = save_model(tmp_path / "m", estimator=est, features=a.features, normaliser=a.normaliser,
                   dictionary=a.dictionary, store=store)  # fmt: skip
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning):
        rank(d, ds, store, top_n=2, out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}

    def dumps(obj, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 30:
            raise OSError(28, "No space left on device")
        return json.dumps(obj, *args, **kwargs)

    monkeypatch.setattr(predict, "json", type("J", (), {"dumps": staticmethod(dumps)}))
    with pytest.warns(RuntimeWarning), pytest.raises(OSError, match="No space"):
        rank(d, ds, store, top_n=5, out_dir=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_store_identity_mismatch(tmp_path, fitted):
    ds, store, a, est = fitted
    d = save_model(
        tmp_path / "m",
        estimator=est,
        features=a.features,
        normaliser=a.normaliser,
        dictionary=a.dictionary,
        store=store,
    )
    other = dataclasses.replace(store, meta={**store.meta, "weights_id": "c3d.pickle sha256:ab"})
    with pytest.raises(ValueError, match="weights_id: model 'random-init'"):
        rank(d, ds, other)
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        load_model(tmp_path)


def test_unsorted_and_gp_roundtrip(tmp_path, fitted):
    ds, store, a, _ = fitted
    for i, est in enumerate(
        [
            UnsortedBaseline().fit(a.X, a.Y, a.train_mask),
            GPRegressor(rank_rule="mean", max_iter=3, warm_start_size=None).fit(
                a.X, a.Y, a.train_mask
            ),
        ]
    ):
        d = save_model(
            tmp_path / f"m{i}",
            estimator=est,
            features=a.features,
            normaliser=a.normaliser,
            dictionary=a.dictionary,
            store=store,
        )
        with pytest.warns(RuntimeWarning):
            _, scores = score_dataset(load_model(d), ds, store)
        np.testing.assert_allclose(scores, est.predict(a.X), rtol=1e-10, atol=1e-10)


def _write_store(sp, store):
    """``store`` as a finished store on disk (the legacy ids.txt layout, which stores still open)."""
    from gifemo.features.store import COMPLETE

    sp.mkdir()
    np.save(sp / "visual.npy", np.asarray(store.visual))
    (sp / "ids.txt").write_text("\n".join(store.ids) + "\n")
    np.save(sp / "n_frames.npy", store.n_frames)
    np.save(sp / "mean_delay_ms.npy", store.mean_delay_ms)
    (sp / "failures.jsonl").write_text("")
    (sp / "meta.json").write_text(json.dumps(store.meta))
    (sp / COMPLETE).write_text(json.dumps({"fingerprint": "f", "n": len(store.ids), "dim": 8}))
    return sp


def test_cli_with_store(tmp_path, fitted):
    ds, store, a, est = fitted
    # a real on-disk store: the CLI opens it
    sp = _write_store(tmp_path / "disk_store", store)
    root = tmp_path / "cands"
    (root / "gifs").mkdir(parents=True)
    lines = []
    for r in ds.records:
        (root / "gifs" / f"{r.id}.gif").write_bytes(b"GIF89a")
        lines.append(json.dumps({"id": r.id, "file": f"gifs/{r.id}.gif", "tags": list(r.tags)}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    d = save_model(
        tmp_path / "m",
        estimator=est,
        features=a.features,
        normaliser=a.normaliser,
        dictionary=a.dictionary,
        store=store,
    )
    with pytest.warns(RuntimeWarning, match="g007"):
        assert (
            main(
                [
                    "--model",
                    str(d),
                    "--data",
                    str(root),
                    "--store",
                    str(sp),
                    "--out",
                    str(tmp_path / "o"),
                    "--top",
                    "3",
                ]
            )
            == 0
        )
    got = list(csv.DictReader(open(tmp_path / "o" / "ranked.csv")))
    s = est.predict(a.X)[:, 0]
    assert [g["id"] for g in got[:3]] == [a.ids[i] for i in np.argsort(-s, kind="stable")[:3]]


def _plain_folder_and_model(tmp_path, fitted):
    """A folder of the fitted dataset's GIFs (no metadata.jsonl) and the saved model."""
    ds, store, a, est = fitted
    folder = tmp_path / "plain"
    folder.mkdir()
    for r in ds.records:
        (folder / f"{r.id}.gif").write_bytes(b"GIF89a")
    d = save_model(tmp_path / "m", estimator=est, features=a.features, normaliser=a.normaliser,
                   dictionary=a.dictionary, store=store)  # fmt: skip
    return folder, d


def test_cli_on_a_plain_folder_of_gifs_ranks_all(tmp_path, fitted, capsys):
    """--data may be a plain folder of GIFs (no metadata.jsonl), as the README says; --top all
    ranks every GIF for every emotion."""
    store = fitted[1]
    sp = _write_store(tmp_path / "disk_store", store)
    folder, d = _plain_folder_and_model(tmp_path, fitted)
    argv = [
        "--model",
        str(d),
        "--data",
        str(folder),
        "--store",
        str(sp),
        "--out",
        str(tmp_path / "o"),
    ]
    with pytest.warns(RuntimeWarning, match="g007"):
        assert main([*argv, "--top", "all"]) == 0
    got = list(csv.DictReader(open(tmp_path / "o" / "ranked.csv")))
    assert len(got) == 17 * 49 and {g["id"] for g in got} == set(store.ids)
    assert "(all per emotion) of 50 GIFs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "--top", "many"])


def test_cli_candidates_yes_without_found_for_stops_before_extracting(
    tmp_path, fitted, capsys, monkeypatch
):
    """--candidates-by-emotion yes on a folder without found_for is refused at once, naming the
    folder, before any feature extraction (which can take hours)."""
    from gifemo.apps import predict

    folder, d = _plain_folder_and_model(tmp_path, fitted)

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted before checking --candidates-by-emotion")

    monkeypatch.setattr(predict, "_extract_store", no_extraction)
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(d), "--data", str(folder), "--out", str(tmp_path / "o"),
              "--candidates-by-emotion", "yes"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "found_for" in err and "no metadata.jsonl" in err
