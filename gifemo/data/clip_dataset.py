"""GIF files → batches of clips: the dataset and its collate function.

Item ``i`` of :class:`GifClipDataset` decodes one GIF (in a DataLoader worker), samples its
clips and preprocesses them. A GIF has a variable number N of clips, so :func:`collate_clips`
concatenates clips over the batch and keeps ``gif_index`` (which GIF each clip came from);
per-GIF results are ``scatter``/``index_add`` reductions over it (e.g. the mean of fc6 over a
GIF's clips).

Failures: a GIF that cannot be decoded never raises in a worker. Its item has 0 clips and
``error="<ExceptionType>: <message>"`` (the message names the file), and the collated batch
lists it under ``failures`` so the main process records it and goes on.

Randomness: the random parts (clip starts, crops, flips) of item i in epoch e come from a
``torch.Generator`` seeded by (seed, e, i) through ``numpy.random.SeedSequence``, so results do
not depend on worker count, worker assignment or persistent workers. The epoch reaches the
workers inside the key (``(epoch, i)``, as :class:`gifemo.finetune.sampling.EpochSampler`
yields); a plain int key means epoch :attr:`GifClipDataset.epoch` (default 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from gifemo.data.clips import ClipIndices, ClipSampler, used_frames
from gifemo.data.gif import KEEP_PER_FRAME_FROM, read_gif
from gifemo.data.worker_batches import SharedBuffers, batch_memory

_EMPTY_CROP = 112  # spatial size of the (empty) clips of a failed GIF: C3D's 112×112 crop


class _Transform(Protocol):  # a backbone's clip transform (gifemo.backbones)
    def __call__(
        self, frames: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    def from_resized(
        self, resized: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


class _KeepingTransform(Protocol):  # one that decodes with read_gif(keep=…) (``keep_used``)
    def keep_frame(self, frame: np.ndarray) -> np.ndarray: ...

    def keep_frames(self, frames: np.ndarray, index: np.ndarray) -> np.ndarray: ...

    def from_kept(
        self, kept: np.ndarray, clips: ClipIndices, generator: torch.Generator | None = None
    ) -> Any: ...


class _Record(Protocol):  # gifemo.data.metadata.GifRecord, or anything with .id and .path
    id: str
    path: Any


def empty_clips(clip_len: int) -> torch.Tensor:
    """(0, 3, clip_len, 112, 112) float32: the clips of a GIF that failed."""
    return torch.zeros((0, 3, clip_len, _EMPTY_CROP, _EMPTY_CROP))


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item ``index`` in ``epoch``: seeded by SeedSequence([seed, epoch, index])."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class GifClipDataset(Dataset):
    """records → item dicts with the clips of each GIF.

    ``__getitem__(i)`` (or ``(epoch, i)``) returns::

        {"index": i, "id": str, "path": str,
         "clips": (N, 3, 16, 112, 112) float32, or uint8 with C3DTransform(output="uint8")
                  (N = 0 on failure),
         "labels": (t,) float32            # only when labels were given
         "error": None | str, "n_frames": int (0 on failure),
         "mean_delay_ms": float (NaN on failure), "truncated": bool,
         "note": None | str}  # what a budget left out (read_frames, max_clips)

    Args:
        records: GIF records (``.id``, ``.path``), e.g. ``GifDataset.records``.
        sampler: clip sampler (:mod:`gifemo.data.clips`), e.g. ``AllClips()``,
            ``RandomClip(num_clips=k)`` or ``FpsClips(fps=f)``; it gets each GIF's delays.
        transform: a backbone's clip transform (frames + ClipIndices → (N, 3, ℓ, h, w)).
        labels: (n_records, t) array or None.
        read_kwargs: keyword arguments of :func:`read_gif` (max_pixels, background, max_frames,
            read_frames).
        max_clips: per-GIF clip budget: a GIF with more clips uses ``max_clips`` of them,
            evenly spaced (the sampler's ``max_clips``), and its item says so in ``"note"``.
        seed: base seed of the per-item generators.
        keep_used: decode with ``read_gif(keep=…)``. The clips are drawn once the GIF's frame
            count and delays are known (from its block walk, before decoding), and only the
            frames they use are kept, each as ``transform.keep_frame`` makes it while it is
            decoded (resized, no full-size copy). Frames under ``KEEP_PER_FRAME_FROM`` pixels
            go through ``transform.keep_frames`` in one batch after decoding. The clips are
            then ``transform.from_kept`` of the kept frames: the same clips, drawn from the
            same generator in the same order, as decoding every frame first. For transforms
            that have the three methods (:func:`gifemo.backbones.transfer.keeps_used`).
        stop_after_used: with ``keep_used``, decoding stops after the last frame the clips use
            (a training GIF's random clip: on average half of a long GIF is never decoded).
            The frame count and delays are the block walk's. Damage to a GIF's image data
            after that frame therefore goes unnoticed: the item has the walk's frame count and
            its clips, where decoding every frame would find fewer frames and draw others.
            For training, where that is a valid draw from the frames that decode.
        cache: where frames come from instead of decoding: anything with ``get(path)`` returning
            a :class:`gifemo.finetune.cache.CachedGif` (resized frames, delays, truncated), e.g.
            a :class:`~gifemo.finetune.cache.ClipCache`. The clips are then cut with
            ``transform.from_resized``, which gives the same tensors as the decoding path.

    Keys: ``i``, ``(epoch, i)`` or ``(epoch, i, pad)`` (the fine-tuning sampler's keys; the item
    then carries ``"pad": True`` for a DDP padding repeat, else ``False``).
    """

    def __init__(
        self,
        records: Sequence[_Record],
        *,
        sampler: ClipSampler,
        transform: _Transform,
        labels: np.ndarray | None = None,
        read_kwargs: dict | None = None,
        seed: int = 0,
        cache: Any = None,
        max_clips: int | None = None,
        keep_used: bool = False,
        stop_after_used: bool = False,
    ):
        self.records = list(records)
        if labels is not None:
            labels = np.asarray(labels, np.float32)
            if labels.ndim != 2 or len(labels) != len(self.records):
                raise ValueError(
                    f"labels must be (n_records={len(self.records)}, t), got {labels.shape}"
                )
        self.labels = labels
        self.sampler = sampler
        self.transform = transform
        self.read_kwargs = dict(read_kwargs or {})
        self.seed = int(seed)
        self.cache = cache
        self.keep_used, self.stop_after_used = bool(keep_used), bool(stop_after_used)
        if self.stop_after_used and not self.keep_used:
            raise ValueError("stop_after_used needs keep_used=True")
        methods = ("keep_frame", "keep_frames", "from_kept")
        if self.keep_used and not all(hasattr(transform, m) for m in methods):
            raise ValueError(f"keep_used needs {', '.join(methods)}; {transform!r} lacks them")
        self.max_clips = None if max_clips is None else int(max_clips)
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be ≥ 1 or None, got {max_clips}")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain int keys (in this process only; workers copy it at start)."""
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        epoch, i, pad = (*key, False)[:3] if isinstance(key, tuple) else (self.epoch, key, False)
        i = int(i)
        record = self.records[i]
        item: dict[str, Any] = {
            "index": i,
            "id": str(record.id),
            "path": str(record.path),
            "pad": bool(pad),
        }
        if self.labels is not None:
            item["labels"] = torch.from_numpy(self.labels[i])
        generator = item_generator(self.seed, epoch, i)
        keeper: _UsedFrames | None = None
        try:
            if self.cache is not None:  # resized frames, cut by from_resized
                cached = self.cache.get(record.path)
                frames, delays, truncated = (
                    np.asarray(cached.resized),
                    cached.delays_ms,
                    cached.truncated,
                )
                cut: Callable[..., Any] = self.transform.from_resized
                notes: list[str] = []
            elif self.keep_used:  # the used frames, kept as they are decoded
                keeper = _UsedFrames(self, epoch, i)
                gif = read_gif(record.path, **self.read_kwargs, keep=keeper)
                frames, delays, truncated = gif.frames, gif.delays_ms, gif.truncated
                notes = _budget_notes(gif)
            else:  # decoded frames; the transform resizes the ones the clips use
                gif = read_gif(record.path, **self.read_kwargs)
                frames, delays, truncated = gif.frames, gif.delays_ms, gif.truncated
                cut = self.transform
                notes = _budget_notes(gif)
            n_frames = len(delays)
            if keeper is not None:  # drawn while reading, once T and the delays were known
                clips, generator = keeper.clips, keeper.generator
            else:
                clips = self.sampler(
                    n_frames, generator=generator, delays_ms=delays, max_clips=self.max_clips
                )
            total = self.sampler.count(n_frames, delays)
            if len(clips.starts) < total:
                notes.append(
                    f"clip budget: {len(clips.starts)} of {total} clips used, evenly spaced "
                    f"(max_clips={self.max_clips})"
                )
            if keeper is not None:  # frames: the kept ones; keeper.local: the clips' rows
                item["clips"] = keeper.from_kept(frames, keeper.local, generator)
            else:
                item["clips"] = cut(frames, clips, generator=generator)
        except Exception as e:  # recorded in the item, reported by collate_clips
            item.update(
                clips=empty_clips(self.sampler.clip_len),
                error=f"{type(e).__name__}: {e}",
                n_frames=0,
                mean_delay_ms=math.nan,
                truncated=False,
                note=None,
            )
            return item
        item.update(
            error=None,
            n_frames=n_frames,
            mean_delay_ms=float(np.mean(delays)) if len(delays) else 0.0,
            truncated=bool(truncated),
            note="; ".join(notes) or None,
        )
        return item


def _budget_notes(gif: Any) -> list[str]:
    """What ``read_frames`` left out of a decoded GIF, as an item note."""
    if not gif.read_limited:
        return []
    return [f"frame budget: first {gif.n_frames} of {gif.frames_in_file} frames read"]


class _UsedFrames:
    """``read_gif``'s keeper for item ``i`` of ``epoch`` (``keep_used``): the sampler's clips
    for the file's frame count and delays, drawn from a fresh item generator at each
    :meth:`select` (a file read twice draws the same), the frames they use, and each through
    the transform's ``keep_frame`` (``keep_frames`` for a batch)."""

    per_frame_from = KEEP_PER_FRAME_FROM

    def __init__(self, dataset: GifClipDataset, epoch: int, i: int) -> None:
        self.dataset, self.epoch, self.i = dataset, epoch, i
        transform: _KeepingTransform = dataset.transform  # type: ignore[assignment]
        self.keep_frame, self.from_kept = transform.keep_frame, transform.from_kept
        self.batch = transform.keep_frames
        self.stop_after_last = dataset.stop_after_used

    def select(self, n_frames: int, delays_ms: np.ndarray) -> np.ndarray:
        d = self.dataset
        self.generator = item_generator(d.seed, self.epoch, self.i)
        self.clips = d.sampler(
            n_frames, generator=self.generator, delays_ms=delays_ms, max_clips=d.max_clips
        )
        used, self.local = used_frames(self.clips, n_frames)
        return used

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.keep_frame(frame)


def _cat_clips(
    clips: list[torch.Tensor], batch: dict[str, Any], buffers: SharedBuffers | None
) -> torch.Tensor:
    """torch.cat of the items' clips; in a DataLoader worker straight into shared memory —
    one of ``buffers`` when given (its ticket put in ``batch``), else a fresh segment.

    A worker's batch goes to the main process through shared memory; concatenating into a
    shared buffer (as ``default_collate`` does) saves one copy of the whole batch.
    """
    clips = [c for c in clips if c.shape[0]]  # a failed GIF's empty float tensor: no dtype mix
    out = None
    if torch.utils.data.get_worker_info() is not None:
        shape = (sum(c.shape[0] for c in clips), *clips[0].shape[1:])
        flat = batch_memory(math.prod(shape) * clips[0].element_size(), batch, buffers)
        out = flat.view(clips[0].dtype).view(shape)
    return torch.cat(clips, out=out)


def collate_clips(
    items: list[dict[str, Any]], buffers: SharedBuffers | None = None
) -> dict[str, Any]:
    """Batch of B items → clips of all GIFs concatenated, with the GIF each clip belongs to.

    Returns::

        {"clips": (ΣN, 3, 16, 112, 112) float32, "gif_index": (ΣN,) long in [0, B),
         "index": (B,) long, "ids": list[str], "paths": list[str],
         "labels": (B, t) float32              # when the items have labels
         "failures": list[{"index", "id", "path", "reason"}],
         "n_frames": (B,) long, "mean_delay_ms": (B,) float64, "truncated": (B,) bool,
         "notes": list[None | str]}

    A failed GIF contributes no clips (so no row of ``gif_index`` points to it) and one entry
    in ``failures``. ``buffers`` (in a DataLoader worker): the clips are written into one of
    these reused shared buffers, and the batch carries its ticket
    (:func:`~gifemo.data.worker_batches.hand_back` it once the clips are used).
    """
    if not items:
        raise ValueError("collate_clips got an empty batch")
    clips = [it["clips"] for it in items]
    counts = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
    shared: dict[str, Any] = {}  # the buffer's ticket, if any
    batch: dict[str, Any] = {
        "clips": _cat_clips(clips, shared, buffers) if counts.sum() else clips[0],
        "gif_index": torch.repeat_interleave(torch.arange(len(items)), counts),
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "ids": [it["id"] for it in items],
        "paths": [it["path"] for it in items],
        "failures": [
            {"index": it["index"], "id": it["id"], "path": it["path"], "reason": it["error"]}
            for it in items
            if it.get("error")
        ],
        "n_frames": torch.tensor([it["n_frames"] for it in items], dtype=torch.long),
        "mean_delay_ms": torch.tensor([it["mean_delay_ms"] for it in items], dtype=torch.float64),
        "truncated": torch.tensor([bool(it.get("truncated", False)) for it in items]),
        "notes": [it.get("note") for it in items],
    }
    with_labels = ["labels" in it for it in items]
    if any(with_labels):
        if not all(with_labels):
            raise ValueError("collate_clips: some items have labels and some do not")
        batch["labels"] = torch.stack([torch.as_tensor(it["labels"]) for it in items])
    batch.update(shared)
    return batch
