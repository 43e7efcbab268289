"""Decode animated GIFs (and anything else FFmpeg decodes) into full-canvas RGB frames.

``read_gif(path)`` returns a :class:`Gif`: ``frames`` (T, H, W, 3) uint8 and ``delays_ms``
(T,) int64. The block structure comes from :mod:`gifemo.data.gif_blocks` (the walker, no
decoding); this module guards sizes, decodes with PyAV and composites to RGB. Decoding is PyAV
(FFmpeg's ``gif`` decoder), sequential from frame 0 (only frame 0 is a keyframe; we never seek).

Where FFmpeg's view differs from the spec's
    FFmpeg makes a frame of every image. Files where that is wrong — images without a Graphic
    Control Extension after the first (several image blocks in one frame), GIF87a animations,
    zero-size or off-screen images, a GIF without images, a Plain Text Extension — are found
    by the block walk and composed from their blocks by :mod:`gifemo.data.gif_compose` (the
    rules are there; docs/gif-conformance.md lists the spec suite's cases). Every other file,
    the common animated GIF, takes FFmpeg's path unchanged.

What the frames are
    FFmpeg composites each frame onto the logical screen (partial frames, disposal 0/1/2/3,
    local colour tables, interlacing). Transparent pixels take ``background`` (default
    :data:`DEFAULT_BACKGROUND`, white: what PyAV shows by default and what a GIF looks like
    on a white page): the ``gif`` decoder is told to paint them in that colour (its
    ``trans_color`` option) and its BGRA output is copied to RGB straight from FFmpeg's plane
    in numpy, an exact channel shuffle (``converter="direct"``, the default; swscale's
    ``rgb24`` conversion, ``converter="swscale"``, gives the same bytes and was 13 % slower
    on 480×270 GIFs: docs/extraction.md); GIF alpha is only 0 or 255. Where the header names
    no background colour (no global table, or its index past the table) FFmpeg fills the
    screen before frame 0 and disposal-2 rectangles with transparent black: those pixels take
    ``background`` too, as in :mod:`gifemo.data.gif_compose` (one more pass a frame, for
    such files only). Other codecs with alpha are composited in numpy (alpha < 128 →
    background) after swscale's conversion.

Pixel formats
    ``pixel_format="rgb24"`` (default): (T, H, W, 3) R, G, B. ``pixel_format="bgr0"``
    (FFmpeg's name): (T, H, W, 4) B, G, R and a fourth byte that is not a colour (FFmpeg's
    alpha for a GIF, 255 otherwise) — the gif decoder's own layout, copied without any
    conversion (the fastest: a BGR model such as C3D takes channels 0–2 as they are, an RGB
    one 2, 1, 0). Channels 2, 1, 0 of ``bgr0`` equal ``rgb24`` byte for byte.
    Opaque pixels equal Pillow's (``ImageSequence`` + ``convert("RGB")``) except in three
    cases where Pillow departs from the GIF89a spec and FFmpeg follows it: screen area that
    the first frame does not cover gets the header's background colour (Pillow: palette
    index 0); disposal 3 ("restore to previous") on the first frame restores the empty
    canvas (Pillow keeps the first frame); disposal 2 takes the background index from the
    global colour table (Pillow: from the frame's local table). ``tests/test_gif.py`` checks
    all three against the spec. Without a transparent index these areas are opaque.

What the delays are
    The file's own Graphic Control Extension delays, read from the GIF's block structure
    (centiseconds × 10). A delay of 0 stays 0 ms and a frame with no Graphic Control Extension
    gets 0 ms (the spec's "no delay"). FFmpeg instead reports 0 as 100 ms and repeats the
    previous delay when one is missing; browsers play 0 and 10 ms as 100 ms —
    :func:`playback_delays_ms` applies that convention when wall-clock timing is wanted.
    Other containers (an MP4 named ``.gif``) give FFmpeg's frame durations, rounded to whole
    ms: a 60 fps video's 17 ms frames are played as they are.

Safety
    For a GIF the logical screen size (header bytes 6–9, little-endian) is checked against
    ``max_pixels`` before anything is decoded, and the number of images T (found by walking
    the block structure, without decoding) against ``max_frames`` and, as decoded bytes
    T·H·W·3, against ``max_bytes``. Other containers — PyAV ignores extensions, so an MP4,
    WebM or PNG named ``.gif`` decodes too, as Giphy serves MP4 — are accepted; their stream
    size is checked before the first frame is decoded, their frame count and bytes while
    decoding. Each failure raises :class:`GifDecodeError` naming the file and the reason;
    no other exception leaves :func:`read_gif` (an unexpected one from FFmpeg, PyAV or numpy
    becomes a ``GifDecodeError`` whose reason names its type). Metadata that is not UTF-8 (a
    Photoshop comment extension with byte 0xA8, say) is decoded with replacement characters
    (``av.open(..., metadata_errors="replace")``): comments never stop a GIF from decoding.

Reading only the start
    ``read_frames=N`` decodes the first N frames of a longer file and stops (``Gif.n_frames``
    = N, ``Gif.frames_in_file`` says how many there are); ``max_frames`` instead refuses such a
    file. Extraction uses ``read_frames`` as its per-GIF frame budget.

Keeping only some frames
    ``read_gif(path, keep=keeper)`` (a :class:`FrameKeeper`) keeps only the frames
    ``keeper.select(T, delays_ms)`` names and only what the keeper makes of each (a resized
    frame, say). A GIF's frame count and delays are known from its block walk before anything
    is decoded, so for frames of ≥ ``keeper.per_frame_from`` pixels the other frames are
    decoded (GIF frames build on each other) but never converted or copied, and each kept
    frame goes to ``keeper(frame)`` straight from FFmpeg's plane while it is still in the cache
    (with ``pixel_format="bgr0"``: no copy at all); memory holds only the kept outputs, not
    T full frames. Smaller frames are decoded whole (up to the stop, below) and kept in one
    ``keeper.batch`` (one call per frame costs more than the copy it saves there:
    docs/extraction.md). ``Gif.frames`` is
    then (U, …), the keeper's output for each frame of ``Gif.kept``, and everything else is as
    without ``keep`` (delays of all T frames, ``n_frames`` = T). Files that take another route
    (composed from their blocks, not a GIF) or whose frames turn out fewer than the walk
    promised (corrupt data) are read whole and kept in one batch: the result is always the
    keeper applied to :func:`read_gif`'s frames. A keeper with ``stop_after_last`` lets
    decoding stop after the last kept frame (a training clip early in a long GIF: the rest is
    never decoded). T and the delays are then the block walk's, and damage to the image data
    after that frame goes unnoticed: a full read of such a file finds fewer frames.

Truncation
    A GIF whose data ends early (no trailer, or an image cut short) returns the frames whose
    image data is complete, ``truncated=True``, and a :class:`TruncatedGifWarning`. FFmpeg
    would also return the half-decoded last frame; we drop it. A frame of several images
    (tiles without their own GCE) whose file ends inside one of its tiles is dropped too, on
    either path (:mod:`gifemo.data.gif_compose`, "Truncation"); a file that ends between
    blocks keeps every frame whose images are all there. The same holds when FFmpeg reports
    corrupt data after some frames of any container.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gifemo.data.gif_blocks import (
    GIF_MAGIC,
    GifDecodeError,
    GifLayout,
    ImageBlock,
    TruncatedGifWarning,
    scan_gif,
)
from gifemo.data.gif_compose import compose_gif, frame_count, needs_blocks
from gifemo.data.gif_decode import (
    CONVERTERS,
    PIXEL_FORMATS,
    FrameKeeper,
    as_bgr0,
    check_bytes,
    check_size,
    decode_frames,
    keep_after,
    selection,
)

__all__ = [
    "BROWSER_SHORT_DELAY_MS",
    "DEFAULT_BACKGROUND",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "KEEP_PER_FRAME_FROM",
    "FrameKeeper",
    "Gif",
    "GifDecodeError",
    "GifLayout",
    "ImageBlock",
    "TruncatedGifWarning",
    "playback_delays_ms",
    "read_gif",
    "scan_gif",
]

DEFAULT_MAX_PIXELS: int = 2048 * 2048  # logical screen W*H; a 2048² RGB frame is 12.6 MB
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
DEFAULT_MAX_BYTES: int = 4 * 2**30  # decoded frames T*H*W*3; a 500x500 GIF reaches it at ~5700
# delays of at most this are played as 100 ms by browsers (Chromium, Firefox, WebKit: ≤ 10 ms)
# and FFmpeg (a GIF delay under 2 cs)
BROWSER_SHORT_DELAY_MS = 10
# FrameKeeper.per_frame_from of the datasets' keepers: below it, keeping each frame as it is
# decoded cost more than it saved (docs/extraction.md, "KEEP_PER_FRAME_FROM")
KEEP_PER_FRAME_FROM = 100_000


@dataclass(frozen=True)
class Gif:
    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB full-canvas composites ((T, H, W, 4) bgr0)
    delays_ms: np.ndarray  # (T,) int64
    truncated: bool  # True when the file ended early (frames that decoded are kept)
    frames_in_file: int = -1  # complete frames the block walk found (-1: not a GIF, unknown)
    # read with keep=: the frames' indices, ascending; ``frames`` is then (U, ...), the keeper's
    # output for each of them
    kept: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        """T, the frames decoded (with ``keep``: also those not kept)."""
        return len(self.delays_ms)

    @property
    def mean_delay_ms(self) -> float:
        return float(self.delays_ms.mean()) if len(self.delays_ms) else 0.0

    @property
    def read_limited(self) -> bool:
        """True when ``read_frames`` left frames of the file out."""
        return self.frames_in_file > self.n_frames and not self.truncated


def playback_delays_ms(delays_ms: np.ndarray) -> np.ndarray:
    """Delays as browsers play them: 10 ms or less becomes 100 ms.

    A GIF's delays are whole centiseconds, so that is 0 and 1 cs and every other delay (20 ms
    and up) is kept; the durations of a video named ``.gif`` (a 60 fps MP4: 17 ms) are kept
    too, up to ~95 fps (frames of ≤ 10 ms are still played as 100 ms: the delays alone do not
    say which container they came from)."""
    d = np.asarray(delays_ms, np.int64)
    return np.where(d <= BROWSER_SHORT_DELAY_MS, 100, d)


# ---- guards: sizes and budgets, before anything is decoded ----


def _read_bytes(p: Path, max_bytes: int | None) -> bytes:
    if not p.is_file():
        raise GifDecodeError(p, "no such file")
    size = p.stat().st_size
    if max_bytes is not None and size > max_bytes:  # read into memory whole: same budget
        raise GifDecodeError(p, f"file is {size} bytes, over the budget max_bytes={max_bytes}")
    data = p.read_bytes()
    if not data:
        raise GifDecodeError(p, "empty file (0 bytes)")
    return data


def _guard_gif(
    p: Path,
    data: bytes,
    *,
    max_pixels: int,
    max_frames: int | None,
    max_bytes: int | None,
    read_frames: int | None,
) -> tuple[GifLayout, str | None, int]:
    """Walk the blocks and apply every budget that the structure alone decides.

    Returns the layout, why the frames must be composed from the blocks (None: FFmpeg's
    frames are right, :func:`gifemo.data.gif_compose.needs_blocks`) and the frame count.
    """
    layout = scan_gif(data, p)
    check_size(p, layout.width, layout.height, max_pixels, "logical screen")
    n = frame_count(layout)  # the common GIF: one frame per complete image
    if n == 0 or (not layout.images and not layout.complete):
        raise GifDecodeError(p, "file ends before its first frame is complete")
    route = needs_blocks(layout)
    if max_frames is not None and n > max_frames:
        raise GifDecodeError(p, f"{n} frames, over the budget max_frames={max_frames}")
    kept = n if read_frames is None else min(n, read_frames)
    check_bytes(p, kept, layout.width, layout.height, max_bytes)
    return layout, route, n


def read_gif(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    max_frames: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    read_frames: int | None = None,
    pixel_format: str = "rgb24",
    converter: str = "direct",
    keep: FrameKeeper | None = None,
) -> Gif:
    """Decode ``path`` into full-canvas RGB frames and per-frame delays (see the module notes).

    Args:
        max_pixels: budget for the logical screen W*H, checked before decoding.
        background: RGB that transparent pixels take.
        max_frames: refuse (``GifDecodeError``) files with more frames than this.
        max_bytes: refuse files whose decoded frames (T·H·W·3 bytes, T after ``read_frames``)
            would exceed this; for a GIF checked before decoding (T from the block walk), for
            other containers while decoding. None: no limit.
        read_frames: decode only the first ``read_frames`` frames (None: all).
        pixel_format: ``"rgb24"`` (T, H, W, 3) R, G, B or ``"bgr0"`` (T, H, W, 4) B, G, R, X
            (module notes; the bytes budget still counts 3 bytes a pixel).
        converter: ``"direct"`` (numpy from FFmpeg's plane) or ``"swscale"`` (the reference):
            how a GIF's BGRA frames become RGB; the same bytes either way.
        keep: keep only the frames ``keep.select(T, delays_ms)`` names, as ``keep(frame)``
            makes them (module notes, "Keeping only some frames").
    Returns:
        ``Gif(path, frames (T, H, W, 3) uint8, delays_ms (T,) int64, truncated,
        frames_in_file, kept)``, T ≥ 1 (frames (T, H, W, 4) with ``pixel_format="bgr0"``;
        with ``keep``: the keeper's outputs for the frames ``kept``).
    Raises:
        GifDecodeError, and nothing else, for any file that does not give a frame.
    """
    p = Path(path)
    if read_frames is not None and read_frames < 1:
        raise ValueError(f"read_frames must be ≥ 1 or None, got {read_frames}")
    if pixel_format not in PIXEL_FORMATS or converter not in CONVERTERS:
        raise ValueError(
            f"pixel_format must be one of {PIXEL_FORMATS} and converter one of {CONVERTERS}, "
            f"got {pixel_format!r} and {converter!r}"
        )
    try:
        gif = _read_gif(
            p, max_pixels, background, max_frames, max_bytes, read_frames,
            bgr0=pixel_format == "bgr0", converter=converter, keep=keep,
        )  # fmt: skip
    except GifDecodeError:
        raise
    except Exception as e:  # FFmpeg/PyAV/numpy surprises on hostile input: one error type
        raise GifDecodeError(p, f"{type(e).__name__}: {e}") from e
    return gif


def _read_gif(
    p: Path,
    max_pixels: int,
    background: tuple[int, int, int],
    max_frames: int | None,
    max_bytes: int | None,
    read_frames: int | None,
    *,
    bgr0: bool,
    converter: str,
    keep: FrameKeeper | None = None,
) -> Gif:
    data = _read_bytes(p, max_bytes)
    bg = np.asarray(background, np.uint8).reshape(3)
    n_file, kept = -1, None
    if data[:6] not in GIF_MAGIC:  # MP4, WebM, PNG, … named .gif
        decoded = decode_frames(
            p, data, n_expected=None, stop_at=read_frames, bg=bg, max_pixels=max_pixels,
            max_frames=max_frames, max_bytes=max_bytes,
        )  # fmt: skip
        frames, delays, error = decoded.frames, decoded.delays_ms, decoded.error
        complete = True
    else:
        layout, route, n_file = _guard_gif(
            p, data, max_pixels=max_pixels, max_frames=max_frames, max_bytes=max_bytes,
            read_frames=read_frames,
        )  # fmt: skip
        n_expected = n_file if read_frames is None else min(n_file, read_frames)
        walk_delays = [10 * im.delay_cs for im in layout.images[:n_expected]]
        decoded, n_read = None, 0
        if route is None and keep is not None:
            kept = selection(keep, n_expected, np.asarray(walk_delays, np.int64))
            # stop after the last kept frame when the keeper allows it (frames after it are
            # never decoded)
            stop = int(kept[-1]) + 1 if keep.stop_after_last and len(kept) else n_expected
            if layout.width * layout.height >= keep.per_frame_from:  # each kept frame as decoded
                want = np.zeros(n_expected, bool)
                want[kept] = True
                decoded = decode_frames(
                    p, data, n_expected=n_expected, stop_at=stop, bg=bg,
                    max_pixels=max_pixels, max_frames=max_frames, max_bytes=max_bytes,
                    bgr0=bgr0, converter=converter, keep=(want, keep),
                )  # fmt: skip
            else:  # small frames: the first ``stop`` decoded whole, then kept in one batch
                decoded = decode_frames(
                    p, data, n_expected=stop, stop_at=stop, bg=bg, max_pixels=max_pixels,
                    max_frames=max_frames, max_bytes=max_bytes, bgr0=bgr0, converter=converter,
                )  # fmt: skip
                if decoded.n_frames == stop:
                    frames = as_bgr0(decoded.frames) if bgr0 and decoded.frames.shape[-1] == 3 \
                        else decoded.frames  # fmt: skip
                    decoded.frames = keep.batch(frames, kept) if len(kept) else np.zeros(0, np.uint8)
            n_read = n_expected  # the walk's count, also when it stopped early
            if decoded.n_frames != stop:  # fewer than the walk said: read it whole
                decoded, kept = None, None
        if route is not None:  # FFmpeg's frames differ from the spec's: compose from the blocks
            frames, delays = compose_gif(
                data, layout, p, background=bg, max_frames_out=read_frames, max_pixels=max_pixels
            )
            error = None
        else:
            if decoded is None:
                decoded = decode_frames(
                    p, data, n_expected=n_expected, stop_at=n_expected, bg=bg,
                    max_pixels=max_pixels, max_frames=max_frames, max_bytes=max_bytes,
                    bgr0=bgr0, converter=converter,
                )  # fmt: skip
                n_read = decoded.n_frames
            frames, error = decoded.frames, decoded.error
            delays = walk_delays[:n_read]
        read_to_end = n_expected == n_file
        complete = len(delays) == n_expected and (layout.complete or not read_to_end)
    if bgr0 and kept is None and frames.shape[-1] == 3:  # composed or not a GIF: RGB
        frames = as_bgr0(frames)
    if keep is not None and kept is None:  # read whole: the keeper applied afterwards
        frames, kept = keep_after(frames, np.asarray(delays, np.int64), keep)
    return _finish(p, frames, delays, error, n_file, complete=complete, kept=kept)


def _finish(
    p: Path,
    frames: np.ndarray,
    delays: list[int],
    error: str | None,
    n_file: int,
    *,
    complete: bool,
    kept: np.ndarray | None = None,
) -> Gif:
    """The Gif, with the truncation warning when frames are missing or the data was corrupt."""
    truncated = not complete or (n_file < 0 and error is not None)
    if truncated:
        why = error or "file ends early"
        warnings.warn(
            f"{p}: truncated or corrupt ({why}); kept the {len(delays)} complete frames",
            TruncatedGifWarning,
            stacklevel=4,
        )
    return Gif(
        path=str(p),
        frames=frames,
        delays_ms=np.asarray(delays, np.int64),
        truncated=truncated,
        frames_in_file=n_file,
        kept=kept,
    )
