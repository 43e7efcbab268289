"""``python -m gifemo screening``: simulate on generated data, and on folders with known labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gifemo.apps.screening import main
from gifemo.emotions import EMOTIONS


def _check_outputs(out, model):
    res = json.loads((out / "screening.json").read_text())
    assert (out / "recall_curves.png").stat().st_size > 0
    row = res["per_seed"][0]
    static = res["per_emotion"][f"static/{model}"][0]["n_tilde"]
    active = res["per_emotion"][f"active/{model}"][0]["n_tilde"]
    ok = [e for e in EMOTIONS if np.isfinite(static[e]) and np.isfinite(active[e])]
    expect = 1 - sum(active[e] for e in ok) / sum(static[e] for e in ok)
    assert row["work_saved_vs_static"] == pytest.approx(expect)
    unsorted = res["per_emotion"]["unsorted"][0]["n_tilde"]
    ok = [e for e in EMOTIONS if np.isfinite(static[e]) and np.isfinite(unsorted[e])]
    expect = 1 - sum(static[e] for e in ok) / sum(unsorted[e] for e in ok)
    assert row["static_saved_vs_unsorted"] == pytest.approx(expect)
    assert res["models"][model]["work_saved_vs_static"]["n"] == 1
    return res


def test_simulate_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "sim"
    argv = ["simulate", "--scale", "0.004", "--seeds", "1", "--models", "cmtl", "--k", "40"]
    assert main([*argv, "--out", str(out)]) == 0
    _check_outputs(out, "cmtl")
    assert "saved vs static" in capsys.readouterr().out


def _folder(root, rows):
    (root / "gifs").mkdir(parents=True)
    for r in rows:
        (root / r["file"]).write_bytes(b"GIF89a")
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pool_on_folders_with_truth_and_found_for(tmp_path):
    rng = np.random.default_rng(0)
    vocab = ["happy", "sad", "angry", "cute", "lol", "wow", "cat", "dog", "yes", "no"]
    train, pool, truth = [], [], []
    for n in range(80):
        tags = [str(t) for t in rng.choice(vocab, size=3, replace=False)]
        mu = rng.uniform(15, 35, size=17) + 8 * ("happy" in tags)
        scores = {e: [float(m), 1.5] for e, m in zip(EMOTIONS, mu, strict=True)}
        train.append({"id": f"t{n}", "file": f"gifs/t{n}.gif", "tags": tags, "scores": scores})
    for n in range(120):
        tags = [str(t) for t in rng.choice(vocab, size=3, replace=False)]
        found = [str(e) for e in rng.choice(EMOTIONS, size=8, replace=False)]
        pool.append({"id": f"c{n}", "file": f"gifs/c{n}.gif", "tags": tags, "found_for": found})
        emos = [e for e in EMOTIONS if rng.random() < (0.5 if "happy" in tags else 0.2)]
        truth.append({"id": f"c{n}", "emotions": emos})
    _folder(tmp_path / "train", train)
    _folder(tmp_path / "pool", pool)
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth))
    out = tmp_path / "out"
    argv = ["pool", "--train", str(tmp_path / "train"), "--pool", str(tmp_path / "pool"),
            "--truth", str(tmp_path / "truth.jsonl"), "--features", "tag", "--n-p", "5",
            "--models", "lasso", "--seeds", "1", "--k", "20", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    res = _check_outputs(out, "lasso")
    assert res["per_seed"][0]["n_emotions"] >= 1

    from gifemo.active.realdata import screening_data_from_folders

    data = screening_data_from_folders(
        tmp_path / "train", tmp_path / "pool", truth=tmp_path / "truth.jsonl", features="tag"
    )
    for i, e in enumerate(EMOTIONS):  # candidates = the rows found for the emotion
        assert {data.pool_ids[j] for j in data.candidates[i]} == {
            r["id"] for r in pool if e in r["found_for"]
        }
    with pytest.raises(ValueError, match="truth"):
        screening_data_from_folders(tmp_path / "train", tmp_path / "pool", features="tag")


@pytest.mark.parametrize("found", ["happiness", ["Happiness"], [3], [["anger"]]])
def test_pool_found_for_that_is_not_a_list_of_emotions_is_named(tmp_path, found):
    """A bad found_for (a bare word, a misspelt emotion) used to give every emotion 0 candidates
    silently (and NaN results); it is refused naming the file and line, as collect's reader does."""
    from gifemo.active.realdata import screening_data_from_folders

    scores = {e: [20.0, 1.0] for e in EMOTIONS}
    train = [{"id": f"t{n}", "file": f"gifs/t{n}.gif", "tags": ["a"], "scores": scores}
             for n in range(4)]  # fmt: skip
    pool = [{"id": "c0", "file": "gifs/c0.gif", "tags": ["a"], "found_for": ["anger"]},
            {"id": "c1", "file": "gifs/c1.gif", "tags": ["a"], "found_for": found}]  # fmt: skip
    _folder(tmp_path / "train", train)
    _folder(tmp_path / "pool", pool)
    (tmp_path / "truth.jsonl").write_text(
        "".join(json.dumps({"id": r["id"], "emotions": []}) + "\n" for r in pool)
    )
    with pytest.raises(ValueError, match=r"metadata\.jsonl:2: .*found_for"):
        screening_data_from_folders(
            tmp_path / "train", tmp_path / "pool", truth=tmp_path / "truth.jsonl", features="tag"
        )


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"emotions": ["anger"]}, r"truth\.jsonl:2: the truth row has no 'id'"),
        ({"ID": "c1", "emotions": []}, r"truth\.jsonl:2: the truth row has no 'id'"),
        ({"id": 1, "emotions": []}, r"truth\.jsonl:2: 'id' must be a string"),
        ({"id": None, "emotions": []}, r"truth\.jsonl:2: 'id' must be a string"),
        (["c1", ["anger"]], r"truth\.jsonl:2: a truth row must be a JSON object"),
    ],
    ids=["no id", "misspelt key", "int id", "null id", "not an object"],
)
def test_pool_truth_row_without_a_string_id_is_named(tmp_path, row, error):
    """A truth row without an id (or a non-string one) was skipped silently: the run went on
    with the other rows, or failed later with 'N pool GIFs have no truth row'. It is refused
    naming the file and line."""
    from gifemo.active.realdata import screening_data_from_folders

    scores = {e: [20.0, 1.0] for e in EMOTIONS}
    train = [{"id": f"t{n}", "file": f"gifs/t{n}.gif", "tags": ["a"], "scores": scores}
             for n in range(4)]  # fmt: skip
    pool = [{"id": f"c{n}", "file": f"gifs/c{n}.gif", "tags": ["a"]} for n in range(2)]
    _folder(tmp_path / "train", train)
    _folder(tmp_path / "pool", pool)
    rows = [{"id": r["id"], "emotions": []} for r in pool]  # every pool GIF has its row
    (tmp_path / "truth.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [rows[0], row, rows[1]])
    )
    with pytest.raises(ValueError, match=error):
        screening_data_from_folders(
            tmp_path / "train", tmp_path / "pool", truth=tmp_path / "truth.jsonl", features="tag"
        )
