"""The fine-tuning module's feature-dropout masks, hashed on the device.

A clip's mask is keyed by (seed, epoch, dataset index of its GIF, its position j among that
GIF's clips) only — never by rank, batch or position in a batch — so DDP draws what one process
draws and a resumed run what an uninterrupted one does. The bits come from murmur3's 32-bit
finaliser chained over those keys, in int64 tensor arithmetic on the clips' device: no host
read-back, no Python loop, the same bits on a CPU and a GPU (``tests/test_finetune_step.py``
checks them against pure-Python integers).
"""

from __future__ import annotations

import torch
from torch import Tensor

_DROPOUT_TAG = 0x44524F50  # "DROP": keeps the dropout stream apart from the clip draws
_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x · c) mod 2³² for int64 x in [0, 2³²) and a 32-bit constant c, without int64 overflow:
    c is split in 16-bit halves, so every product stays below 2⁴⁸ (same bits on every device)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _M32


def mix32(x: Tensor) -> Tensor:
    """murmur3's 32-bit finaliser (fmix32) on int64 tensors holding values in [0, 2³²)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def _absorb(h: Tensor, v: Tensor | int) -> Tensor:
    """Chain a non-negative integer (< 2⁶³; low and high 32-bit words) into the hash h."""
    h = mix32(h ^ (v & _M32))
    return mix32(h ^ ((v >> 32) & _M32))


def clip_in_gif(gif_index: Tensor, n_gifs: int) -> Tensor:
    """j (N,): how many earlier rows share row n's GIF (0 for a GIF's first clip), on the device.

    A stable sort by GIF, each row's position minus its GIF's first position, scattered back."""
    n = gif_index.shape[0]
    order = torch.argsort(gif_index, stable=True)
    counts = gif_index.new_zeros(n_gifs).index_add_(0, gif_index, torch.ones_like(gif_index))
    start = torch.cumsum(counts, 0) - counts  # first sorted position of each GIF
    pos = torch.arange(n, device=gif_index.device)
    return torch.empty_like(gif_index).index_copy_(0, order, pos - start[gif_index[order]])


def dropout_keep_mask(
    seed: int, epoch: int, index: Tensor, gif_index: Tensor, d: int, p: float
) -> Tensor:
    """Keep mask (N, d) bool of the feature dropout, one row per clip, keyed by GIF and clip only.

    Row n is clip j of GIF ``index[gif_index[n]]`` (j counts that GIF's rows in order). Entry
    (n, c) is kept iff u ≥ ⌊p·2³²⌋ with u a counter-based hash: murmur3's fmix32 chained over
    (tag, seed, epoch, index, j) for the row, xor-ed with the column's fmix32(c ⊕ tag) and mixed
    once more — integer arithmetic on ``index``'s device (the same bits on a CPU and a GPU), no
    host sync, no Python loop. The mask does not depend on the rank, the batch, or the GIF's
    position in it. index (B,) int dataset indices, gif_index (N,) in [0, B).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    dev = index.device
    index, gif_index = index.long(), gif_index.long().to(dev)
    j = clip_in_gif(gif_index, index.shape[0])
    h = torch.full_like(gif_index, _DROPOUT_TAG)
    for v in (int(seed) & (2**63 - 1), int(epoch)):
        h = _absorb(h, v)
    h = _absorb(_absorb(h, index[gif_index]), j)  # (N,)
    col = mix32(torch.arange(d, device=dev, dtype=torch.long) ^ _DROPOUT_TAG)  # (d,)
    u = mix32(h[:, None] ^ col[None, :])  # (N, d) in [0, 2³²)
    return u >= int(p * 2**32)
