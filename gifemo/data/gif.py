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
    on 480×270 GIFs: docs/extraction.md); GIF alpha is only 0 or 255. Other codecs with alpha
    are composited in numpy (alpha < 128 → background) after swscale's conversion.

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
    T full frames. Smaller frames are decoded whole and kept in one ``keeper.batch`` (one call
    per frame costs more than the copy it saves there: docs/extraction.md). ``Gif.frames`` is
    then (U, …), the keeper's output for each frame of ``Gif.kept``, and everything else is as
    without ``keep`` (delays of all T frames, ``n_frames`` = T). Files that take another route
    (composed from their blocks, not a GIF) or whose frames turn out fewer than the walk
    promised (corrupt data) are read whole and kept in one batch: the result is always the
    keeper applied to :func:`read_gif`'s frames.

Truncation
    A GIF whose data ends early (no trailer, or an image cut short) returns the frames whose
    image data is complete, ``truncated=True``, and a :class:`TruncatedGifWarning`. FFmpeg
    would also return the half-decoded last frame; we drop it. The same holds when FFmpeg
    reports corrupt data after some frames of any container.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from gifemo.data.gif_blocks import (
    GIF_MAGIC,
    GifDecodeError,
    GifLayout,
    ImageBlock,
    TruncatedGifWarning,
    scan_gif,
)
from gifemo.data.gif_compose import compose_gif, frame_count, needs_blocks

__all__ = [
    "BROWSER_MIN_DELAY_MS",
    "DEFAULT_BACKGROUND",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "FrameKeeper",
    "KEEP_PER_FRAME_FROM",
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
BROWSER_MIN_DELAY_MS = 20  # delays below this are played as 100 ms by browsers and FFmpeg
# FrameKeeper.per_frame_from of the datasets' keepers: keeping each frame as it is decoded gave
# a fine-tuning worker +9 % at 480×270 and cost 2–5 % at 240×180 and 200×150 (docs/extraction.md)
KEEP_PER_FRAME_FROM = 100_000


@dataclass(frozen=True)
class Gif:
    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB full-canvas composites ((T, H, W, 4) bgr0)
    delays_ms: np.ndarray  # (T,) int64
    truncated: bool  # True when the file ended early (frames that decoded are kept)
    frames_in_file: int = -1  # images the block walk found (-1: not a GIF, unknown)
    # read with keep=: the frames' indices, ascending; ``frames`` is then (U, ...), the keeper's
    # output for each of them
    kept: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        """T, the frames decoded (with ``keep``: also those not kept)."""
        return int(len(self.delays_ms))

    @property
    def mean_delay_ms(self) -> float:
        return float(self.delays_ms.mean()) if len(self.delays_ms) else 0.0

    @property
    def read_limited(self) -> bool:
        """True when ``read_frames`` left frames of the file out."""
        return self.frames_in_file > self.n_frames and not self.truncated


def playback_delays_ms(delays_ms: np.ndarray) -> np.ndarray:
    """Delays as browsers play them: below 20 ms (0 or 1 cs) becomes 100 ms."""
    d = np.asarray(delays_ms, np.int64)
    return np.where(d < BROWSER_MIN_DELAY_MS, 100, d)


class FrameKeeper(Protocol):
    """What :func:`read_gif` keeps of a file's frames (``keep=``; module notes)."""

    # Frames of at least this many pixels are kept one by one as they are decoded; smaller
    # ones are decoded whole and kept in one :meth:`batch` (per-frame calls then cost more than
    # the copies they save).
    per_frame_from: int

    def select(self, n_frames: int, delays_ms: np.ndarray) -> np.ndarray:
        """The indices of the frames to keep, ascending, given the file's frame count and
        delays. It may be called again (a file read a second time), so each call starts
        afresh."""
        ...

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One decoded frame, (H, W, 3) RGB or (H, W, 4) ``bgr0`` uint8 — a view that is valid
        only during the call — → what is kept of it (an array of the same shape every call)."""
        ...

    def batch(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Decoded frames (T, H, W, C) and the kept indices → the stacked outputs of
        :meth:`__call__` for ``frames[index]`` (the same bytes)."""
        ...


# ---- guards: sizes and budgets, before anything is decoded ----


def _check_size(path: Path, width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise GifDecodeError(path, f"{what} has zero width or height ({width}x{height})")
    if width * height > max_pixels:
        raise GifDecodeError(
            path,
            f"{what} is {width}x{height} = {width * height} pixels, over the budget "
            f"max_pixels={max_pixels}",
        )


def _check_bytes(path: Path, n_frames: int, width: int, height: int, max_bytes: int | None) -> None:
    if max_bytes is not None and n_frames * width * height * 3 > max_bytes:
        raise GifDecodeError(
            path,
            f"{n_frames} frames of {width}x{height} need {n_frames * width * height * 3} bytes, "
            f"over the budget max_bytes={max_bytes}",
        )


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
    _check_size(p, layout.width, layout.height, max_pixels, "logical screen")
    if not layout.images and not layout.complete:
        raise GifDecodeError(p, "file ends before its first frame is complete")
    route = needs_blocks(layout)
    n = frame_count(layout) if route else len(layout.images)
    if max_frames is not None and n > max_frames:
        raise GifDecodeError(p, f"{n} frames, over the budget max_frames={max_frames}")
    kept = n if read_frames is None else min(n, read_frames)
    _check_bytes(p, kept, layout.width, layout.height, max_bytes)
    return layout, route, n


# ---- decoding (PyAV) and compositing to RGB ----


def _open(p: Path, data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r", metadata_errors="replace")
    except av.FFmpegError as e:
        raise GifDecodeError(p, f"not a decodable image or animation ({e})") from None


PIXEL_FORMATS = ("rgb24", "bgr0")
CONVERTERS = ("direct", "swscale")


def _bgra_plane(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 4) uint8 view of a packed BGRA frame's plane (rows may be padded)."""
    plane, h, w = frame.planes[0], frame.height, frame.width
    buf = memoryview(plane)  # type: ignore[arg-type]  # a VideoPlane exports the buffer protocol
    rows = np.frombuffer(buf, np.uint8, count=h * plane.line_size).reshape(h, plane.line_size)
    return rows[:, : 4 * w].reshape(h, w, 4)


def _to_rgb(
    frame: av.VideoFrame,
    out: np.ndarray,
    background: np.ndarray | None,
    sws: VideoReformatter,
    converter: str = "direct",
) -> None:
    """Write one decoded frame into ``out``: (H, W, 3) RGB, or (H, W, 4) bgr0 for a GIF.

    ``background`` None — FFmpeg's gif decoder (BGRA, transparent pixels already painted):
    ``direct`` copies from FFmpeg's plane in numpy (bgr0: the rows as they are; RGB: three
    strided channel copies), ``swscale`` converts with swscale (the reference). Else (other
    codecs): swscale's RGB, alpha < 128 → background. ``sws`` is reused across frames so that
    swscale's context is built once per file.
    """
    bgra = frame.format.name == "bgra"
    if background is None:
        if out.shape[-1] == 4:
            out[...] = (
                _bgra_plane(frame) if bgra else sws.reformat(frame, format="bgra").to_ndarray()
            )
        elif converter == "direct" and bgra:
            plane = _bgra_plane(frame)
            out[..., 0] = plane[..., 2]
            out[..., 1] = plane[..., 1]
            out[..., 2] = plane[..., 0]
        else:
            out[...] = sws.reformat(frame, format="rgb24").to_ndarray()
    elif frame.format.has_palette or any(c.is_alpha for c in frame.format.components):
        rgba = sws.reformat(frame, format="rgba").to_ndarray()
        out[...] = rgba[..., :3]
        out[rgba[..., 3] < 128] = background
    else:
        out[...] = sws.reformat(frame, format="rgb24").to_ndarray()


def _frame_delay_ms(frame: av.VideoFrame) -> int:
    if frame.duration and frame.time_base is not None:
        return round(float(frame.duration * frame.time_base) * 1000)
    return 0


@dataclass
class _Decoded:
    frames: np.ndarray  # (T, H, W, 3) uint8; with a keeper its (U, ...) outputs
    delays_ms: list[int]  # FFmpeg's per-frame delays (not a GIF's: its walk has them)
    error: str | None  # FFmpeg's error after the last good frame, if any
    n_frames: int  # T, the frames decoded


def _decode(
    p: Path,
    data: bytes,
    *,
    n_expected: int | None,
    stop_at: int | None,
    bg: np.ndarray,
    max_pixels: int,
    max_frames: int | None,
    max_bytes: int | None,
    bgr0: bool = False,
    converter: str = "direct",
    keep: tuple[np.ndarray, FrameKeeper] | None = None,
) -> _Decoded:
    """Decode the frames: ``n_expected`` (a GIF: known from the walk) fills one preallocated
    array; decoding stops after ``stop_at`` frames (None: at the end). ``bgr0``: a GIF's
    frames in FFmpeg's own B, G, R, X layout (other codecs give RGB, converted later).
    ``keep`` (a GIF: with ``n_expected``): (which of the n_expected frames to keep, a bool
    mask; the keeper) — only those frames are converted, each handed to the keeper (a
    ``bgr0`` GIF frame straight from FFmpeg's plane) and its outputs stacked."""
    if keep is not None and (n_expected is None or len(keep[0]) != n_expected):
        raise ValueError("keep needs a GIF's frame count and one mask entry per frame")
    with _open(p, data) as container:
        if not container.streams.video:
            raise GifDecodeError(p, "no video stream (not an image or animation)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(p, width, height, max_pixels, "video stream")
        sws = VideoReformatter()
        is_gif = stream.codec_context.name == "gif"
        if is_gif:  # transparent pixels are painted (ARGB, alpha 0) in the background colour
            r, g, b = (int(c) for c in bg)
            stream.codec_context.options = {"trans_color": str(r << 16 | g << 8 | b)}
        # A GIF's frame count is known: fill one preallocated array (no list + stack copy);
        # with a keeper, one frame's scratch (the keeper's outputs are stacked instead).
        channels = 4 if bgr0 and is_gif else 3
        block = np.empty((n_expected or 1, height, width, channels), np.uint8) if keep is None \
            else np.empty((1, height, width, channels), np.uint8)  # fmt: skip
        frames: list[np.ndarray] = []  # (H, W, 3) views into block, fresh arrays, or kept
        kept: np.ndarray | None = None
        delays: list[int] = []
        error: str | None = None
        t = 0  # frames decoded
        try:
            for frame in container.decode(stream):
                if stop_at is not None and t == stop_at:
                    break  # read_frames reached, or a half-present last image
                if max_frames is not None and t == max_frames:
                    raise GifDecodeError(p, f"more than max_frames={max_frames} frames")
                if n_expected is None:
                    _check_bytes(p, t + 1, width, height, max_bytes)
                if (frame.width, frame.height) != (width, height):
                    raise GifDecodeError(
                        p, f"frame {t} is {frame.width}x{frame.height}, stream is {width}x{height}"
                    )
                if keep is None:
                    rgb = block[t] if n_expected is not None else np.empty_like(block[0])
                    _to_rgb(frame, rgb, None if is_gif else bg, sws, converter)
                    frames.append(rgb)
                    if n_expected is None:  # a GIF's delays come from its block walk
                        delays.append(_frame_delay_ms(frame))
                elif t < len(keep[0]) and keep[0][t]:
                    if channels == 4 and frame.format.name == "bgra":
                        view = _bgra_plane(frame)  # the keeper reads FFmpeg's plane itself
                    else:
                        view = block[0]
                        _to_rgb(frame, view, None if is_gif else bg, sws, converter)
                        if bgr0 and channels == 3:  # not FFmpeg's gif codec after all
                            view = _as_bgr0(view[None])[0]
                    out = keep[1](view)
                    if kept is None:  # the keeper's outputs, copied in as they come
                        kept = np.empty((int(keep[0].sum()), *out.shape), out.dtype)
                    kept[len(frames)] = out
                    frames.append(kept[len(frames)])
                t += 1
        except av.FFmpegError as e:
            error = str(e)
    if not t:
        raise GifDecodeError(p, f"no frame could be decoded ({error or 'zero frames'})")
    if keep is not None:
        stacked = np.zeros((0,), np.uint8) if kept is None else kept[: len(frames)]
    elif n_expected is not None:
        stacked = block if t == n_expected else block[:t].copy()
    else:
        stacked = np.stack(frames)
    return _Decoded(stacked, delays, error, t)


def _keep_after(frames: np.ndarray, delays: np.ndarray, keeper: FrameKeeper) -> tuple:
    """(the keeper's outputs for the frames it selects, their indices): the keeper applied to
    frames already decoded, in one batch."""
    kept = _selection(keeper, len(frames), delays)
    return (keeper.batch(frames, kept) if len(kept) else np.zeros((0,), np.uint8)), kept


def _selection(keeper: FrameKeeper, n: int, delays: np.ndarray) -> np.ndarray:
    kept = np.asarray(keeper.select(n, np.asarray(delays, np.int64)), np.int64).reshape(-1)
    if len(kept) and (kept[0] < 0 or kept[-1] >= n or np.any(np.diff(kept) <= 0)):
        raise ValueError(f"{type(keeper).__name__}.select must give ascending frames in [0, {n})")
    return kept


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


def _as_bgr0(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB (composed, or not a GIF) → (T, H, W, 4) ``bgr0``, the fourth byte 255."""
    bgr0 = np.empty((*frames.shape[:3], 4), np.uint8)
    bgr0[..., :3] = frames[..., ::-1]
    bgr0[..., 3] = 255
    return bgr0


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
        decoded = _decode(
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
        decoded = None
        if route is None and keep is not None:
            kept = _selection(keep, n_expected, np.asarray(walk_delays, np.int64))
            if layout.width * layout.height < keep.per_frame_from:
                kept = None  # small frames: decoded whole, kept in one batch below
        if kept is not None and keep is not None:  # only the kept frames, each as decoded
            want = np.zeros(n_expected, bool)
            want[kept] = True
            decoded = _decode(
                p, data, n_expected=n_expected, stop_at=n_expected, bg=bg,
                max_pixels=max_pixels, max_frames=max_frames, max_bytes=max_bytes, bgr0=bgr0,
                converter=converter, keep=(want, keep),
            )  # fmt: skip
            if decoded.n_frames != n_expected:  # fewer than the walk said: read it whole
                decoded, kept = None, None
        if route is not None:  # FFmpeg's frames differ from the spec's: compose from the blocks
            frames, delays = compose_gif(
                data, layout, p, background=bg, max_frames_out=read_frames, max_pixels=max_pixels
            )
            error = None
        else:
            if decoded is None:
                decoded = _decode(
                    p, data, n_expected=n_expected, stop_at=n_expected, bg=bg,
                    max_pixels=max_pixels, max_frames=max_frames, max_bytes=max_bytes,
                    bgr0=bgr0, converter=converter,
                )  # fmt: skip
            frames, error = decoded.frames, decoded.error
            delays = walk_delays[: decoded.n_frames]
        read_to_end = n_expected == n_file
        complete = len(delays) == n_expected and (layout.complete or not read_to_end)
    if bgr0 and kept is None and frames.shape[-1] == 3:  # composed or not a GIF: RGB
        frames = _as_bgr0(frames)
    if keep is not None and kept is None:  # read whole: the keeper applied afterwards
        frames, kept = _keep_after(frames, np.asarray(delays, np.int64), keep)
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
