"""The generated dataset: determinism, idempotence, formats, GIF container facts, label rates."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gifemo.data import synthetic
from gifemo.data.clips import AllClips
from gifemo.data.metadata import load_dataset, read_dataset, read_folder
from gifemo.data.synthetic import MARKER, Size, clip_count, generate, resolve_size
from gifemo.emotions import EMOTION_INDEX, POSITIVE_EMOTIONS

CONF = Path(__file__).resolve().parents[1] / "conf"


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn"), seed=0, size="tiny")


def test_deterministic_bytes(tiny, tmp_path):
    again = generate(tmp_path / "again", seed=0, size="tiny")
    assert _digest(tiny) == _digest(again)
    other = generate(tmp_path / "other", seed=1, size="tiny", parts=["gifgif"])
    assert _digest(tiny / "gifgif") != _digest(other / "gifgif")
    # a part does not depend on which other parts were generated with it
    assert _digest(tiny / "gifgif") == _digest(
        generate(tmp_path / "one", seed=0, size="tiny", parts=["gifgif"]) / "gifgif"
    )


def test_formats_and_counts(tiny):
    gg = read_dataset(tiny / "gifgif")
    gp = read_dataset(tiny / "gifgif_plus")
    cand = read_dataset(tiny / "candidates")
    truth = read_dataset(tiny / "candidates", metadata="truth.jsonl")
    assert (gg.kind, gp.kind, cand.kind, truth.kind) == (
        "gifgif",
        "gifgif_plus",
        "unlabelled",
        "gifgif_plus",
    )
    assert len(gg) == len(gp) == len(cand) == 40 and truth.ids() == cand.ids()
    assert read_folder(tiny / "candidates" / "gifs").ids() == sorted(cand.ids())
    assert all(len(r.emotions or ()) >= 1 for r in gp.records)
    assert {r.cartoon for r in gp.records} == {True, False}
    s = gg.scores()
    assert np.isfinite(s).all() and (s[..., 1] > 0).all() and (s[..., 1] <= 25 / 3 + 1e-3).all()
    assert (s[..., 0] >= 0).all() and (s[..., 0] <= 50).all()


def test_gif_container_facts(tiny):
    rows = [
        json.loads(line) for line in (tiny / "gifgif" / "metadata.jsonl").read_text().splitlines()
    ]
    size = synthetic.SIZES["tiny"]
    for r in rows:
        with Image.open(tiny / "gifgif" / r["file"]) as im:
            facts = r["synthetic"]
            assert im.n_frames == facts["n_frames"] >= 2  # no frame merged away by the writer
            assert im.size == (facts["width"], facts["height"])
            assert size.min_side <= min(im.size) and max(im.size) <= size.max_side
    assert max(r["synthetic"]["n_frames"] for r in rows) > 16


def test_default_size_budget():
    # the clip budget of `make train` (~300-400 clips) without rendering a single GIF
    rng = np.random.default_rng(0)
    spec = synthetic.SIZES["default"]
    counts = synthetic._frame_counts(rng, spec.n_gifgif, spec)
    clips = sum(clip_count(int(n)) for n in counts)
    assert 300 <= clips <= 400 and counts.min() >= 2 and counts.max() <= 100
    assert np.mean(counts <= 24) > 0.85


@pytest.mark.parametrize(
    ("n", "clips"), [(1, 1), (2, 1), (16, 1), (17, 2), (24, 2), (25, 3), (100, 12)]
)
def test_clip_count(n, clips):
    assert clip_count(n) == clips
    # the sampler decides, not a second copy of 16 and 8
    assert clip_count(n, AllClips(clip_len=8, stride=4)) == AllClips(clip_len=8, stride=4).count(n)


def test_synthetic_app_generates_and_prints_counts(tmp_path, capsys):
    from gifemo.apps.synthetic import main

    assert main(["--out", str(tmp_path), "--size", "tiny", "--parts", "candidates"]) == 0
    line = capsys.readouterr().out.strip()
    frames = [
        json.loads(x)["synthetic"]["n_frames"]
        for x in (tmp_path / "candidates" / "metadata.jsonl").read_text().splitlines()
    ]
    assert line == (
        f"{tmp_path / 'candidates'}: 40 GIFs, {sum(frames)} frames, "
        f"{sum(clip_count(f) for f in frames)} clips"
    )


def test_latent_structure():
    lat = synthetic.sample_latents(np.random.default_rng(3), 3000)
    s = lat["scores"]
    y = s[..., 0] - 3 * s[..., 1]
    rate = (y > 25).mean(0)
    assert (rate > 0.08).all() and (rate < 0.32).all()
    # the two clusters: positive emotions correlate among themselves, less with the others
    c = np.corrcoef(y.T)
    pos = [EMOTION_INDEX[e] for e in POSITIVE_EMOTIONS]
    neg = [i for i in range(17) if i not in pos]
    within = c[np.ix_(pos, pos)][~np.eye(len(pos), dtype=bool)].mean()
    across = c[np.ix_(pos, neg)].mean()
    assert within > 0.2 and across < -0.1
    # the sign of the leading eigenvector of the label correlations splits off exactly the
    # paper's positive cluster
    lead = np.linalg.eigh(c)[1][:, -1]
    assert set(np.flatnonzero(np.sign(lead) == np.sign(lead[pos[0]]))) == set(pos)
    # valence drives the positive cluster
    assert np.corrcoef(lat["va"][:, 0], y[:, pos].mean(1))[0, 1] > 0.6


def test_null_control_has_independent_emotions_and_private_tags(tmp_path):
    lat = synthetic.sample_latents(np.random.default_rng(3), 3000, "independent")
    s = lat["scores"]
    y = s[..., 0] - 3 * s[..., 1]
    rate = (y > 25).mean(0)
    assert (rate > 0.08).all() and (rate < 0.32).all()
    # no structure: every pair of emotions is uncorrelated (|r| < 0.07 at n = 3000; the
    # clustered model has within-cluster correlations > 0.2)
    c = np.corrcoef(y.T)[~np.eye(17, dtype=bool)]
    assert np.abs(c).max() < 0.07
    own = {t.lower() for e in synthetic.EMOTIONS for t in synthetic._emotion_tags(e, True)}
    by_emotion = [set(synthetic._emotion_tags(e, True)) for e in synthetic.EMOTIONS]
    assert sum(len(b) for b in by_emotion) == len(own)  # no tag shared by two emotions
    with pytest.raises(ValueError, match="independent"):
        synthetic.sample_latents(np.random.default_rng(0), 10, "ring")
    # a separate dataset: its marker records the structure; the default's markers are unchanged
    out = generate(tmp_path, size="tiny", parts=["gifgif"], structure="independent")
    marker = json.loads((out / "gifgif" / synthetic.MARKER).read_text())
    assert marker["structure"] == "independent"
    assert "structure" not in synthetic._marker("gifgif", 0, synthetic.SIZES["tiny"])


def test_visual_cues_follow_valence(tiny):
    rows = [
        json.loads(line) for line in (tiny / "gifgif" / "metadata.jsonl").read_text().splitlines()
    ]
    v, blue_minus_red = [], []
    for r in rows:
        with Image.open(tiny / "gifgif" / r["file"]) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=float)
        v.append(r["synthetic"]["valence"])
        blue_minus_red.append(rgb[..., 2].mean() - rgb[..., 0].mean())
    assert np.corrcoef(v, blue_minus_red)[0, 1] < -0.6


def test_idempotent_and_atomic(tmp_path):
    out = generate(tmp_path, size="tiny", parts=["candidates"])
    marker = out / "candidates" / MARKER
    stamp = marker.stat().st_mtime_ns
    generate(tmp_path, size="tiny", parts=["candidates"])
    assert marker.stat().st_mtime_ns == stamp  # reused
    small = {"base": "tiny", "n_candidates": 5}
    generate(tmp_path, size=small, parts=["candidates"])
    assert len(read_dataset(out / "candidates")) == 5 and marker.stat().st_mtime_ns != stamp
    assert json.loads(marker.read_text())["size"]["n_candidates"] == 5
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp folders left
    # a folder without a marker (a killed run never leaves one; a user's data) is never replaced
    shutil.rmtree(out / "candidates")
    (out / "candidates").mkdir()
    with pytest.raises(FileExistsError, match="not a generated dataset"):
        generate(tmp_path, size="tiny", parts=["candidates"])


def test_size_spec_errors():
    assert resolve_size({"n_gifgif": 3}) == Size(n_gifgif=3)
    with pytest.raises(ValueError, match="unknown synthetic size"):
        resolve_size("huge")
    with pytest.raises(ValueError, match="fields"):
        resolve_size({"n_gifs": 3})
    with pytest.raises(ValueError, match="part"):
        generate(Path("/nonexistent") / "never-written", size="tiny", parts=["nope"])


def test_load_dataset_and_configs(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = tmp_path / "conf"
    shutil.copytree(CONF / "data", conf / "data")
    shutil.copytree(CONF / "paths", conf / "paths")
    (conf / "cfg.yaml").write_text(
        "defaults:\n  - paths: default\n  - data: synthetic\n  - _self_\n"
    )
    monkeypatch.setenv("GIFEMO_DATA_DIR", str(tmp_path / "data"))
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        # only data=synthetic generates; data.kind picks the generated part
        for kind in ("gifgif", "gifgif_plus", "folder"):
            cfg = compose(
                config_name="cfg",
                overrides=["data=synthetic", f"data.kind={kind}", "data.synthetic_size=tiny"],
            )
            ds = instantiate(cfg.data)
            assert ds.kind == kind and len(ds) == 40
            assert str(ds.root).startswith(str(tmp_path / "data" / "synthetic"))
        # the real-data options read data.root, and without it fail naming it
        for option in ("gifgif", "gifgif_plus", "folder"):
            with pytest.raises(Exception, match=r"data\.root is not set"):
                instantiate(compose(config_name="cfg", overrides=[f"data={option}"]).data)
        cfg = compose(
            config_name="cfg",
            overrides=["data=gifgif", f"data.root={tmp_path / 'data/synthetic/gifgif'}"],
        )
        assert (
            instantiate(cfg.data).ids()
            == load_dataset(
                kind="gifgif", synthetic_dir=str(tmp_path / "data/synthetic"),
                synthetic_size="tiny", generate=True,
            ).ids()
        )  # fmt: skip
    assert (
        load_dataset(
            kind="unlabelled", synthetic_dir=str(tmp_path / "data/synthetic"),
            synthetic_size="tiny", generate=True,
        ).kind
        == "unlabelled"
    )  # fmt: skip
