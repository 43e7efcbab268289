"""Resizing decoded frames, the first step of every backbone's preprocessing
(:mod:`gifemo.backbones.preprocessing`): uint8 bilinear with torch's kernel, on frames as
numpy arrays (:func:`resize_frames`, :func:`resize_frame` for one frame as it is decoded) or as
tensors on any device (:func:`resize_frames_tensor`), or one frame after another into a
reused buffer (:class:`FrameResize`). All of them give the bytes of the one ``interpolate``
call in :func:`_resize_nhwc` (on CUDA within 1 of them: float32, rounded)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_RESIZE_CHUNK = 32  # frames per interpolate call: bounds the temporary memory
_UINT8 = np.dtype(np.uint8)
# the operator ``interpolate(mode="bilinear")`` calls, here with its ``out=`` (FrameResize):
# interpolate's own argument handling costs ~10 µs a call, torch.ops' dispatch about as much
_upsample_bilinear2d: Any = torch._C._nn.upsample_bilinear2d  # its stub lacks out=


def resize_frames(
    frames: np.ndarray, size: tuple[int, int] = (128, 171), index: np.ndarray | None = None
) -> np.ndarray:
    """(T, H, W, C) uint8 → (T, *size, C) uint8, bilinear; C = 3 (RGB) or 4 (``bgr0``).
    ``index``: resize ``frames[index]`` instead, without copying them first (a run of
    consecutive frames is a view; otherwise each chunk is gathered on its own).

    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False)`` on uint8: half-pixel centres, source coordinates clamped at the border,
    no antialiasing when shrinking — the semantics of OpenCV's ``cv::resize`` INTER_LINEAR,
    which C3D's Caffe data layer used, and of torchvision's video presets (``antialias=False``).
    Results are rounded to the nearest integer (torch's uint8 kernel is fixed-point: within 1 of
    the exactly rounded value). Channels are resized independently, so the colour channels of
    a 4-channel frame equal those of its 3-channel copy (torch's CPU kernel is faster on 4).
    """
    _check_frames(frames)
    size = (int(size[0]), int(size[1]))
    if index is not None:
        index = np.asarray(index, np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(frames)):
            raise ValueError(f"index reaches frame {index.max()}, but there are {len(frames)}")
        if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            frames, index = frames[index[0] : index[0] + len(index)], None  # a view
    t = frames.shape[0] if index is None else len(index)
    out = np.empty((t, *size, frames.shape[-1]), np.uint8)
    for i in range(0, t, _RESIZE_CHUNK):
        part = (
            frames[i : i + _RESIZE_CHUNK] if index is None else frames[index[i : i + _RESIZE_CHUNK]]
        )
        if frames.shape[1:3] == size:
            out[i : i + _RESIZE_CHUNK] = part
            continue
        x = torch.from_numpy(np.ascontiguousarray(part))
        _resize_nhwc(x, size, out=torch.from_numpy(out[i : i + _RESIZE_CHUNK]))  # in place
    return out


def resize_frame(frame: np.ndarray, size: tuple[int, int] = (128, 171)) -> np.ndarray:
    """One (H, W, C) uint8 frame → a new (*size, C) array: :func:`resize_frames` of it alone
    — the same bytes as resizing it with others (interpolate treats each frame on its own).
    Frames decoded one after another go through :class:`FrameResize`, which this copies."""
    return FrameResize(size)(frame).copy()


class FrameResize:
    """:func:`resize_frame` for frames that come one after another (a ``read_gif`` keeper's
    frames, as FFmpeg decodes them): the same bytes, written into one buffer of its own that
    every call reuses — the result is valid until the next call (the reader copies what it
    keeps). It calls the operator behind ``interpolate`` (``upsample_bilinear2d``) with that
    buffer as its output, which skips ``interpolate``'s argument handling and a fresh output
    per frame (91 against 101 µs per 480×270 frame, medians of 4,000 interleaved calls).
    Each thread has its own buffer (a transform shared by threads stays correct); a pickled
    copy (a DataLoader worker's) starts without one."""

    def __init__(self, size: tuple[int, int] = (128, 171)) -> None:
        self.size = (int(size[0]), int(size[1]))
        self._mine = threading.local()  # .out: this thread's (1, *size, C) uint8 buffer

    def __getstate__(self) -> dict[str, object]:
        return {"size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.size, self._mine = state["size"], threading.local()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One (H, W, C) uint8 frame → (*size, C), a view of the buffer (of ``frame`` itself
        when it is already that size)."""
        shape = frame.shape
        if len(shape) != 3 or shape[2] not in (3, 4) or frame.dtype != _UINT8:
            _check_frames(frame[None])
        if shape[:2] == self.size:
            return frame
        mine = self._mine
        if getattr(mine, "channels", 0) != shape[2]:  # (1, *size, C): as NCHW, channels last
            mine.out = torch.empty((1, *self.size, shape[2]), dtype=torch.uint8)
            mine.nchw, mine.view, mine.channels = (
                mine.out.permute(0, 3, 1, 2),
                mine.out[0].numpy(),
                shape[2],
            )
        x = torch.from_numpy(frame if frame.flags.c_contiguous else np.ascontiguousarray(frame))
        _upsample_bilinear2d(x[None].permute(0, 3, 1, 2), self.size, False, out=mine.nchw)
        return mine.view


def _check_frames(frames: np.ndarray | torch.Tensor) -> None:
    uint8 = frames.dtype in (np.uint8, torch.uint8)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or not uint8:
        raise ValueError(
            f"frames must be (T, H, W, 3) uint8 RGB or (T, H, W, 4) uint8 bgr0, got "
            f"{tuple(frames.shape)} {frames.dtype}"
        )


def _resize_nhwc(
    x: torch.Tensor,
    size: tuple[int, int],
    uint8_kernel: bool | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one resize call: (t, H, W, C) uint8 → (t, *size, C), on ``x``'s device; with the
    uint8 kernel, written into ``out`` ((t, *size, C) contiguous) when given — the operator
    ``interpolate`` calls, without the copy out of a fresh result.

    ``uint8_kernel`` (None: on a CPU): torch's uint8 kernel (fixed point). CUDA's bilinear kernel takes no uint8 (it
    dispatches floating types only), so there the same interpolation runs in float32 and is
    rounded to the nearest integer: within 1 of the CPU's bytes (``resize_check`` of the
    extraction bench measures how often they differ)."""
    x = x.permute(0, 3, 1, 2)  # (t, C, H, W), channels-last memory
    if uint8_kernel is None:
        uint8_kernel = x.device.type == "cpu"
    if uint8_kernel and out is not None:
        _upsample_bilinear2d(x, size, False, out=out.permute(0, 3, 1, 2))
        return out
    if uint8_kernel:
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    else:
        y = F.interpolate(
            x.float(), size=size, mode="bilinear", align_corners=False, antialias=False
        )
        y = y.round_().clamp_(0, 255).to(torch.uint8)
    return y.permute(0, 2, 3, 1)


def resize_frames_tensor(frames: torch.Tensor, size: tuple[int, int] = (128, 171)) -> torch.Tensor:
    """:func:`resize_frames` of a (T, H, W, C) uint8 tensor on any device, as a (T, *size, C)
    tensor there: the same ``interpolate`` call on the same chunks of frames (on a CPU it is
    :func:`resize_frames` itself, the same bytes; on CUDA float32 rounded to the nearest
    integer, within 1 of the CPU's bytes)."""
    _check_frames(frames)
    size = (int(size[0]), int(size[1]))
    if frames.device.type == "cpu":  # numpy's copy out of interpolate's layout is the fast one
        return torch.from_numpy(resize_frames(frames.numpy(), size))
    if frames.shape[1:3] == size:
        return frames.contiguous()
    parts = [
        _resize_nhwc(frames[i : i + _RESIZE_CHUNK].contiguous(), size)
        for i in range(0, frames.shape[0], _RESIZE_CHUNK)
    ]
    if not parts:
        return frames.new_empty((0, *size, frames.shape[-1]))
    return torch.cat(parts) if len(parts) != 1 else parts[0].contiguous()
