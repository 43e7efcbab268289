"""An on-disk cache of decoded, resized GIF frames, shared by DataLoader workers and epochs.

What is cached: for each GIF, ``resize_frames(read_gif(path).frames, resize_hw)`` (made with
``read_gif(keep=…)``: frames of ≥ 100,000 pixels are resized as they are decoded) — uint8
(T, H, W, 3) at the backbone's ``resize_hw`` (128×171 for C3D and R(2+1)D),
every frame of the GIF (clip sampling, crop, flip and mean subtraction stay random per epoch and
are applied on top by the backbone transform's ``from_resized``) — plus its delays (T,) int64 and the
``truncated`` flag.

Layout: ``<directory>/<key>.npy`` (frames) and ``<key>.delays.npy`` with
key = sha1(absolute path, mtime_ns, size, decode options, resize size): editing or replacing a
GIF changes its key, so a stale entry is never read. Entries are written to a temporary file
and renamed into place (``os.replace`` is atomic), so concurrent workers and a killed run never
leave a half-written entry; readers memory-map the frames (``np.load(mmap_mode="r")``), so the
OS page cache is shared by all workers.

Size bound: before writing, the directory's ``.npy`` bytes are summed (a ``scandir``, only on a
miss); an entry that would take the total past ``max_mb`` is not written (the GIF is still
returned, decoded). Workers writing at the same moment can overshoot by at most one entry each.
There is no eviction: an epoch reads every GIF once, in a new order, and for such cyclic access
keeping the first ``max_mb`` worth is as good as LRU, which would evict each entry just before
its next use. ``max_mb=0`` disables writing (existing entries are still read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gifemo.backbones.resize import FrameResize, resize_frames
from gifemo.data.gif import KEEP_PER_FRAME_FROM, read_gif

log = logging.getLogger(__name__)


class CachedGif(NamedTuple):
    """A decoded GIF after ``resize_frames``."""

    resized: np.ndarray  # (T, H, W, 3) uint8 at resize_hw (read-only memmap from the cache)
    delays_ms: np.ndarray  # (T,) int64
    truncated: bool
    hit: bool  # True when read from the cache


class ClipCache:
    """``get(path)`` → :class:`CachedGif`, decoding and storing on a miss (see the module notes).

    Args:
        directory: cache folder (created); several datasets may share it.
        max_mb: budget for the folder's cached bytes, in MiB.
        read_kwargs: keyword arguments of ``read_gif`` (``max_pixels``, ``background``,
            ``max_frames``); part of the key.
        resize_hw: (H, W) the frames are resized to (``preprocessing.resize_hw``); part of the key.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_mb: float = 4096,
        read_kwargs: dict[str, Any] | None = None,
        resize_hw: tuple[int, int] = (128, 171),
    ) -> None:
        if max_mb < 0:
            raise ValueError(f"cache max_mb must be ≥ 0, got {max_mb}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_mb * 2**20)
        self.read_kwargs = dict(read_kwargs or {})
        self.resize_hw = (int(resize_hw[0]), int(resize_hw[1]))
        self.hits = 0
        self.misses = 0
        self.skipped = 0  # misses not stored because of the budget

    def key(self, path: str | Path) -> str:
        p = Path(path).resolve()
        st = p.stat()
        options = json.dumps(self.read_kwargs, sort_keys=True, default=str)
        text = f"{p}|{st.st_mtime_ns}|{st.st_size}|{options}|{self.resize_hw}"
        return hashlib.sha1(text.encode()).hexdigest()

    def size_bytes(self) -> int:
        """Bytes currently in the cache folder (``.npy`` files)."""
        total = 0
        with os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.endswith(".npy"):
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:  # removed meanwhile
                        pass
        return total

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.npy", self.directory / f"{key}.delays.npy"

    def _read(self, key: str) -> CachedGif | None:
        frames_path, delays_path = self._paths(key)
        if not frames_path.exists():
            return None
        try:
            delays_meta = np.load(delays_path)
            resized = np.load(frames_path, mmap_mode="r")
        except (OSError, ValueError) as e:  # unreadable entry: decode again and overwrite
            log.warning("clip cache entry %s is unreadable (%s); decoding again", frames_path, e)
            return None
        truncated = bool(delays_meta[-1])
        return CachedGif(resized, delays_meta[:-1].astype(np.int64), truncated, True)

    def _write_atomic(self, target: Path, array: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, path: str | Path) -> CachedGif:
        """Resized frames of ``path``; raises ``GifDecodeError`` like ``read_gif`` on a bad file."""
        key = self.key(path)
        cached = self._read(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        # every frame, resized as it is decoded (large frames: never held at full size)
        gif = read_gif(path, **self.read_kwargs, keep=_EveryFrameResized(self.resize_hw))
        resized = gif.frames  # (T, H, W, 3) uint8 = resize_frames(read_gif(path).frames)
        delays_meta = np.r_[gif.delays_ms.astype(np.int64), np.int64(gif.truncated)]
        if self.max_bytes > 0 and self.size_bytes() + resized.nbytes + 256 <= self.max_bytes:
            frames_path, delays_path = self._paths(key)
            self._write_atomic(
                delays_path, delays_meta
            )  # delays first: frames mark a complete entry
            self._write_atomic(frames_path, resized)
        else:
            self.skipped += 1
        return CachedGif(resized, gif.delays_ms.astype(np.int64), bool(gif.truncated), False)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "skipped": self.skipped}


class _EveryFrameResized:
    """``read_gif``'s keeper of a cache entry: every frame, resized (:class:`FrameResize` one
    by one as decoded, or :func:`resize_frames` in one batch: the same bytes)."""

    def __init__(self, resize_hw: tuple[int, int]) -> None:
        self.resize_hw, self.per_frame_from = resize_hw, KEEP_PER_FRAME_FROM
        self.resize_one = FrameResize(resize_hw)
        self.stop_after_last = False  # every frame is kept anyway

    def select(self, n_frames: int, delays_ms: np.ndarray) -> np.ndarray:
        return np.arange(n_frames)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.resize_one(frame)

    def batch(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        return resize_frames(frames, self.resize_hw, index=index)
