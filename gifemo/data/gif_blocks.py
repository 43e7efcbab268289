"""The GIF block walker: a GIF's structure from its bytes, without decoding any image data.

GIF87a/89a (spec §17–§27): a 13-byte header + logical screen descriptor (optionally followed
by the global colour table), then blocks, each introduced by one byte:

- ``0x21`` extension: a label, then data sub-blocks (a size byte, that many bytes, … a 0 size).
  Label ``0xF9`` is the Graphic Control Extension (GCE): disposal, transparent index and the
  delay of the NEXT graphic rendering block (§23).
- ``0x2C`` image descriptor (9 bytes: left, top, width, height, packed), an optional local
  colour table, the LZW minimum code size, then the image data sub-blocks.
- ``0x3B`` trailer.

:func:`scan_gif` walks them and returns a :class:`GifLayout`: the logical screen, one
:class:`ImageBlock` per image whose data is complete in the file, and whether the trailer was
reached (and, when the data ends inside an image, whether a GCE came before that image: it
tells whether the image would have started a frame of its own). The errors of bad files (:class:`GifDecodeError`) live here, the lowest GIF module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

GIF_MAGIC = (b"GIF87a", b"GIF89a")


class GifDecodeError(ValueError):
    """A file that cannot be turned into frames; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class TruncatedGifWarning(UserWarning):
    """The file ended (or became corrupt) before its last frame; the decoded frames are kept."""


class ImageBlock(NamedTuple):
    """One image descriptor and what its preceding Graphic Control Extension said."""

    left: int
    top: int
    width: int
    height: int
    has_gce: bool  # a GCE came since the previous image
    disposal: int  # 0–7 from the GCE (0 without one)
    transparent: int | None  # transparent colour index, or None
    delay_cs: int  # from the GCE (0 without one)
    local_table: bool
    table_bits: (
        int  # colour table in effect (local, else global) has 2**table_bits entries; 0: none
    )
    lzw_min: int  # LZW minimum code size


@dataclass(frozen=True)
class GifLayout:
    """What walking a GIF's blocks finds, without decoding any image data."""

    width: int  # logical screen
    height: int
    version: bytes  # b"GIF87a" or b"GIF89a"
    background_index: int
    global_table: bool
    images: tuple[ImageBlock, ...]  # one per image whose data is complete in the file
    complete: bool  # the trailer (0x3B) was reached after well-formed blocks
    plain_text: bool = False  # a Plain Text Extension (0x21 0x01) was seen
    # the data ends inside an image (descriptor, colour table or data, so it is not in
    # ``images``): whether a GCE came before it; None when the data does not end inside one
    cut_image_gce: bool | None = None

    @property
    def delays_cs(self) -> tuple[int, ...]:
        return tuple(im.delay_cs for im in self.images)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Position after a chain of data sub-blocks starting at ``pos``; -1 if the data ends first."""
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos if pos <= n else -1
    return -1


def _table_size(packed: int) -> int:
    """Bytes of the colour table announced by a packed field (0 when its flag is clear)."""
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def scan_gif(data: bytes, path: str | Path = "<bytes>") -> GifLayout:
    """Walk a GIF's blocks: logical screen, images with their GCE fields, completeness.

    A Graphic Control Extension applies to the next image only (GIF89a §23); images without
    one get delay 0, disposal 0, no transparency. Raises :class:`GifDecodeError` when the
    13-byte header is incomplete.
    """
    if len(data) < 13 or data[:6] not in GIF_MAGIC:
        raise GifDecodeError(path, f"GIF header incomplete ({len(data)} bytes, need 13)")
    width, height = struct.unpack_from("<HH", data, 6)
    packed = data[10]
    pos = 13 + _table_size(packed)
    global_bits = (packed & 7) + 1 if packed & 0x80 else 0
    plain_text = False
    images: list[ImageBlock] = []
    gce: tuple[int, int | None, int] | None = None  # (disposal, transparent, delay_cs)
    n = len(data)
    complete = False
    cut_image_gce: bool | None = None
    while pos < n:
        block = data[pos]
        pos += 1
        if block == 0x3B:  # trailer
            complete = True
            break
        if block == 0x21:  # extension: label, then sub-blocks
            if pos >= n:
                break
            label = data[pos]
            pos += 1
            plain_text |= label == 0x01
            if label == 0xF9 and pos + 5 <= n and data[pos] >= 4:
                flags, delay, index = struct.unpack_from("<BHB", data, pos + 1)
                gce = ((flags >> 2) & 7, index if flags & 1 else None, delay)
            pos = _skip_sub_blocks(data, pos)
        elif block == 0x2C:  # image descriptor (9 bytes), local colour table, LZW code size
            cut_image_gce = gce is not None  # until the image's data is found complete
            if pos + 9 > n:
                break
            left, top, w, h, local = struct.unpack_from("<HHHHB", data, pos)
            pos += 9 + _table_size(local)
            if pos >= n:
                break
            lzw_min = data[pos]
            pos = _skip_sub_blocks(data, pos + 1)
            if pos < 0:
                break
            cut_image_gce = None
            disposal, transparent, delay = gce if gce is not None else (0, None, 0)
            images.append(
                ImageBlock(
                    left,
                    top,
                    w,
                    h,
                    gce is not None,
                    disposal,
                    transparent,
                    delay,
                    bool(local & 0x80),
                    (local & 7) + 1 if local & 0x80 else global_bits,
                    lzw_min,
                )
            )
            gce = None
        else:  # not a block introducer: corrupt from here on
            break
        if pos < 0:
            break
    return GifLayout(
        width=width,
        height=height,
        version=bytes(data[:6]),
        background_index=data[11],
        global_table=bool(packed & 0x80),
        images=tuple(images),
        complete=complete,
        plain_text=plain_text,
        cut_image_gce=cut_image_gce,
    )
