"""metadata.jsonl readers: every error names file, line and field; paths; kinds; folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gifemo.data.metadata import GifDataset, MetadataError, read_dataset, read_folder
from gifemo.emotions import EMOTIONS, MU0, SIGMA0


def _scores(mu: float = 25.0, sigma: float = 1.0) -> dict:
    return {e: [mu + i, sigma] for i, e in enumerate(EMOTIONS)}


def _write(root: Path, rows: list, *, make_files: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in rows:
        parsed = r
        if isinstance(r, str):
            try:
                parsed = json.loads(r)
            except json.JSONDecodeError:
                parsed = None
        if isinstance(parsed, dict) and make_files and isinstance(parsed.get("file"), str):
            p = root / parsed["file"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"GIF89a")
        lines.append(r if isinstance(r, str) else json.dumps(r))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _gg(i: int, **kw) -> dict:
    row = {
        "id": f"g{i}",
        "file": f"gifs/g{i}.gif",
        "tags": [" Happy ", "Eye  Roll"],
        "scores": _scores(),
    }
    row.update(kw)
    return row


def _gp(i: int, **kw) -> dict:
    row = {
        "id": f"p{i}",
        "file": f"gifs/p{i}.gif",
        "tags": ["sad"],
        "emotions": ["sadness", "Guilt"],
        "cartoon": True,
        "multi_scene": False,
    }
    row.update(kw)
    return row


def test_gifgif_style(tmp_path):
    root = _write(tmp_path / "d", [_gg(0), "", _gg(1, scores=_scores(30.0, 0.5))])
    ds = read_dataset(root)
    assert isinstance(ds, GifDataset) and ds.kind == "gifgif" and ds.ids() == ["g0", "g1"]
    r = ds.records[1]
    assert r.path.is_absolute() and r.path == (root / "gifs/g1.gif").resolve()
    assert r.tags == ("happy", "eye roll") and r.source == "metadata.jsonl:3"
    s = ds.scores()
    assert s.shape == (2, 17, 2)
    assert s[1, 3].tolist() == [33.0, 0.5]  # contentment is emotion index 3
    y = ds.labels()
    np.testing.assert_allclose(y[1], 30.0 + np.arange(17) - 1.5)
    assert ds.binary_labels()[1].sum() == 17 and ds.binary_labels()[0].sum() == 17 - 4
    with pytest.raises(ValueError, match="no \\[mu, sigma\\]"):
        read_dataset(_write(tmp_path / "p", [_gp(0)])).scores()


def test_gifgif_plus_and_unlabelled(tmp_path):
    ds = read_dataset(_write(tmp_path / "p", [_gp(0), _gp(1, emotions=[], cartoon=None)]))
    assert ds.kind == "gifgif_plus"
    assert ds.records[0].emotions == frozenset({"sadness", "guilt"})
    assert ds.records[0].cartoon is True and ds.records[1].cartoon is None
    b = ds.binary_labels()
    assert (
        b.shape == (2, 17) and b[0].sum() == 2 and b[0, EMOTIONS.index("guilt")] and not b[1].any()
    )
    u = read_dataset(_write(tmp_path / "u", [{"id": "a", "file": "a.gif"}]))
    assert u.kind == "unlabelled" and u.records[0].tags == () and u.records[0].scores is None
    with pytest.raises(ValueError, match="no labels"):
        u.binary_labels()
    # kind="unlabelled" reads labelled rows and drops the labels
    d = read_dataset(tmp_path / "p", kind="unlabelled")
    assert d.kind == "unlabelled" and d.records[0].emotions is None


def test_absolute_file_and_no_check(tmp_path):
    gif = tmp_path / "elsewhere.gif"
    gif.write_bytes(b"GIF89a")
    ds = read_dataset(_write(tmp_path / "d", [{"id": "x", "file": str(gif)}]))
    assert ds.records[0].path == gif.resolve()
    root = _write(tmp_path / "m", [{"id": "x", "file": "missing.gif"}], make_files=False)
    assert read_dataset(root, check_files=False).records[0].path == (root / "missing.gif").resolve()


BAD = [
    ("invalid json", ['{"id": "a", '], 1, None, "invalid JSON"),
    ("not an object", [[1, 2]], 1, None, "JSON object"),
    ("missing id", [{"file": "a.gif"}], 1, "id", "missing"),
    ("empty id", [{"id": " ", "file": "a.gif"}], 1, "id", "non-empty"),
    ("missing file", [{"id": "a"}], 1, "file", "missing"),
    ("tags not list", [{"id": "a", "file": "a.gif", "tags": "happy"}], 1, "tags", "list"),
    ("tag not str", [{"id": "a", "file": "a.gif", "tags": ["x", 3]}], 1, "tags[1]", "string"),
    (
        "unknown emotion score",
        [_gg(0, scores={**_scores(), "joy": [1, 1]})],
        1,
        "scores.joy",
        "unknown emotion",
    ),
    (
        "missing emotion score",
        [_gg(0, scores={k: v for k, v in _scores().items() if k != "fear"})],
        1,
        "scores.fear",
        "missing",
    ),
    (
        "score shape",
        [_gg(0, scores={**_scores(), "fear": [25.0]})],
        1,
        "scores.fear",
        "\\[mu, sigma\\]",
    ),
    (
        "score not number",
        [_gg(0, scores={**_scores(), "fear": ["25", 1]})],
        1,
        "scores.fear[0]",
        "number",
    ),
    (
        "score NaN",
        [
            _gg(0),
            '{"id": "g1", "file": "gifs/g0.gif", "scores": '
            + json.dumps(_scores()).replace("[26.0, 1.0]", "[NaN, 1.0]")
            + "}",
        ],
        2,
        "scores.anger[0]",
        "finite",
    ),
    (
        "score inf",
        [
            '{"id": "g1", "file": "gifs/g0.gif", "scores": '
            + json.dumps(_scores()).replace("[27.0, 1.0]", "[27.0, Infinity]")
            + "}"
        ],
        1,
        "scores.contempt[1]",
        "finite",
    ),
    (
        "negative sigma",
        [_gg(0, scores={**_scores(), "pride": [25.0, -0.1]})],
        1,
        "scores.pride[1]",
        ">= 0",
    ),
    ("scores not dict", [_gg(0, scores=[1, 2])], 1, "scores", "object"),
    ("unknown emotion label", [_gp(0, emotions=["joy"])], 1, "emotions[0]", "unknown emotion"),
    ("emotions not list", [_gp(0, emotions="sadness")], 1, "emotions", "list"),
    (
        "emotion a list",
        [_gp(0), _gp(1, emotions=["fear", ["sadness"]])],
        2,
        "emotions[1]",
        "unknown emotion",
    ),
    (
        "emotion an object",
        [_gp(0, emotions=[{"name": "fear"}])],
        1,
        "emotions[0]",
        "unknown emotion",
    ),
    ("cartoon not bool", [_gp(0, cartoon="yes")], 1, "cartoon", "true/false"),
    ("both styles", [_gg(0, emotions=["fear"])], 1, "scores", "not both"),
    ("mixed styles", [_gg(0), _gg(1), _gp(2)], 3, "emotions", "refuses a mix"),
    ("duplicate id", [_gg(0), _gg(1), _gg(0)], 3, "id", "duplicate id 'g0' \\(first on line 1\\)"),
]


@pytest.mark.parametrize(
    ("rows", "line", "field", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_errors_name_file_line_field(tmp_path, rows, line, field, match):
    root = _write(tmp_path / "d", rows)
    with pytest.raises(MetadataError, match=match) as ei:
        read_dataset(root)
    e = ei.value
    assert (
        e.file == str((root / "metadata.jsonl").resolve()) and e.line == line and e.field == field
    )
    assert str(e).startswith(f"{e.file}:{line}:")


def test_bytes_that_are_not_utf8_name_the_line(tmp_path):
    # a file saved as Latin-1 by another tool: "ü" is the single byte 0xfc
    root = _write(tmp_path / "d", [_gp(0), _gp(1)])
    text = (root / "metadata.jsonl").read_bytes()
    row = json.dumps(_gp(2, tags=["müde"]), ensure_ascii=False).encode("latin-1")
    (root / "metadata.jsonl").write_bytes(text + row + b"\n")
    with pytest.raises(MetadataError, match="not UTF-8") as ei:
        read_dataset(root)
    assert ei.value.line == 3 and ei.value.file == str((root / "metadata.jsonl").resolve())


def test_a_utf8_byte_order_mark_is_ignored(tmp_path):
    """A metadata.jsonl saved as "UTF-8 with BOM" (Notepad) reads as the file without it, in
    every reader of metadata.jsonl; it was an 'invalid JSON' error on line 1 telling the user
    to decode with utf-8-sig."""
    from gifemo.apps.label.project import _raw_rows
    from gifemo.data.candidates import candidates_by_emotion

    rows = [_gp(0, found_for=["fear"]), _gp(1, found_for=["anger"])]
    plain = read_dataset(_write(tmp_path / "plain", rows))
    root = _write(tmp_path / "bom", rows)
    meta = root / "metadata.jsonl"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    ds = read_dataset(root)
    assert ds.kind == plain.kind == "gifgif_plus" and ds.ids() == plain.ids() == ["p0", "p1"]
    assert np.array_equal(ds.binary_labels(), plain.binary_labels())
    found = candidates_by_emotion(root)  # collect's and screening's one reader of found_for
    assert found is not None and found["fear"] == {"p0"} and found["anger"] == {"p1"}
    assert list(_raw_rows(meta)) == ["p0", "p1"]
    # a Latin-1 line after the BOM is still named by its own line number
    row = json.dumps(_gp(2, tags=["müde"]), ensure_ascii=False).encode("latin-1")
    meta.write_bytes(meta.read_bytes() + row + b"\n")
    with pytest.raises(MetadataError, match="not UTF-8") as ei:
        read_dataset(root)
    assert ei.value.line == 3


@pytest.mark.parametrize("check_files", [True, False])
def test_a_nul_character_in_file_is_named(tmp_path, check_files):
    """A NUL (\\u0000 in the JSON) in a row's file was a bare ValueError('embedded null byte')
    from the path functions."""
    root = _write(tmp_path / "d", [_gg(0), _gg(1, file="gifs/g1\x00.gif")], make_files=False)
    (root / "gifs").mkdir()
    (root / "gifs/g0.gif").write_bytes(b"GIF89a")
    with pytest.raises(MetadataError, match="NUL") as ei:
        read_dataset(root, check_files=check_files)
    e = ei.value
    assert (e.file, e.line, e.field) == (str((root / "metadata.jsonl").resolve()), 2, "file")


def test_missing_gif_file(tmp_path):
    root = _write(tmp_path / "d", [_gg(0), _gg(1)], make_files=False)
    (root / "gifs").mkdir()
    (root / "gifs/g0.gif").write_bytes(b"GIF89a")
    with pytest.raises(MetadataError, match="GIF file not found") as ei:
        read_dataset(root)
    assert ei.value.line == 2 and ei.value.field == "file"


def test_explicit_kind_requires_labels(tmp_path):
    root = _write(tmp_path / "d", [_gg(0), {"id": "b", "file": "b.gif"}])
    with pytest.raises(MetadataError, match="refuses a mix"):
        read_dataset(root)
    with pytest.raises(MetadataError) as ei:
        read_dataset(root, kind="gifgif")
    assert ei.value.line == 2 and ei.value.field == "scores"
    with pytest.raises(MetadataError) as ei:
        read_dataset(root, kind="gifgif_plus")
    assert ei.value.line == 1 and ei.value.field == "emotions"
    with pytest.raises(ValueError, match="kind"):
        read_dataset(root, kind="nope")


def test_missing_and_empty_metadata(tmp_path):
    with pytest.raises(MetadataError, match="metadata file not found"):
        read_dataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text("\n\n")
    with pytest.raises(MetadataError, match="no records"):
        read_dataset(tmp_path)


@pytest.mark.parametrize(
    ("names", "suffixes"), [(("a.GIF", "a.gif"), (".gif",)), (("x.gif", "x.mp4"), (".gif", ".mp4"))]
)
def test_read_folder_refuses_two_files_with_one_id(tmp_path, names, suffixes):
    # the id is the path without its suffix: these two would be one row of the feature store
    # (extraction ran to the end, then failed on "duplicate ids in ids.jsonl")
    for n in names:
        (tmp_path / n).write_bytes(b"GIF89a")
    with pytest.raises(MetadataError, match="same id") as ei:
        read_folder(tmp_path, suffixes=suffixes)
    assert all(str(tmp_path / n) in str(ei.value) for n in names)


def test_read_folder(tmp_path):
    for rel in ["b.gif", "a.GIF", "sub/c.gif", "notes.txt"]:
        p = tmp_path / "f" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"GIF89a")
    ds = read_folder(tmp_path / "f")
    assert ds.kind == "folder" and ds.ids() == ["a", "b", "sub/c"]
    assert all(r.path.is_absolute() and r.scores is None for r in ds.records)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetadataError, match="no files"):
        read_folder(tmp_path / "empty")
    with pytest.raises(MetadataError, match="not found"):
        read_folder(tmp_path / "nope")


def test_subset_and_prior_positive_rule(tmp_path):
    rows = [
        _gg(0, scores={e: [MU0, SIGMA0] for e in EMOTIONS}),
        _gg(1, scores={e: [28.01, 1.0] for e in EMOTIONS}),
    ]
    ds = read_dataset(_write(tmp_path / "d", rows))
    assert not ds.binary_labels()[0].any() and ds.binary_labels()[1].all()
    sub = ds.subset([1])
    assert sub.ids() == ["g1"] and sub.index_of("g1") == 0
