"""Decoder conformance where FFmpeg's view of a GIF differs from the spec's (issue 11 item 7).

Every file is written here byte by byte (tests/gifmaker.py). Expected frames come from
:func:`naive_frames`, a per-pixel reference written from the GIF89a spec in plain Python (it
reads the index arrays the test wrote, not the LZW data); read_gif composes these files from
the GIF's blocks (gifemo/data/gif_compose.py). Where both paths apply (every image with its
Graphic Control Extension), the block compositor is checked against FFmpeg's frames too.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gifemo.backbones.resize import FrameResize, resize_frames
from gifemo.data.gif import GifDecodeError, TruncatedGifWarning, read_gif, scan_gif
from gifemo.data.gif_compose import compose_gif, frame_count, lzw_decode, needs_blocks
from tests.gifmaker import GifFrame, gif_bytes, lzw_encode, random_indices, random_palette
from tests.test_gif import BG, H, W, feature_frames
from tests.test_gif_fast import EveryOther

BGA = np.array(BG, np.uint8)


def naive_frames(
    width: int, height: int, frames: list[GifFrame], gpal, bg_index: int, *, gif87a=False
) -> tuple[list[np.ndarray], list[int]]:
    """Frames by the spec, pixel by pixel: the first image and every image with a GCE start a
    frame (in a GIF87a every image), images without one are drawn into the current frame;
    disposal applies to the image's rectangle before the next image; transparent pixels and
    uncovered screen show BG unless the header's background colour is opaque (first image
    without transparency)."""
    canvas = [[None] * width for _ in range(height)]  # None = transparent, else an RGB tuple
    first_tr = bool(frames) and frames[0].gce and frames[0].transparent is not None
    bg = (
        tuple(int(c) for c in gpal[bg_index]) if gpal is not None and bg_index < len(gpal) else None
    )
    if bg is not None and not first_tr:
        canvas = [[bg] * width for _ in range(height)]
    out, delays = [], []

    def snapshot():
        return np.array([[c if c is not None else BG for c in row] for row in canvas], np.uint8)

    if not frames:
        return [snapshot()], [0]
    for k, f in enumerate(frames):
        if k == 0 or f.gce or gif87a:
            delays.append(10 * f.delay_cs if f.gce else 0)
        table = f.palette if f.palette is not None else gpal
        saved = [row[:] for row in canvas]
        h, w = f.indices.shape
        for y in range(h):
            for x in range(w):
                i = int(f.indices[y, x])
                cy, cx = f.top + y, f.left + x
                if cy < height and cx < width and not (f.gce and i == f.transparent):
                    canvas[cy][cx] = tuple(int(c) for c in table[i])
        nxt = frames[k + 1] if k + 1 < len(frames) else None
        if nxt is None or nxt.gce or gif87a:  # the next image starts a frame: this one is done
            out.append(snapshot())
        disposal = f.disposal if f.gce else 0
        for y in range(f.top, min(f.top + h, height)):
            for x in range(f.left, min(f.left + w, width)):
                if disposal == 2:
                    opaque = not (f.gce and f.transparent is not None) and bg is not None
                    canvas[y][x] = bg if opaque else None
                elif disposal == 3:
                    canvas[y][x] = saved[y][x]
    return out, delays


def check(tmp_path, name, width, height, frames, gpal, bg_index=0, n_frames=None, blocks=True,
          **kw):  # fmt: skip
    data = gif_bytes(width, height, frames, palette=gpal, background_index=bg_index, **kw)
    path = tmp_path / f"{name}.gif"
    path.write_bytes(data)
    gif = read_gif(path, background=BG)
    want, delays = naive_frames(
        width, height, frames, gpal, bg_index, gif87a=kw.get("version") == b"GIF87a"
    )
    assert gif.n_frames == len(want) == (n_frames or len(want)), name
    for t, (a, b) in enumerate(zip(gif.frames, want)):
        assert np.array_equal(a, b), f"{name}: frame {t} differs"
    assert gif.delays_ms.tolist() == delays
    assert (needs_blocks(scan_gif(data)) is not None) == blocks  # which path read_gif takes
    return gif


PAL = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0],
                [0, 0, 255], [0, 255, 255], [255, 0, 255], [255, 255, 0]], np.uint8)  # fmt: skip
BLACK, WHITE, RED, GREEN, BLUE = 0, 1, 2, 3, 4


def px(*rows):
    return np.array(rows, np.uint8)


def test_images_combine_into_one_frame(tmp_path):
    tiles = [GifFrame(px([c]), left=x, top=y, gce=False)
             for c, (x, y) in zip((RED, GREEN, BLUE, WHITE), ((0, 0), (1, 0), (0, 1), (1, 1)))]  # fmt: skip
    gif = check(tmp_path, "images-combine", 2, 2, tiles, PAL, bg_index=WHITE, n_frames=1)
    assert gif.frames[0].tolist() == [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255] * 3]]
    overlap = [GifFrame(px([RED]), gce=False), GifFrame(px([WHITE]), gce=False)]
    assert (
        check(tmp_path, "images-overlap", 1, 1, overlap, PAL, n_frames=1).frames[0, 0, 0].tolist()
        == [255] * 3
    )


def test_high_color_tiles_with_local_tables(tmp_path):
    """Four 8×8 tiles, each with its own 64-colour local table: 256 colours in one frame."""
    tiles = []
    for t, (x, y) in enumerate(((0, 0), (8, 0), (0, 8), (8, 8))):
        local = np.stack([np.arange(64) * 4, np.full(64, t * 60), 255 - np.arange(64) * 4], 1)
        tiles.append(GifFrame(np.arange(64, dtype=np.uint8).reshape(8, 8), left=x, top=y,
                              palette=local.astype(np.uint8), gce=False))  # fmt: skip
    gif = check(tmp_path, "high-color", 16, 16, tiles, None, n_frames=1)
    assert len(np.unique(gif.frames[0].reshape(-1, 3), axis=0)) == 256


def test_animation_with_several_images_per_frame(tmp_path):
    """Images without a GCE are drawn into the current frame: 7 images, 4 frames."""
    frames = [
        GifFrame(px([BLACK, RED]), delay_cs=50),
        GifFrame(px([BLACK, WHITE]), delay_cs=50),
        GifFrame(px([RED]), gce=False),
        GifFrame(px([WHITE, BLACK]), delay_cs=50),
        GifFrame(px([GREEN]), gce=False),
        GifFrame(px([BLUE]), left=1, gce=False),
        GifFrame(px([WHITE]), left=1, delay_cs=50),
    ]
    gif = check(tmp_path, "animation-multi-image", 2, 1, frames, PAL, n_frames=4)
    assert gif.frames[1].tolist() == [[[255, 0, 0], [255, 255, 255]]]
    assert gif.frames[2].tolist() == [[[0, 255, 0], [0, 0, 255]]]
    assert gif.delays_ms.tolist() == [500] * 4
    # a first image without a GCE is a frame of its own (as Pillow writes 0-delay animations)
    frames[0] = GifFrame(px([BLACK, RED]), gce=False)
    gif = check(tmp_path, "first-without-gce", 2, 1, frames, PAL, n_frames=4)
    assert gif.delays_ms.tolist() == [0, 500, 500, 500]


def test_file_ending_inside_a_tile_drops_its_frame(tmp_path):
    """Cut inside any image, a file keeps exactly the frames whose images are all complete:
    a frame with a tile still to come is dropped on both paths (composed from the blocks, and
    FFmpeg's when the images before the cut each have a GCE); frame_count agrees."""
    frames = [
        GifFrame(px([BLACK, RED]), delay_cs=50),
        GifFrame(px([BLACK, WHITE]), delay_cs=40),
        GifFrame(px([RED]), gce=False),
        GifFrame(px([WHITE, BLACK]), delay_cs=30),
        GifFrame(px([GREEN]), gce=False),
        GifFrame(px([BLUE]), left=1, gce=False),
        GifFrame(px([WHITE]), left=1, delay_cs=20),
    ]
    frame_of = [0, 1, 1, 2, 2, 2, 3]  # the frame each image is drawn into
    data = gif_bytes(2, 1, frames, palette=PAL)
    want, delays = naive_frames(2, 1, frames, PAL, 0)
    # image k's bytes: from its descriptor (after its GCE, 8 bytes) to the end of its data
    ends = [len(gif_bytes(2, 1, frames[:k], palette=PAL)) - 1 for k in range(len(frames) + 1)]
    paths = set()
    for k in range(1, len(frames)):  # (a cut inside image 0: tested in test_gif.py)
        n = frame_of[k]  # complete frames: those before the one image k is drawn into
        for cut in range(ends[k] + 8 * frames[k].gce + 1, ends[k + 1]):
            path = tmp_path / f"cut{cut}.gif"
            path.write_bytes(data[:cut])
            layout = scan_gif(data[:cut])
            paths.add((needs_blocks(layout) is None, frames[k].gce))
            assert frame_count(layout) == n, cut
            with pytest.warns(TruncatedGifWarning, match=f"kept the {n} complete frames"):
                gif = read_gif(path, background=BG)
            assert gif.truncated and gif.n_frames == gif.frames_in_file == n, cut
            assert np.array_equal(gif.frames, np.stack(want[:n])), f"cut at {cut}: frames differ"
            assert gif.delays_ms.tolist() == delays[:n]
    assert paths == {(True, True), (True, False), (False, True), (False, False)}
    # the first frame's second tile cut short: no complete frame
    data = gif_bytes(2, 1, frames[:1] + frames[2:3], palette=PAL)
    (tmp_path / "first-frame.gif").write_bytes(data[: ends[1] + 5])  # inside its descriptor
    with pytest.raises(GifDecodeError, match="before its first frame is complete"):
        read_gif(tmp_path / "first-frame.gif")


def test_gif87a_animation_has_a_frame_per_image(tmp_path):
    frames = [GifFrame(random_indices(3, 4, 8, s), gce=False) for s in range(4)]
    gif = check(tmp_path, "gif87a-animation", 4, 3, frames, PAL, n_frames=4, version=b"GIF87a")
    assert gif.delays_ms.tolist() == [0, 0, 0, 0]


def test_dispose_restore_previous_over_a_background_image(tmp_path):
    """The background image (no GCE) is frame 0, as browsers show it; each white dot is
    restored away before the next (FFmpeg's path: every image after the first has a GCE)."""
    frames = [GifFrame(px([BLACK, BLACK], [BLACK, BLACK]), gce=False)]
    frames += [GifFrame(px([WHITE]), left=x, top=y, disposal=3, delay_cs=50)
               for x, y in ((0, 0), (1, 0), (1, 1), (0, 1))]  # fmt: skip
    gif = check(tmp_path, "dispose-restore-previous", 2, 2, frames, PAL, n_frames=5, blocks=False)
    assert (gif.frames[0] == 0).all()
    for t, (x, y) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1)), start=1):
        assert (gif.frames[t].sum(-1) > 0).sum() == 1 and gif.frames[t][y, x].tolist() == [255] * 3


@pytest.mark.parametrize(("w", "h"), [(0, 1), (1, 0), (0, 0)])
def test_zero_size_images_draw_nothing(tmp_path, w, h):
    frames = [GifFrame(px([RED]), delay_cs=5), GifFrame(np.zeros((h, w), np.uint8), delay_cs=5,
                                                       width=w, height=h, left=1)]  # fmt: skip
    gif = check(tmp_path, f"image-zero-{w}x{h}", 2, 1, frames, PAL, bg_index=WHITE, n_frames=2)
    assert np.array_equal(gif.frames[0], gif.frames[1])


def test_images_outside_the_screen_are_clipped(tmp_path):
    outside = [GifFrame(px([RED, RED], [RED, RED]), left=2, top=2)]
    gif = check(tmp_path, "image-outside-bg", 2, 2, outside, PAL, bg_index=WHITE, n_frames=1)
    assert (gif.frames[0] == 255).all()
    overlap = [GifFrame(px([RED, RED], [RED, RED]), left=1, top=1)]
    gif = check(tmp_path, "image-overlap-bg", 2, 2, overlap, PAL, bg_index=WHITE, n_frames=1)
    assert gif.frames[0, 1, 1].tolist() == [255, 0, 0] and gif.frames[0, 0, 0].tolist() == [255] * 3


def test_no_data_is_one_background_frame(tmp_path):
    gif = check(tmp_path, "no-data", 1, 1, [], PAL[:2], bg_index=WHITE, n_frames=1)
    assert gif.frames.tolist() == [[[[255, 255, 255]]]]


def test_invalid_code_invalid_colours_and_plain_text_are_errors(tmp_path):
    # min code size 2: clear = 4, eoi = 5; after clear and pixel 1 the next free code is 6: 7 is
    # not in the table yet. (The block path finds it; a file FFmpeg decodes alone, one image
    # with its GCE, is decoded as FFmpeg does: docs/gif-conformance.md.)
    cases = {
        "invalid-code": dict(
            frames=[
                GifFrame(px([RED, RED]), lzw=_codes(2, [4, 1, 7, 5])),
                GifFrame(px([RED, RED]), gce=False),
            ]
        ),
        "invalid-colors": dict(
            frames=[GifFrame(px([1, 1])), GifFrame(px([3, 1]), gce=False)], pal=PAL[:2]
        ),  # index 3 of a 2-colour table, in an image the block path draws
        "plain-text": dict(frames=[GifFrame(px([RED]))], before={0: _plain_text()}),
    }
    match = {"invalid-code": "not in the table", "invalid-colors": "outside its 2-colour table",
             "plain-text": "plain text extension"}  # fmt: skip
    for name, c in cases.items():
        path = tmp_path / f"{name}.gif"
        path.write_bytes(gif_bytes(2, 1, c["frames"], palette=c.get("pal", PAL),
                                   before=c.get("before")))  # fmt: skip
        with pytest.raises(GifDecodeError, match=match[name]):
            read_gif(path)


def _codes(min_code: int, codes: list[int]) -> bytes:
    """Raw LZW data: the code size byte, then ``codes`` packed LSB first at min_code + 1 bits."""
    acc = nbits = 0
    out = bytearray([min_code])
    for c in codes:
        acc |= c << nbits
        nbits += min_code + 1
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc)
    return bytes(out)


def _plain_text() -> bytes:
    grid = bytes([12]) + bytes(12)  # text grid position/size, cell size, colours
    return b"\x21\x01" + grid + b"\x05Hello\x00"


@pytest.mark.parametrize("transparent", [None, 2])
@pytest.mark.parametrize("disposal", [0, 1, 2, 3])
def test_block_compositor_equals_ffmpeg_where_both_apply(tmp_path, disposal, transparent):
    """On files FFmpeg gets right (one GCE per image), the block compositor gives FFmpeg's
    frames bit for bit: partial, interlaced, local-palette frames, every disposal."""
    for bg_index in (0, 4):
        path = tmp_path / f"f{bg_index}.gif"
        frames = feature_frames(disposal, transparent)
        path.write_bytes(gif_bytes(W, H, frames, palette=random_palette(8, 1),
                                   background_index=bg_index))  # fmt: skip
        data = path.read_bytes()
        layout = scan_gif(data)
        assert needs_blocks(layout) is None  # read_gif takes FFmpeg's path here
        ffmpeg = read_gif(path, background=BG)
        ours, delays = compose_gif(data, layout, path, background=BGA)
        assert np.array_equal(ours, ffmpeg.frames) and delays == ffmpeg.delays_ms.tolist()


def no_background_entry(name: str) -> tuple[bytes, list[GifFrame], np.ndarray | None, int]:
    """A GIF whose header names no background colour, as (bytes, frames, global table,
    background index): FFmpeg fills the screen before frame 0 and disposal-2 rectangles with
    transparent black there; every pixel of it must come out BG."""
    if name == "no-global-table":  # local tables only; frames 0 and 1 restore to background
        gpal, bg_index = None, 0
        frames = [
            GifFrame(random_indices(6, 7, 8, 0), delay_cs=5, disposal=2, palette=PAL),
            GifFrame(random_indices(3, 4, 8, 1), left=2, top=1, delay_cs=6, disposal=2,
                     palette=PAL[::-1].copy()),
            GifFrame(random_indices(2, 2, 8, 2), left=4, top=3, delay_cs=5, palette=PAL),
            GifFrame(random_indices(2, 3, 8, 3), left=0, top=4, delay_cs=5, palette=PAL),
        ]  # fmt: skip
    else:  # "background-past-table": index 6 of a 4-colour table; frame 0 covers part
        gpal, bg_index = PAL[:4], 6
        frames = [
            GifFrame(random_indices(4, 5, 4, 0), left=1, top=1, delay_cs=5, disposal=2),
            GifFrame(random_indices(6, 7, 4, 1), delay_cs=6, disposal=1),
            GifFrame(random_indices(3, 3, 4, 2), left=3, top=2, delay_cs=5, disposal=2),
            GifFrame(random_indices(2, 2, 4, 3), left=0, top=0, delay_cs=5),
        ]
    return gif_bytes(7, 6, frames, palette=gpal, background_index=bg_index), frames, gpal, bg_index


class Resized:
    """A keeper: every frame resized to 9×11 (extraction's :class:`FrameResize` one by one as
    decoded, or :func:`resize_frames` in one batch)."""

    stop_after_last = False

    def __init__(self, per_frame_from: int) -> None:
        self.per_frame_from, self.one = per_frame_from, FrameResize((9, 11))

    def select(self, n, delays_ms):
        return np.arange(n)

    def __call__(self, frame):
        return self.one(frame)

    def batch(self, frames, index):
        return resize_frames(frames, (9, 11), index=index)


@pytest.mark.parametrize("name", ["no-global-table", "background-past-table"])
def test_ffmpeg_paints_a_missing_background_entry_as_the_compositor(tmp_path, name):
    """FFmpeg's path (one GCE per image) gives the block compositor's frames, BG where the
    header has no background colour, on every route: direct and swscale RGB, bgr0, kept frame
    by frame as decoded and in one batch, resized as decoded."""
    data, frames, gpal, bg_index = no_background_entry(name)
    path = tmp_path / f"{name}.gif"
    path.write_bytes(data)
    layout = scan_gif(data)
    assert needs_blocks(layout) is None  # read_gif takes FFmpeg's path here
    want, delays = compose_gif(data, layout, path, background=BGA)
    naive, _ = naive_frames(7, 6, frames, gpal, bg_index)
    assert np.array_equal(want, np.stack(naive))
    assert (want[1:] == BGA).all(-1).any()  # disposal 2 shows BG
    routes = {"direct": {}, "swscale": {"converter": "swscale"}, "bgr0": {"pixel_format": "bgr0"}}
    for route, kw in routes.items():
        got = read_gif(path, background=BG, **kw)
        rgb = got.frames[..., 2::-1] if route == "bgr0" else got.frames
        assert np.array_equal(rgb, want), route
        assert got.delays_ms.tolist() == delays
    for fmt, per_frame_from in itertools.product(("rgb24", "bgr0"), (0, 10**9)):
        keeper = EveryOther(per_frame_from)
        got = read_gif(path, background=BG, pixel_format=fmt, keep=keeper)
        kept = keeper.select(len(want), np.asarray(delays))
        assert np.array_equal(got.kept, kept) and len(kept) >= 2
        rgb = got.frames[..., 2::-1] if fmt == "bgr0" else got.frames
        assert np.array_equal(rgb, want[kept][:, ::2, ::3]), (fmt, per_frame_from)
        got = read_gif(path, background=BG, pixel_format=fmt, keep=Resized(per_frame_from))
        rgb = got.frames[..., 2::-1] if fmt == "bgr0" else got.frames
        assert np.array_equal(rgb, resize_frames(want, (9, 11))), (fmt, per_frame_from)


def random_gif(rng: np.random.Generator) -> bytes:
    """A small random GIF FFmpeg's path reads (one GCE per image, images inside the screen):
    with or without a global table, any background index, local tables, partial frames,
    transparency, every disposal."""
    w, h = (int(n) for n in rng.integers(1, 12, 2))
    gpal = random_palette(2 << int(rng.integers(0, 3)), int(rng.integers(1 << 30)))
    gpal = gpal if rng.random() < 0.5 else None
    frames = []
    for _ in range(int(rng.integers(1, 6))):
        fw, fh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
        local = gpal is None or rng.random() < 0.5
        pal = random_palette(2 << int(rng.integers(0, 3)), int(rng.integers(1 << 30))) \
            if local else None  # fmt: skip
        k = len(pal if pal is not None else gpal)
        frames.append(GifFrame(
            rng.integers(0, k, (fh, fw), dtype=np.uint8), left=int(rng.integers(0, w - fw + 1)),
            top=int(rng.integers(0, h - fh + 1)), disposal=int(rng.integers(0, 4)),
            transparent=int(rng.integers(0, k)) if rng.random() < 0.3 else None, palette=pal,
        ))  # fmt: skip
    return gif_bytes(w, h, frames, palette=gpal, background_index=int(rng.integers(0, 16)))


def test_ffmpeg_equals_the_compositor_on_random_gifs(tmp_path):
    """60 seeded random GIFs (most without a background colour entry): direct RGB and bgr0
    give the block compositor's frames."""
    rng = np.random.default_rng(11)
    path = tmp_path / "r.gif"
    for i in range(60):
        data = random_gif(rng)
        path.write_bytes(data)
        layout = scan_gif(data)
        assert needs_blocks(layout) is None
        want, _ = compose_gif(data, layout, path, background=BGA)
        assert np.array_equal(read_gif(path, background=BG).frames, want), i
        bgr0 = read_gif(path, background=BG, pixel_format="bgr0").frames
        assert np.array_equal(bgr0[..., 2::-1], want), i


@pytest.mark.parametrize("k", [2, 4, 16, 256])
def test_lzw_decode_inverts_the_encoder(k):
    idx = random_indices(37, 53, k, seed=k).ravel()
    min_code = max(2, (k - 1).bit_length())
    data = lzw_encode(idx.tolist(), min_code)
    assert np.array_equal(lzw_decode(data, min_code, len(idx)), idx)
    assert len(lzw_decode(data, min_code, 10)) == 10  # extra pixels are ignored
    assert np.array_equal(lzw_decode(data[: len(data) // 2], min_code, len(idx)),
                          idx[: len(lzw_decode(data[: len(data) // 2], min_code, len(idx)))])  # fmt: skip


def test_huge_declared_image_is_refused_before_decoding(tmp_path):
    """A 65535×65535 image on a 2×2 screen (LZW data could expand to gigabytes)."""
    frames = [GifFrame(px([RED])), GifFrame(px([RED]), gce=False, width=65535, height=65535)]
    path = tmp_path / "bomb.gif"
    path.write_bytes(gif_bytes(2, 2, frames, palette=PAL))
    with pytest.raises(GifDecodeError, match="image 1 is 65535x65535, over the budget"):
        read_gif(path)


def test_file_larger_than_the_byte_budget_is_not_read(tmp_path):
    path = tmp_path / "big.gif"
    path.write_bytes(gif_bytes(2, 1, [GifFrame(px([RED, RED]))], palette=PAL) + bytes(5000))
    with pytest.raises(GifDecodeError, match="over the budget max_bytes=1000"):
        read_gif(path, max_bytes=1000)
