"""Frames from a GIF's blocks where FFmpeg's view of the file differs from the spec's.

FFmpeg's ``gif`` decoder makes one frame of every image descriptor. The GIF89a spec (§23,
Graphic Control Extension) says more: an image's GCE delay is how long to wait AFTER rendering
it, and an image without a GCE is rendered without waiting. So what a viewer sees, and what
:func:`compose_gif` returns, is:

- **Frames.** An image with a GCE starts a frame (whatever its delay: browsers show 0-delay
  frames too), and so does the first image; an image without a GCE belongs to the current
  frame and is drawn into it (several image blocks, one frame: tiles with their own colour
  tables, overlapping images). The frame's delay is its first image's GCE delay (0 without
  one). A GIF87a has no GCEs at all: each of its images is a frame with delay 0, as every
  viewer animates them. (A strict reading of §23 would also fold a first image without a GCE
  into the next frame; Pillow writes every 0-delay animation that way and browsers show that
  image as a frame, so it stays one here and the spec suite's ``dispose-restore-previous``
  case keeps its background image as a frame: docs/gif-conformance.md.)
- **Canvas.** It starts as the header's background colour (global table entry
  ``background_index``), or transparent when the first image has a transparent index or there
  is no such entry — FFmpeg's convention, which the common path follows too. Transparent pixels
  end up as ``background`` (the caller's colour).
- **Disposal**, applied to the image's own rectangle before the next image is drawn: 0/1 keep;
  2 restores the background (transparent when the image had a transparent index, else the
  header's background colour); 3 restores the canvas as it was before the image was drawn.
- **Images that do not fit.** Images of zero width or height draw nothing; pixels outside the
  logical screen are clipped. A complete GIF without any image is one frame of background.
- **Errors.** An LZW code that is not yet in the code table, or a pixel index outside the
  colour table in effect, is a corrupt image (:class:`GifDecodeError`), as is a Plain Text
  Extension (text rendering, which no decoder here implements, would change the pixels).
  Image data that ends early leaves the rest of that image undrawn.
- **Truncation.** Only images whose data is complete are drawn (the block walk's
  ``images``). When the file ends inside an image that would have been drawn into the last
  frame (an image without a GCE: a tile of it), that frame is incomplete and is dropped, as
  :mod:`gifemo.data.gif` drops a half-decoded frame; :func:`frame_count` agrees. A frame whose
  images are all complete is kept when the file ends after it (a missing trailer loses nothing).

:func:`needs_blocks` decides from the block walk alone (no decoding) whether a file needs this
path: the common animated GIF (one GCE per image, images inside the screen, code sizes that fit
the colour table) stays on FFmpeg's faster path. This path decodes LZW in Python: fine for the
rare files that need it, ~10× slower than FFmpeg.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gifemo.data.gif_blocks import GifDecodeError, GifLayout


def needs_blocks(layout: GifLayout) -> str | None:
    """Why the file needs :func:`compose_gif` (None: FFmpeg's frames are the spec's)."""
    images = layout.images
    if layout.plain_text:
        return "plain text extension"
    if not images:
        return "no images" if layout.complete else None
    if layout.version == b"GIF87a" and len(images) > 1:
        return "GIF87a animation"
    if any(not im.has_gce for im in images[1:]):
        return "images without a graphic control extension"
    for im in images:
        if im.width == 0 or im.height == 0:
            return "zero-size image"
        if im.left + im.width > layout.width or im.top + im.height > layout.height:
            return "image outside the logical screen"
    return None


@dataclass
class _Image:
    left: int
    top: int
    width: int
    height: int
    interlace: bool
    table: np.ndarray | None  # (k, 3) uint8, local or global
    lzw_min: int
    data: bytes  # the concatenated data sub-blocks
    gce: tuple[int, int | None, int] | None  # (disposal, transparent, delay_cs)


def _sub_blocks(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while pos < len(data):
        size = data[pos]
        out += data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        if size == 0:
            break
    return bytes(out), pos


def _table(data: bytes, pos: int, packed: int) -> tuple[np.ndarray | None, int]:
    if not packed & 0x80:
        return None, pos
    n = 3 << ((packed & 7) + 1)
    table = np.frombuffer(data[pos : pos + n], np.uint8).reshape(-1, 3)
    return table, pos + n


def _parse(data: bytes, n_images: int) -> tuple[np.ndarray | None, list[_Image]]:
    """The global table and the first ``n_images`` images (those the walk found complete)."""
    gct, pos = _table(data, 13, data[10])
    images: list[_Image] = []
    gce: tuple[int, int | None, int] | None = None
    while pos < len(data) and len(images) < n_images:
        block = data[pos]
        if block == 0x21:
            label = data[pos + 1]
            body, pos = _sub_blocks(data, pos + 2)
            if label == 0xF9 and len(body) >= 4:
                flags, delay, index = struct.unpack_from("<BHB", body)
                gce = ((flags >> 2) & 7, index if flags & 1 else None, delay)
        elif block == 0x2C:
            left, top, w, h, packed = struct.unpack_from("<HHHHB", data, pos + 1)
            table, pos = _table(data, pos + 10, packed)
            lzw_min = data[pos]
            body, pos = _sub_blocks(data, pos + 1)
            images.append(
                _Image(
                    left,
                    top,
                    w,
                    h,
                    bool(packed & 0x40),
                    table if table is not None else gct,
                    lzw_min,
                    body,
                    gce,
                )
            )
            gce = None
        else:
            break
    return gct, images


def lzw_decode(data: bytes, min_code_size: int, n_pixels: int) -> np.ndarray:
    """GIF LZW (spec Appendix F) → at most ``n_pixels`` indices (fewer when the data ends).

    Codes are read LSB first, ``min_code_size + 1`` bits wide, growing to 12; a clear code resets
    the table, end-of-information stops. Raises ValueError for a code not yet in the table.
    """
    if not 1 <= min_code_size <= 11:
        raise ValueError(f"LZW minimum code size {min_code_size} outside 1..11")
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    out = bytearray()
    prefix: list[int] = []  # the code table: entry c = entry(prefix[c]) + bytes([suffix[c]])
    suffix: list[int] = []

    def reset() -> None:
        prefix[:] = [-1] * (eoi + 1)
        suffix[:] = [i if i < clear else 0 for i in range(eoi + 1)]

    def entry(code: int) -> bytes:
        chars = []
        while code >= 0:
            chars.append(suffix[code])
            code = prefix[code]
        return bytes(reversed(chars))

    reset()
    width, acc, nbits, prev = min_code_size + 1, 0, 0, -1
    for byte in data:
        acc |= byte << nbits
        nbits += 8
        while nbits >= width:
            code = acc & ((1 << width) - 1)
            acc >>= width
            nbits -= width
            if code == clear:
                reset()
                width, prev = min_code_size + 1, -1
                continue
            if code == eoi:
                return np.frombuffer(bytes(out[:n_pixels]), np.uint8)
            size = len(suffix)
            if prev < 0:
                if code >= clear:
                    raise ValueError(f"LZW code {code} before any pixel")
                out.append(code)
            elif code < size:
                word = entry(code)
                out += word
                if size < 4096:
                    prefix.append(prev)
                    suffix.append(word[0])
            elif code == size and size < 4096:
                word = entry(prev)
                word += word[:1]
                out += word
                prefix.append(prev)
                suffix.append(word[0])
            else:
                raise ValueError(f"LZW code {code} is not in the table (next code {size})")
            prev = code
            if len(suffix) == (1 << width) and width < 12:
                width += 1
            if len(out) >= n_pixels:
                return np.frombuffer(bytes(out[:n_pixels]), np.uint8)
    return np.frombuffer(bytes(out[:n_pixels]), np.uint8)


def _rows(height: int, interlace: bool) -> np.ndarray:
    if not interlace:
        return np.arange(height)
    return np.concatenate(
        [np.arange(0, height, 8), np.arange(4, height, 8), np.arange(2, height, 4),
         np.arange(1, height, 2)]
    )  # fmt: skip


def _draw(canvas: np.ndarray, alpha: np.ndarray, im: _Image, path: Path, k: int) -> None:
    """Decode image ``k`` and draw its opaque pixels onto ``canvas`` (H, W, 3) / ``alpha``."""
    n = im.width * im.height
    if n == 0:
        return
    if im.table is None:
        raise GifDecodeError(path, f"image {k} has no colour table (neither local nor global)")
    try:
        idx = lzw_decode(im.data, im.lzw_min, n)
    except ValueError as e:
        raise GifDecodeError(path, f"image {k}: corrupt LZW data ({e})") from None
    transparent = im.gce[1] if im.gce else None
    valid = idx != transparent if transparent is not None else np.ones(len(idx), bool)
    bad = idx[valid] >= len(im.table)
    if bad.any():
        raise GifDecodeError(
            path,
            f"image {k}: pixel index {int(idx[valid][bad].max())} outside its "
            f"{len(im.table)}-colour table",
        )
    full = np.zeros(n, bool)
    full[: len(idx)] = valid  # pixels the data did not reach stay undrawn
    pix = np.zeros(n, np.int64)
    pix[: len(idx)] = idx
    rows = _rows(im.height, im.interlace)[:, None] + im.top  # (h, 1) canvas rows, in data order
    cols = np.arange(im.width)[None, :] + im.left  # (1, w)
    rr, cc = np.broadcast_arrays(rows, cols)
    draw = full.reshape(im.height, im.width) & (rr < canvas.shape[0]) & (cc < canvas.shape[1])
    canvas[rr[draw], cc[draw]] = im.table[pix.reshape(im.height, im.width)[draw]]
    alpha[rr[draw], cc[draw]] = True


def _starts_frame(k: int, has_gce: bool, version: bytes) -> bool:
    return k == 0 or has_gce or version == b"GIF87a"


def _last_frame_cut(layout: GifLayout) -> bool:
    """The data ends inside an image that belongs to the last frame (a tile without a GCE)."""
    cut = layout.cut_image_gce
    if cut is None or not layout.images:
        return False
    return not _starts_frame(len(layout.images), cut, layout.version)


def frame_count(layout: GifLayout) -> int:
    """Frames :func:`compose_gif` gives for this file (from the walk, no decoding): for the
    common animated GIF, one per complete image. 0 when the file ends inside its first frame."""
    starts = [_starts_frame(k, im.has_gce, layout.version) for k, im in enumerate(layout.images)]
    if not starts:
        return 1  # a GIF without images: one frame of background
    return sum(starts) - _last_frame_cut(layout)


def compose_gif(
    data: bytes,
    layout: GifLayout,
    path: Path,
    *,
    background: np.ndarray,
    max_frames_out: int | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """(T, H, W, 3) uint8 frames and delays in ms, composed from the blocks (module notes).

    ``max_pixels``: refuse an image whose declared width × height exceeds it (the screen is
    checked by the caller; an image can declare up to 65535² pixels, and its LZW data could
    expand to gigabytes)."""
    if layout.plain_text:
        raise GifDecodeError(path, "plain text extension: its text would have to be rendered")
    for k, blk in enumerate(layout.images):
        if max_pixels is not None and blk.width * blk.height > max_pixels:
            raise GifDecodeError(
                path,
                f"image {k} is {blk.width}x{blk.height}, over the budget max_pixels={max_pixels}",
            )
    gct, images = _parse(data, len(layout.images))
    H, W = layout.height, layout.width
    canvas = np.empty((H, W, 3), np.uint8)
    alpha = np.zeros((H, W), bool)
    first_transparent = bool(images and images[0].gce and images[0].gce[1] is not None)
    bg_index = layout.background_index
    if gct is not None and bg_index < len(gct) and not first_transparent:
        canvas[...], alpha[...] = gct[bg_index], True
    if not images:
        out = canvas.copy()
        out[~alpha] = background
        return out[None], [0]
    starts = [_starts_frame(k, im.gce is not None, layout.version) for k, im in enumerate(images)]
    if _last_frame_cut(layout):  # the file ends inside a tile of the last frame: drop the frame
        last = max(k for k, s in enumerate(starts) if s)
        images, starts = images[:last], starts[:last]
        if not images:
            raise GifDecodeError(path, "file ends before its first frame is complete")
    ends = {k - 1 for k in range(1, len(images)) if starts[k]} | {len(images) - 1}
    frame_delay = 0
    frames: list[np.ndarray] = []
    delays: list[int] = []
    for k, im in enumerate(images):
        disposal = im.gce[0] if im.gce else 0
        saved = (canvas.copy(), alpha.copy()) if disposal == 3 else None
        if starts[k]:
            frame_delay = 10 * (im.gce[2] if im.gce else 0)
        _draw(canvas, alpha, im, path, k)
        if k in ends:
            out = canvas.copy()
            out[~alpha] = background
            frames.append(out)
            delays.append(frame_delay)
            if max_frames_out is not None and len(frames) == max_frames_out:
                break
        rect = (slice(im.top, im.top + im.height), slice(im.left, im.left + im.width))
        if disposal == 2:
            if (im.gce and im.gce[1] is not None) or gct is None or bg_index >= len(gct):
                alpha[rect] = False
            else:
                canvas[rect], alpha[rect] = gct[bg_index], True
        elif disposal == 3 and saved is not None:
            canvas[rect], alpha[rect] = saved[0][rect], saved[1][rect]
    return np.stack(frames), delays
