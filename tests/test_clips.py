"""Loop padding and clip samplers against a naive loop, on a parametrised table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gifemo.data.clips import (
    CLIP_LEN,
    AllClips,
    ClipIndices,
    RandomClip,
    clip_indices,
    padded_length,
)


def naive_padded(n: int) -> list[int]:
    """Repeat frames 0..n-1 from the start until there are max(16, multiple of 8 ≥ n) frames."""
    target = 16
    while target < n or target % 8:
        target += 1
    out: list[int] = []
    while len(out) < target:
        out.extend(range(n))
    return out[:target]


def naive_clips(n: int) -> list[list[int]]:
    padded = naive_padded(n)
    return [padded[s : s + 16] for s in range(0, len(padded) - 15, 8)]


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


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_frames"):
        padded_length(0)
    with pytest.raises(ValueError, match="num_clips"):
        RandomClip(num_clips=0)
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        clip_indices(17, np.array([9]))
