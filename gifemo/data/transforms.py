"""C3D's own preprocessing (facebook/C3D feature extractor; DESIGN §3), clip by clip.

For each clip of 16 frames (indices from a sampler, :mod:`gifemo.data.clips`):

1. every decoded frame (H, W, 3) RGB is resized to 128×171 (H×W) — once per frame, since
   clips overlap — by :func:`resize_frames`;
2. the 16 frames are gathered, channels reversed to BGR, and the Sports-1M mean subtracted:
   per channel (``mean_bgr``, default :data:`SPORTS1M_MEAN_BGR`) or a full mean cube
   (``mean_cube``, a ``.npy`` file, see :func:`load_mean_cube`), values stay in 0–255 (no /255);
3. a 112×112 window is cut: rows 8:120, cols 29:141 at evaluation (C3D's centre crop), a
   uniformly random window per clip at training, plus a horizontal flip with probability ½
   (``flip=True``), as C3D's Caffe data layer mirrors after subtracting the mean.

The mean is subtracted at the full 128×171 positions, i.e. before cropping; cropping the
cube with the same window as the clip is the identical computation and is what the code does.
Output: ``(N, 3, 16, 112, 112)`` float32, ``(N, C, T, H, W)``.

``output="uint8"`` stops before the mean: the cropped, flipped BGR clips stay uint8 (a quarter
of the bytes through DataLoader workers, shared memory, pinning and the host-to-device copy),
and :func:`normalize_clips` subtracts the per-channel mean wherever the clips are — on the GPU,
inside the model step. Converting uint8 to float32 is exact and the subtraction is the same
float32 operation, so both routes give bit-identical clips. (A mean cube's window depends on
each clip's crop, so ``uint8`` takes the per-channel mean only.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gifemo.data.clips import CLIP_LEN, ClipIndices

RESIZE_HW = (128, 171)
CROP = 112
CENTRE_OFFSET = ((RESIZE_HW[0] - CROP) // 2, (RESIZE_HW[1] - CROP) // 2)  # (8, 29)
# Per-channel average of the Sports-1M mean cube (sports1m_train16_128_mean), B, G, R, as
# used by C3D ports that replace the cube by three numbers. Pass mean_cube= for the cube.
SPORTS1M_MEAN_BGR: tuple[float, float, float] = (90.25164795, 97.65701294, 101.4083252)
_RESIZE_CHUNK = 32  # frames per interpolate call: bounds the temporary memory


def resize_frames(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 → (T, 128, 171, 3) uint8, bilinear.

    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False)`` on uint8: half-pixel centres, source coordinates clamped at the border,
    no antialiasing when shrinking — the semantics of OpenCV's ``cv::resize`` INTER_LINEAR,
    which C3D's Caffe data layer used. Results are rounded to the nearest integer (torch's
    uint8 kernel is fixed-point: within 1 of the exactly rounded value).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t = frames.shape[0]
    out = np.empty((t, *RESIZE_HW, 3), np.uint8)
    if frames.shape[1:3] == RESIZE_HW:
        out[...] = frames
        return out
    for i in range(0, t, _RESIZE_CHUNK):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + _RESIZE_CHUNK]))
        x = x.permute(0, 3, 1, 2)  # (t, 3, H, W), channels-last memory
        y = F.interpolate(x, size=RESIZE_HW, mode="bilinear", align_corners=False, antialias=False)
        out[i : i + _RESIZE_CHUNK] = y.permute(0, 2, 3, 1).numpy()
    return out


def normalize_clips(
    clips: torch.Tensor, mean_bgr: tuple[float, float, float] | torch.Tensor = SPORTS1M_MEAN_BGR
) -> torch.Tensor:
    """uint8 clips (N, 3, 16, 112, 112) from ``C3DTransform(output="uint8")`` → float32 minus
    the per-channel mean, on the clips' device; float clips (already normalised) pass unchanged."""
    if clips.dtype != torch.uint8:
        return clips
    mean = torch.as_tensor(mean_bgr, dtype=torch.float32, device=clips.device).reshape(3, 1, 1, 1)
    return clips.to(torch.float32) - mean


def load_mean_cube(path: str | Path) -> np.ndarray:
    """A Sports-1M mean cube from ``.npy`` as (16, 128, 171, 3) float32, channels B, G, R.

    Accepted layouts: (3, 16, 128, 171) = (C, T, H, W), the Caffe blob's own layout (also with
    a leading 1), or (16, 128, 171, 3) = (T, H, W, C). Channels are BGR in both, as in C3D's
    ``sports1m_train16_128_mean.binaryproto``. Loaded with ``allow_pickle=False``.
    """
    cube = np.load(path, allow_pickle=False)
    if cube.ndim == 5 and cube.shape[0] == 1:
        cube = cube[0]
    if cube.shape == (3, CLIP_LEN, *RESIZE_HW):
        cube = cube.transpose(1, 2, 3, 0)
    elif cube.shape != (CLIP_LEN, *RESIZE_HW, 3):
        raise ValueError(
            f"{path}: mean cube has shape {cube.shape}; expected (3, 16, 128, 171) "
            "(C, T, H, W) or (16, 128, 171, 3) (T, H, W, C), channels BGR"
        )
    return np.ascontiguousarray(cube, dtype=np.float32)


class C3DTransform:
    """Frames + clip indices → C3D input clips ``(N, 3, 16, 112, 112)`` float32 (module notes).

    Args:
        train: random 112 crop per clip (and flips) instead of the centre crop.
        flip: at training, mirror each clip horizontally with probability ½.
        mean_bgr: per-channel mean subtracted from B, G, R when no cube is given.
        mean_cube: path of a ``.npy`` mean cube (see :func:`load_mean_cube`); overrides mean_bgr.
        output: ``"float32"`` (mean subtracted here) or ``"uint8"`` (mean left to
            :func:`normalize_clips`; per-channel mean only).
    """

    def __init__(
        self,
        *,
        train: bool = False,
        flip: bool = True,
        mean_bgr: tuple[float, float, float] = SPORTS1M_MEAN_BGR,
        mean_cube: str | None = None,
        output: str = "float32",
    ):
        if output not in ("float32", "uint8"):
            raise ValueError(f"C3DTransform: output must be 'float32' or 'uint8', got {output!r}")
        if output == "uint8" and mean_cube:
            raise ValueError(
                "C3DTransform: output='uint8' leaves only the per-channel mean to subtract later; "
                f"the mean cube {mean_cube} depends on each clip's crop (use output='float32')"
            )
        self.output = output
        self.train = train
        self.flip = flip
        self.mean_bgr = tuple(float(m) for m in mean_bgr)
        self.mean_cube = mean_cube
        if len(self.mean_bgr) != 3:
            raise ValueError(f"mean_bgr needs 3 values (B, G, R), got {mean_bgr}")
        self._cube = load_mean_cube(mean_cube) if mean_cube else None  # (16, 128, 171, 3)

    def __repr__(self) -> str:
        return (
            f"C3DTransform(train={self.train}, flip={self.flip}, mean_bgr={self.mean_bgr}, "
            f"mean_cube={self.mean_cube!r}, output={self.output!r})"
        )

    def __call__(
        self, frames: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB frames → (N, 3, 16, 112, 112); only the frames used are resized."""
        used, inverse = np.unique(clips.frames, return_inverse=True)
        if used.size and (used[0] < 0 or used[-1] >= len(frames)):
            raise ValueError(f"clip indices reach frame {used[-1]}, but there are {len(frames)}")
        remapped = ClipIndices(clips.starts, inverse.reshape(clips.frames.shape).astype(np.int64))
        return self.from_resized(resize_frames(frames[used]), remapped, generator)

    def windows(self, n_clips: int, generator: torch.Generator | None = None) -> np.ndarray:
        """(N, 3) int64 rows (top, left, flip) of each clip's crop window."""
        if not self.train:
            return np.tile(np.array([*CENTRE_OFFSET, 0], np.int64), (n_clips, 1))
        top = torch.randint(RESIZE_HW[0] - CROP + 1, (n_clips,), generator=generator)
        left = torch.randint(RESIZE_HW[1] - CROP + 1, (n_clips,), generator=generator)
        flip = torch.randint(2, (n_clips,), generator=generator) * int(self.flip)
        return torch.stack([top, left, flip], 1).numpy().astype(np.int64)

    def from_resized(
        self, resized: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(T, 128, 171, 3) uint8 RGB from :func:`resize_frames` → (N, 3, 16, 112, 112) float32
        (uint8 BGR before the mean with ``output="uint8"``)."""
        if resized.shape[1:] != (*RESIZE_HW, 3) or resized.dtype != np.uint8:
            raise ValueError(
                f"resized frames must be (T, 128, 171, 3) uint8, got {resized.shape} {resized.dtype}"
            )
        if clips.frames.ndim != 2 or clips.frames.shape[1] != CLIP_LEN:
            raise ValueError(f"clip indices must be (N, 16), got {clips.frames.shape}")
        n = clips.frames.shape[0]
        if n and (clips.frames.min() < 0 or clips.frames.max() >= len(resized)):
            raise ValueError(
                f"clip indices reach frame {clips.frames.max()}, but there are {len(resized)}"
            )
        if self._cube is not None:
            mean = self._cube.transpose(3, 0, 1, 2)  # (3, 16, 128, 171) BGR
        else:
            mean = np.broadcast_to(
                np.asarray(self.mean_bgr, np.float32).reshape(3, 1, 1, 1), (3, CLIP_LEN, *RESIZE_HW)
            )
        raw = self.output == "uint8"
        out = np.empty((n, 3, CLIP_LEN, CROP, CROP), np.uint8 if raw else np.float32)  # NCTHW
        for i, (top, left, flip) in enumerate(self.windows(n, generator).tolist()):
            rows, cols = slice(top, top + CROP), slice(left, left + CROP)
            # gather the clip's 16 cropped frames (uint8; from a memory-mapped cache entry only
            # these rows are read), then one pass through strided views: RGB → planar BGR,
            # flip, minus the mean window (flipped alike, since flip(x − m) = flip(x) − flip(m))
            x = resized[clips.frames[i], rows, cols].transpose(3, 0, 1, 2)[::-1]  # (3,16,112,112)
            m = mean[:, :, rows, cols]
            if flip:
                x, m = x[..., ::-1], m[..., ::-1]
            if raw:
                out[i] = x
            else:
                np.subtract(x, m, out=out[i])
        return torch.from_numpy(out)
