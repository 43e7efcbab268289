"""Loop padding and clip samplers against a naive loop, on a parametrised table; the
time-aware sampler against a naive playback loop on GIFs written with chosen delays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gifemo.data.clips import (
    DEFAULT_CLIP_LEN,
    AllClips,
    ClipIndices,
    FpsClips,
    RandomClip,
    RandomFpsClip,
    clip_indices,
    padded_length,
    resample_times,
)
from gifemo.data.gif import playback_delays_ms, read_gif
from tests.gifmaker import moving_frames, pillow_gif
from tests.test_gif import _encode_mp4

CLIP_LEN = DEFAULT_CLIP_LEN


def naive_padded(n: int, clip_len: int = 16, stride: int = 8) -> list[int]:
    """Repeat frames 0..n-1 from the start until there are max(ℓ, multiple of s ≥ n) frames."""
    target = n
    while target % stride:
        target += 1
    target = max(target, clip_len)
    out: list[int] = []
    while len(out) < target:
        out.extend(range(n))
    return out[:target]


def naive_clips(n: int, clip_len: int = 16, stride: int = 8) -> list[list[int]]:
    padded = naive_padded(n, clip_len, stride)
    return [padded[s : s + clip_len] for s in range(0, len(padded) - clip_len + 1, stride)]


def naive_playback(delays_ms: list[int], fps: float) -> list[int]:
    """The frame on screen at each sample time k/fps, stepping through the animation frame by
    frame; delays of 10 ms or less are shown for 100 ms, as browsers do."""
    shown = [100 if d <= 10 else d for d in delays_ms]
    total = sum(shown)
    out, i, frame_end, k = [], 0, shown[0], 0
    while k * 1000.0 / fps < total:
        t = k * 1000.0 / fps
        while t >= frame_end:
            i += 1
            frame_end += shown[i]
        out.append(i)
        k += 1
    return out or [0]


# n, L, number of clips
TABLE = [(1, 16, 1), (2, 16, 1), (7, 16, 1), (8, 16, 1), (15, 16, 1), (16, 16, 1),
         (17, 24, 2), (24, 24, 2), (25, 32, 3)]  # fmt: skip


@pytest.mark.parametrize(("n", "length", "n_clips"), TABLE)
def test_all_clips_table(n, length, n_clips):
    assert padded_length(n) == length == len(naive_padded(n))
    clips = AllClips()(n)
    assert isinstance(clips, ClipIndices)
    assert clips.frames.shape == (n_clips, CLIP_LEN) and clips.frames.dtype == np.int64
    assert clips.starts.tolist() == list(range(0, length - 15, 8))
    assert clips.frames.tolist() == naive_clips(n)


def test_small_cases_by_hand():
    assert AllClips()(1).frames.tolist() == [[0] * 16]
    assert AllClips()(7).frames[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1]
    c17 = AllClips()(17).frames
    assert c17[1].tolist() == [8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("n", [n for n, _, _ in TABLE])
@pytest.mark.parametrize("num_clips", [1, 3, 40])
def test_random_clip_windows_are_valid(n, num_clips):
    g = torch.Generator().manual_seed(n)
    clips = RandomClip(num_clips=num_clips)(n, g)
    padded = naive_padded(n)
    assert clips.frames.shape == (num_clips, 16)
    assert (np.diff(clips.starts) >= 0).all()
    for s, row in zip(clips.starts, clips.frames):
        assert 0 <= s <= len(padded) - 16
        assert row.tolist() == padded[s : s + 16]
    if num_clips <= len(padded) - 15:
        assert len(set(clips.starts.tolist())) == num_clips


def test_random_clip_reproducible_and_covers_offsets():
    a = RandomClip(num_clips=2)(25, torch.Generator().manual_seed(7))
    b = RandomClip(num_clips=2)(25, torch.Generator().manual_seed(7))
    assert np.array_equal(a.frames, b.frames)
    g = torch.Generator().manual_seed(0)
    seen = {int(RandomClip()(25, g).starts[0]) for _ in range(400)}
    assert seen == set(range(0, 32 - 16 + 1))  # every offset, not only multiples of 8


@pytest.mark.parametrize(("clip_len", "stride"), [(16, 8), (8, 4), (4, 4), (5, 3), (1, 1)])
@pytest.mark.parametrize("n", [1, 3, 7, 16, 17, 30])
def test_clip_length_and_stride_are_arguments(n, clip_len, stride):
    sampler = AllClips(clip_len=clip_len, stride=stride)
    clips = sampler(n)
    assert clips.frames.tolist() == naive_clips(n, clip_len, stride)
    assert sampler.count(n) == len(clips.starts)
    assert padded_length(n, clip_len=clip_len, stride=stride) == len(
        naive_padded(n, clip_len, stride)
    )
    r = RandomClip(num_clips=3, clip_len=clip_len, stride=stride)(n, torch.Generator())
    padded = naive_padded(n, clip_len, stride)
    for start, row in zip(r.starts, r.frames):
        assert row.tolist() == padded[start : start + clip_len]


def test_default_sampler_is_the_papers_rule():
    """AllClips() is still 16 frames, stride 8, and describes itself as the old store did."""
    assert AllClips().describe() == {
        "sampler": "AllClips",
        "clip_len": 16,
        "stride": 8,
        "padding": "loop to max(16, 8*ceil(n/8)) frames",
    }
    for n in range(1, 60):
        assert AllClips()(n).frames.tolist() == naive_clips(n)


DELAY_TABLE = [
    [40] * 10,  # 25 fps GIF
    [20, 30, 200, 50, 1000, 60],  # mixed, one long pause
    [0, 0, 0, 0],  # no delay: played as 100 ms each
    [10, 100, 10],  # 10 ms is played as 100 ms too
    [17, 16, 17, 17, 16, 17, 11],  # a video named .gif (60 fps): played as it is
    [2000],  # one long frame
    [70, 70, 70, 30, 30, 30, 500, 10, 0, 90, 110, 130, 150],
]


@pytest.mark.parametrize("delays", DELAY_TABLE)
@pytest.mark.parametrize("fps", [25.0, 10.0, 7.5, 1.0, 60.0])
def test_resample_times_matches_naive_playback(delays, fps):
    assert resample_times(np.array(delays), fps).tolist() == naive_playback(delays, fps)


@pytest.mark.parametrize("delays", [DELAY_TABLE[1], DELAY_TABLE[2], DELAY_TABLE[5]])
@pytest.mark.parametrize(("fps", "clip_len", "stride"), [(10.0, 16, 8), (25.0, 8, 4), (4.0, 4, 2)])
def test_fps_clips_on_gifs_with_known_delays(tmp_path, delays, fps, clip_len, stride):
    """Pillow writes the GIF with the chosen delays; read_gif gives them back; the clips are the
    naive playback resampled at fps, loop-padded and cut like AllClips."""
    frames = moving_frames(len(delays), 12, 16, seed=len(delays))
    path = pillow_gif(tmp_path / "d.gif", frames, durations_ms=delays)
    gif = read_gif(path)
    assert gif.delays_ms.tolist() == delays
    sampler = FpsClips(fps=fps, clip_len=clip_len, stride=stride)
    clips = sampler(gif.n_frames, delays_ms=gif.delays_ms)
    played = naive_playback(delays, fps)
    want = [[played[j] for j in clip] for clip in naive_clips(len(played), clip_len, stride)]
    assert clips.frames.tolist() == want
    assert sampler.count(gif.n_frames, gif.delays_ms) == len(want)
    # each clip lasts clip_len / fps seconds of the animation, whatever the GIF's own speed
    assert clips.starts.tolist() == list(range(0, stride * len(want), stride))


@pytest.mark.parametrize("delays", DELAY_TABLE)
@pytest.mark.parametrize(("fps", "num_clips"), [(10.0, 1), (25.0, 3), (4.0, 2)])
def test_random_fps_clip_is_random_clip_on_the_naive_playback(delays, fps, num_clips):
    """The training sampler of clips=fps: RandomClip's draw (same generator) on the naive
    playback resampled at fps, mapped back to the frames on screen."""
    played = naive_playback(delays, fps)
    sampler = FpsClips(fps=fps).training(num_clips)
    assert isinstance(sampler, RandomFpsClip) and sampler.num_clips == num_clips
    for seed in range(5):
        got = sampler(len(delays), torch.Generator().manual_seed(seed), delays_ms=np.array(delays))
        on_samples = RandomClip(num_clips=num_clips)(
            len(played), torch.Generator().manual_seed(seed)
        )
        assert got.frames.tolist() == [[played[j] for j in c] for c in on_samples.frames.tolist()]
        assert got.starts.tolist() == on_samples.starts.tolist()
    assert sampler.count(len(delays), np.array(delays)) == num_clips
    assert sampler.describe()["sampler"] == "RandomFpsClip"
    assert sampler.describe()["fps"] == fps and sampler.describe()["num_clips"] == num_clips


def test_training_samplers_of_the_evaluation_rules():
    assert (
        AllClips(clip_len=8, stride=4).training(3).describe()
        == RandomClip(num_clips=3, clip_len=8, stride=4).describe()
    )
    fps = FpsClips(fps=5.0, clip_len=8, stride=4).training(2)
    assert (fps.fps, fps.clip_len, fps.stride, fps.num_clips) == (5.0, 8, 4, 2)
    # FpsClips itself is unchanged (its description is part of stores' fingerprints)
    assert "num_clips" not in FpsClips(fps=5.0).describe()


def test_playback_delays_of_gifs_are_the_browsers_and_videos_keep_theirs(tmp_path):
    """Every GIF delay (whole centiseconds) plays as browsers play it: 0 and 1 cs as 100 ms,
    the rest as written. A 60 fps MP4 named .gif keeps its 17 ms frames: its second of video
    is resampled to one second, not six."""
    cs = np.arange(2**16)
    assert playback_delays_ms(10 * cs).tolist() == np.where(cs < 2, 100, 10 * cs).tolist()
    _encode_mp4(tmp_path / "video.gif", moving_frames(60, 16, 16), fps=60)
    video = read_gif(tmp_path / "video.gif")
    assert video.frames_in_file == -1 and video.delays_ms.tolist() == [17] * 60  # not a GIF
    assert playback_delays_ms(video.delays_ms).tolist() == [17] * 60
    assert len(resample_times(video.delays_ms, 10.0)) == 11  # ⌈60 · 17 ms · 10 fps⌉
    assert FpsClips(fps=10.0, clip_len=4, stride=2).count(60, video.delays_ms) == 5


def test_fps_clips_by_hand():
    # 3 frames shown 100, 300 and 100 ms; at 10 fps: 0, 1, 1, 1, 2 (500 ms → 5 samples)
    assert resample_times(np.array([100, 300, 100]), 10).tolist() == [0, 1, 1, 1, 2]
    c = FpsClips(fps=10, clip_len=4, stride=2)(3, delays_ms=np.array([100, 300, 100]))
    # 5 samples padded to 6 (loop): 0 1 1 1 2 0 → starts 0, 2
    assert c.frames.tolist() == [[0, 1, 1, 1], [1, 1, 2, 0]]
    # a 20 ms GIF at 25 fps keeps every other frame
    assert resample_times(np.array([20] * 8), 25).tolist() == [0, 2, 4, 6]
    d = FpsClips(fps=12.5).describe()
    assert d["sampler"] == "FpsClips" and d["fps"] == 12.5 and d["clip_len"] == 16


@pytest.mark.parametrize("max_clips", [1, 2, 3, 5])
def test_max_clips_keeps_evenly_spaced_clips_of_every_sampler(max_clips):
    delays = np.array([70, 70, 30, 500, 10, 0, 90, 110, 130, 150] * 3)
    for sampler in (AllClips(), AllClips(clip_len=4, stride=2), FpsClips(fps=25.0)):
        full = sampler(30, delays_ms=delays)
        kept = sampler(30, delays_ms=delays, max_clips=max_clips)
        n = len(full.starts)
        want = np.round(np.linspace(0, n - 1, max_clips)).astype(int) if n > max_clips else range(n)
        assert np.array_equal(kept.frames, full.frames[list(want)]), sampler
        assert kept.starts[0] == 0 and (max_clips == 1 or kept.starts[-1] == full.starts[-1])
    r = RandomClip(num_clips=6)(30, torch.Generator().manual_seed(0), max_clips=max_clips)
    assert len(r.starts) == min(6, max_clips)


def test_fps_clips_memory_does_not_grow_with_the_gifs_duration():
    """1000 frames of 655.35 s (the largest GIF delay) at 30 fps: 19.7 million samples, 2.5
    million clips; the sampler computes only the kept ones."""
    delays = np.full(1000, 655_350)
    sampler = FpsClips(fps=30.0)
    assert sampler.count(1000, delays) == (math.ceil(655_350_000 * 30 / 1000) - 16 + 7) // 8 + 1
    clips = sampler(1000, delays_ms=delays, max_clips=4)
    assert clips.frames.shape == (4, 16)
    n_samples = math.ceil(655_350_000 * 30 / 1000)
    for start, row in zip(clips.starts, clips.frames):
        samples = [(start + j) % n_samples for j in range(16)]  # loop padding
        assert row.tolist() == [int(k * 1000 / 30 // 655_350) for k in samples]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_frames"):
        padded_length(0)
    with pytest.raises(ValueError, match="num_clips"):
        RandomClip(num_clips=0)
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        clip_indices(17, np.array([9]))
    with pytest.raises(ValueError, match="clip_len and stride"):
        AllClips(stride=0)
    with pytest.raises(ValueError, match="fps"):
        FpsClips(fps=0)
    with pytest.raises(ValueError, match="delays"):
        FpsClips(fps=10)(5)
    with pytest.raises(ValueError, match="3 delays for 5 frames"):
        FpsClips(fps=10)(5, delays_ms=np.array([10, 20, 30]))
