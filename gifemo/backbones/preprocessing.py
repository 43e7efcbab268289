"""The preprocessing that belongs to a backbone's weights: decoded frames + clip indices → input.

torchvision pairs each weights enum with its ``transforms``; here every backbone carries a
:class:`Preprocessing` (``backbone.preprocessing``), a frozen description of what its weights
were trained on, and ``preprocessing.transform(train=...)`` builds the :class:`ClipTransform`
that turns a GIF's decoded frames ``(T, H, W, 3)`` uint8 RGB and a sampler's
:class:`~gifemo.data.clips.ClipIndices` ``(N, ℓ)`` into clips ``(N, 3, ℓ, crop, crop)``:

1. every frame a clip uses is resized to ``resize_hw`` (H×W, bilinear, no antialiasing) — once
   per frame, since clips overlap — by :func:`resize_frames`;
2. each clip's ℓ frames are gathered and a ``crop``×``crop`` window is cut: at ``centre``
   (top, left) for evaluation, a uniformly random window per clip at training, plus a horizontal
   flip with probability ½ (``flip=True``);
3. channels are put in ``channel_order`` ("RGB", or "BGR" = reversed), and values normalised

       x ↦ (x / divisor − mean_c) / std_c          (c the channel, in channel_order)

   — C3D (Sports-1M, Caffe): BGR, divisor 1, std 1, minus the Sports-1M mean, values stay in
   0–255; torchvision's Kinetics-400 video models: RGB, divisor 255, their mean/std.

``output="uint8"`` stops before step 3's arithmetic: the cropped, flipped, channel-ordered clips
stay uint8 (a quarter of the bytes through DataLoader workers, shared memory, pinning and the
host-to-device copy) and :meth:`Preprocessing.normalize` finishes them wherever they are — on
the GPU, inside the model step. Both routes give bit-identical clips: the float path of a
transform is the same float32 operations (pure mean subtraction in one numpy pass for C3D; for
other presets literally :meth:`Preprocessing.normalize` of the uint8 clips).

C3D may use a full mean cube instead of per-channel means (``mean_cube``, a ``.npy`` file, see
:func:`load_mean_cube`); it is subtracted at the full ``resize_hw`` positions, i.e. before
cropping — cutting the cube with the same window as the clip is the identical computation.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gifemo.backbones.resize import FrameResize, resize_frames
from gifemo.data.clips import ClipIndices, used_frames

CHANNEL_ORDERS = ("RGB", "BGR")


def load_mean_cube(path: str | Path, resize_hw: tuple[int, int] = (128, 171)) -> np.ndarray:
    """A C3D mean cube from ``.npy`` as (16, H, W, 3) float32, channels B, G, R.

    Accepted layouts: (3, 16, H, W) = (C, T, H, W), the Caffe blob's own layout (also with a
    leading 1), or (16, H, W, 3) = (T, H, W, C); (H, W) = ``resize_hw``. Channels are BGR in
    both, as in C3D's ``sports1m_train16_128_mean.binaryproto``. Loaded with
    ``allow_pickle=False``.
    """
    cube = np.load(path, allow_pickle=False)
    if cube.ndim == 5 and cube.shape[0] == 1:
        cube = cube[0]
    if cube.shape == (3, 16, *resize_hw):
        cube = cube.transpose(1, 2, 3, 0)
    elif cube.shape != (16, *resize_hw, 3):
        h, w = resize_hw
        raise ValueError(
            f"{path}: mean cube has shape {cube.shape}; expected (3, 16, {h}, {w}) "
            f"(C, T, H, W) or (16, {h}, {w}, 3) (T, H, W, C), channels BGR"
        )
    return np.ascontiguousarray(cube, dtype=np.float32)


def _sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def channel_constants(values: tuple[float, ...], device: str) -> torch.Tensor:
    """(3, 1, 1, 1) float32 per-channel ``values`` on ``device``, made once per device.

    Made per call, ``torch.tensor(..., device="cuda")`` is a copy from pageable host memory,
    which synchronises the CUDA stream on every batch; the cached tensor is read-only by use.
    """
    return torch.tensor(values, dtype=torch.float32, device=device).reshape(3, 1, 1, 1)


@dataclass(frozen=True)
class Preprocessing:
    """What a backbone's weights expect of their input (see the module notes).

    Args:
        name: a label for the preset (recorded), e.g. ``"c3d-sports1m"``, ``"kinetics400"``.
        resize_hw: (H, W) every frame is resized to.
        crop: side of the square crop.
        centre: (top, left) of the evaluation crop in the resized frame.
        channel_order: ``"RGB"`` (the decoder's) or ``"BGR"``.
        divisor: values are divided by it before the mean (1: keep 0–255; 255: [0, 1]).
        mean, std: per channel, in ``channel_order``, on the divided scale.
        mean_cube: path of a C3D mean cube ``.npy`` (per-pixel means, BGR, divisor 1); replaces
            ``mean``; only with std 1 and float32 output.
    """

    name: str
    resize_hw: tuple[int, int]
    crop: int
    centre: tuple[int, int]
    channel_order: str
    divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mean_cube: str | None = None
    _cube: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        fix("resize_hw", (int(self.resize_hw[0]), int(self.resize_hw[1])))
        fix("centre", (int(self.centre[0]), int(self.centre[1])))
        fix("mean", tuple(float(m) for m in self.mean))
        fix("std", tuple(float(s) for s in self.std))
        fix("divisor", float(self.divisor))
        fix("crop", int(self.crop))
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values, got {self.mean} and {self.std}")
        if min(self.std) <= 0 or self.divisor <= 0:
            raise ValueError(f"std and divisor must be > 0, got {self.std}, {self.divisor}")
        (h, w), (top, left), c = self.resize_hw, self.centre, self.crop
        if not (0 <= top <= h - c and 0 <= left <= w - c):
            raise ValueError(
                f"a {c}×{c} crop at {self.centre} does not fit frames resized to {self.resize_hw}"
            )
        if self.mean_cube:
            if self.std != (1.0, 1.0, 1.0) or self.divisor != 1.0:
                raise ValueError("a mean cube is for C3D's preprocessing (divisor 1, std 1)")
            fix("mean_cube", str(self.mean_cube))
            fix("_cube", load_mean_cube(self.mean_cube, self.resize_hw))  # (16, H, W, 3) BGR

    @property
    def subtract_only(self) -> bool:
        """True when normalising is x − mean alone (C3D): no division anywhere."""
        return self.divisor == 1.0 and self.std == (1.0, 1.0, 1.0)

    def transform(
        self, *, train: bool = False, flip: bool = True, output: str = "float32"
    ) -> ClipTransform:
        """The frames → clips transform of these weights (random crops and flips if ``train``)."""
        return ClipTransform(self, train=train, flip=flip, output=output)

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips (N, 3, ℓ, crop, crop) from ``output="uint8"`` → float32, normalised on
        the clips' device; float clips (already normalised) pass unchanged."""
        if clips.dtype != torch.uint8:
            return clips
        if self._cube is not None:
            raise ValueError("uint8 clips cannot take a mean cube (it depends on each crop)")
        dev = str(clips.device)
        x = clips.to(torch.float32)
        if self.divisor != 1.0:
            x = x / self.divisor
        x = x - channel_constants(tuple(self.mean), dev)
        if self.std != (1.0, 1.0, 1.0):
            x = x / channel_constants(tuple(self.std), dev)
        return x

    def describe(self) -> dict[str, Any]:
        """What a feature store records (and fingerprints) about the preprocessing."""
        out: dict[str, Any] = {
            "name": self.name,
            "resize_hw": list(self.resize_hw),
            "resize": "bilinear, align_corners=False, no antialias (uint8)",
            "crop": self.crop,
            "centre": list(self.centre),
            "channel_order": self.channel_order,
            "divisor": self.divisor,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.mean_cube:  # the cube's content, not just its path, decides the features
            out["mean_cube"] = self.mean_cube
            out["mean_cube_sha256"] = _sha256_of(self.mean_cube)
        return out


class ClipTransform:
    """Frames + clip indices → clips ``(N, 3, ℓ, crop, crop)`` for one :class:`Preprocessing`.

    Args:
        preprocessing: the weights' preprocessing.
        train: a random crop per clip (and flips) instead of the centre crop.
        flip: at training, mirror each clip horizontally with probability ½.
        output: ``"float32"`` (normalised here) or ``"uint8"`` (normalised later by
            ``preprocessing.normalize``; not with a mean cube).
    """

    def __init__(
        self,
        preprocessing: Preprocessing,
        *,
        train: bool = False,
        flip: bool = True,
        output: str = "float32",
    ) -> None:
        name = type(self).__name__
        if output not in ("float32", "uint8"):
            raise ValueError(f"{name}: output must be 'float32' or 'uint8', got {output!r}")
        if output == "uint8" and preprocessing.mean_cube:
            raise ValueError(
                f"{name}: output='uint8' leaves only the per-channel mean to subtract later; "
                f"the mean cube {preprocessing.mean_cube} depends on each clip's crop "
                "(use output='float32')"
            )
        self.preprocessing = preprocessing
        self.train, self.flip, self.output = bool(train), bool(flip), output
        self._resize_one = FrameResize(preprocessing.resize_hw)  # keep_frame's buffer

    @property
    def resize_hw(self) -> tuple[int, int]:
        return self.preprocessing.resize_hw

    @property
    def crop(self) -> int:
        return self.preprocessing.crop

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.preprocessing.name}, train={self.train}, "
            f"flip={self.flip}, output={self.output!r})"
        )

    def describe(self) -> dict[str, Any]:
        """The preprocessing's record plus this transform's own settings."""
        return {
            **self.preprocessing.describe(),
            "train": self.train,
            "flip": self.flip,
            "output": self.output,
        }

    def empty(self, clip_len: int = 16) -> torch.Tensor:
        """No clips: a (0, 3, clip_len, crop, crop) tensor of the output dtype."""
        dtype = torch.uint8 if self.output == "uint8" else torch.float32
        return torch.zeros((0, 3, clip_len, self.crop, self.crop), dtype=dtype)

    def __call__(
        self, frames: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB (or (T, H, W, 4) ``bgr0``) frames → (N, 3, ℓ, crop, crop);
        only the frames used are resized."""
        used, remapped = used_frames(clips, len(frames))
        resized = resize_frames(frames, self.resize_hw, index=used)
        return self.from_resized(resized, remapped, generator)

    def keep_frame(self, frame: np.ndarray) -> np.ndarray:
        """What decoding keeps of one frame the clips use (``read_gif(keep=…)``, the dataset's
        ``keep_used``): the frame resized (:func:`resize_frame`'s bytes, in a buffer reused
        by the next call: :class:`FrameResize`; the reader copies it); :meth:`from_kept` cuts
        them."""
        return self._resize_one(frame)

    def keep_frames(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray:
        """:meth:`keep_frame` of ``frames[index]``, stacked, in one batch (the same bytes)."""
        return resize_frames(frames, self.resize_hw, index=index)

    def from_kept(
        self, kept: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:meth:`keep_frame` of the used frames + the clips' indices into them → the clips of
        :meth:`__call__` (it is :meth:`from_resized`)."""
        return self.from_resized(kept, clips, generator)

    def channels(self, n_channels: int) -> list[int]:
        """Indices of ``channel_order`` in frames of ``n_channels`` (3: RGB; 4: B, G, R, X)."""
        rgb = [2, 1, 0] if n_channels == 4 else [0, 1, 2]
        return rgb if self.preprocessing.channel_order == "RGB" else rgb[::-1]

    def cut_tensor(
        self, resized: torch.Tensor, clip_frames: torch.Tensor, windows: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`from_resized` (``output="uint8"``) of frames already on a device:
        ``resized`` (U, H, W, C) uint8 at ``resize_hw`` (C = 3 RGB or 4 ``bgr0``),
        ``clip_frames`` (N, ℓ) indices into it, ``windows`` (N, 3) rows (top, left, flip) of
        :meth:`windows` → (N, 3, ℓ, crop, crop) uint8, the same values. On a CPU this is
        :meth:`from_resized` itself (numpy's strided gathers are several times faster there
        than torch's indexing: measured 2.9 vs 25 ms for 10 clips of 480×270 frames); elsewhere
        :meth:`gather_tensor`."""
        if resized.device.type == "cpu" and self.output == "uint8":
            if resized.ndim != 4:
                raise ValueError(f"resized frames must be (U, H, W, 3|4), got {resized.shape}")
            local = ClipIndices(np.zeros(len(clip_frames), np.int64), clip_frames.numpy())
            return self.from_resized(resized.numpy(), local, windows=windows.numpy())
        return self.gather_tensor(resized, clip_frames, windows)

    def gather_tensor(
        self, resized: torch.Tensor, clip_frames: torch.Tensor, windows: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`cut_tensor` with torch's indexing on any device (the path for GPUs) →
        (N, 3, ℓ, crop, crop) uint8 in channels_last_3d memory. Clips sharing a window (all of
        them at evaluation) are cut in one gather."""
        c, (h, w) = self.crop, self.resize_hw
        if resized.ndim != 4 or tuple(resized.shape[1:3]) != (h, w) or resized.dtype != torch.uint8:
            raise ValueError(
                f"resized frames must be (U, {h}, {w}, 3|4) uint8, got "
                f"{tuple(resized.shape)} {resized.dtype}"
            )
        n, ell = clip_frames.shape
        sel = self.channels(resized.shape[-1])
        rows = [tuple(r) for r in windows.tolist()]
        wins = sorted(set(rows))
        out = None
        for top, left, flip in wins:
            # (U, c, c, 3) in channel order, contiguous: the gather below reads whole pixels
            crop = resized[:, top : top + c, left : left + c, sel]
            crop = (crop.flip(2) if flip else crop).contiguous()
            if len(wins) == 1:
                out = crop[clip_frames]  # (N, ℓ, c, c, 3)
                break
            if out is None:
                out = torch.empty((n, ell, c, c, 3), dtype=torch.uint8, device=resized.device)
            at = torch.tensor([i for i, r in enumerate(rows) if r == (top, left, flip)],
                              device=resized.device)  # fmt: skip
            out[at] = crop[clip_frames[at]]
        if out is None:  # no clips
            out = torch.empty((0, ell, c, c, 3), dtype=torch.uint8, device=resized.device)
        return out.permute(0, 4, 1, 2, 3)  # (N, 3, ℓ, c, c), channels_last_3d memory

    def windows(self, n_clips: int, generator: torch.Generator | None = None) -> np.ndarray:
        """(N, 3) int64 rows (top, left, flip) of each clip's crop window."""
        if not self.train:
            return np.tile(np.array([*self.preprocessing.centre, 0], np.int64), (n_clips, 1))
        (h, w), c = self.resize_hw, self.crop
        top = torch.randint(h - c + 1, (n_clips,), generator=generator)
        left = torch.randint(w - c + 1, (n_clips,), generator=generator)
        flip = torch.randint(2, (n_clips,), generator=generator) * int(self.flip)
        return torch.stack([top, left, flip], 1).numpy().astype(np.int64)

    def from_resized(
        self,
        resized: np.ndarray,
        clips: ClipIndices,
        generator: torch.Generator | None = None,
        windows: np.ndarray | None = None,
    ) -> torch.Tensor:
        """(T, H, W, 3) uint8 RGB (or (T, H, W, 4) ``bgr0``) frames already at ``resize_hw``
        (:func:`resize_frames`) → (N, 3, ℓ, crop, crop) float32 (uint8 before the arithmetic
        with ``output="uint8"``). ``windows``: (N, 3) rows of :meth:`windows` already drawn
        (default: drawn here from ``generator``)."""
        p = self.preprocessing
        if (
            resized.shape[1:3] != p.resize_hw
            or resized.shape[-1:] not in ((3,), (4,))
            or resized.ndim != 4
            or resized.dtype != np.uint8
        ):
            h, w = p.resize_hw
            raise ValueError(
                f"resized frames must be (T, {h}, {w}, 3) uint8 RGB or (T, {h}, {w}, 4) uint8 "
                f"bgr0, got {resized.shape} {resized.dtype}"
            )
        if clips.frames.ndim != 2:
            raise ValueError(f"clip indices must be (N, clip_len), got {clips.frames.shape}")
        n, ell = clips.frames.shape
        if n and (clips.frames.min() < 0 or clips.frames.max() >= len(resized)):
            raise ValueError(
                f"clip indices reach frame {clips.frames.max()}, but there are {len(resized)}"
            )
        mean: np.ndarray | None = None
        if p._cube is not None:
            if ell != p._cube.shape[0]:
                raise ValueError(f"the mean cube has {p._cube.shape[0]} frames, clips have {ell}")
            mean = p._cube.transpose(3, 0, 1, 2)  # (3, 16, H, W) BGR
        elif p.subtract_only:
            mean = np.broadcast_to(
                np.asarray(p.mean, np.float32).reshape(3, 1, 1, 1), (3, ell, *p.resize_hw)
            )
        fused = self.output == "float32" and mean is not None  # one numpy pass: C3D
        c = p.crop
        out = np.empty((n, 3, ell, c, c), np.float32 if fused else np.uint8)  # NCTHW
        first, step = self._channel_slice(resized.shape[-1])
        if windows is None:
            windows = self.windows(n, generator)
        for i, (top, left, flip) in enumerate(np.asarray(windows).tolist()):
            rows, cols = slice(top, top + c), slice(left, left + c)
            # gather the clip's cropped frames (uint8; from a memory-mapped cache entry only
            # these rows are read), then one pass through strided views: RGB → planar (BGR),
            # flip, minus the mean window (flipped alike, since flip(x − m) = flip(x) − flip(m))
            x = resized[clips.frames[i], rows, cols].transpose(3, 0, 1, 2)  # (C, ℓ, c, c)
            x = x[first::step][:3]  # channel_order: a strided view (RGB, BGR or bgr0)
            if flip:
                x = x[..., ::-1]
            if fused:
                assert mean is not None
                m = mean[:, :, rows, cols]
                np.subtract(x, m[..., ::-1] if flip else m, out=out[i])
            else:
                out[i] = x
        clips_t = torch.from_numpy(out)
        if self.output == "float32" and not fused:
            return p.normalize(clips_t)
        return clips_t

    def _channel_slice(self, n_channels: int) -> tuple[int, int]:
        """(first, step) of the slice that puts ``n_channels`` frames in channel_order."""
        first = self.channels(n_channels)[0]
        return first, (1 if first == 0 else -1)
