"""Clip samplers: which frames of a GIF make each clip (paper §3.3 and §5).

A sampler is a small object (pytorchvideo's ``ClipSampler``): its clip length ``clip_len`` (ℓ,
default 16) and ``stride`` (s, default 8) are constructor arguments, and calling it on a GIF
returns :class:`ClipIndices` — indices into the ORIGINAL decoded frames, so that a transform can
resize each frame once and gather overlapping clips.

Loop padding (paper §3.3). A sequence of n frames is extended by repeating it from the start
until it has

    L = max(ℓ, s·⌈n/s⌉)

frames (frame i of the padded sequence is frame i mod n). With ℓ = 16, s = 8 this is the paper's
L = max(16, 8·⌈n/8⌉) and (L − 16)/8 + 1 evaluation clips.

- :class:`AllClips`: every clip of the padded sequence at a multiple of s: starts 0, s, 2s, …,
  s·⌊(L − ℓ)/s⌋, i.e. ⌊(L − ℓ)/s⌋ + 1 clips. The last start is L − ℓ when s divides ℓ (the
  defaults); otherwise it can fall short of L − ℓ (ℓ = 5, s = 3, n = 7: L = 9, starts 0, 3)
  and the padded frames after the last clip are not used.
- :class:`RandomClip`: ``num_clips`` clips at uniformly drawn starts 0, 1, …, L − ℓ (training).
- :class:`FpsClips`: the time-aware sampler (the paper's §5 direction). It first resamples
  the GIF to ``fps`` frames per second from the GIF's own frame delays, then cuts clips as
  :class:`AllClips` does, so every clip covers ℓ/fps seconds whatever the GIF's speed.
  :class:`RandomFpsClip` draws :class:`RandomClip`'s clips on that time axis (training).

``sampler.training(num_clips)`` is the training sampler of an evaluation rule (AllClips →
RandomClip, FpsClips → RandomFpsClip): fine-tuning trains on it and evaluates on the rule.

Resampling (:func:`resample_times`). Frame i is shown for d_i ms from t_i = Σ_{j<i} d_j; the
animation lasts D = Σ d_i. The resampled sequence has M = max(1, ⌈D·fps/1000⌉) frames; frame k is
the frame on screen at time k·1000/fps ms, i.e. the i with t_i ≤ k·1000/fps < t_i + d_i. Delays
are taken as browsers play them (:func:`gifemo.data.gif.playback_delays_ms`): a delay of
10 ms or less — in a GIF 0 (no delay) or 10 ms — is played as 100 ms by Chrome, Firefox and
Safari, and is counted as 100 ms here (a video named ``.gif`` keeps its durations: 17 ms at
60 fps). Loop padding in the resampled sequence is replaying the animation, which is what a
looping GIF does.

All samplers are stateless; randomness comes only from the ``torch.Generator`` passed in.
``describe()`` is what a feature store records about the sampler (and what its fingerprint
hashes); ``count(n_frames, delays_ms)`` is the number of clips without building them (O(T)).
``max_clips=k`` keeps k of the clips, evenly spaced with the first and the last
(:func:`evenly_spaced`), and builds only those: memory stays O(T + k·ℓ) however long the GIF
(a 1000-frame GIF of 10 s delays has 10⁵ clips at fps=10).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from gifemo.data.gif import BROWSER_SHORT_DELAY_MS, playback_delays_ms

DEFAULT_CLIP_LEN = 16  # C3D's clip length (paper §3.3); the default of every sampler
DEFAULT_STRIDE = 8  # the paper's evaluation stride and padding multiple


class ClipIndices(NamedTuple):
    starts: np.ndarray  # (N,) int64, start of each clip in the padded (resampled) sequence
    frames: np.ndarray  # (N, clip_len) int64, indices into the ORIGINAL frames


class ClipSampler(Protocol):
    """What every sampler is: called on a GIF's frame count (and delays), gives ClipIndices."""

    clip_len: int
    stride: int

    def __call__(
        self,
        n_frames: int,
        generator: torch.Generator | None = None,
        *,
        delays_ms: np.ndarray | None = None,
        max_clips: int | None = None,
    ) -> ClipIndices: ...

    def count(self, n_frames: int, delays_ms: np.ndarray | None = None) -> int: ...

    def describe(self) -> dict[str, Any]: ...


def _check_len_stride(clip_len: int, stride: int) -> tuple[int, int]:
    if int(clip_len) < 1 or int(stride) < 1:
        raise ValueError(f"clip_len and stride must be ≥ 1, got {clip_len} and {stride}")
    return int(clip_len), int(stride)


def padded_length(
    n_frames: int, *, clip_len: int = DEFAULT_CLIP_LEN, stride: int = DEFAULT_STRIDE
) -> int:
    """L = max(ℓ, s·⌈n/s⌉) for n ≥ 1 frames."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
    return max(clip_len, stride * -(-n_frames // stride))


def clip_indices(
    n_frames: int,
    starts: np.ndarray,
    *,
    clip_len: int = DEFAULT_CLIP_LEN,
    stride: int = DEFAULT_STRIDE,
) -> ClipIndices:
    """ClipIndices for clips starting at ``starts`` (each in [0, L − ℓ]) of an n-frame sequence."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    last = padded_length(n_frames, clip_len=clip_len, stride=stride) - clip_len
    if starts.size and (starts.min() < 0 or starts.max() > last):
        raise ValueError(f"clip starts must lie in [0, {last}] for {n_frames} frames, got {starts}")
    frames = (starts[:, None] + np.arange(clip_len, dtype=np.int64)) % n_frames  # (N, ℓ)
    return ClipIndices(starts, frames)


def evenly_spaced(n: int, k: int | None) -> np.ndarray:
    """(min(n, k),) int64 indices of k of n items, evenly spaced, first and last kept."""
    if k is not None and k < 1:
        raise ValueError(f"max_clips must be ≥ 1 or None, got {k}")
    if k is None or n <= k:
        return np.arange(n, dtype=np.int64)
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)  # spacing ≥ 1: distinct


def _padding_rule(clip_len: int, stride: int) -> str:
    return f"loop to max({clip_len}, {stride}*ceil(n/{stride})) frames"


class AllClips:
    """Every clip of the loop-padded GIF at a multiple of s: starts 0, s, …, s·⌊(L − ℓ)/s⌋
    (⌊(L − ℓ)/s⌋ + 1 clips; the last start is L − ℓ when s divides ℓ)."""

    def __init__(self, *, clip_len: int = DEFAULT_CLIP_LEN, stride: int = DEFAULT_STRIDE):
        self.clip_len, self.stride = _check_len_stride(clip_len, stride)

    def count(self, n_frames: int, delays_ms: np.ndarray | None = None) -> int:
        length = padded_length(n_frames, clip_len=self.clip_len, stride=self.stride)
        return (length - self.clip_len) // self.stride + 1

    def __call__(
        self,
        n_frames: int,
        generator: torch.Generator | None = None,
        *,
        delays_ms: np.ndarray | None = None,
        max_clips: int | None = None,
    ) -> ClipIndices:
        starts = evenly_spaced(self.count(n_frames), max_clips) * self.stride
        return clip_indices(n_frames, starts, clip_len=self.clip_len, stride=self.stride)

    def describe(self) -> dict[str, Any]:
        return {
            "sampler": "AllClips",
            "clip_len": self.clip_len,
            "stride": self.stride,
            "padding": _padding_rule(self.clip_len, self.stride),
        }

    def __repr__(self) -> str:
        return f"AllClips(clip_len={self.clip_len}, stride={self.stride})"

    def training(self, num_clips: int) -> RandomClip:
        """The training sampler of this rule: ``num_clips`` random clips of the same length
        and padding."""
        return RandomClip(num_clips=num_clips, clip_len=self.clip_len, stride=self.stride)


class RandomClip:
    """``num_clips`` clips with starts drawn uniformly from every offset 0, 1, …, L − ℓ.

    Any frame offset (not only multiples of s) is allowed: temporal jitter for training.
    Starts are distinct while there are enough offsets (then drawn with replacement), and
    returned in increasing order. Deterministic given the ``torch.Generator``.
    """

    def __init__(
        self,
        *,
        num_clips: int = 1,
        clip_len: int = DEFAULT_CLIP_LEN,
        stride: int = DEFAULT_STRIDE,
    ):
        if num_clips < 1:
            raise ValueError(f"num_clips must be ≥ 1, got {num_clips}")
        self.num_clips = int(num_clips)
        self.clip_len, self.stride = _check_len_stride(clip_len, stride)

    def count(self, n_frames: int, delays_ms: np.ndarray | None = None) -> int:
        return self.num_clips

    def __call__(
        self,
        n_frames: int,
        generator: torch.Generator | None = None,
        *,
        delays_ms: np.ndarray | None = None,
        max_clips: int | None = None,
    ) -> ClipIndices:
        length = padded_length(n_frames, clip_len=self.clip_len, stride=self.stride)
        n_offsets = length - self.clip_len + 1
        if self.num_clips <= n_offsets:
            starts = torch.randperm(n_offsets, generator=generator)[: self.num_clips]
        else:
            starts = torch.randint(n_offsets, (self.num_clips,), generator=generator)
        starts_np = np.sort(starts.numpy())
        starts_np = starts_np[evenly_spaced(len(starts_np), max_clips)]
        return clip_indices(n_frames, starts_np, clip_len=self.clip_len, stride=self.stride)

    def describe(self) -> dict[str, Any]:
        return {
            "sampler": "RandomClip",
            "num_clips": self.num_clips,
            "clip_len": self.clip_len,
            "stride": self.stride,
            "padding": _padding_rule(self.clip_len, self.stride),
        }

    def __repr__(self) -> str:
        return (
            f"RandomClip(num_clips={self.num_clips}, clip_len={self.clip_len}, "
            f"stride={self.stride})"
        )


def _playback_ends(delays_ms: np.ndarray) -> np.ndarray:
    """(T,) int64: when each frame's display ends, in ms, with delays as browsers play them."""
    played = playback_delays_ms(np.asarray(delays_ms, np.int64).reshape(-1))
    if played.size == 0:
        raise ValueError("resampling needs at least one frame delay")
    return np.cumsum(played)


def _n_samples(ends: np.ndarray, fps: float) -> int:
    return max(1, math.ceil(float(ends[-1]) * fps / 1000.0))


def resample_times(delays_ms: np.ndarray, fps: float) -> np.ndarray:
    """(M,) int64: the original frame on screen at each time k·1000/fps ms, k = 0 … M − 1.

    ``delays_ms`` (T,) are the file's delays; those of 10 ms or less are played as 100 ms
    (module notes). M = max(1, ⌈D·fps/1000⌉) with D = Σ of the played delays.
    """
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps}")
    ends = _playback_ends(delays_ms)  # (T,) end of each frame's display, ms
    times = np.arange(_n_samples(ends, fps), dtype=np.float64) * (1000.0 / fps)  # (M,) ms
    return np.searchsorted(ends, times, side="right").astype(np.int64)


class FpsClips:
    """Time-aware sampler: resample to ``fps`` from the GIF's delays, then every clip (module notes).

    Clip c covers the time [c·s/fps, (c·s + ℓ)/fps) s of the (looped) animation; its frames are
    the original frames on screen at the ℓ sample times. Needs ``delays_ms``.
    """

    def __init__(
        self,
        *,
        fps: float,
        clip_len: int = DEFAULT_CLIP_LEN,
        stride: int = DEFAULT_STRIDE,
    ):
        if not float(fps) > 0 or not math.isfinite(float(fps)):
            raise ValueError(f"FpsClips: fps must be a positive number, got {fps}")
        self.fps = float(fps)
        self.clip_len, self.stride = _check_len_stride(clip_len, stride)
        self._all: AllClips | RandomClip = AllClips(clip_len=self.clip_len, stride=self.stride)

    def _ends(self, n_frames: int, delays_ms: np.ndarray | None) -> np.ndarray:
        if delays_ms is None:
            raise ValueError("FpsClips needs the GIF's frame delays (delays_ms=)")
        delays = np.asarray(delays_ms, np.int64).reshape(-1)
        if len(delays) != n_frames:
            raise ValueError(f"FpsClips: {len(delays)} delays for {n_frames} frames")
        return _playback_ends(delays)

    def count(self, n_frames: int, delays_ms: np.ndarray | None = None) -> int:
        return self._all.count(_n_samples(self._ends(n_frames, delays_ms), self.fps))

    def __call__(
        self,
        n_frames: int,
        generator: torch.Generator | None = None,
        *,
        delays_ms: np.ndarray | None = None,
        max_clips: int | None = None,
    ) -> ClipIndices:
        ends = self._ends(n_frames, delays_ms)  # (T,) ms
        # clips of the M resampled frames, then each sample's time → the frame on screen then;
        # only the kept clips' samples are computed (M can be huge), as resample_times would
        clips = self._all(  # (N, ℓ) sample numbers
            _n_samples(ends, self.fps), generator, max_clips=max_clips
        )
        times = clips.frames.astype(np.float64) * (1000.0 / self.fps)  # (N, ℓ) ms
        return ClipIndices(clips.starts, np.searchsorted(ends, times, side="right"))

    def describe(self) -> dict[str, Any]:
        return {
            "sampler": "FpsClips",
            "fps": self.fps,
            "clip_len": self.clip_len,
            "stride": self.stride,
            "padding": _padding_rule(self.clip_len, self.stride) + " of the resampled sequence",
            "delays": f"file delays of at most {BROWSER_SHORT_DELAY_MS} ms played as 100 ms",
        }

    def __repr__(self) -> str:
        return f"FpsClips(fps={self.fps}, clip_len={self.clip_len}, stride={self.stride})"

    def training(self, num_clips: int) -> RandomFpsClip:
        """The training sampler of this rule: ``num_clips`` random clips of the resampled GIF."""
        return RandomFpsClip(
            num_clips=num_clips, fps=self.fps, clip_len=self.clip_len, stride=self.stride
        )


class RandomFpsClip(FpsClips):
    """:class:`RandomClip` on the GIF resampled to ``fps`` (:class:`FpsClips`' time axis):
    ``num_clips`` clips at uniformly drawn starts of the resampled, loop-padded sequence, each
    covering ℓ/fps seconds — the training sampler of ``clips=fps`` (fine-tuning)."""

    def __init__(
        self,
        *,
        num_clips: int = 1,
        fps: float,
        clip_len: int = DEFAULT_CLIP_LEN,
        stride: int = DEFAULT_STRIDE,
    ):
        super().__init__(fps=fps, clip_len=clip_len, stride=stride)
        self._all = RandomClip(num_clips=num_clips, clip_len=self.clip_len, stride=self.stride)
        self.num_clips = self._all.num_clips

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sampler": "RandomFpsClip", "num_clips": self.num_clips}

    def __repr__(self) -> str:
        return (
            f"RandomFpsClip(num_clips={self.num_clips}, fps={self.fps}, "
            f"clip_len={self.clip_len}, stride={self.stride})"
        )


def used_frames(clips: ClipIndices, n_frames: int) -> tuple[np.ndarray, ClipIndices]:
    """(the frames the clips use, ascending; the clips' indices into that list)."""
    used, inverse = np.unique(clips.frames, return_inverse=True)
    if used.size and (used[0] < 0 or used[-1] >= n_frames):
        raise ValueError(f"clip indices reach frame {used[-1]}, but there are {n_frames}")
    return used, ClipIndices(clips.starts, inverse.reshape(clips.frames.shape).astype(np.int64))
