"""Issue 11: hostile and odd files, each made here. Non-UTF-8 comments, every exception a
GifDecodeError, odd file names in the store, per-GIF budgets, silent skips, truncation flags,
validation before COMPLETE; and the reliability run (a real process, a real SIGKILL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from gifemo.backbones.c3d import build_c3d
from gifemo.data.clips import AllClips, FpsClips
from gifemo.data.gif import GifDecodeError, read_gif
from gifemo.data.metadata import GifRecord, read_folder
from gifemo.features.extract import extract_features
from gifemo.features.store import COMPLETE, IDS, FeatureStore, StoreError
from tests.gifmaker import (
    GifFrame,
    gif_bytes,
    many_frames_gif,
    moving_frames,
    oversized_header_gif,
    pillow_gif,
    random_indices,
    random_palette,
    with_comment,
)

REPO = Path(__file__).resolve().parents[1]


def tiny_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_c3d(channels=(4, 8, 8, 16, 16), fc_dim=32)


def run(records, out, **kw):
    args = dict(batch_clips=4, num_workers=0, precision="32", device="cpu", progress=False)
    return extract_features(records, out, model=tiny_model(), **{**args, **kw})


def small_gif(n: int = 3, seed: int = 0) -> bytes:
    frames = [GifFrame(random_indices(6, 8, 4, seed + t), delay_cs=4) for t in range(n)]
    return gif_bytes(8, 6, frames, palette=random_palette(4, seed))


# ---- 1: non-UTF-8 comments; nothing but GifDecodeError leaves read_gif ----


@pytest.mark.parametrize("comment", [b"Photoshop \xa8 3.0", b"\xff\xfe\x00\x80", b"caf\xe9"])
def test_non_utf8_comment_decodes(tmp_path, comment):
    plain = tmp_path / "plain.gif"
    plain.write_bytes(small_gif())
    odd = tmp_path / "odd.gif"
    odd.write_bytes(with_comment(small_gif(), comment))
    a, b = read_gif(plain), read_gif(odd)
    assert b.n_frames == 3 and np.array_equal(a.frames, b.frames)
    assert b.delays_ms.tolist() == [40, 40, 40] and not b.truncated


def test_mutated_gifs_give_frames_or_gif_decode_error(tmp_path):
    """300 seeded mutations (byte flips, cuts, insertions) of a GIF with a comment: each read
    gives a Gif or a GifDecodeError naming the file, never another exception."""
    base = with_comment(small_gif(4, seed=3), b"\xa8 comment")
    rng = np.random.default_rng(11)
    path = tmp_path / "m.gif"
    outcomes = {"gif": 0, "error": 0}
    for _ in range(300):
        data = bytearray(base)
        kind = rng.integers(3)
        if kind == 0:
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                data[at] = int(rng.integers(256))
        elif kind == 1:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            at = int(rng.integers(0, len(data)))
            data[at:at] = rng.integers(
                0, 256, size=int(rng.integers(1, 20)), dtype=np.uint8
            ).tobytes()
        path.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gif = read_gif(path)
            except GifDecodeError as e:
                assert str(path) in str(e)
                outcomes["error"] += 1
            else:
                assert gif.frames.ndim == 4 and gif.n_frames >= 1
                outcomes["gif"] += 1
    assert outcomes["gif"] > 30 and outcomes["error"] > 30, outcomes


def test_unexpected_exception_becomes_gif_decode_error(tmp_path, monkeypatch):
    from gifemo.data import gif_decode as gifmod

    path = tmp_path / "a.gif"
    path.write_bytes(small_gif())

    def boom(*a, **k):
        raise RuntimeError("swscale exploded")

    monkeypatch.setattr(gifmod, "_to_rgb", boom)
    with pytest.raises(GifDecodeError, match=r"a\.gif: RuntimeError: swscale exploded"):
        read_gif(path)


# ---- 2: odd file names cannot corrupt the store; validation before COMPLETE ----

ODD = ["line\nbreak", "cr\rname", "ls\u2028sep", "ps\u2029sep", "nel\x85", "vt\x0bff\x0c",
       "fs\x1cgs\x1drs\x1e", "tab\tname", " lead space", "quote\"'", "back\\slash", "é😀",
       "-dash", ".hidden", "del\x7f", "soh\x01", "semi;colon*?:<>|"]  # fmt: skip


def test_every_odd_file_name_round_trips(tmp_path):
    folder = tmp_path / "gifs"
    folder.mkdir()
    data = small_gif(2)
    for name in ODD:
        (folder / f"{name}.gif").write_bytes(data)
    raw = os.fsencode(folder) + b"/not-utf8-\xff\xfe.gif"  # bytes a file system allows
    with open(raw, "wb") as f:
        f.write(data)
    ds = read_folder(folder)
    assert len(ds.records) == len(ODD) + 1
    store = run(ds.records, tmp_path / "store")
    assert store.ids == ds.ids() and len(store.ids) == len(ODD) + 1
    text = (tmp_path / "store" / IDS).read_bytes()
    assert text.isascii() and text.count(b"\n") == len(ODD) + 1  # one line per id, no other
    again = run(ds.records, tmp_path / "store")  # the same command again: reused, same ids
    assert again.ids == store.ids and FeatureStore.open(tmp_path / "store").ids == ds.ids()


def test_store_is_validated_before_complete(tmp_path):
    data = small_gif(2)
    (tmp_path / "a.gif").write_bytes(data)
    recs = [GifRecord(id="same", path=tmp_path / "a.gif") for _ in range(2)]
    with pytest.raises(StoreError, match="1 duplicate ids"):
        run(recs, tmp_path / "store")
    assert not (tmp_path / "store" / COMPLETE).exists()
    with pytest.raises(StoreError, match="not a complete feature store"):
        FeatureStore.open(tmp_path / "store")


# ---- 3: memory bounded by the batch: per-GIF frame and clip budgets ----


def test_frame_and_clip_budgets_are_applied_and_recorded(tmp_path):
    huge = tmp_path / "frames20k.gif"  # (the reliability run has the 100,000-frame one)
    huge.write_bytes(many_frames_gif(20_000))  # all frames: 2,499 clips, a 1.3 GB resize buffer
    slow = tmp_path / "slow.gif"  # 40 frames of 2 s: at 25 fps 2000 samples, 249 clips
    slow.write_bytes(many_frames_gif(40, 4, 4, delay_cs=200))
    ok = pillow_gif(tmp_path / "ok.gif", moving_frames(9, 16, 16))
    recs = [GifRecord(id=p.stem, path=p) for p in (huge, slow, ok)]
    store = run(
        recs, tmp_path / "store", sampler=FpsClips(fps=25.0), max_clips=16,
        read_kwargs={"read_frames": 1024},
    )  # fmt: skip
    assert store.ids == ["frames20k", "slow", "ok"]
    assert store.n_frames.tolist() == [1024, 40, 9]
    assert store.n_clips.tolist() == [16, 16, FpsClips(fps=25.0).count(9, np.full(9, 40))]
    notes = {n["id"]: n["note"] for n in store.notes}
    assert "first 1024 of 20000 frames read" in notes["frames20k"]
    assert "16 of 249 clips used" in notes["slow"] and "ok" not in notes
    assert store.meta["budget"] == {"read_frames": 1024, "max_clips": 16}
    assert store.meta["counts"]["noted"] == 2
    assert store.meta["clip_rule"]["sampler"] == "FpsClips"


# ---- 4: every file not in the store is in failures.jsonl ----


def test_symlink_loops_and_dangling_links_are_recorded_failures(tmp_path):
    from hydra import compose, initialize_config_dir

    from gifemo.runners.extract import extract

    gifs = tmp_path / "gifs"
    (gifs / "sub").mkdir(parents=True)
    (gifs / "good.gif").write_bytes(small_gif())
    (gifs / "loop.gif").symlink_to("loop.gif")
    (gifs / "a.gif").symlink_to("b.gif")
    (gifs / "b.gif").symlink_to("a.gif")
    (gifs / "gone.gif").symlink_to("nowhere.gif")
    (gifs / "sub" / "here").symlink_to(".")
    (gifs / "sub" / "up").symlink_to("..")
    overrides = [
        "data=folder", f"data.root={gifs}", "backbone=c3d_tiny", f"paths.data_dir={tmp_path}",
        "extract.num_workers=0", "extract.precision=32", "extract.progress=false",
        "extract.device=cpu",
    ]  # fmt: skip
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store = extract(compose("extract", overrides=overrides))
    assert store.ids == ["good"]
    reasons = {Path(f["path"]).name: f["reason"] for f in store.failures}
    assert reasons == {
        "loop.gif": "symlink loop",
        "a.gif": "symlink loop",
        "b.gif": "symlink loop",
        "gone.gif": "dangling symlink (its target does not exist)",
        "here": f"folder link to {gifs / 'sub'}, already listed: not followed",
        "up": f"folder link to {gifs}, already listed: not followed",
    }
    assert all(f["index"] is None for f in store.failures)
    assert store.meta["counts"]["failures"] == 6 and store.meta["counts"]["unlisted"] == 6


# ---- 5: truncation is recorded per row and in the summary ----


def test_truncated_gif_is_flagged_in_the_store(tmp_path):
    good = pillow_gif(tmp_path / "good.gif", moving_frames(6, 16, 16, seed=1))
    data = good.read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_complete = read_gif(cut).n_frames
    assert 1 <= n_complete < 6
    recs = [GifRecord(id="good", path=good), GifRecord(id="cut", path=cut)]
    store = run(recs, tmp_path / "store")
    assert store.truncated.tolist() == [False, True]
    assert store.n_frames.tolist() == [6, n_complete]
    assert store.meta["counts"]["truncated"] == 1
    (note,) = store.notes
    assert note["id"] == "cut" and note["note"].startswith("truncated")
    assert store.n_clips.tolist() == [AllClips().count(6), AllClips().count(n_complete)]


# ---- the reliability run: hostile files + good GIFs, a real process, a real SIGKILL ----

PEAK_RSS_BOUND_MB = 1500  # the whole extract.py process; the 100,000-frame GIF alone would
# need a 6 GiB resize buffer and a 28 GiB clip array without the per-GIF budget


def hostile_folder(root: Path) -> Path:
    gifs = root / "gifs"
    (gifs / "deep" / "er").mkdir(parents=True)
    for i, t in enumerate((3, 17, 30, 9)):
        pillow_gif(gifs / f"good{i}.gif", moving_frames(t, 20 + i, 24, seed=i))
    pillow_gif(gifs / "deep" / "er" / "nested.gif", moving_frames(12, 16, 16, seed=9))
    (gifs / "comment.gif").write_bytes(with_comment(small_gif(5), b"Photoshop \xa8"))
    data = (gifs / "good2.gif").read_bytes()
    (gifs / "truncated.gif").write_bytes(data[: len(data) * 2 // 3])
    (gifs / "frames100k.gif").write_bytes(many_frames_gif(100_000))
    (gifs / "big_screen.gif").write_bytes(oversized_header_gif())
    (gifs / "empty.gif").write_bytes(b"")
    (gifs / "garbage.gif").write_bytes(b"\x00\x01not a gif at all" * 50)
    (gifs / "header_only.gif").write_bytes(small_gif()[:13])
    (gifs / "no_frames.gif").write_bytes(small_gif()[:25] + b"\x3b")
    pal = random_palette(4, 3)  # structures FFmpeg gets wrong: composed from the blocks
    tiles = [GifFrame(random_indices(3, 4, 4, s), left=4 * (s % 2), top=3 * (s // 2), gce=s == 0)
             for s in range(4)]  # fmt: skip
    (gifs / "tiles.gif").write_bytes(gif_bytes(8, 6, tiles, palette=pal))
    anim87 = [GifFrame(random_indices(6, 8, 4, s), gce=False) for s in range(5)]
    (gifs / "gif87a.gif").write_bytes(gif_bytes(8, 6, anim87, palette=pal, version=b"GIF87a"))
    for name in ("line\nbreak", "ls\u2028sep", "cr\rname"):
        (gifs / f"{name}.gif").write_bytes(small_gif(4, seed=len(name)))
    with open(os.fsencode(gifs) + b"/bytes-\xff.gif", "wb") as f:
        f.write(small_gif(3, seed=5))
    (gifs / "loop.gif").symlink_to("loop.gif")
    (gifs / "x.gif").symlink_to("y.gif")
    (gifs / "y.gif").symlink_to("x.gif")
    (gifs / "deep" / "dot").symlink_to(".")
    return gifs


def every_entry(gifs: Path) -> set[str]:
    """Every .gif entry and every folder link under ``gifs``, without following links."""
    out = set()
    for folder, dirs, files in os.walk(gifs):
        for name in files + dirs:
            path = os.path.join(folder, name)
            if name.endswith(".gif") or os.path.islink(path):
                out.add(path)
    return out


def extract_cmd(gifs: Path, out: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "extract.py", "data=folder", f"data.root={gifs}", "backbone=c3d_tiny",
        f"extract.out_dir={out}", "extract.num_workers=0", "extract.precision=32",
        "extract.device=cpu", "extract.threads=1", "extract.chunk_gifs=3",
        "extract.progress=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def run_measured(cmd: list[str], kill_when=None) -> tuple[int, int]:
    """Run ``cmd``; return (exit status, peak RSS in MB of that process). ``kill_when()``
    true → SIGKILL it."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_when is not None:
        deadline = time.monotonic() + 300
        while not kill_when() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()  # SIGKILL
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return proc.returncode, usage.ru_maxrss // 1024


def store_bytes(path: Path) -> dict[str, bytes]:
    out = {}
    for f in sorted(path.iterdir()):
        if f.is_file():
            data = f.read_bytes()
            if f.name == "meta.json":
                meta = json.loads(data)
                meta.pop("last_run")  # timings of the run that finished it
                data = json.dumps(meta, sort_keys=True).encode()
            out[f.name] = data
    return out


@pytest.mark.slow
def test_reliability_hostile_folder_kill_and_rerun(tmp_path):
    gifs = hostile_folder(tmp_path)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    rc, peak_mb = run_measured(extract_cmd(gifs, clean, tmp_path / "run1"))
    assert rc == 0
    assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb} MB"
    store = FeatureStore.open(clean)
    rows = {str(r.path) for r in read_folder(gifs).records if r.id in set(store.ids)}
    failed = {f["path"] for f in store.failures}
    assert rows | failed == every_entry(gifs) and not rows & failed
    assert len(store.ids) == 15 and store.meta["counts"]["truncated"] == 1  # no_frames: 1 bg frame
    assert store.n_frames[store.ids.index("tiles")] == 1
    assert store.n_frames[store.ids.index("gif87a")] == 5
    print(f"peak RSS of extract.py over the hostile folder: {peak_mb} MB")
    assert {f["reason"] for f in store.failures if f["index"] is None} >= {"symlink loop"}
    # a real SIGKILL once the first shard is on disk, then the same command again
    partial = killed / ".partial"
    rc, _ = run_measured(
        extract_cmd(gifs, killed, tmp_path / "run2"),
        kill_when=lambda: partial.is_dir() and any(partial.glob("shard-*.npz")),
    )
    assert rc == -9 and not (killed / COMPLETE).exists()
    rc, _ = run_measured(extract_cmd(gifs, killed, tmp_path / "run3"))
    assert rc == 0
    assert FeatureStore.open(killed).meta["last_run"]["chunks"] < store.meta["last_run"]["chunks"]
    assert store_bytes(killed) == store_bytes(clean)
