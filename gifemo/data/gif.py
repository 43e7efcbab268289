"""Decode animated GIFs (and anything else FFmpeg decodes) into full-canvas RGB frames.

``read_gif(path)`` returns a :class:`Gif`: ``frames`` (T, H, W, 3) uint8 and ``delays_ms``
(T,) int64. Decoding is PyAV (FFmpeg's ``gif`` decoder), sequential from frame 0 (only frame 0
is a keyframe; we never seek).

What the frames are
    FFmpeg composites each frame onto the logical screen (partial frames, disposal 0/1/2/3,
    local colour tables, interlacing). Transparent pixels take ``background`` (default
    :data:`DEFAULT_BACKGROUND`, white: what PyAV shows by default and what a GIF looks like
    on a white page): the ``gif`` decoder is told to paint them in that colour (its
    ``trans_color`` option) and its BGRA output is converted to RGB by swscale, an exact
    channel shuffle; GIF alpha is only 0 or 255. Other codecs with alpha are composited the
    same way in numpy (alpha < 128 → background).
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
    decoding. Each failure raises :class:`GifDecodeError` naming the file and the reason.

Truncation
    A GIF whose data ends early (no trailer, or an image cut short) returns the frames whose
    image data is complete, ``truncated=True``, and a :class:`TruncatedGifWarning`. FFmpeg
    would also return the half-decoded last frame; we drop it. The same holds when FFmpeg
    reports corrupt data after some frames of any container.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

DEFAULT_MAX_PIXELS: int = 2048 * 2048  # logical screen W*H; a 2048² RGB frame is 12.6 MB
DEFAULT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)
DEFAULT_MAX_BYTES: int = (
    4 * 2**30
)  # decoded frames T*H*W*3; a 500x500 GIF reaches it at ~5700 frames
BROWSER_MIN_DELAY_MS = 20  # delays below this are played as 100 ms by browsers and FFmpeg

_GIF_MAGIC = (b"GIF87a", b"GIF89a")


class GifDecodeError(ValueError):
    """A file that cannot be turned into frames; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class TruncatedGifWarning(UserWarning):
    """The file ended (or became corrupt) before its last frame; the decoded frames are kept."""


@dataclass(frozen=True)
class Gif:
    path: str
    frames: np.ndarray  # (T, H, W, 3) uint8, full-canvas composites
    delays_ms: np.ndarray  # (T,) int64
    truncated: bool  # True when the file ended early (frames that decoded are kept)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def mean_delay_ms(self) -> float:
        return float(self.delays_ms.mean()) if len(self.delays_ms) else 0.0


@dataclass(frozen=True)
class GifLayout:
    """What walking a GIF's blocks finds, without decoding any image data."""

    width: int  # logical screen
    height: int
    delays_cs: tuple[int, ...]  # one per image whose data is complete in the file
    complete: bool  # the trailer (0x3B) was reached after well-formed blocks


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Position after a chain of data sub-blocks starting at ``pos``; -1 if the data ends first."""
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos if pos <= n else -1
    return -1


def scan_gif(data: bytes, path: str | Path = "<bytes>") -> GifLayout:
    """Walk a GIF's blocks: logical screen size, per-image delays, and whether it is complete.

    A Graphic Control Extension's delay applies to the next image only (GIF89a §23); images
    without one get 0. Raises :class:`GifDecodeError` when the 13-byte header is incomplete.
    """
    if len(data) < 13 or data[:6] not in _GIF_MAGIC:
        raise GifDecodeError(path, f"GIF header incomplete ({len(data)} bytes, need 13)")
    width, height = struct.unpack_from("<HH", data, 6)
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    delays: list[int] = []
    pending_delay = 0
    n = len(data)
    while pos < n:
        block = data[pos]
        pos += 1
        if block == 0x3B:  # trailer
            return GifLayout(width, height, tuple(delays), complete=True)
        if block == 0x21:  # extension: label, then sub-blocks
            if pos >= n:
                break
            label = data[pos]
            pos += 1
            if label == 0xF9 and pos + 5 <= n and data[pos] >= 4:
                pending_delay = struct.unpack_from("<H", data, pos + 2)[0]
            pos = _skip_sub_blocks(data, pos)
        elif block == 0x2C:  # image descriptor (9 bytes), local colour table, LZW code size
            if pos + 9 > n:
                break
            local = data[pos + 8]
            pos += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            pos = _skip_sub_blocks(data, pos) if pos <= n else -1
            if pos < 0:
                break
            delays.append(pending_delay)
            pending_delay = 0
        else:  # not a block introducer: corrupt from here on
            break
        if pos < 0:
            break
    return GifLayout(width, height, tuple(delays), complete=False)


def playback_delays_ms(delays_ms: np.ndarray) -> np.ndarray:
    """Delays as browsers play them: below 20 ms (0 or 1 cs) becomes 100 ms."""
    d = np.asarray(delays_ms, np.int64)
    return np.where(d < BROWSER_MIN_DELAY_MS, 100, d)


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


def _to_rgb(
    frame: av.VideoFrame, out: np.ndarray, background: np.ndarray | None, sws: VideoReformatter
) -> None:
    """Write one decoded frame into ``out`` (H, W, 3) uint8.

    ``background`` None: the frame's colour channels as they are (the gif decoder has already
    painted transparent pixels); else alpha < 128 → background. ``sws`` is reused across
    frames so that swscale's context is built once per file.
    """
    if background is not None and (
        frame.format.has_palette or any(c.is_alpha for c in frame.format.components)
    ):
        rgba = sws.reformat(frame, format="rgba").to_ndarray()
        out[...] = rgba[..., :3]
        out[rgba[..., 3] < 128] = background
    else:
        out[...] = sws.reformat(frame, format="rgb24").to_ndarray()


def _frame_delay_ms(frame: av.VideoFrame) -> int:
    if frame.duration and frame.time_base is not None:
        return round(float(frame.duration * frame.time_base) * 1000)
    return 0


def read_gif(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    max_frames: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> Gif:
    """Decode ``path`` into full-canvas RGB frames and per-frame delays (see the module notes).

    Args:
        max_pixels: budget for the logical screen W*H, checked before decoding.
        background: RGB that transparent pixels take.
        max_frames: refuse (``GifDecodeError``) files with more frames than this.
        max_bytes: refuse files whose decoded frames (T·H·W·3 bytes) would exceed this; for a
            GIF checked before decoding (T from the block walk), for other containers while
            decoding. None: no limit.
    Returns:
        ``Gif(path, frames (T, H, W, 3) uint8, delays_ms (T,) int64, truncated)``, T ≥ 1.
    """
    p = Path(path)
    if not p.is_file():
        raise GifDecodeError(p, "no such file")
    data = p.read_bytes()
    if not data:
        raise GifDecodeError(p, "empty file (0 bytes)")
    bg = np.asarray(background, np.uint8).reshape(3)

    layout: GifLayout | None = None
    if data[:6] in _GIF_MAGIC:
        layout = scan_gif(data, p)
        _check_size(p, layout.width, layout.height, max_pixels, "logical screen")
        if not layout.delays_cs:
            reason = (
                "no frames" if layout.complete else "file ends before its first frame is complete"
            )
            raise GifDecodeError(p, reason)
        n = len(layout.delays_cs)
        if max_frames is not None and n > max_frames:
            raise GifDecodeError(p, f"{n} frames, over the budget max_frames={max_frames}")
        _check_bytes(p, n, layout.width, layout.height, max_bytes)

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as e:
        raise GifDecodeError(p, f"not a decodable image or animation ({e})") from None
    with container:
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
        # A GIF's frame count is known: fill one preallocated array (no list + stack copy).
        n_expected = len(layout.delays_cs) if layout is not None else None
        block = np.empty((n_expected or 1, height, width, 3), np.uint8)
        frames: list[np.ndarray] = []  # (H, W, 3) views into block, or fresh arrays
        delays: list[int] = []
        error: str | None = None
        try:
            for frame in container.decode(stream):
                t = len(frames)
                if n_expected is not None and t == n_expected:
                    break  # a half-present last image that FFmpeg decodes anyway
                if max_frames is not None and t == max_frames:
                    raise GifDecodeError(p, f"more than max_frames={max_frames} frames")
                if n_expected is None:
                    _check_bytes(p, t + 1, width, height, max_bytes)
                if (frame.width, frame.height) != (width, height):
                    raise GifDecodeError(
                        p, f"frame {t} is {frame.width}x{frame.height}, stream is {width}x{height}"
                    )
                rgb = block[t] if n_expected is not None else np.empty_like(block[0])
                _to_rgb(frame, rgb, None if is_gif else bg, sws)
                frames.append(rgb)
                delays.append(_frame_delay_ms(frame))
        except av.FFmpegError as e:
            error = str(e)
    if not frames:
        raise GifDecodeError(p, f"no frame could be decoded ({error or 'zero frames'})")
    if n_expected is not None:
        stacked = block if len(frames) == n_expected else block[: len(frames)].copy()
    else:
        stacked = np.stack(frames)

    if layout is not None:
        delays = [10 * d for d in layout.delays_cs[: len(frames)]]
        truncated = not layout.complete or len(frames) < len(layout.delays_cs)
    else:
        truncated = error is not None
    if truncated:
        why = error or ("file ends early" if layout and not layout.complete else "frames missing")
        warnings.warn(
            f"{p}: truncated or corrupt ({why}); kept the {len(frames)} complete frames",
            TruncatedGifWarning,
            stacklevel=2,
        )
    return Gif(
        path=str(p),
        frames=stacked,
        delays_ms=np.asarray(delays, np.int64),
        truncated=truncated,
    )
