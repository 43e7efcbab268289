"""Resizing decoded frames, the first step of every backbone's preprocessing
(:mod:`gifemo.backbones.preprocessing`): uint8 bilinear with torch's kernel, on frames as
numpy arrays (:func:`resize_frames`, :func:`resize_frame` for one frame as it is decoded) or as
tensors on any device (:func:`resize_frames_tensor`). All of them give the bytes of the one
``interpolate`` call in :func:`_resize_nhwc` (on CUDA within 1 of them: float32, rounded)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_RESIZE_CHUNK = 32  # frames per interpolate call: bounds the temporary memory


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
        out[i : i + _RESIZE_CHUNK] = _resize_nhwc(x, size).numpy()
    return out


def resize_frame(frame: np.ndarray, size: tuple[int, int] = (128, 171)) -> np.ndarray:
    """One (H, W, C) uint8 frame → (*size, C): :func:`resize_frames` of it alone — the same
    bytes as resizing it with others (interpolate treats each frame on its own). Called once
    per decoded frame (``read_gif(keep=…)``), so it skips the checks and copies of
    :func:`resize_frames`: FFmpeg's plane is read where it lies (copied only when its rows are
    padded, as :func:`resize_frames` gathers) and the result is the interpolate output."""
    if frame.ndim != 3 or frame.shape[-1] not in (3, 4) or frame.dtype != np.uint8:
        _check_frames(frame[None])
    if frame.shape[:2] == tuple(size):
        return frame.copy()
    x = torch.from_numpy(frame if frame.flags.c_contiguous else np.ascontiguousarray(frame))
    return _resize_nhwc(x[None], (int(size[0]), int(size[1])))[0].numpy()  # (h, w, C)


def _check_frames(frames: np.ndarray | torch.Tensor) -> None:
    uint8 = frames.dtype in (np.uint8, torch.uint8)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or not uint8:
        raise ValueError(
            f"frames must be (T, H, W, 3) uint8 RGB or (T, H, W, 4) uint8 bgr0, got "
            f"{tuple(frames.shape)} {frames.dtype}"
        )


def _resize_nhwc(
    x: torch.Tensor, size: tuple[int, int], uint8_kernel: bool | None = None
) -> torch.Tensor:
    """The one resize call: (t, H, W, C) uint8 → (t, *size, C), on ``x``'s device.

    ``uint8_kernel`` (None: on a CPU): torch's uint8 kernel (fixed point). CUDA's bilinear kernel takes no uint8 (it
    dispatches floating types only), so there the same interpolation runs in float32 and is
    rounded to the nearest integer: within 1 of the CPU's bytes (``resize_check`` of the
    extraction bench measures how often they differ)."""
    x = x.permute(0, 3, 1, 2)  # (t, C, H, W), channels-last memory
    if uint8_kernel is None:
        uint8_kernel = x.device.type == "cpu"
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
