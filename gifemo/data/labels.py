"""Emotion labels from TrueSkill scores (paper §3.1–3.2).

GIFGIF rates GIF ``n`` on emotion ``i`` with a TrueSkill belief N(μ_{n,i}, σ_{n,i}²). The paper
uses the 1 % lower quantile as the label,

    y_{n,i} = μ_{n,i} − 3 σ_{n,i},

so that a GIF needs both a high mean and a low uncertainty to score high, and calls GIF ``n`` a
positive of emotion ``i`` iff y_{n,i} > μ0 = 25 (more than 99 % confident that it is more
emotional than the average GIF). An unvoted GIF (μ0, σ0 = 25/3) gets y = 0.
"""

from __future__ import annotations

import numpy as np

from gifemo.emotions import MU0, N_EMOTIONS


def score_labels(scores: np.ndarray) -> np.ndarray:
    """``(..., 17, 2)`` [μ, σ] scores → ``(..., 17)`` float64 labels y = μ − 3σ."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 2 or s.shape[-2:] != (N_EMOTIONS, 2):
        raise ValueError(
            f"scores must have shape (..., {N_EMOTIONS}, 2) [mu, sigma], got {s.shape}"
        )
    return s[..., 0] - 3.0 * s[..., 1]


def positives(y: np.ndarray) -> np.ndarray:
    """Labels y (any shape) → bool array ``y > MU0`` (the paper's positive samples)."""
    return np.asarray(y, dtype=np.float64) > MU0
