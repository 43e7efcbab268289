"""C3D preprocessing (C3DTransform): crop window, channel order, mean, flips; resize against Pillow and a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gifemo.backbones.c3d import CROP, RESIZE_HW, SPORTS1M_MEAN_BGR, C3DTransform
from gifemo.backbones.preprocessing import load_mean_cube
from gifemo.backbones.resize import resize_frames
from gifemo.data.clips import AllClips, RandomClip

ZERO = (0.0, 0.0, 0.0)


def coordinate_frames(t: int) -> np.ndarray:
    """(t, 128, 171, 3) RGB frames whose pixels encode (R, G, B) = (row, col, 10·frame)."""
    rows, cols = np.mgrid[0 : RESIZE_HW[0], 0 : RESIZE_HW[1]]
    out = np.empty((t, *RESIZE_HW, 3), np.uint8)
    out[..., 0] = rows
    out[..., 1] = cols
    out[..., 2] = (10 * np.arange(t))[:, None, None]
    return out


def test_eval_crop_window_channel_order_and_shape():
    frames = coordinate_frames(25)
    clips = AllClips()(25)  # 3 clips, starts 0, 8, 16
    x = C3DTransform(mean_bgr=ZERO).from_resized(frames, clips)
    assert x.shape == (3, 3, 16, CROP, CROP) and x.dtype == torch.float32
    for k, start in enumerate([0, 8, 16]):
        expected_t = [(start + j) % 25 for j in range(16)]
        assert x[k, 0, :, 0, 0].tolist() == [10.0 * f for f in expected_t]  # channel 0 = B
    assert torch.equal(x[0, 1, 0, 0], torch.arange(29, 141, dtype=torch.float32))  # G = col
    assert torch.equal(x[0, 2, 0, :, 0], torch.arange(8, 120, dtype=torch.float32))  # R = row
    # the C3D centre window is rows 8:120, cols 29:141 of the 128×171 frame
    assert torch.equal(
        x[0].permute(1, 2, 3, 0),
        torch.from_numpy(frames[:16, 8:120, 29:141, ::-1].astype(np.float32)),
    )


def test_per_channel_mean_and_no_scaling():
    frames = coordinate_frames(16)
    clips = AllClips()(16)
    raw = C3DTransform(mean_bgr=ZERO).from_resized(frames, clips)
    x = C3DTransform().from_resized(frames, clips)
    for c in range(3):
        assert np.allclose((raw[:, c] - x[:, c]).numpy(), SPORTS1M_MEAN_BGR[c], atol=1e-5)
    assert raw.max() == 150.0  # values stay in 0–255 (frame 15 → B = 150)


@pytest.mark.parametrize("layout", ["cthw", "thwc", "1cthw"])
def test_mean_cube_subtracted_at_full_frame_positions(tmp_path, layout):
    rng = np.random.default_rng(0)
    cube_thwc = rng.uniform(0, 255, (16, *RESIZE_HW, 3)).astype(np.float32)  # BGR
    stored = {
        "thwc": cube_thwc,
        "cthw": cube_thwc.transpose(3, 0, 1, 2),
        "1cthw": cube_thwc.transpose(3, 0, 1, 2)[None],
    }[layout]
    np.save(tmp_path / "mean.npy", stored)
    frames = rng.integers(0, 256, (20, *RESIZE_HW, 3), dtype=np.uint8)
    clips = AllClips()(20)
    x = C3DTransform(mean_cube=str(tmp_path / "mean.npy")).from_resized(frames, clips)
    for k in range(len(clips.starts)):
        full = (
            frames[clips.frames[k], :, :, ::-1].astype(np.float32) - cube_thwc
        )  # (16, 128, 171, 3)
        expected = full[:, 8:120, 29:141].transpose(3, 0, 1, 2)
        assert np.allclose(x[k].numpy(), expected, atol=1e-4)


def test_bad_mean_cube_shape(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((16, 112, 112, 3), np.float32))
    with pytest.raises(ValueError, match=r"bad\.npy.*\(16, 112, 112, 3\)"):
        load_mean_cube(tmp_path / "bad.npy")


def test_train_random_crops_and_flips():
    frames = coordinate_frames(16)
    clips = RandomClip(num_clips=1)(16, torch.Generator().manual_seed(0))
    t = C3DTransform(train=True, mean_bgr=ZERO)
    tops, lefts, flips = set(), set(), set()
    for seed in range(80):
        x = t.from_resized(frames, clips, torch.Generator().manual_seed(seed))[
            0
        ]  # (3, 16, 112, 112)
        top = int(x[2, 0, 0, 0])
        row_g = x[1, 0, 0]  # G = column along the first row
        flipped = bool(row_g[0] > row_g[-1])
        left = int(row_g[-1]) if flipped else int(row_g[0])
        assert 0 <= top <= 128 - CROP and 0 <= left <= 171 - CROP
        assert torch.equal(x[2, 0, :, 0], torch.arange(top, top + CROP, dtype=torch.float32))
        cols = torch.arange(left, left + CROP, dtype=torch.float32)
        assert torch.equal(row_g, cols.flip(0) if flipped else cols)
        tops.add(top)
        lefts.add(left)
        flips.add(flipped)
    assert len(tops) > 8 and len(lefts) > 15 and flips == {False, True}
    a = t.from_resized(frames, clips, torch.Generator().manual_seed(3))
    b = t.from_resized(frames, clips, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    no_flip = C3DTransform(train=True, flip=False, mean_bgr=ZERO)
    for seed in range(30):
        row_g = no_flip.from_resized(frames, clips, torch.Generator().manual_seed(seed))[0, 1, 0, 0]
        assert row_g[0] < row_g[-1]


def naive_bilinear(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_LINEAR by the formula: half-pixel centres, clamped, no antialiasing."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - np.floor(src)

    y0, y1, fy = axis(img.shape[0], out_hw[0])
    x0, x1, fx = axis(img.shape[1], out_hw[1])
    fy, fx = fy[:, None, None], fx[None, :, None]
    top = (1 - fx) * img[y0][:, x0] + fx * img[y0][:, x1]
    bottom = (1 - fx) * img[y1][:, x0] + fx * img[y1][:, x1]
    return (1 - fy) * top + fy * bottom


def test_resize_shrinking_matches_naive_bilinear():
    img = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    ours = resize_frames(img[None])[0].astype(float)
    ref = np.round(naive_bilinear(img.astype(float), RESIZE_HW))
    assert ours.shape == (*RESIZE_HW, 3)
    assert np.abs(ours - ref).max() <= 1
    assert np.abs(ours - ref).mean() < 0.3  # fixed-point rounding


def test_resize_enlarging_matches_pillow():
    # Pillow's BILINEAR has no antialiasing effect when enlarging: an independent reference
    frames = np.random.default_rng(2).integers(0, 256, (3, 40, 57, 3), dtype=np.uint8)
    ours = resize_frames(frames).astype(int)
    for t in range(3):
        ref = np.asarray(
            Image.fromarray(frames[t]).resize((171, 128), Image.Resampling.BILINEAR)
        ).astype(int)
        assert np.abs(ours[t] - ref).max() <= 1


def test_call_resizes_used_frames_only_and_agrees_with_from_resized():
    frames = np.random.default_rng(3).integers(0, 256, (30, 50, 60, 3), dtype=np.uint8)
    clips = RandomClip(num_clips=2)(30, torch.Generator().manual_seed(1))
    t = C3DTransform()
    assert torch.equal(t(frames, clips), t.from_resized(resize_frames(frames), clips))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8"):
        resize_frames(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(T, 128, 171, 3\)"):
        t.from_resized(frames, clips)


def test_train_crop_flip_with_mean_cube_equals_naive(tmp_path):
    """from_resized against a per-clip loop: gather, BGR, subtract the cube, crop, flip."""
    rng = np.random.default_rng(4)
    cube = rng.uniform(0, 255, (16, *RESIZE_HW, 3)).astype(np.float32)  # BGR, THWC
    np.save(tmp_path / "mean.npy", cube)
    t = C3DTransform(train=True, mean_cube=str(tmp_path / "mean.npy"))
    frames = rng.integers(0, 256, (11, *RESIZE_HW, 3), dtype=np.uint8)
    clips = RandomClip(num_clips=6)(11, torch.Generator().manual_seed(1))  # loop-padded: repeats
    x = t.from_resized(frames, clips, torch.Generator().manual_seed(7)).numpy()
    windows = t.windows(6, torch.Generator().manual_seed(7))
    assert set(windows[:, 2].tolist()) == {0, 1}  # both flipped and unflipped clips are checked
    for k, (top, left, flip) in enumerate(windows):
        full = frames[clips.frames[k], :, :, ::-1].astype(np.float32) - cube  # (16, 128, 171, 3)
        crop = full[:, top : top + CROP, left : left + CROP]
        if flip:
            crop = crop[:, :, ::-1]
        np.testing.assert_allclose(x[k], crop.transpose(3, 0, 1, 2), atol=1e-4)
    with pytest.raises(ValueError, match="clip indices reach frame 10, but there are 10"):
        t.from_resized(frames[:10], clips)


@pytest.mark.parametrize("train", [True, False])
def test_uint8_output_then_normalize_is_bit_identical(train):
    normalize_clips = C3DTransform().preprocessing.normalize

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (21, *RESIZE_HW, 3), dtype=np.uint8)
    clips = (
        RandomClip(num_clips=5)(21, torch.Generator().manual_seed(2)) if train else AllClips()(21)
    )
    ref = C3DTransform(train=train).from_resized(frames, clips, torch.Generator().manual_seed(9))
    raw = C3DTransform(train=train, output="uint8").from_resized(
        frames, clips, torch.Generator().manual_seed(9)
    )
    assert raw.dtype == torch.uint8 and raw.shape == ref.shape
    assert torch.equal(normalize_clips(raw), ref)  # bit for bit, flips included
    assert normalize_clips(ref) is ref  # float clips pass through
    with pytest.raises(ValueError, match="output must be 'float32' or 'uint8', got 'int8'"):
        C3DTransform(output="int8")


def test_uint8_output_refuses_mean_cube(tmp_path):
    np.save(tmp_path / "mean.npy", np.zeros((16, *RESIZE_HW, 3), np.float32))
    with pytest.raises(ValueError, match=r"mean cube .*mean\.npy depends on each clip's crop"):
        C3DTransform(output="uint8", mean_cube=str(tmp_path / "mean.npy"))
