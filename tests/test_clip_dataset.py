"""GifClipDataset and collate_clips on GIFs written in tmp_path; samplers get the delays;
the per-GIF clip budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gifemo.backbones.c3d import C3DTransform
from gifemo.data.clip_dataset import GifClipDataset, collate_clips
from gifemo.data.clips import AllClips, FpsClips, RandomClip
from gifemo.data.gif import read_gif
from gifemo.data.metadata import GifRecord
from tests.gifmaker import GifFrame, random_indices, random_palette, write_gif

FRAME_COUNTS = {"a": 5, "b": 17, "c": 25}  # 1, 2 and 3 clips


@pytest.fixture
def records(tmp_path) -> list[GifRecord]:
    pal = random_palette(8, 0)
    out = []
    for k, (name, n) in enumerate(FRAME_COUNTS.items()):
        frames = [
            GifFrame(random_indices(20, 24, 8, 10 * k + t), delay_cs=2 + t % 3) for t in range(n)
        ]
        out.append(
            GifRecord(
                id=name, path=write_gif(tmp_path / f"{name}.gif", 24, 20, frames, palette=pal)
            )
        )
    (tmp_path / "bad.gif").write_bytes(b"not a gif" * 10)
    out.insert(1, GifRecord(id="bad", path=tmp_path / "bad.gif"))
    out.append(GifRecord(id="gone", path=Path(tmp_path / "missing.gif")))
    return out  # a, bad, b, c, gone


def labels_for(records) -> np.ndarray:
    return np.arange(len(records) * 17, dtype=np.float32).reshape(len(records), 17)


def test_items_equal_decode_sample_transform(records):
    t = C3DTransform()
    ds = GifClipDataset(records, sampler=AllClips(), transform=t, labels=labels_for(records))
    assert len(ds) == 5
    for i in [0, 2, 3]:
        item = ds[i]
        gif = read_gif(records[i].path)
        expected = t(gif.frames, AllClips()(gif.n_frames))
        assert item["error"] is None and item["id"] == records[i].id
        assert item["clips"].shape == (expected.shape[0], 3, 16, 112, 112)
        assert torch.equal(item["clips"], expected)
        assert item["n_frames"] == FRAME_COUNTS[records[i].id]
        assert item["mean_delay_ms"] == pytest.approx(float(gif.delays_ms.mean()))
        assert torch.equal(item["labels"], torch.arange(17 * i, 17 * i + 17, dtype=torch.float32))


def test_bad_gifs_become_error_items(records):
    ds = GifClipDataset(records, sampler=AllClips(), transform=C3DTransform())
    for i, what in [(1, "not a decodable"), (4, "no such file")]:
        item = ds[i]
        assert item["clips"].shape == (0, 3, 16, 112, 112)
        assert item["error"].startswith("GifDecodeError") and what in item["error"]
        assert str(records[i].path) in item["error"]
        assert item["n_frames"] == 0 and np.isnan(item["mean_delay_ms"])


def test_collate_concatenates_clips_and_lists_failures(records):
    ds = GifClipDataset(
        records, sampler=AllClips(), transform=C3DTransform(), labels=labels_for(records)
    )
    items = [ds[i] for i in range(5)]
    batch = collate_clips(items)
    assert batch["clips"].shape == (1 + 2 + 3, 3, 16, 112, 112)
    assert batch["gif_index"].tolist() == [0, 2, 2, 3, 3, 3]
    assert torch.equal(batch["clips"][1:3], items[2]["clips"])
    assert batch["index"].tolist() == [0, 1, 2, 3, 4] and batch["ids"] == [
        "a",
        "bad",
        "b",
        "c",
        "gone",
    ]
    assert [f["id"] for f in batch["failures"]] == ["bad", "gone"]
    assert set(batch["failures"][0]) == {"index", "id", "path", "reason"}
    assert batch["labels"].shape == (5, 17) and batch["n_frames"].tolist() == [5, 0, 17, 25, 0]
    only_bad = collate_clips([items[1], items[4]])
    assert only_bad["clips"].shape == (0, 3, 16, 112, 112) and only_bad["gif_index"].numel() == 0
    with pytest.raises(ValueError, match="some items have labels"):
        collate_clips([items[0], {k: v for k, v in items[2].items() if k != "labels"}])


def test_random_items_seeded_by_seed_epoch_index(records):
    ds = GifClipDataset(
        records, sampler=RandomClip(num_clips=2), transform=C3DTransform(train=True), seed=7
    )
    a, b = ds[(0, 3)], ds[(0, 3)]
    assert torch.equal(a["clips"], b["clips"]) and a["clips"].shape == (2, 3, 16, 112, 112)
    assert not torch.equal(a["clips"], ds[(1, 3)]["clips"])
    other_seed = GifClipDataset(
        records, sampler=RandomClip(num_clips=2), transform=C3DTransform(train=True), seed=8
    )
    assert not torch.equal(a["clips"], other_seed[(0, 3)]["clips"])
    ds.set_epoch(0)
    assert torch.equal(ds[3]["clips"], a["clips"])


def test_workers_give_the_same_batches(records):
    ds = GifClipDataset(
        records, sampler=RandomClip(num_clips=1), transform=C3DTransform(train=True), seed=3
    )
    keys = [(2, i) for i in torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))]

    def run(workers: int) -> list[dict]:
        loader = DataLoader(
            ds, sampler=keys, batch_size=2, collate_fn=collate_clips, num_workers=workers
        )
        return list(loader)

    serial, parallel = run(0), run(2)
    assert len(serial) == 3
    for x, y in zip(serial, parallel):
        assert x["ids"] == y["ids"] and torch.equal(x["clips"], y["clips"])
        assert torch.equal(x["gif_index"], y["gif_index"])
    assert sum(len(b["failures"]) for b in parallel) == 2
    # a worker concatenates into shared memory; a batch led by a failed GIF (0 clips) too
    keys_bad_first = [(0, 1), (0, 0), (0, 2)]  # records[1] is the undecodable one
    (in_worker,) = DataLoader(
        ds, sampler=keys_bad_first, batch_size=3, collate_fn=collate_clips, num_workers=1
    )
    here = collate_clips([ds[k] for k in keys_bad_first])
    assert in_worker["failures"][0]["id"] == "bad" and in_worker["clips"].shape[0] == 2
    assert torch.equal(in_worker["clips"], here["clips"])
    assert in_worker["clips"].is_shared()


def test_label_shape_is_checked(records):
    with pytest.raises(ValueError, match=r"n_records=5"):
        GifClipDataset(
            records, sampler=AllClips(), transform=C3DTransform(), labels=np.zeros((4, 17))
        )


def test_sampler_gets_the_gifs_delays(records):
    """FpsClips through the dataset: the clips are those of the GIF's own delays."""
    t, sampler = C3DTransform(), FpsClips(fps=30.0, clip_len=16, stride=8)
    ds = GifClipDataset(records, sampler=sampler, transform=t)
    for i in [0, 2, 3]:
        gif = read_gif(records[i].path)
        want = t(gif.frames, sampler(gif.n_frames, delays_ms=gif.delays_ms))
        assert torch.equal(ds[i]["clips"], want)
        assert len(want) != AllClips().count(gif.n_frames) or i == 0  # time changes the count


def test_clip_budget_subsamples_evenly_and_says_so(records):
    clips = AllClips()(57)  # 7 clips, starts 0, 8, …, 48
    kept = AllClips()(57, max_clips=3)
    assert kept.starts.tolist() == [0, 24, 48]
    assert np.array_equal(kept.frames, clips.frames[[0, 3, 6]])
    assert np.array_equal(AllClips()(57, max_clips=7).frames, clips.frames)
    ds = GifClipDataset(records, sampler=AllClips(), transform=C3DTransform(), max_clips=2)
    item = ds[3]  # c: 25 frames, 3 clips → the first and the last
    full = GifClipDataset(records, sampler=AllClips(), transform=C3DTransform())[3]
    assert torch.equal(item["clips"], full["clips"][[0, 2]])
    assert "2 of 3 clips" in item["note"] and ds[0]["note"] is None


def test_frame_budget_reads_the_first_frames_and_says_so(records):
    ds = GifClipDataset(
        records, sampler=AllClips(), transform=C3DTransform(), read_kwargs={"read_frames": 10}
    )
    item = ds[2]  # b: 17 frames, of which 10 are read
    assert item["n_frames"] == 10 and "first 10 of 17 frames" in item["note"]
    gif = read_gif(records[2].path)
    assert torch.equal(item["clips"], C3DTransform()(gif.frames[:10], AllClips()(10)))
    assert ds[0]["note"] is None  # a: 5 frames, under the budget
