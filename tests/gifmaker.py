"""Make small GIF files byte by byte, for tests that need exact control over the format.

Pillow's writer optimises frames away, picks its own disposal and palettes and never
interlaces; the tests of the decoder need each feature on demand. :func:`write_gif` writes
GIF89a from explicit frames:

    GifFrame(indices (h, w) uint8 palette indices, left, top, delay_cs, disposal 0–3,
             transparent index or None, local palette (k, 3) uint8 or None, interlace)

with a proper variable-width LZW encoder (GIF spec, Appendix F). Other helpers write GIFs
with Pillow (``pillow_gif``) and the malformed files the error tests need.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class GifFrame:
    indices: np.ndarray  # (h, w) uint8 palette indices
    left: int = 0
    top: int = 0
    delay_cs: int = 10
    disposal: int = 0
    transparent: int | None = None
    palette: np.ndarray | None = None  # (k, 3) uint8 local colour table, k a power of two ≥ 2
    interlace: bool = False
    gce: bool = True  # write a Graphic Control Extension before the image
    lzw: bytes | None = None  # raw LZW data (with its code size byte) instead of encoding indices
    width: int | None = None  # descriptor size when it differs from indices (zero-size images)
    height: int | None = None


def _table_bits(palette: np.ndarray) -> int:
    """Size field p of a colour table holding 2**(p+1) entries."""
    k = len(palette)
    assert k >= 2 and k & (k - 1) == 0 and k <= 256, (
        f"palette size {k} must be a power of two in [2, 256]"
    )
    return k.bit_length() - 2


def lzw_encode(indices: Sequence[int], min_code_size: int) -> bytes:
    """GIF LZW: variable code width from min_code_size + 1 up to 12 bits, LSB-first packing."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    out = bytearray()
    acc = nbits = 0

    def emit(code: int, width: int) -> None:
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    def fresh() -> tuple[dict[tuple[int, ...], int], int, int]:
        return {(i,): i for i in range(clear)}, eoi + 1, min_code_size + 1

    table, next_code, width = fresh()
    emit(clear, width)
    w: tuple[int, ...] = ()
    for k in indices:
        wk = (*w, int(k))
        if wk in table:
            w = wk
            continue
        emit(table[w], width)
        table[wk] = next_code
        next_code += 1
        if next_code > (1 << width) and width < 12:
            width += 1
        if next_code >= 4095:  # reset before the 12-bit table is full
            emit(clear, width)
            table, next_code, width = fresh()
        w = (int(k),)
    if w:
        emit(table[w], width)
    emit(eoi, width)
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def _sub_blocks(data: bytes) -> bytes:
    parts = [bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)]
    return b"".join(parts) + b"\x00"


def _interlace_rows(h: int) -> list[int]:
    return [*range(0, h, 8), *range(4, h, 8), *range(2, h, 4), *range(1, h, 2)]


def gif_bytes(
    width: int,
    height: int,
    frames: Sequence[GifFrame],
    *,
    palette: np.ndarray | None,
    background_index: int = 0,
    loop: int | None = 0,
    version: bytes = b"GIF89a",
    before: dict[int, bytes] | None = None,
) -> bytes:
    """The bytes of a GIF with logical screen (width, height) and the given frames.

    ``before``: raw blocks to write before frame k's blocks (extensions a test needs).
    """
    out = bytearray(version)
    packed = 0
    if palette is not None:
        packed = 0x80 | (7 << 4) | _table_bits(palette)
    out += struct.pack("<HHBBB", width, height, packed, background_index, 0)
    if palette is not None:
        out += np.asarray(palette, np.uint8).tobytes()
    if loop is not None:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop) + b"\x00"
    for k, f in enumerate(frames):
        out += (before or {}).get(k, b"")
        idx = np.asarray(f.indices, np.uint8)
        h, w = idx.shape
        gce = (f.disposal & 7) << 2 | (1 if f.transparent is not None else 0)
        if f.gce:
            out += b"\x21\xf9\x04" + struct.pack("<BHB", gce, f.delay_cs, f.transparent or 0)
            out += b"\x00"
        desc = 0
        table = f.palette if f.palette is not None else palette
        assert table is not None, "a frame needs a local palette when there is no global one"
        if f.palette is not None:
            desc |= 0x80 | _table_bits(f.palette)
        if f.interlace:
            desc |= 0x40
            idx = idx[_interlace_rows(h)]
        dw, dh = (w if f.width is None else f.width), (h if f.height is None else f.height)
        out += b"\x2c" + struct.pack("<HHHHB", f.left, f.top, dw, dh, desc)
        if f.palette is not None:
            out += np.asarray(f.palette, np.uint8).tobytes()
        if f.lzw is not None:
            out += f.lzw[:1] + _sub_blocks(f.lzw[1:])
            continue
        min_code = max(2, (len(table) - 1).bit_length())
        assert int(idx.max(initial=0)) < 1 << min_code, "palette index out of range"
        out += bytes([min_code]) + _sub_blocks(lzw_encode(idx.ravel().tolist(), min_code))
    out += b"\x3b"
    return bytes(out)


def write_gif(path: Path, width: int, height: int, frames: Sequence[GifFrame], **kw) -> Path:
    Path(path).write_bytes(gif_bytes(width, height, frames, **kw))
    return Path(path)


def random_palette(k: int, seed: int) -> np.ndarray:
    """(k, 3) uint8 palette with k distinct colours (distinct so that index == colour)."""
    rng = np.random.default_rng(seed)
    while True:
        pal = rng.integers(0, 256, size=(k, 3), dtype=np.uint8)
        if len(np.unique(pal, axis=0)) == k:
            return pal


def random_indices(h: int, w: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, size=(h, w), dtype=np.uint8)


def pillow_gif(path: Path, frames: np.ndarray, *, durations_ms: int | Sequence[int] = 40) -> Path:
    """Write (T, H, W, 3) uint8 frames with Pillow's GIF writer (adaptive palette per frame)."""
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations_ms, loop=0)
    return Path(path)


def moving_frames(t: int, h: int, w: int, *, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8 frames: a smooth gradient background with a moving square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
    out = np.empty((t, h, w, 3), np.uint8)
    colour = rng.integers(0, 256, 3)
    side = max(2, min(h, w) // 4)
    for i in range(t):
        f = base.copy()
        y0, x0 = (i * 3) % max(h - side, 1), (i * 5) % max(w - side, 1)
        f[y0 : y0 + side, x0 : x0 + side] = colour
        out[i] = f
    return out


def oversized_header_gif(width: int = 16000, height: int = 16000) -> bytes:
    """A tiny GIF (35 bytes) whose header declares a huge logical screen and a 1×1 frame."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00\x3b"
    )


def _first_block(data: bytes) -> int:
    """Offset of the first block after the header and the global colour table."""
    packed = data[10]
    return 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)


def with_comment(data: bytes, comment: bytes) -> bytes:
    """``data`` with a comment extension (0x21 0xFE) before its first block, as Photoshop
    writes one (the bytes need not be UTF-8)."""
    at = _first_block(data)
    return data[:at] + b"\x21\xfe" + _sub_blocks(comment) + data[at:]


def many_frames_gif(n: int, width: int = 1, height: int = 1, *, delay_cs: int = 2) -> bytes:
    """A GIF of ``n`` identical full-screen frames, written by repeating one encoded frame's
    bytes (100,000 1×1 frames take 2.5 MB and no time to write)."""
    one = gif_bytes(
        width, height, [GifFrame(np.zeros((height, width), np.uint8), delay_cs=delay_cs)],
        palette=random_palette(2, 0), loop=0,
    )  # fmt: skip
    head_end = one.index(b"\x21\xf9")
    frame = one[head_end:-1]  # GCE + image descriptor + data
    return one[:head_end] + frame * n + b"\x3b"
