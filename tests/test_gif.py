"""read_gif against Pillow on GIFs written here, the GIF89a spec cases, delays and every error."""

from __future__ import annotations

import io
import time
import tracemalloc
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from gifemo.data import gif_decode
from gifemo.data.gif import (
    DEFAULT_BACKGROUND,
    GifDecodeError,
    TruncatedGifWarning,
    playback_delays_ms,
    read_gif,
    scan_gif,
)
from tests.gifmaker import (
    GifFrame,
    gif_bytes,
    moving_frames,
    oversized_header_gif,
    pillow_gif,
    random_indices,
    random_palette,
    write_gif,
)

BG = (1, 2, 3)  # a background colour no palette here contains
W, H = 24, 20


def pillow_frames(path) -> list[np.ndarray]:
    """Pillow's composites as (H, W, 4) RGBA."""
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(im)]


def assert_matches_pillow(path, background=BG) -> None:
    ours = read_gif(path, background=background)
    ref = pillow_frames(path)
    assert ours.frames.shape == (len(ref), *ref[0].shape[:2], 3)
    for t, (a, b) in enumerate(zip(ours.frames, ref)):
        opaque = b[..., 3] == 255
        assert np.array_equal(a[opaque], b[..., :3][opaque]), f"frame {t}: opaque pixels differ"
        assert (a[~opaque] == background).all(), f"frame {t}: transparent pixels not background"
        assert set(np.unique(b[..., 3])) <= {0, 255}


def local_palette(seed: int, global_palette: np.ndarray, background_index: int = 4) -> np.ndarray:
    """A local palette sharing the background entry with the global one (see the spec test)."""
    pal = random_palette(8, seed)
    pal[background_index] = global_palette[background_index]
    return pal


def feature_frames(disposal: int, transparent: int | None) -> list[GifFrame]:
    """Full, partial, local-palette and interlaced frames with one disposal method."""
    first_disposal = 1 if disposal == 3 else disposal  # disposal 3 on frame 0: see spec test
    gpal = random_palette(8, 1)
    return [
        GifFrame(random_indices(H, W, 8, 0), delay_cs=5, disposal=first_disposal, transparent=transparent),
        GifFrame(random_indices(8, 10, 8, 1), left=3, top=4, delay_cs=7, disposal=disposal, transparent=transparent),
        GifFrame(random_indices(6, 7, 8, 2), left=10, top=9, disposal=disposal, transparent=transparent, palette=local_palette(5, gpal)),
        GifFrame(random_indices(11, 9, 8, 3), left=2, top=1, disposal=disposal, transparent=transparent, interlace=True),
        GifFrame(random_indices(H, W, 8, 4), disposal=disposal, transparent=transparent, interlace=True, palette=local_palette(6, gpal)),
    ]  # fmt: skip


@pytest.mark.parametrize("transparent", [None, 2])
@pytest.mark.parametrize("disposal", [0, 1, 2, 3])
def test_matches_pillow_on_gif_features(tmp_path, disposal, transparent):
    path = write_gif(
        tmp_path / "f.gif",
        W,
        H,
        feature_frames(disposal, transparent),
        palette=random_palette(8, 1),
        background_index=4,
    )
    assert_matches_pillow(path)
    if transparent is not None:  # the transparent index shows up as background somewhere
        assert (read_gif(path, background=BG).frames == BG).all(-1).any()


def test_matches_pillow_on_pillow_written_gif(tmp_path):
    # Pillow's writer crops unchanged borders: partial frames with per-frame palettes
    path = pillow_gif(
        tmp_path / "p.gif", moving_frames(12, 40, 50, seed=3), durations_ms=[30, 60] * 6
    )
    assert_matches_pillow(path)
    assert read_gif(path).delays_ms.tolist() == [30, 60] * 6


def test_pillow_transparency_gif(tmp_path):
    rgba = np.zeros((5, 16, 16, 4), np.uint8)
    rgba[..., :3] = moving_frames(5, 16, 16)
    rgba[:, 4:12, 4:12, 3] = 255  # opaque square, transparent border
    images = [Image.fromarray(f, "RGBA") for f in rgba]
    images[0].save(tmp_path / "t.gif", save_all=True, append_images=images[1:], disposal=2, loop=0)
    assert_matches_pillow(tmp_path / "t.gif")
    g = read_gif(tmp_path / "t.gif")
    assert (g.frames[:, 0, 0] == DEFAULT_BACKGROUND).all()


def test_spec_cases_where_pillow_differs(tmp_path):
    pal = random_palette(8, 1)
    # the first frame covers only part of the screen: the rest is the background colour index 4
    first = random_indices(8, 10, 8, 1)
    path = write_gif(
        tmp_path / "a.gif", W, H, [GifFrame(first, left=3, top=4)], palette=pal, background_index=4
    )
    (frame,) = read_gif(path).frames
    expected = np.broadcast_to(pal[4], (H, W, 3)).copy()
    expected[4:12, 3:13] = pal[first]
    assert np.array_equal(frame, expected)
    # disposal 3 on the first frame restores the canvas from before it (background)
    second = random_indices(5, 6, 8, 2)
    frames = [GifFrame(random_indices(H, W, 8, 0), disposal=3), GifFrame(second, left=1, top=2)]
    path = write_gif(tmp_path / "b.gif", W, H, frames, palette=pal, background_index=4)
    g = read_gif(path)
    expected = np.broadcast_to(pal[4], (H, W, 3)).copy()
    expected[2:7, 1:7] = pal[second]
    assert np.array_equal(g.frames[0], pal[frames[0].indices])
    assert np.array_equal(g.frames[1], expected)
    # disposal 2 after a frame with a local colour table restores the GLOBAL background entry
    # (the background index refers to the global table; Pillow looks it up in the local one)
    local = random_palette(8, 5)
    frames = [
        GifFrame(first, left=3, top=4, disposal=2, palette=local),
        GifFrame(second, left=1, top=2),
    ]
    path = write_gif(tmp_path / "c.gif", W, H, frames, palette=pal, background_index=4)
    g = read_gif(path)
    assert np.array_equal(g.frames[1], expected)
    assert not np.array_equal(local[4], pal[4])


def test_one_frame(tmp_path):
    pal = random_palette(4, 2)
    idx = random_indices(7, 5, 4, 0)
    g = read_gif(write_gif(tmp_path / "one.gif", 5, 7, [GifFrame(idx, delay_cs=4)], palette=pal))
    assert g.frames.shape == (1, 7, 5, 3) and g.frames.dtype == np.uint8
    assert np.array_equal(g.frames[0], pal[idx])
    assert g.delays_ms.dtype == np.int64 and g.delays_ms.tolist() == [40]
    assert not g.truncated


def test_300_frames(tmp_path):
    pal = random_palette(4, 3)
    rng = np.random.default_rng(0)
    frames = [
        GifFrame(rng.integers(0, 4, (8, 8), dtype=np.uint8), delay_cs=1 + t % 9) for t in range(300)
    ]
    g = read_gif(write_gif(tmp_path / "long.gif", 8, 8, frames, palette=pal))
    assert g.frames.shape == (300, 8, 8, 3)
    assert np.array_equal(g.frames, pal[np.stack([f.indices for f in frames])])
    assert g.delays_ms.tolist() == [10 * (1 + t % 9) for t in range(300)]


def test_zero_and_missing_delays(tmp_path):
    pal = random_palette(4, 1)
    frames = [
        GifFrame(random_indices(5, 6, 4, i), delay_cs=d) for i, d in enumerate([0, 1, 3, 7, 0])
    ]
    raw = gif_bytes(6, 5, frames, palette=pal)
    (tmp_path / "z.gif").write_bytes(raw)
    g = read_gif(tmp_path / "z.gif")
    assert g.delays_ms.tolist() == [0, 10, 30, 70, 0]  # the file's own values, 0 stays 0
    assert playback_delays_ms(g.delays_ms).tolist() == [100, 100, 30, 70, 100]
    # drop the Graphic Control Extension of image 3: it belongs to the current frame, the one
    # image 2 started (GIF89a §23: drawn without waiting; FFmpeg would show it as a frame)
    at = [i for i in range(len(raw)) if raw[i : i + 3] == b"\x21\xf9\x04"][3]
    (tmp_path / "m.gif").write_bytes(raw[:at] + raw[at + 8 :])
    m = read_gif(tmp_path / "m.gif")
    assert m.delays_ms.tolist() == [0, 10, 30, 0] and m.frames_in_file == 4
    assert np.array_equal(m.frames, g.frames[[0, 1, 3, 4]])  # image 3 covers image 2
    with Image.open(tmp_path / "z.gif") as im:
        assert [f.info["duration"] for f in ImageSequence.Iterator(im)] == [0, 10, 30, 70, 0]


def test_scan_gif_counts_images_and_completeness(tmp_path):
    raw = gif_bytes(
        6,
        5,
        [GifFrame(random_indices(5, 6, 4, i), delay_cs=i) for i in range(4)],
        palette=random_palette(4, 0),
    )
    full = scan_gif(raw)
    assert (full.width, full.height, full.delays_cs, full.complete) == (6, 5, (0, 1, 2, 3), True)
    cut = scan_gif(raw[:-1])
    assert cut.delays_cs == (0, 1, 2, 3) and not cut.complete


# ---- errors -------------------------------------------------------------------------------------


def expect_error(path, match, **kw):
    with pytest.raises(GifDecodeError, match=match) as info:
        read_gif(path, **kw)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_and_empty_files(tmp_path):
    expect_error(tmp_path / "nope.gif", "no such file")
    (tmp_path / "empty.gif").write_bytes(b"")
    expect_error(tmp_path / "empty.gif", "empty file")


def test_not_decodable(tmp_path):
    (tmp_path / "junk.gif").write_bytes(b"this is not an image at all" * 20)
    expect_error(tmp_path / "junk.gif", "not a decodable")
    (tmp_path / "short.gif").write_bytes(b"GIF89a\x10\x00")
    expect_error(tmp_path / "short.gif", "header incomplete")


def test_zero_frames_and_zero_size(tmp_path):
    pal = random_palette(4, 0)
    # a complete GIF without any image is one frame of its background (GIF89a §18)
    (tmp_path / "none.gif").write_bytes(gif_bytes(6, 5, [], palette=pal, background_index=2))
    none = read_gif(tmp_path / "none.gif")
    assert none.frames.shape == (1, 5, 6, 3) and (none.frames == pal[2]).all()
    (tmp_path / "cut.gif").write_bytes(gif_bytes(6, 5, [], palette=pal)[:-1])  # no trailer
    expect_error(tmp_path / "cut.gif", "file ends before its first frame")
    (tmp_path / "zero.gif").write_bytes(
        gif_bytes(0, 5, [GifFrame(random_indices(5, 6, 4, 0))], palette=pal)
    )
    expect_error(tmp_path / "zero.gif", "zero width or height")


def test_oversized_header_fails_fast_without_allocating(tmp_path, monkeypatch):
    data = oversized_header_gif(16000, 16000)
    assert len(data) == 35
    (tmp_path / "bomb.gif").write_bytes(data)

    def no_decoding(*a, **k):
        raise AssertionError("PyAV must not be opened for an over-budget GIF")

    monkeypatch.setattr(gif_decode.av, "open", no_decoding)
    tracemalloc.start()
    t0 = time.perf_counter()
    expect_error(tmp_path / "bomb.gif", r"16000x16000 = 256000000 pixels, over the budget")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, f"peak {peak} bytes"
    assert elapsed < 0.5


def test_pixel_budget_is_configurable(tmp_path):
    path = write_gif(
        tmp_path / "s.gif",
        6,
        5,
        [GifFrame(random_indices(5, 6, 4, 0))],
        palette=random_palette(4, 0),
    )
    assert read_gif(path, max_pixels=30).n_frames == 1
    expect_error(path, "6x5 = 30 pixels", max_pixels=29)


def test_max_frames(tmp_path):
    frames = [GifFrame(random_indices(4, 4, 4, i)) for i in range(5)]
    path = write_gif(tmp_path / "five.gif", 4, 4, frames, palette=random_palette(4, 0))
    assert read_gif(path, max_frames=5).n_frames == 5
    expect_error(path, "5 frames, over the budget max_frames=4", max_frames=4)


def test_truncated_gif_keeps_complete_frames(tmp_path):
    pal = random_palette(4, 1)
    frames = [GifFrame(random_indices(30, 40, 4, i), delay_cs=2 + i) for i in range(6)]
    raw = gif_bytes(40, 30, frames, palette=pal)
    full = read_gif(write_gif(tmp_path / "full.gif", 40, 30, frames, palette=pal))
    assert not full.truncated
    (tmp_path / "cut.gif").write_bytes(raw[: len(raw) // 2])
    with pytest.warns(TruncatedGifWarning, match="cut.gif"):
        g = read_gif(tmp_path / "cut.gif")
    k = len(scan_gif(raw[: len(raw) // 2]).delays_cs)
    assert 1 <= k < 6 and g.truncated and g.n_frames == k
    assert np.array_equal(g.frames, full.frames[:k])
    assert g.delays_ms.tolist() == full.delays_ms[:k].tolist()
    (tmp_path / "notrailer.gif").write_bytes(raw[:-1])  # all frames complete, trailer missing
    with pytest.warns(TruncatedGifWarning):
        g = read_gif(tmp_path / "notrailer.gif")
    assert g.truncated and np.array_equal(g.frames, full.frames)
    (tmp_path / "first.gif").write_bytes(raw[:60])  # cut inside the first image
    expect_error(tmp_path / "first.gif", "before its first frame is complete")


def _encode_mp4(path, frames: np.ndarray, fps: int = 10) -> None:
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_mp4_named_gif_is_accepted_and_budgeted(tmp_path):
    frames = moving_frames(6, 32, 48)
    _encode_mp4(tmp_path / "clip.gif", frames)
    g = read_gif(tmp_path / "clip.gif")
    assert g.frames.shape == (6, 32, 48, 3) and not g.truncated
    assert g.delays_ms.tolist() == [100] * 6
    assert np.abs(g.frames.astype(int) - frames).mean() < 12  # lossy codec, same picture
    expect_error(tmp_path / "clip.gif", "video stream is 48x32", max_pixels=1000)


def test_png_named_gif_is_one_frame(tmp_path):
    img = moving_frames(1, 9, 11)[0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    (tmp_path / "still.gif").write_bytes(buf.getvalue())
    g = read_gif(tmp_path / "still.gif")
    assert g.n_frames == 1 and np.array_equal(g.frames[0], img)


def test_rgba_png_named_gif_composites_alpha(tmp_path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., :3] = moving_frames(1, 6, 8)[0]
    rgba[2:5, 3:7, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.gif", "PNG")
    (frame,) = read_gif(tmp_path / "alpha.gif", background=BG).frames
    opaque = rgba[..., 3] == 255
    assert np.array_equal(frame[opaque], rgba[..., :3][opaque])
    assert (frame[~opaque] == BG).all()


@pytest.mark.slow
def test_decode_benchmark_quick_run(tmp_path):
    import json

    from gifemo.bench import decode

    assert decode.main(["--quick", "--repeats", "1", "--out", str(tmp_path / "d.json")]) == 0
    report = json.loads((tmp_path / "d.json").read_text())
    assert len(report["cases"]) == len(decode.QUICK_CASES)
    for case in report["cases"]:
        assert case["identical_output"] and case["ours_fps"] > 0 and case["pillow_fps"] > 0
        assert case["ours_peak_rss_mib"] >= 0 and case["output_mib"] > 0


def test_total_frame_bytes_budget(tmp_path):
    frames = [GifFrame(random_indices(4, 5, 4, i)) for i in range(3)]
    path = write_gif(tmp_path / "three.gif", 5, 4, frames, palette=random_palette(4, 0))
    assert read_gif(path, max_bytes=3 * 4 * 5 * 3).n_frames == 3
    expect_error(
        path, "3 frames of 5x4 need 180 bytes, over the budget max_bytes=179", max_bytes=179
    )
    _encode_mp4(tmp_path / "clip.gif", moving_frames(6, 32, 48))
    expect_error(tmp_path / "clip.gif", "5 frames of 48x32 need", max_bytes=4 * 32 * 48 * 3 + 1)
