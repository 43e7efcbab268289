"""read_gif's fast paths give the reference bytes: the direct copy from FFmpeg's BGRA plane
against swscale's rgb24 conversion (the previous path), and ``pixel_format="bgr0"`` (FFmpeg's
own layout) against RGB, on GIFs with transparency, every disposal, partial and interlaced
frames, local palettes, odd sizes, truncation, the composed route and a non-GIF container; and
``keep=`` (only some frames, as a keeper makes them) against the keeper applied to all of
them, on the same files."""

from __future__ import annotations

import io
import itertools
import warnings

import av
import numpy as np
import pytest

from gifemo.data.gif import GifDecodeError, read_gif
from tests.gifmaker import (
    GifFrame,
    gif_bytes,
    moving_frames,
    pillow_gif,
    random_indices,
    random_palette,
    write_gif,
)
from tests.test_gif import feature_frames

BG = (1, 2, 3)


class EveryOther:
    """A keeper: frames 1, 3, 5, … (frame 0 too when the delays sum to an odd number of cs,
    so that ``select`` must get the right delays), each cut to every second row, every third
    column; it counts its calls. ``first_half``: only those in the first half of the file,
    with ``stop_after_last`` (decoding stops after the last of them)."""

    def __init__(self, per_frame_from: int = 0, first_half: bool = False) -> None:
        self.selects, self.calls, self.batches = [], 0, 0
        self.per_frame_from, self.stop_after_last = per_frame_from, first_half

    def select(self, n, delays_ms):
        self.selects.append((n, np.asarray(delays_ms).tolist()))
        odd = np.arange(1, (n + 1) // 2 if self.stop_after_last else n, 2)
        return np.r_[0, odd] if (np.sum(delays_ms) // 10) % 2 else odd

    def __call__(self, frame):
        self.calls += 1
        return frame[::2, ::3].copy()

    def batch(self, frames, index):
        self.batches += 1
        return frames[index][:, ::2, ::3]


def assert_keep_same(path, ref, damaged_late: bool = False, **kw) -> None:
    """``read_gif(keep=...)`` in RGB and bgr0, frame by frame as decoded and in one batch
    after, and stopping after the last kept frame of the first half, equals the keeper applied
    to ``ref``'s frames; unkept frames never reach it. ``damaged_late``: a file whose image
    data is damaged in its second half, where stopping early differs by design (not run)."""
    halves = (False,) if damaged_late else (False, True)
    for (fmt, frames), per_frame_from, half in itertools.product(
        (("rgb24", ref.frames), ("bgr0", None)), (0, 10**9), halves
    ):
        keeper = EveryOther(per_frame_from, half)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = read_gif(path, pixel_format=fmt, keep=keeper, **kw)
        if frames is None:
            frames = np.concatenate([ref.frames[..., ::-1], np.zeros_like(ref.frames[..., :1])], -1)
            got_frames = got.frames[..., :3]
            frames = frames[..., :3]
        else:
            got_frames = got.frames
        kept = EveryOther(first_half=half).select(ref.n_frames, ref.delays_ms)
        assert np.array_equal(got.kept, kept)
        if len(kept):
            assert np.array_equal(got_frames, frames[kept][:, ::2, ::3])
        else:  # nothing kept: no output shape to know
            assert got.frames.shape == (0,)
        assert keeper.selects[-1] == (ref.n_frames, ref.delays_ms.tolist())
        if len(keeper.selects) == 1 and keeper.batches == 0:  # one by one, as decoded
            assert keeper.calls == len(kept)
        else:  # decoded whole (small frames, another route, or read again): one batch
            assert keeper.batches == (len(kept) > 0) and keeper.calls <= len(kept)
        assert got.n_frames == ref.n_frames and np.array_equal(got.delays_ms, ref.delays_ms)
        assert (got.truncated, got.frames_in_file) == (ref.truncated, ref.frames_in_file)


def all_routes(path, **kw):
    """(direct rgb24, swscale rgb24, bgr0) of one file, warnings silenced (truncated files)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            read_gif(path, **kw),
            read_gif(path, converter="swscale", **kw),
            read_gif(path, pixel_format="bgr0", **kw),
        )


def assert_same(path, **kw) -> np.ndarray:
    direct, ref, bgr0 = all_routes(path, **kw)
    assert direct.frames.flags.c_contiguous and direct.frames.shape[-1] == 3
    assert np.array_equal(direct.frames, ref.frames)
    assert bgr0.frames.shape == (*ref.frames.shape[:3], 4)
    assert np.array_equal(bgr0.frames[..., 2::-1], ref.frames)
    for g in (direct, bgr0):
        assert np.array_equal(g.delays_ms, ref.delays_ms)
        assert (g.truncated, g.frames_in_file) == (ref.truncated, ref.frames_in_file)
    assert_keep_same(path, ref, **kw)
    return ref.frames


@pytest.mark.parametrize("transparent", [None, 2])
@pytest.mark.parametrize("disposal", [0, 1, 2, 3])
def test_direct_and_bgr0_equal_swscale_on_gif_features(tmp_path, disposal, transparent):
    frames = feature_frames(disposal, transparent)
    path = write_gif(tmp_path / "f.gif", 24, 20, frames, palette=random_palette(8, 1),
                     background_index=4)  # fmt: skip
    out = assert_same(path, background=BG)
    if transparent is not None:  # painted transparent pixels survive the direct copy
        assert (out == BG).all(-1).any()


@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (31, 3), (270, 480), (57, 101)])
def test_odd_sizes_and_real_size(tmp_path, hw):
    h, w = hw
    path = pillow_gif(tmp_path / "o.gif", moving_frames(6, h, w, seed=h + w))
    assert_same(path)


def test_padded_rows_of_a_wide_frame(tmp_path):
    """A width whose BGRA row is not a multiple of FFmpeg's alignment: line_size > 4·W."""
    path = pillow_gif(tmp_path / "w.gif", moving_frames(3, 5, 17, seed=1))
    with av.open(str(path)) as c:
        frame = next(iter(c.decode(video=0)))
        assert frame.format.name == "bgra" and frame.planes[0].line_size > 4 * frame.width
    assert_same(path)


def test_truncated_read_frames_and_composed_route(tmp_path):
    path = pillow_gif(tmp_path / "t.gif", moving_frames(9, 30, 40, seed=2))
    data = path.read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert all_routes(cut)[0].truncated
    assert_same(cut)
    assert_same(path, read_frames=4)
    # several images in one frame (no Graphic Control Extension): composed from the blocks
    pal = random_palette(4, 3)
    blocks = [GifFrame(np.zeros((4, 4), np.uint8)),
              GifFrame(np.ones((2, 2), np.uint8), left=1, top=1, gce=False)]  # fmt: skip
    composed = tmp_path / "c.gif"
    composed.write_bytes(gif_bytes(6, 6, blocks, palette=pal))
    frames = assert_same(composed)
    assert len(frames) == 1 and (frames[0, 1:3, 1:3] == pal[1]).all()
    bgr0 = read_gif(composed, pixel_format="bgr0").frames
    assert (bgr0[..., 3] == 255).all()


def test_non_gif_container_in_bgr0(tmp_path):
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        for f in moving_frames(4, 24, 32):
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode())
    path = tmp_path / "v.gif"
    path.write_bytes(buf.getvalue())
    frames = assert_same(path)
    assert frames.shape == (4, 24, 32, 3)


def test_bad_options_are_refused(tmp_path):
    path = pillow_gif(tmp_path / "a.gif", moving_frames(2, 8, 8))
    with pytest.raises(ValueError, match="pixel_format"):
        read_gif(path, pixel_format="bgr24")
    with pytest.raises(ValueError, match="converter"):
        read_gif(path, converter="opencv")
    with pytest.raises(GifDecodeError):
        read_gif(tmp_path / "missing.gif", pixel_format="bgr0")


@pytest.mark.parametrize("code_size", [0, 13])
def test_keep_reads_whole_when_ffmpeg_stops_before_the_walk_count(tmp_path, code_size):
    """Image 4 of 6 has an invalid LZW code size: the walk counts 6 images, FFmpeg decodes 4.
    The kept frames chosen for 6 are dropped and the file is read whole (select called again,
    with T = 4): the result equals the keeper applied to read_gif's frames."""
    pal = random_palette(4, 3)
    images = [GifFrame(random_indices(8, 10, 4, s)) for s in range(6)]
    images[4] = GifFrame(np.zeros((8, 10), np.uint8), lzw=bytes([code_size]) + b"\x01\x02\x03")
    path = tmp_path / "bad.gif"
    path.write_bytes(gif_bytes(10, 8, images, palette=pal))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = read_gif(path)
        keeper = EveryOther()
        read_gif(path, keep=keeper)
    assert ref.truncated and ref.n_frames == 4 and ref.frames_in_file == 6
    assert [n for n, _ in keeper.selects] == [6, 4]
    assert_keep_same(path, ref, damaged_late=True)
    # stopping after the last kept frame (frame 1, before the damage): frames 2-5 are never
    # decoded, so T and the delays are the walk's and the damage goes unnoticed (by design)
    for per_frame_from, batches in ((0, 0), (10**9, 1)):  # frame by frame; small: one batch
        early = EveryOther(per_frame_from=per_frame_from, first_half=True)
        got = read_gif(path, keep=early)
        assert [n for n, _ in early.selects] == [6] and got.n_frames == 6 and not got.truncated
        assert np.array_equal(got.frames, ref.frames[got.kept][:, ::2, ::3])
        assert got.kept[-1] < 4 and early.batches == batches


def test_keeping_frame_by_frame_holds_only_the_kept_outputs(tmp_path):
    """Frame by frame, memory holds the kept outputs, not the T decoded frames: numpy's peak
    (tracemalloc) while reading 24 frames of 180×240 keeping every other frame's 1/6 is under
    a quarter of the frames' bytes; reading them all reaches those bytes."""
    import tracemalloc

    path = pillow_gif(tmp_path / "m.gif", moving_frames(24, 180, 240, seed=5))
    whole = 24 * 180 * 240 * 4

    def peak(**kw) -> int:
        tracemalloc.start()
        try:
            read_gif(path, pixel_format="bgr0", **kw)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak() >= whole
    assert peak(keep=EveryOther(per_frame_from=0)) < whole / 4
