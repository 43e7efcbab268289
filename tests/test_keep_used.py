"""Decoding only the frames the clips use (``GifClipDataset(keep_used=True)``, ``read_gif(keep=…)``):
each used frame resized (or cropped) as it is decoded gives the items of decoding every frame
first — clips, crops, random draws, notes — for every transform and sampler the repo uses, on
odd sizes, budgets, truncated and corrupt files, a non-GIF container and a failing file; and
extraction's store is byte-identical with and without it."""

from __future__ import annotations

import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gifemo.features.extract as extract_module
from gifemo.backbones.c3d import C3DTransform
from gifemo.backbones.r2plus1d import kinetics400_preprocessing
from gifemo.backbones.resize import FrameResize, resize_frame, resize_frames
from gifemo.backbones.transfer import DeviceResize, FrameCrops, SharedCrops, keeps_used
from gifemo.data import clip_dataset
from gifemo.data.clip_dataset import GifClipDataset
from gifemo.data.clips import AllClips, FpsClips, RandomClip
from gifemo.data.gif import read_gif
from gifemo.features.extract import extract_features
from tests.gifmaker import (
    GifFrame,
    gif_bytes,
    moving_frames,
    pillow_gif,
    random_indices,
    random_palette,
)
from tests.test_extract_fast import BACKBONES, make_gifs, same_files

SIZES = ((30, 40), (150, 200), (128, 171), (21, 200), (5, 17))  # shrink, grow, equal, padded rows


class Rec:
    def __init__(self, id: str, path) -> None:
        self.id, self.path = id, path


def hard_records(folder) -> list[Rec]:
    """GIFs of odd sizes and lengths, a truncated one, one whose image 4 of 6 FFmpeg cannot
    decode (read whole), a file that is not a GIF at all, and a missing one."""
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, ((h, w), t) in enumerate(zip(SIZES, (23, 9, 17, 1, 40), strict=True)):
        recs.append(Rec(f"s{i}", pillow_gif(folder / f"s{i}.gif", moving_frames(t, h, w, seed=i))))
    whole = pillow_gif(folder / "whole.gif", moving_frames(30, 24, 32, seed=7))
    data = whole.read_bytes()
    (folder / "cut.gif").write_bytes(data[: len(data) * 2 // 3])
    images = [GifFrame(random_indices(20, 24, 4, s), delay_cs=3 + s) for s in range(6)]
    images[4] = GifFrame(np.zeros((20, 24), np.uint8), lzw=bytes([13]) + b"\x01\x02\x03")
    (folder / "lzw.gif").write_bytes(gif_bytes(24, 20, images, palette=random_palette(4, 3)))
    (folder / "bad.gif").write_bytes(b"GIF89a not a gif")
    for name in ("cut", "lzw", "bad", "missing"):
        recs.append(Rec(name, folder / f"{name}.gif"))
    return recs


def c3d_eval(output="float32"):
    return C3DTransform(output=output)


CASES = {  # name: (transform, sampler, max_clips, read_kwargs)
    "c3d-eval-float": (lambda: c3d_eval(), AllClips(), None, {}),
    "c3d-eval-uint8-bgr0": (lambda: c3d_eval("uint8"), AllClips(), 2, {"pixel_format": "bgr0"}),
    "c3d-train-bgr0": (
        lambda: C3DTransform(train=True, output="uint8"),
        RandomClip(num_clips=2),
        None,
        {"pixel_format": "bgr0", "read_frames": 20},
    ),
    "kinetics-train-rgb": (
        lambda: kinetics400_preprocessing().transform(train=True, output="uint8"),
        RandomClip(num_clips=3),
        None,
        {},
    ),
    "c3d-fps": (lambda: c3d_eval("uint8"), FpsClips(fps=8), None, {"pixel_format": "bgr0"}),
    "shared-crops": (
        lambda: SharedCrops(c3d_eval("uint8")),
        AllClips(),
        3,
        {"pixel_format": "bgr0", "read_frames": 30},
    ),
}


def same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        w = b[k]
        if isinstance(v, FrameCrops):
            assert np.array_equal(v.crops, w.crops) and np.array_equal(v.clips, w.clips)
            assert v.channels == w.channels
        elif isinstance(v, torch.Tensor):
            assert v.dtype == w.dtype and torch.equal(v, w), k
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(w)
        else:
            assert v == w, (k, v, w)


TRAINING = {name for name, (_, sampler, _, _) in CASES.items() if isinstance(sampler, RandomClip)}


@pytest.mark.parametrize("per_frame_from", [0, None], ids=["each-frame", "default"])
@pytest.mark.parametrize(
    ("case", "stop"),
    [(c, False) for c in sorted(CASES)] + [(c, True) for c in sorted(TRAINING)],
    ids=lambda v: {False: "to-the-end", True: "stop-after-used"}.get(v, v),
)
def test_kept_frames_give_the_items_of_decoding_every_frame(
    tmp_path, monkeypatch, case, per_frame_from, stop
):
    """``each-frame``: every file's used frames kept one by one as decoded; ``default``: these
    small frames in one batch after decoding. ``stop-after-used`` (training samplers): decoding
    stops after the last used frame — the same items on every file here, the damaged one too
    (its clips reach the damage, so it is read whole)."""
    make, sampler, max_clips, read_kwargs = CASES[case]
    if per_frame_from is not None:
        monkeypatch.setattr(clip_dataset._UsedFrames, "per_frame_from", per_frame_from)
    transform = make()
    recs = hard_records(tmp_path)
    reads = []  # (frames kept, T) of each read with keep=

    def spy(path, **kw):
        gif = read_gif(path, **kw)
        if kw.get("keep") is not None:
            reads.append((len(gif.kept), gif.n_frames))
        return gif

    monkeypatch.setattr(clip_dataset, "read_gif", spy)
    kw = dict(sampler=sampler, transform=transform, max_clips=max_clips, read_kwargs=read_kwargs,
              seed=3)  # fmt: skip
    slow = GifClipDataset(recs, **kw)
    fast = GifClipDataset(recs, keep_used=True, stop_after_used=stop, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncated files
        for epoch in (0, 1):
            for i in range(len(recs)):
                a, b = slow[(epoch, i)], fast[(epoch, i)]
                same_items(a, b)
                failing = recs[i].id in ("bad", "missing")
                assert (a["error"] is not None) == failing, (recs[i].id, a["error"])
        # the cases are not vacuous: budgets and truncation showed up in the items
        notes = [slow[i]["note"] for i in range(len(recs))]
        lzw = slow[[r.id for r in recs].index("lzw")]
    if max_clips or read_kwargs.get("read_frames"):
        assert any(notes), notes
    assert lzw["truncated"] and lzw["n_frames"] == 4
    assert len(reads) == 2 * 7  # two epochs of the 7 files that decode
    if isinstance(sampler, RandomClip):  # frames no clip uses were never kept
        assert any(kept < n for kept, n in reads), reads


def test_keep_used_is_refused_for_a_transform_without_keep_frame(tmp_path):
    recs = hard_records(tmp_path)[:1]
    with pytest.raises(ValueError, match="keep_frame"):
        GifClipDataset(recs, sampler=AllClips(), transform=DeviceResize(c3d_eval("uint8")),
                       keep_used=True)  # fmt: skip


def test_which_workers_keep_only_the_used_frames():
    class OwnCut(C3DTransform):
        def from_resized(self, resized, clips, generator=None, windows=None):
            return super().from_resized(resized, clips, generator, windows)

    uint8 = c3d_eval("uint8")
    assert keeps_used(uint8) and keeps_used(c3d_eval()) and keeps_used(SharedCrops(uint8))
    assert not keeps_used(DeviceResize(uint8)) and not keeps_used(OwnCut())


@pytest.mark.parametrize("hw", [(30, 40), (270, 480), (5, 17), (128, 171)])
@pytest.mark.parametrize("channels", [3, 4])
def test_one_frame_resized_alone_equals_the_frames_resized_together(hw, channels):
    frames = np.random.default_rng(hw[0]).integers(0, 256, (5, *hw, channels), dtype=np.uint8)
    together = resize_frames(frames, (128, 171))
    for k in range(len(frames)):
        assert np.array_equal(resize_frame(frames[k], (128, 171)), together[k])
    # a strided view, as FFmpeg's plane with padded rows is
    padded = np.zeros((hw[0], hw[1] + 3, channels), np.uint8)
    padded[:, : hw[1]] = frames[0]
    assert np.array_equal(resize_frame(padded[:, : hw[1]], (128, 171)), together[0])


def test_frame_resize_reuses_one_buffer_and_gives_the_same_bytes():
    """FrameResize (a keeper's per-frame resize): interpolate's bytes for frames of several
    sizes and channel counts in one stream, into one buffer that the next call overwrites; a
    pickled copy (a worker's) starts without it."""
    rng = np.random.default_rng(3)
    one = FrameResize((128, 171))
    shapes = [(270, 480, 4), (270, 480, 4), (30, 40, 3), (128, 171, 4), (5, 17, 4), (270, 480, 3)]
    first = None
    for shape in shapes:
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = resize_frames(frame[None], (128, 171))[0]
        x = torch.from_numpy(frame)[None].permute(0, 3, 1, 2)
        interp = F.interpolate(x, size=(128, 171), mode="bilinear", align_corners=False)
        assert np.array_equal(ref, interp.permute(0, 2, 3, 1)[0].numpy())
        got = one(frame)
        assert got.shape == (128, 171, shape[2]) and np.array_equal(got, ref), shape
        if first is None:
            first, first_copy = got, got.copy()
    assert not np.array_equal(first, first_copy)  # overwritten: valid until the next call
    copy = pickle.loads(pickle.dumps(one))
    assert not hasattr(copy._mine, "out") and copy.size == (128, 171)
    frame = rng.integers(0, 256, (64, 90, 4), dtype=np.uint8)
    assert np.array_equal(copy(frame), resize_frame(frame, (128, 171)))
    with pytest.raises(ValueError, match="uint8"):
        one(frame.astype(np.float32))


def test_frame_resize_shared_by_threads_gives_each_its_own_buffer():
    one = FrameResize((40, 50))
    frames = np.random.default_rng(4).integers(0, 256, (2, 8, 90, 120, 4), dtype=np.uint8)
    refs = [resize_frames(f, (40, 50)) for f in frames]
    barrier, got = threading.Barrier(2), [[], []]

    def work(k: int) -> None:
        for f in frames[k]:
            out = one(f)
            barrier.wait(timeout=30)  # both threads hold a result before either copies it
            got[k].append(out.copy())
            barrier.wait(timeout=30)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(np.array_equal(np.stack(got[k]), refs[k]) for k in (0, 1))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_extraction_store_is_byte_identical_with_and_without_kept_frames(
    tmp_path, monkeypatch, backbone
):
    recs = make_gifs(tmp_path / "gifs", frames=(16, 9, 12, 33), bad=(1,))
    recs += hard_records(tmp_path / "hard")
    model = BACKBONES[backbone]()
    kw = dict(model=model, transform=model.preprocessing.transform(train=False), batch_clips=3,
              precision="32", device="cpu", progress=False, chunk_gifs=4, num_workers=0,
              read_kwargs={"read_frames": 30}, max_clips=3)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = extract_features(recs, tmp_path / "kept", **kw)
        monkeypatch.setattr(extract_module, "keeps_used", lambda wire: False)
        whole = extract_features(recs, tmp_path / "whole", **kw)
    assert kept.meta["last_run"]["keep_used"] and not whole.meta["last_run"]["keep_used"]
    same_files(tmp_path / "whole", tmp_path / "kept")
    assert len(kept) == len(recs) - 3  # bad (g1), bad.gif and missing.gif failed


@pytest.mark.parametrize("hw", [(30, 40), (300, 400)], ids=["batch", "each-frame"])
def test_cache_entries_are_every_frame_resized_on_both_routes(tmp_path, hw):
    """The fine-tuning cache decodes with keep=: 300×400 frames (≥ KEEP_PER_FRAME_FROM pixels)
    are resized one by one as decoded, 30×40 in one batch; either way the entry is
    resize_frames(read_gif(path).frames), with the delays and the truncated flag — also for a
    truncated file."""
    from gifemo.finetune.cache import ClipCache

    path = pillow_gif(tmp_path / "a.gif", moving_frames(7, *hw, seed=3), durations_ms=[30, 50] * 4)
    data = path.read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) * 3 // 4])
    for p in (path, tmp_path / "cut.gif"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = read_gif(p)
            entry = ClipCache(tmp_path / f"cache-{p.stem}", max_mb=100).get(p)
        assert np.array_equal(entry.resized, resize_frames(ref.frames))
        assert np.array_equal(entry.delays_ms, ref.delays_ms)
        assert entry.truncated == ref.truncated == (p.stem == "cut")
