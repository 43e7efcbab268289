"""Loop padding and 16-frame clip samplers (paper §3.3).

A GIF of n frames is extended by repeating its frames from the start until it has

    L = max(16, 8·⌈n/8⌉)

frames (frame i of the padded sequence is original frame i mod n). Clips are 16 consecutive
padded frames; evaluation takes every clip starting at 0, 8, …, L − 16, i.e. (L − 16)/8 + 1
clips. Samplers return :class:`ClipIndices`, indices into the ORIGINAL frames, so that a
transform can resize each decoded frame once and then gather overlapping clips.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

CLIP_LEN = 16
CLIP_STRIDE = 8


def padded_length(n_frames: int) -> int:
    """L = max(16, 8·⌈n/8⌉) for n ≥ 1 frames."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
    return max(CLIP_LEN, CLIP_STRIDE * -(-n_frames // CLIP_STRIDE))


class ClipIndices(NamedTuple):
    starts: np.ndarray  # (N,) int64, start of each clip in the padded sequence
    frames: np.ndarray  # (N, 16) int64, indices into the original frames: (start + j) mod n


def clip_indices(n_frames: int, starts: np.ndarray) -> ClipIndices:
    """ClipIndices for clips starting at ``starts`` (each in [0, L − 16]) of an n-frame GIF."""
    starts = np.asarray(starts, np.int64).reshape(-1)
    last = padded_length(n_frames) - CLIP_LEN
    if starts.size and (starts.min() < 0 or starts.max() > last):
        raise ValueError(f"clip starts must lie in [0, {last}] for {n_frames} frames, got {starts}")
    frames = (starts[:, None] + np.arange(CLIP_LEN, dtype=np.int64)) % n_frames  # (N, 16)
    return ClipIndices(starts, frames)


class AllClips:
    """Every clip of the loop-padded GIF: starts 0, 8, …, L − 16 ((L − 16)/8 + 1 clips)."""

    def __call__(self, n_frames: int, generator: torch.Generator | None = None) -> ClipIndices:
        last = padded_length(n_frames) - CLIP_LEN
        return clip_indices(n_frames, np.arange(0, last + 1, CLIP_STRIDE))

    def __repr__(self) -> str:
        return "AllClips()"


class RandomClip:
    """``num_clips`` clips with starts drawn uniformly from every offset 0, 1, …, L − 16.

    Any frame offset (not only multiples of 8) is allowed: temporal jitter for training.
    Starts are distinct while there are enough offsets (then drawn with replacement), and
    returned in increasing order. Deterministic given the ``torch.Generator``.
    """

    def __init__(self, *, num_clips: int = 1):
        if num_clips < 1:
            raise ValueError(f"num_clips must be ≥ 1, got {num_clips}")
        self.num_clips = num_clips

    def __call__(self, n_frames: int, generator: torch.Generator | None = None) -> ClipIndices:
        n_offsets = padded_length(n_frames) - CLIP_LEN + 1
        if self.num_clips <= n_offsets:
            starts = torch.randperm(n_offsets, generator=generator)[: self.num_clips]
        else:
            starts = torch.randint(n_offsets, (self.num_clips,), generator=generator)
        return clip_indices(n_frames, np.sort(starts.numpy()))

    def __repr__(self) -> str:
        return f"RandomClip(num_clips={self.num_clips})"
