"""Clip transforms split across the loader's transfer: what a worker runs, what follows it.

A uint8 :class:`~gifemo.backbones.preprocessing.ClipTransform` cuts clips in the worker. Two
ways send less and do the rest after the transfer, with the same clips coming out:

- :class:`SharedCrops` (evaluation, ``extract.resize_on=worker``): each used frame resized and
  cropped once → :class:`FrameCrops`; clips are gathered from the crops after the transfer
  (clips overlap, so about half the bytes). The collate puts the crops' channels in the
  model's order as it copies them into shared memory (one copy per frame, not two).
- :class:`DeviceResize` (``extract.resize_on=device``): the used frames at their own size →
  :class:`UsedFrames`; the model's device resizes and cuts them (:meth:`DeviceResize.clips`).

Batching and the device side live in :mod:`gifemo.features.accumulate` and
:mod:`gifemo.features.forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gifemo.backbones.preprocessing import ClipTransform
from gifemo.backbones.resize import FrameResize, _check_frames, resize_frames, resize_frames_tensor
from gifemo.data.clips import ClipIndices, used_frames


@dataclass(frozen=True)
class UsedFrames:
    """What a loader worker sends when the resize runs on the model's device: a GIF's decoded
    frames, which of them its clips use, and how to cut them."""

    frames: np.ndarray  # (T, H, W, C) uint8 decoded frames (C = 3 RGB, 4 bgr0), not copied
    used: np.ndarray  # (U,) int64 frames the clips use, ascending
    clips: np.ndarray  # (N, ℓ) int64 indices into ``used``
    windows: np.ndarray  # (N, 3) int64 rows (top, left, flip) of ClipTransform.windows


class _WorkerHalf:
    """What a loader worker runs of a uint8 :class:`ClipTransform` whose rest runs after the
    transfer; it describes itself as the transform (the same clips come out)."""

    needs = "a uint8 ClipTransform (normalised on the device)"

    @staticmethod
    def accepts(transform: ClipTransform) -> bool:
        return transform.output == "uint8"

    def __init__(self, transform: ClipTransform) -> None:
        if not self.accepts(transform):
            raise ValueError(f"{type(self).__name__} needs {self.needs}, got {transform!r}")
        self.transform = transform
        self.preprocessing = transform.preprocessing

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"

    def describe(self) -> dict[str, Any]:
        return self.transform.describe()


class DeviceResize(_WorkerHalf):
    """The worker half of a uint8 :class:`ClipTransform` whose resize and cut run on the
    model's device: frames + clip indices → :class:`UsedFrames` (the crop windows drawn from
    ``generator`` as the transform draws them). :meth:`clips` is the device half,
    :func:`resize_frames_tensor` + :meth:`ClipTransform.cut_tensor`."""

    def __call__(
        self, frames: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> UsedFrames:
        _check_frames(frames)
        used, local = used_frames(clips, len(frames))
        windows = self.transform.windows(len(local.frames), generator)
        return UsedFrames(frames, used.astype(np.int64), local.frames, windows)

    def clips(
        self, frames: torch.Tensor, clip_frames: torch.Tensor, windows: torch.Tensor
    ) -> torch.Tensor:
        """(U, H, W, C) uint8 used frames on the device → (N, 3, ℓ, crop, crop) uint8 clips."""
        resized = resize_frames_tensor(frames, self.transform.resize_hw)
        return self.transform.cut_tensor(resized, clip_frames, windows)


@dataclass(frozen=True)
class FrameCrops:
    """What a loader worker sends when every clip of a GIF has the same crop window (the
    evaluation transform): each used frame resized and cropped once, and which of them each
    clip takes — clips overlap (16 frames, stride 8), so this is about half the bytes of the
    clips themselves. The crops keep the frames' own channels (``bgr0``: B, G, R, X);
    ``channels`` says which of them, in which order, the model takes
    (:meth:`ClipTransform.channels`): the loader's collate puts them in that order as it
    copies them into its batch (:func:`channels_in_order`,
    :func:`gifemo.features.accumulate.collate_crops`)."""

    crops: np.ndarray  # (U, crop, crop, C) uint8, C = 3 (RGB) or 4 (bgr0); may be a view
    clips: np.ndarray  # (N, ℓ) int64 indices into ``crops``
    channels: tuple[int, ...]  # 3 indices into the crops' last axis, the model's order


def channels_in_order(
    crops: np.ndarray, channels: Sequence[int], out: np.ndarray | None = None
) -> np.ndarray:
    """(U, h, w, C) uint8 → (U, h, w, 3): ``crops[..., channels]``, written into ``out`` when
    given (else a new contiguous array)."""
    channels = [int(c) for c in channels]
    if out is None:
        out = np.empty((*crops.shape[:-1], 3), np.uint8)
    if crops.shape[-1] == 3 and channels == [0, 1, 2]:
        out[...] = crops
        return out
    for k, ch in enumerate(channels):
        # one channel at a time: numpy's strided copy is ~5x faster than a 3-wide inner loop
        out[..., k] = crops[..., ch]
    return out


class SharedCrops(_WorkerHalf):
    """The worker half of an evaluation uint8 :class:`ClipTransform` whose clips are gathered
    from per-frame crops after the transfer (``resize_on=worker``): frames + clip indices →
    :class:`FrameCrops`. ``clips = crops[clip_frames]`` (then NCTHW) equals the transform's
    clips byte for byte."""

    needs = "an evaluation uint8 ClipTransform (one crop window for every clip)"

    @staticmethod
    def accepts(transform: ClipTransform) -> bool:
        return transform.output == "uint8" and not transform.train

    def __init__(self, transform: ClipTransform) -> None:
        super().__init__(transform)
        self._resize_one = FrameResize(transform.resize_hw)  # keep_frame's buffer

    def __call__(
        self, frames: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> FrameCrops:
        _check_frames(frames)
        used, local = used_frames(clips, len(frames))
        return self.crop(resize_frames(frames, self.transform.resize_hw, index=used), local)

    def crop(self, resized: np.ndarray, local: ClipIndices) -> FrameCrops:
        """Used frames already resized (U, H, W, 3|4) and the clips' indices into them →
        :class:`FrameCrops` (the crop windows are views of ``resized``)."""
        (top, left), c = self.preprocessing.centre, self.transform.crop
        channels = tuple(self.transform.channels(resized.shape[-1]))
        return FrameCrops(resized[:, top : top + c, left : left + c], local.frames, channels)

    def keep_frame(self, frame: np.ndarray) -> np.ndarray:
        """What decoding keeps of one frame the clips use (``read_gif(keep=…)``): its crop
        window, (crop, crop, C) in the frame's own channels (a view of the resized frame in
        a buffer reused by the next call, :class:`FrameResize`; the reader copies it) —
        resized and cropped while the frame is still in the cache."""
        (top, left), c = self.preprocessing.centre, self.transform.crop
        return self._resize_one(frame)[top : top + c, left : left + c]

    def keep_frames(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        """:meth:`keep_frame` of ``frames[index]``, stacked, in one batch (the same bytes)."""
        (top, left), c = self.preprocessing.centre, self.transform.crop
        resized = resize_frames(frames, self.transform.resize_hw, index=index)
        return resized[:, top : top + c, left : left + c]

    def from_kept(
        self, kept: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> FrameCrops:
        """:meth:`keep_frame` of the used frames + the clips' indices into them → what
        :meth:`__call__` gives (evaluation draws nothing from ``generator``)."""
        c = self.transform.crop
        if kept.ndim != 4 or kept.shape[1:] not in ((c, c, 3), (c, c, 4)) or kept.dtype != np.uint8:
            raise ValueError(f"kept crops must be (U, {c}, {c}, 3|4) uint8, got {kept.shape}")
        return FrameCrops(kept, clips.frames, tuple(self.transform.channels(kept.shape[-1])))


def keeps_used(wire: Any) -> bool:
    """Whether a loader worker can decode with ``read_gif(keep=…)`` for ``wire`` (the
    dataset's ``keep_used``): a :class:`ClipTransform` that does not override how it cuts, or
    :class:`SharedCrops` — each keeps a resized (or cropped) frame per used frame."""
    return plain_cut(wire) or isinstance(wire, SharedCrops)


def worker_read_kwargs(read_kwargs: dict[str, Any] | None, wire: Any) -> dict[str, Any]:
    """``read_kwargs`` plus FFmpeg's own ``bgr0`` layout where the transform takes it (a
    :class:`ClipTransform` that does not override how it cuts, or :class:`DeviceResize`: the
    same clips, no RGB conversion)."""
    out = dict(read_kwargs or {})
    if plain_cut(wire) or isinstance(wire, (DeviceResize, SharedCrops)):
        out.setdefault("pixel_format", "bgr0")
    return out


def plain_cut(wire: Any) -> bool:
    """A :class:`ClipTransform` that does not override how it cuts."""
    return isinstance(wire, ClipTransform) and all(
        getattr(type(wire), m) is getattr(ClipTransform, m) for m in ("__call__", "from_resized")
    )
