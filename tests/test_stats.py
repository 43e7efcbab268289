"""Figs. 9-10 statistics against naive loops on hand-made data; PNGs written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gifemo.data.metadata import GifDataset, GifRecord, read_dataset
from gifemo.data.stats import (
    dataset_statistics,
    flag_shares,
    gif_timing,
    histogram,
    overlap_rates,
    timing_summary,
)
from gifemo.emotions import EMOTIONS


def _plus(labels: list[set[str]], flags: list[tuple[bool | None, bool | None]]) -> GifDataset:
    recs = [
        GifRecord(
            id=f"g{i}", path=Path(f"/x/g{i}.gif"), emotions=frozenset(e), cartoon=c, multi_scene=m
        )
        for i, (e, (c, m)) in enumerate(zip(labels, flags, strict=True))
    ]
    return GifDataset(root=Path("/x"), kind="gifgif_plus", records=recs, name="hand")


def test_overlap_rates_naive_loop():
    rng = np.random.default_rng(0)
    b = rng.random((60, 17)) < 0.2
    b[:, 5] = False  # an emotion without GIFs → NaN row
    r = overlap_rates(b)
    for i in range(17):
        ni = sum(b[n, i] for n in range(60))
        for j in range(17):
            if ni == 0:
                assert np.isnan(r[i, j])
            else:
                assert r[i, j] == pytest.approx(sum(b[n, i] and b[n, j] for n in range(60)) / ni)
    assert np.allclose(np.diag(r)[np.arange(17) != 5], 1.0)
    with pytest.raises(ValueError, match="shape"):
        overlap_rates(np.zeros(17))


def test_overlap_hand_example_and_shares():
    ds = _plus(
        [{"happiness", "pleasure"}, {"happiness"}, {"sadness"}, {"happiness", "sadness"}],
        [(True, False), (False, None), (True, True), (None, None)],
    )
    r = overlap_rates(ds.binary_labels())
    h, p, s = (EMOTIONS.index(e) for e in ("happiness", "pleasure", "sadness"))
    assert (
        r[h, p] == pytest.approx(1 / 3)
        and r[p, h] == 1.0
        and r[s, h] == 0.5
        and r[h, s] == pytest.approx(1 / 3)
    )
    sh = flag_shares(ds)
    assert sh["cartoon"] == {"share": 2 / 3, "true": 2, "known": 3}
    assert sh["multi_scene"] == {"share": 0.5, "true": 1, "known": 2}


def test_histogram_and_summary_naive():
    n = np.array([2, 3, 3, 16, 40, 100, 347], dtype=float)
    counts, edges = histogram(n, bins=5)
    assert counts.sum() == 7 and edges[0] == 2 and edges[-1] == 347
    for k in range(5):
        last = k == 4
        assert counts[k] == sum(
            edges[k] <= x and (x < edges[k + 1] or (last and x <= edges[k + 1])) for x in n
        )
    d = np.array([20.0, 40.0, 0.0, 100.0, 800.0, 50.0, np.nan])
    s = timing_summary(n, d)
    assert s["min_frames"] == 2 and s["max_frames"] == 347 and s["median_frames"] == 16
    assert s["fps_ratio"] == pytest.approx(800 / 20) and s["zero_delay_gifs"] == 1
    with pytest.raises(ValueError, match="no finite"):
        histogram(np.array([np.nan]))


def _gif(path: Path, n: int, delays: list[int]) -> None:
    frames = [Image.new("P", (8, 6), color=k % 2) for k in range(n)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 255, 255])
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays, loop=0)


def test_gif_timing_reads_files_and_reports_failures(tmp_path):
    _gif(tmp_path / "a.gif", 3, [20, 40, 60])
    _gif(tmp_path / "b.gif", 2, [100, 100])
    (tmp_path / "bad.gif").write_bytes(b"")
    rows = [{"id": k, "file": f"{k}.gif"} for k in ("a", "b", "bad")]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = read_dataset(tmp_path)
    n, d, failures = gif_timing(ds.records)
    np.testing.assert_array_equal(n[:2], [3, 2])
    np.testing.assert_allclose(d[:2], [40.0, 100.0])
    assert (
        np.isnan(n[2])
        and [f["id"] for f in failures] == ["bad"]
        and "bad.gif" in failures[0]["path"]
    )


def test_dataset_statistics_writes_pngs(tmp_path):
    ds = _plus(
        [{"fear"}, {"fear", "surprise"}, {"anger"}], [(True, True), (False, False), (False, None)]
    )
    res = dataset_statistics(
        ds, tmp_path / "out", n_frames=np.array([2, 30, 9]), mean_delay_ms=np.array([20.0, 50, 0])
    )
    for key in ("fig9", "fig10"):
        p = Path(res["figures"][key])
        assert p.is_file() and p.stat().st_size > 1000
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    f, s = EMOTIONS.index("fear"), EMOTIONS.index("surprise")
    assert (
        saved["overlap"][f][s] == 0.5
        and saved["overlap"][s][f] == 1.0
        and saved["gifs_per_emotion"]["fear"] == 2
    )
    assert saved["timing"]["max_frames"] == 30 and saved["shares"]["cartoon"][
        "share"
    ] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="timing arrays"):
        dataset_statistics(ds, n_frames=np.array([1, 2]), mean_delay_ms=np.array([1.0, 2.0]))


def test_unlabelled_dataset_has_timing_only(tmp_path):
    ds = GifDataset(
        root=tmp_path, kind="folder", records=[GifRecord(id="a", path=tmp_path / "a.gif")], name="f"
    )
    res = dataset_statistics(ds, tmp_path, n_frames=np.array([4]), mean_delay_ms=np.array([30.0]))
    assert "overlap" not in res and set(res["figures"]) == {"fig9"}


def test_a_dataset_where_no_gif_decodes_is_an_error_naming_its_failures(tmp_path, capsys):
    """The app's exit 2 names the dataset and a failed file; nothing half-written is left."""
    from gifemo.apps.stats import main

    folder = tmp_path / "gifs"
    folder.mkdir()
    (folder / "x.gif").write_bytes(b"GIF89a not really")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(folder), "--kind", "folder", "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no GIF of" in err and "x.gif" in err and "Traceback" not in err
    assert not (out / "stats.json").exists()
