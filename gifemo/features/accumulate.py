"""Running per-GIF sums of clip features for one chunk of GIFs, and the loader batches.

For the GIFs of one chunk (dataset indices lo … hi − 1), clips arrive in loader batches (the
clips of whole GIFs, with the GIF each clip belongs to). :class:`ChunkAccumulator` keeps them
pending until the model takes ``batch_clips`` of them (:meth:`take`), then adds each clip's
feature vector to its GIF's float64 sum in clip order (:meth:`accumulate`):

    s_g = Σ_c f(clip_c),  K_g = number of clips,  v_g = (s_g / K_g) / ‖s_g / K_g‖₂

so no GIF's clips are ever held all at once beyond one loader batch, and :meth:`shard` turns
the sums into the chunk's rows (a mean that is exactly zero keeps the zero vector).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gifemo.backbones.transfer import FrameCrops, UsedFrames, channels_in_order
from gifemo.data.clip_dataset import collate_clips
from gifemo.data.worker_batches import SharedBuffers, batch_memory
from gifemo.features.store import Shard


def chunk_batches(todo: Sequence[int], n: int, chunk_gifs: int, load_gifs: int) -> list[list[int]]:
    """Loader batches: groups of ≤ load_gifs GIF indices, never straddling a chunk."""
    batches = []
    for c in todo:
        lo, hi = c * chunk_gifs, min(n, (c + 1) * chunk_gifs)
        batches += [list(range(s, min(hi, s + load_gifs))) for s in range(lo, hi, load_gifs)]
    return batches


def _payloads(
    items: list[dict[str, Any]], kind: type, who: str
) -> tuple[list[Any], dict[str, Any]]:
    """Each item's worker payload (None for a failed GIF), checked to be a ``kind``, and the
    per-GIF fields of :func:`~gifemo.data.clip_dataset.collate_clips` (without ``clips``)."""
    payloads = [None if it.get("error") else it["clips"] for it in items]
    for p in payloads:
        if p is not None and not isinstance(p, kind):
            raise TypeError(f"{who} needs {kind.__name__} items, got {type(p).__name__}")
    empty = torch.zeros((0, 3, 1, 1, 1), dtype=torch.uint8)
    batch = collate_clips([{**it, "clips": empty} for it in items])
    del batch["clips"]
    return payloads, batch


def collate_crops(
    items: list[dict[str, Any]], buffers: SharedBuffers | None = None
) -> dict[str, Any]:
    """Loader batch of items whose ``clips`` are :class:`FrameCrops` (evaluation clips,
    ``resize_on=worker``). The keys of :func:`~gifemo.data.clip_dataset.collate_clips` except
    ``clips``, plus ``crops`` (ΣU, crop, crop, 3) uint8 — every GIF's cropped used frames in
    ONE tensor (shared memory in a worker), put in the model's channel order as they are
    copied in (:func:`channels_in_order`) — and ``clip_frames`` (ΣN, ℓ) long, each clip's
    rows of ``crops``; the clips are ``crops[clip_frames]`` (:func:`gather_clips`).
    ``buffers``: ``crops`` is written into a reused shared buffer (its ticket under
    ``SharedBuffers.KEY``: hand it back after :func:`gather_clips`).

    Writing shared memory costs a page fault per 4 kB page the first time (~3 µs each here),
    so the crops travel with three channels, not ``bgr0``'s four."""
    payloads, batch = _payloads(items, FrameCrops, "collate_crops")
    real = [p for p in payloads if p is not None]
    side = real[0].crops.shape[1] if real else 0
    for p in real:
        if p.crops.shape[1:3] != (side, side):
            raise ValueError(
                f"collate_crops: one batch mixes crops of {p.crops.shape[1:3]} and {(side, side)}"
            )
    rows = sum(len(p.crops) for p in real)
    flat = batch_memory(rows * side * side * 3, batch, buffers)
    crops = flat.view(rows, side, side, 3) if real else flat.view(0, 0, 0, 3)
    view, at, index = crops.numpy(), 0, []
    for p in real:
        channels_in_order(p.crops, p.channels, out=view[at : at + len(p.crops)])
        index.append(p.clips + at)
        at += len(p.crops)
    ell = real[0].clips.shape[1] if real else 0
    counts = torch.tensor([0 if p is None else len(p.clips) for p in payloads], dtype=torch.long)
    batch.update(
        crops=crops,
        clip_frames=torch.from_numpy(
            np.concatenate(index) if index else np.zeros((0, ell), np.int64)
        ),
        gif_index=torch.repeat_interleave(torch.arange(len(items)), counts),
    )
    return batch


def gather_clips(batch: dict[str, Any], dev: torch.device) -> torch.Tensor:
    """The clips of a :func:`collate_crops` batch on ``dev``: (ΣN, 3, ℓ, crop, crop) uint8
    (channels_last_3d memory). On a CPU numpy's row gather; elsewhere torch's, after a
    non-blocking copy of the crops."""
    crops, index = batch["crops"], batch["clip_frames"]
    if dev.type == "cpu":
        clips = torch.from_numpy(np.take(crops.numpy(), index.numpy(), axis=0))
    else:
        clips = crops.to(dev, non_blocking=True)[index.to(dev, non_blocking=True)]
    return clips.permute(0, 4, 1, 2, 3)  # (N, ℓ, c, c, 3) → (N, 3, ℓ, c, c)


def collate_frames(
    items: list[dict[str, Any]], buffers: SharedBuffers | None = None
) -> dict[str, Any]:
    """Loader batch of items whose ``clips`` are :class:`UsedFrames` (``resize_on=device``).

    The keys of :func:`~gifemo.data.clip_dataset.collate_clips` except ``clips``, plus:
    ``frames`` — the used frames of every GIF, uint8, gathered straight into ONE flat tensor
    (in shared memory inside a DataLoader worker: one copy, one transfer); ``frame_shapes``
    (B, 4) long (U, H, W, C) per GIF (zeros for a failed one); ``clip_frames`` (ΣN, ℓ) long,
    each clip's frames within its GIF's used frames; ``windows`` (ΣN, 3) long crop windows;
    ``gif_index`` (ΣN,) long as in collate_clips. ``buffers``: as for :func:`collate_crops`
    (hand the batch back after :func:`~gifemo.features.forward.device_clips`).
    """
    payloads, batch = _payloads(items, UsedFrames, "collate_frames")
    shapes = [(0, 0, 0, 0) if p is None else (len(p.used), *p.frames.shape[1:]) for p in payloads]
    total = sum(math.prod(s) for s in shapes)
    flat = batch_memory(total, batch, buffers)  # written directly, shared in a worker
    view, at = flat.numpy(), 0
    for p, shape in zip(payloads, shapes, strict=True):
        n = math.prod(shape)
        if p is not None and n:
            np.take(p.frames, p.used, axis=0, out=view[at : at + n].reshape(shape))
        at += n
    real = [p for p in payloads if p is not None]
    ell = real[0].clips.shape[1] if real else 0
    counts = torch.tensor([0 if p is None else len(p.clips) for p in payloads], dtype=torch.long)
    batch.update(
        frames=flat,
        frame_shapes=torch.tensor(shapes, dtype=torch.long).reshape(len(items), 4),
        clip_frames=torch.from_numpy(
            np.concatenate([p.clips for p in real]) if real else np.zeros((0, ell), np.int64)
        ),
        windows=torch.from_numpy(
            np.concatenate([p.windows for p in real]) if real else np.zeros((0, 3), np.int64)
        ),
        gif_index=torch.repeat_interleave(torch.arange(len(items)), counts),
    )
    return batch


class ChunkAccumulator:
    """Per-GIF float64 sums of clip features for the GIFs of one chunk, batched exactly."""

    def __init__(
        self, records: Sequence[Any], chunk: int, lo: int, hi: int, dim: int, device: torch.device
    ) -> None:
        self.records, self.chunk, self.lo, self.hi, self.device = records, chunk, lo, hi, device
        self.sums = np.zeros((hi - lo, dim), np.float64)  # (n, D)
        self.counts = np.zeros(hi - lo, np.int64)
        self.n_frames = np.zeros(hi - lo, np.int64)
        self.delay = np.zeros(hi - lo, np.float64)
        self.truncated = np.zeros(hi - lo, bool)
        self.ok = np.zeros(hi - lo, bool)
        self.notes: dict[int, str] = {}  # row within the chunk → note
        self.failures: list[dict[str, Any]] = []
        self.seen = 0
        self.clips: list[torch.Tensor] = []  # pending clips (n, 3, T, h, w)
        self.owner: list[np.ndarray] = []  # (n,) row within the chunk of each pending clip

    @property
    def complete(self) -> bool:
        """Every GIF of the chunk has arrived."""
        return self.seen == self.hi - self.lo

    @property
    def pending(self) -> int:
        return sum(len(o) for o in self.owner)

    def _row_record(self, r: int) -> dict[str, Any]:
        rec = self.records[r + self.lo]
        return {"index": int(r + self.lo), "id": rec.id, "path": str(rec.path)}

    def add(self, batch: dict[str, Any]) -> None:
        """Take in one loader batch (:func:`gifemo.data.clip_dataset.collate_clips`)."""
        for f in batch["failures"]:
            self.failures.append({k: f[k] for k in ("index", "id", "path", "reason")})
        rows = batch["index"].numpy() - self.lo  # (B,)
        self.seen += len(rows)
        failed = {int(f["index"]) - self.lo for f in batch["failures"]}
        notes = batch.get("notes") or [None] * len(rows)
        for j, r in enumerate(rows):
            if r in failed:
                continue
            self.ok[r] = True
            self.n_frames[r] = int(batch["n_frames"][j])
            self.delay[r] = float(batch["mean_delay_ms"][j])
            self.truncated[r] = bool(batch["truncated"][j])
            said = [notes[j]] if notes[j] else []
            if self.truncated[r]:
                said.insert(0, "truncated: the file ends early; its complete frames were used")
            if said:
                self.notes[int(r)] = "; ".join(said)
        if len(batch["clips"]):
            self.clips.append(batch["clips"].to(self.device, non_blocking=True))
            self.owner.append(rows[batch["gif_index"].numpy()])

    def take(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """The next ``n`` pending clips (fewer if fewer are pending) and their owners."""
        clips, owner, got = [], [], 0
        while got < n and self.owner:
            k = min(n - got, len(self.owner[0]))
            clips.append(self.clips[0][:k])
            owner.append(self.owner[0][:k])
            got += k
            if k == len(self.owner[0]):
                del self.clips[0], self.owner[0]
            else:
                self.clips[0], self.owner[0] = self.clips[0][k:], self.owner[0][k:]
        return (clips[0] if len(clips) == 1 else torch.cat(clips)), np.concatenate(owner)

    def accumulate(self, feats: np.ndarray, owner: np.ndarray) -> None:
        """Add each clip's features (b, D) to its GIF's sum, in clip order (``owner`` sorted)."""
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        gifs = owner[starts]
        self.sums[gifs] += np.add.reduceat(feats.astype(np.float64), starts, axis=0)
        self.counts[gifs] += np.diff(np.r_[starts, len(owner)])

    def shard(self) -> Shard:
        """The chunk's rows: L2-normalised clip means of the GIFs that gave clips."""
        for r in np.flatnonzero(self.ok & (self.counts == 0)):  # decoded, yet no clip came out
            self.failures.append({**self._row_record(int(r)), "reason": "no clips"})
        rows = np.flatnonzero(self.ok & (self.counts > 0))
        mean = self.sums[rows] / self.counts[rows, None]
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        feats = (mean / np.where(norm > 0, norm, 1.0)).astype(np.float32)
        notes = [{**self._row_record(int(r)), "note": self.notes[int(r)]} for r in rows
                 if int(r) in self.notes]  # fmt: skip
        return Shard(
            chunk=self.chunk,
            index=(rows + self.lo).astype(np.int64),
            features=feats,
            n_frames=self.n_frames[rows],
            mean_delay_ms=self.delay[rows],
            failures=sorted(self.failures, key=lambda f: f["index"]),
            truncated=self.truncated[rows],
            n_clips=self.counts[rows],
            notes=notes,
        )
