"""Fine-tuning: per-GIF averaging, loss, clip cache, module training/eval, resume, (slow) learning."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gifemo.finetune.cache import ClipCache
from gifemo.finetune.module import mean_by_gif, positive_weights


def write_gif(path, n_frames=5, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    frames = [
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(n_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


# -- per-GIF averaging and class weights --------------------------------------------------------
def test_mean_by_gif_matches_loop():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(9, 4, generator=g)
    gif_index = torch.tensor([0, 0, 2, 2, 2, 3, 3, 3, 3])
    mean, counts = mean_by_gif(values, gif_index, 5)
    assert counts.tolist() == [2, 0, 3, 4, 0]
    for b in range(5):
        rows = values[gif_index == b]
        expected = rows.mean(0) if len(rows) else torch.zeros(4)
        torch.testing.assert_close(mean[b], expected)


def test_positive_weights_are_neg_over_pos():
    labels = np.zeros((10, 3), bool)
    labels[:2, 0] = True  # 2 pos / 8 neg
    labels[:5, 1] = True  # 5 / 5
    w = positive_weights(labels, max_weight=50)
    torch.testing.assert_close(w, torch.tensor([4.0, 1.0, 50.0]))


# -- clip cache ------------------------------------------------------------------------------
def test_cache_returns_resized_frames_and_hits_on_second_read(tmp_path):
    from gifemo.data.gif import read_gif
    from gifemo.data.transforms import resize_frames

    gif = write_gif(tmp_path / "a.gif", n_frames=6)
    cache = ClipCache(tmp_path / "cache", max_mb=10)
    first = cache.get(gif)
    second = ClipCache(tmp_path / "cache", max_mb=10).get(gif)  # another worker / epoch
    expected = resize_frames(read_gif(gif).frames)
    assert not first.hit and second.hit
    assert second.resized.shape == (6, 128, 171, 3) and second.resized.dtype == np.uint8
    np.testing.assert_array_equal(first.resized, expected)
    np.testing.assert_array_equal(second.resized, expected)
    np.testing.assert_array_equal(second.delays_ms, read_gif(gif).delays_ms)
    assert not second.truncated
    assert not any(p.suffix == ".tmp" for p in (tmp_path / "cache").iterdir())


def test_cache_key_changes_when_the_file_changes(tmp_path):
    gif = write_gif(tmp_path / "a.gif", n_frames=3, seed=0)
    cache = ClipCache(tmp_path / "cache", max_mb=10)
    old = cache.get(gif).resized.copy()
    write_gif(gif, n_frames=4, seed=1)
    os.utime(gif, ns=(time.time_ns(), time.time_ns() + 10**9))
    new = cache.get(gif)
    assert not new.hit and new.resized.shape[0] == 4 and not np.array_equal(new.resized[:3], old)


def test_cache_respects_its_size_budget(tmp_path):
    one_entry_mb = 4 * 128 * 171 * 3 / 2**20  # 4 frames ≈ 0.25 MiB
    cache = ClipCache(tmp_path / "cache", max_mb=2.5 * one_entry_mb)
    gifs = [write_gif(tmp_path / f"{i}.gif", n_frames=4, seed=i) for i in range(4)]
    for g in gifs:
        assert cache.get(g).resized.shape[0] == 4
    assert cache.stats() == {"hits": 0, "misses": 4, "skipped": 2}
    assert cache.size_bytes() <= cache.max_bytes
    assert [cache.get(g).hit for g in gifs] == [True, True, False, False]
    off = ClipCache(tmp_path / "off", max_mb=0)
    off.get(gifs[0])
    assert off.size_bytes() == 0


def test_cache_reports_bad_gifs_like_read_gif(tmp_path):
    from gifemo.data.gif import GifDecodeError

    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a\x01")
    with pytest.raises(GifDecodeError, match=r"bad\.gif"):
        ClipCache(tmp_path / "cache").get(bad)
