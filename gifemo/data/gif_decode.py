"""FFmpeg's side of :func:`gifemo.data.gif.read_gif`: open a file with PyAV, decode its
frames, composite them to RGB (or copy FFmpeg's own ``bgr0`` layout), and keep only the frames
a :class:`FrameKeeper` asks for (the notes of :mod:`gifemo.data.gif` say what each means).
The size guards live here too, since decoding applies them to streams whose size the block
walk does not know (not a GIF)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from gifemo.data.gif_blocks import GIF_MAGIC, GifDecodeError


class FrameKeeper(Protocol):
    """What :func:`gifemo.data.gif.read_gif` keeps of a file's frames (``keep=``; its notes)."""

    # Frames of at least this many pixels are kept one by one as they are decoded; smaller
    # ones are decoded whole and kept in one :meth:`batch` (per-frame calls then cost more than
    # the copies they save).
    per_frame_from: int
    # True: decoding may stop after the last kept frame (a GIF: its frame count and delays are
    # the block walk's; damage in the frames after it goes unnoticed — :mod:`gifemo.data.gif`)
    stop_after_last: bool

    def select(self, n_frames: int, delays_ms: np.ndarray) -> np.ndarray:
        """The indices of the frames to keep, ascending, given the file's frame count and
        delays. It may be called again (a file read a second time), so each call starts
        afresh."""
        ...

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One decoded frame, (H, W, 3) RGB or (H, W, 4) ``bgr0`` uint8 — a view that is valid
        only during the call — → what is kept of it (an array of the same shape every call;
        it may be a view of ``frame`` or of a buffer the keeper reuses: the reader copies it
        before the next call)."""
        ...

    def batch(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Decoded frames (T, H, W, C) and the kept indices → the stacked outputs of
        :meth:`__call__` for ``frames[index]`` (the same bytes)."""
        ...


def check_size(path: Path, width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise GifDecodeError(path, f"{what} has zero width or height ({width}x{height})")
    if width * height > max_pixels:
        raise GifDecodeError(
            path,
            f"{what} is {width}x{height} = {width * height} pixels, over the budget "
            f"max_pixels={max_pixels}",
        )


def check_bytes(path: Path, n_frames: int, width: int, height: int, max_bytes: int | None) -> None:
    if max_bytes is not None and n_frames * width * height * 3 > max_bytes:
        raise GifDecodeError(
            path,
            f"{n_frames} frames of {width}x{height} need {n_frames * width * height * 3} bytes, "
            f"over the budget max_bytes={max_bytes}",
        )


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


def _no_background_entry(data: bytes) -> bool:
    """Whether a GIF's header names no background colour (no global colour table, or a
    background index past its end). FFmpeg's gif decoder fills the screen before the first
    frame and each disposal-2 rectangle with that entry — then transparent black (0, 0, 0, 0),
    not the ``trans_color`` it paints transparent pixels with — so :func:`_to_rgb` paints
    such a file's alpha-0 pixels itself. With an entry every alpha-0 pixel is a transparent
    index's, already painted. Not a GIF's header: True."""
    if len(data) < 13 or data[:6] not in GIF_MAGIC:
        return True
    packed, index = data[10], data[11]
    return not packed & 0x80 or index >= 2 << (packed & 7)


def _paint(bgra: np.ndarray, rgb: np.ndarray) -> None:
    """Paint the alpha-0 pixels of an (H, W, 4) B, G, R, A array (its last axis contiguous)
    the colour ``rgb``, in place; their alpha stays 0. One pass over its 32-bit words, alpha
    being a little-endian word's top byte (indexing the pixels with a boolean mask took 5–20×
    as long on 480×270 frames)."""
    words = bgra.view("<u4")  # (H, W, 1)
    colour = np.array(int(rgb[0]) << 16 | int(rgb[1]) << 8 | int(rgb[2]), "<u4")
    np.copyto(words, colour, where=words < 1 << 24)


def _to_rgb(
    frame: av.VideoFrame,
    out: np.ndarray,
    background: np.ndarray | None,
    sws: VideoReformatter,
    converter: str = "direct",
    unpainted: np.ndarray | None = None,
) -> None:
    """Write one decoded frame into ``out``: (H, W, 3) RGB, or (H, W, 4) bgr0 for a GIF.

    ``background`` None — FFmpeg's gif decoder (BGRA, transparent pixels already painted):
    ``direct`` copies from FFmpeg's plane in numpy (bgr0: the rows as they are; RGB: three
    strided channel copies), ``swscale`` converts with swscale (the reference). ``unpainted``
    (a GIF without a background colour entry, :func:`_no_background_entry`): the RGB colour
    all its alpha-0 pixels take, painted by FFmpeg or not (bgr0: as B, G, R; the fourth byte
    stays 0) — one more pass over the frame, for such files only (``direct``: over a copy of
    the plane, which is FFmpeg's canvas; ``swscale``: a boolean mask, the reference). Else
    (other codecs): swscale's RGB, alpha < 128 → background. ``sws`` is reused across frames
    so that swscale's context is built once per file.
    """
    bgra = frame.format.name == "bgra"
    if background is None:
        if out.shape[-1] == 4:
            out[...] = (
                _bgra_plane(frame) if bgra else sws.reformat(frame, format="bgra").to_ndarray()
            )
            if unpainted is not None:
                _paint(out, unpainted)
        elif converter == "direct" and bgra:
            plane = _bgra_plane(frame)
            if unpainted is not None:
                plane = plane.copy()
                _paint(plane, unpainted)
            out[..., 0] = plane[..., 2]
            out[..., 1] = plane[..., 1]
            out[..., 2] = plane[..., 0]
        else:
            out[...] = sws.reformat(frame, format="rgb24").to_ndarray()
            if unpainted is not None:
                alpha = sws.reformat(frame, format="bgra").to_ndarray()[..., 3]
                out[alpha == 0] = unpainted
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
class Decoded:
    frames: np.ndarray  # (T, H, W, 3) uint8; with a keeper its (U, ...) outputs
    delays_ms: list[int]  # FFmpeg's per-frame delays (not a GIF's: its walk has them)
    error: str | None  # FFmpeg's error after the last good frame, if any
    n_frames: int  # T, the frames decoded


def decode_frames(
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
) -> Decoded:
    """Decode the frames: ``n_expected`` (a GIF: known from the walk) fills one preallocated
    array; decoding stops after ``stop_at`` frames (None: at the end). ``bgr0``: a GIF's
    frames in FFmpeg's own B, G, R, X layout (other codecs give RGB, converted later).
    ``keep`` (a GIF: with ``n_expected``): (which of the n_expected frames to keep, a bool
    mask; the keeper) — only those frames are converted, each handed to the keeper (a
    ``bgr0`` GIF frame straight from FFmpeg's plane, unless the GIF has no background colour
    entry: its alpha-0 pixels are painted ``bg`` in a copy first) and its outputs stacked."""
    if keep is not None and (n_expected is None or len(keep[0]) != n_expected):
        raise ValueError("keep needs a GIF's frame count and one mask entry per frame")
    with _open(p, data) as container:
        if not container.streams.video:
            raise GifDecodeError(p, "no video stream (not an image or animation)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        check_size(p, width, height, max_pixels, "video stream")
        sws = VideoReformatter()
        is_gif = stream.codec_context.name == "gif"
        if is_gif:  # transparent pixels are painted (ARGB, alpha 0) in the background colour
            r, g, b = (int(c) for c in bg)
            stream.codec_context.options = {"trans_color": str(r << 16 | g << 8 | b)}
        # other codecs: alpha → bg; a GIF without a background entry: its alpha-0 pixels → bg
        to_bg = None if is_gif else bg
        unpainted = bg if is_gif and _no_background_entry(data) else None
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
                    check_bytes(p, t + 1, width, height, max_bytes)
                if (frame.width, frame.height) != (width, height):
                    raise GifDecodeError(
                        p, f"frame {t} is {frame.width}x{frame.height}, stream is {width}x{height}"
                    )
                if keep is None:
                    rgb = block[t] if n_expected is not None else np.empty_like(block[0])
                    _to_rgb(frame, rgb, to_bg, sws, converter, unpainted)
                    frames.append(rgb)
                    if n_expected is None:  # a GIF's delays come from its block walk
                        delays.append(_frame_delay_ms(frame))
                elif t < len(keep[0]) and keep[0][t]:
                    if channels == 4 and frame.format.name == "bgra" and unpainted is None:
                        view = _bgra_plane(frame)  # the keeper reads FFmpeg's plane itself
                    else:  # converted (painted, for a GIF without a background entry) first
                        view = block[0]
                        _to_rgb(frame, view, to_bg, sws, converter, unpainted)
                        if bgr0 and channels == 3:  # not FFmpeg's gif codec after all
                            view = as_bgr0(view[None])[0]
                    out = keep[1](view)
                    if kept is None:  # the keeper's outputs, copied in as they come
                        kept = np.empty((int(keep[0].sum()), *out.shape), out.dtype)
                    kept[len(frames)] = out
                    frames.append(kept[len(frames)])
                    del view, out
                # Let go of FFmpeg's frame before the next is decoded: its gif decoder draws
                # each frame on its canvas in place only when nothing else holds the canvas's
                # buffer, and copies the whole canvas first otherwise (~3 % of the decoding
                # time of a 480×270 GIF: ``python -m gifemo.bench decode``, held / dropped).
                del frame
                t += 1
                if keep is not None and t == stop_at:
                    break  # the last kept frame: the next one is not decoded
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
    return Decoded(stacked, delays, error, t)


def keep_after(frames: np.ndarray, delays: np.ndarray, keeper: FrameKeeper) -> tuple:
    """(the keeper's outputs for the frames it selects, their indices): the keeper applied to
    frames already decoded, in one batch."""
    kept = selection(keeper, len(frames), delays)
    return (keeper.batch(frames, kept) if len(kept) else np.zeros((0,), np.uint8)), kept


def selection(keeper: FrameKeeper, n: int, delays: np.ndarray) -> np.ndarray:
    kept = np.asarray(keeper.select(n, np.asarray(delays, np.int64)), np.int64).reshape(-1)
    if len(kept) and (kept[0] < 0 or kept[-1] >= n or np.any(np.diff(kept) <= 0)):
        raise ValueError(f"{type(keeper).__name__}.select must give ascending frames in [0, {n})")
    return kept


def as_bgr0(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB (composed, or not a GIF) → (T, H, W, 4) ``bgr0``, the fourth byte 255."""
    bgr0 = np.empty((*frames.shape[:3], 4), np.uint8)
    bgr0[..., :3] = frames[..., ::-1]
    bgr0[..., 3] = 255
    return bgr0
