"""GIFGIF API per-GIF records → metadata.jsonl: a sample of records (JSON lines, a folder of
per-emotion files, wrapped lists), what the dataset reader then sees, errors naming the place."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gifemo.apps.gifgif import main
from gifemo.data.gifgif_api import ApiRecordError, import_api_records, read_api_records
from gifemo.data.metadata import read_dataset
from gifemo.emotions import EMOTION_INDEX, MU0, SIGMA0


def rec(gid, metric, mu, sigma, tags=(), rank=1, **extra):
    r = {
        "cID": f"c-{gid}-{metric}",
        "content": gid,
        "rank": rank,
        "parameters": {"mu": mu, "sigma": sigma},
        "content_data": {
            "tags": list(tags),
            "embedLink": f"https://giphy.com/embed/{gid}",
            "still_image": f"https://media.giphy.com/media/{gid}/200_s.gif",
        },
    }
    if metric is not None:
        r["metric"] = metric
    r.update(extra)
    return r


SAMPLE = [
    rec("MazO89pt5NljG", "happiness", 31.82, 1.27, ["happy", "laughing"], rank=12),
    rec("MazO89pt5NljG", "sadness", 18.4, 1.9, ["happy", "lol"], rank=3001),
    rec("10UUe8ZsLnaqwo", "happiness", 22.0, 2.5, ["cat"], rank=800),
    rec("gone1234", "fear", 30.0, 1.0, ["scared"]),
    rec("MazO89pt5NljG", "happiness", 31.82, 1.27, ["happy"], rank=12),  # an exact repeat
]


def _gifs(tmp_path, ids=("MazO89pt5NljG", "10UUe8ZsLnaqwo")):
    d = tmp_path / "data" / "gifs"
    d.mkdir(parents=True)
    for g in ids:
        (d / f"{g}.gif").write_bytes(b"GIF89a")
    return d


def test_jsonl_sample_imports_as_gifgif_metadata(tmp_path):
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SAMPLE))
    gifs = _gifs(tmp_path)
    out = tmp_path / "data" / "metadata.jsonl"
    s = import_api_records(src, gifs, out)
    assert s == {
        "gifs": 3,
        "rows": 2,
        "without_file": 1,
        "missing_list": str(tmp_path / "data" / "missing_gifs.tsv"),
        "records": 4,
        "gifs_missing_emotions": 3,
        "tagless": 0,
    }
    ds = read_dataset(out.parent)
    assert ds.kind == "gifgif" and ds.ids() == ["MazO89pt5NljG", "10UUe8ZsLnaqwo"]
    a = ds.records[0]
    assert a.tags == ("happy", "laughing", "lol")  # union over its records, first-seen order
    want = np.tile([MU0, SIGMA0], (17, 1))
    want[EMOTION_INDEX["happiness"]] = [31.82, 1.27]
    want[EMOTION_INDEX["sadness"]] = [18.4, 1.9]
    np.testing.assert_allclose(a.scores, want)
    row = json.loads(out.read_text().splitlines()[0])
    assert row["file"] == "gifs/MazO89pt5NljG.gif"
    assert row["gifgif"]["rank"] == {"happiness": 12, "sadness": 3001}
    assert row["gifgif"]["embedLink"] == "https://giphy.com/embed/MazO89pt5NljG"
    missing = (tmp_path / "data" / "missing_gifs.tsv").read_text().splitlines()
    assert missing == [
        "id\tembedLink\tstill_image",
        "gone1234\thttps://giphy.com/embed/gone1234\thttps://media.giphy.com/media/gone1234/200_s.gif",
    ]
    # y = mu - 3 sigma > 25: the happiness positive
    assert ds.labels()[0, EMOTION_INDEX["happiness"]] == pytest.approx(31.82 - 3 * 1.27)


def test_folder_of_per_emotion_files_and_wrapped_lists(tmp_path, capsys):
    src = tmp_path / "api"
    (src / "sub").mkdir(parents=True)
    # records without "metric": the file name says the emotion; "std" is GIFGIF's own name
    (src / "Happiness.json").write_text(
        json.dumps({"results": [rec("MazO89pt5NljG", None, 30.0, 1.0, ["smile"])]})
    )
    sad = rec("MazO89pt5NljG", None, 20.0, 2.0, "sad, crying")  # tags as one string
    sad["parameters"] = {"mu": 20.0, "std": 2.0}
    sad["content_data"]["tags"] = "sad, crying"
    (src / "sub" / "sadness.json").write_text(json.dumps([sad]))
    _gifs(tmp_path, ids=("MazO89pt5NljG",))
    out = tmp_path / "data" / "metadata.jsonl"
    assert main([str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 GIFs with scores for 17 emotions from 2 records" in printed
    r = read_dataset(out.parent).records[0]
    assert r.tags == ("smile", "sad", "crying")
    assert r.scores[EMOTION_INDEX["sadness"]].tolist() == [20.0, 2.0]
    assert not (tmp_path / "data" / "missing_gifs.tsv").exists()


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"content": "a", "metric": "fear"'], r"r\.jsonl:1: not valid JSON"),
        ([json.dumps(rec("a", "joy", 25, 1))], r"r\.jsonl:1: metric 'joy' is not one of"),
        ([json.dumps(rec("a", None, 25, 1))], r"r\.jsonl:1: the record names no emotion"),
        ([json.dumps(rec("", "fear", 25, 1))], r"r\.jsonl:1: 'content' \(the Giphy id\)"),
        ([json.dumps(rec("a", "fear", "NaN", 1))], r"r\.jsonl:1: parameters\.mu must be finite"),
        ([json.dumps(rec("a", "fear", 25, -1))], r"r\.jsonl:1: parameters\.sigma must be >= 0"),
        (
            [json.dumps(rec("a", "fear", 25, 1)), "", json.dumps(rec("a", "fear", 26, 1))],
            r"r\.jsonl:3: GIF 'a', fear: .* contradicts .* at .*r\.jsonl:1",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path, lines, match):
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ApiRecordError, match=match):
        read_api_records(p)


def test_default_emotion_and_cli_errors(tmp_path, capsys):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(rec("a", None, 29.0, 1.0, ["x"])) + "\n")
    assert read_api_records(p, emotion="pride")["a"].scores[EMOTION_INDEX["pride"], 0] == 29.0
    with pytest.raises(SystemExit) as ei:
        main([str(p), "--out", str(tmp_path / "m.jsonl"), "--gifs", str(tmp_path)])
    assert ei.value.code == 2 and "names no emotion" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main([str(p), "--out", str(tmp_path / "m.jsonl"), "--emotion", "pride"])
    assert "none of the 1 GIFs" in capsys.readouterr().err and not (tmp_path / "m.jsonl").exists()
