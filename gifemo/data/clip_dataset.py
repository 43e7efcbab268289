"""GIF files → batches of C3D clips: dataset, collate function and LightningDataModule.

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
workers inside the key: :class:`EpochKeySampler` yields ``(epoch, i)`` keys (Lightning calls
its ``set_epoch``); a plain int key means epoch :attr:`GifClipDataset.epoch` (default 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gifemo.data.clips import CLIP_LEN, AllClips, ClipIndices, RandomClip
from gifemo.data.gif import read_gif
from gifemo.data.transforms import CROP, C3DTransform

EMPTY_CLIPS_SHAPE = (0, 3, CLIP_LEN, CROP, CROP)
_ORDER_KEY = 2**32 - 1  # the "index" of an epoch's shuffling generator: no item has it


class _Record(Protocol):  # gifemo.data.metadata.GifRecord, or anything with .id and .path
    id: str
    path: Any


class _Sampler(Protocol):
    def __call__(self, n_frames: int, generator: torch.Generator | None = None) -> ClipIndices: ...


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
         "mean_delay_ms": float (NaN on failure), "truncated": bool}

    Args:
        records: GIF records (``.id``, ``.path``), e.g. ``GifDataset.records``.
        sampler: clip sampler, ``AllClips()`` or ``RandomClip(num_clips=k)``.
        transform: a :class:`C3DTransform`.
        labels: (n_records, t) array or None.
        read_kwargs: keyword arguments of :func:`read_gif` (max_pixels, background, max_frames).
        seed: base seed of the per-item generators.
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
        sampler: _Sampler,
        transform: C3DTransform,
        labels: np.ndarray | None = None,
        read_kwargs: dict | None = None,
        seed: int = 0,
        cache: Any = None,
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
        try:
            if self.cache is not None:  # resized frames, cut by from_resized
                cached = self.cache.get(record.path)
                frames, delays, truncated = np.asarray(cached.resized), cached.delays_ms, cached.truncated
                cut: Callable[..., torch.Tensor] = self.transform.from_resized
            else:  # decoded frames; the transform resizes the ones the clips use
                gif = read_gif(record.path, **self.read_kwargs)
                frames, delays, truncated = gif.frames, gif.delays_ms, gif.truncated
                cut = self.transform
            clips = self.sampler(len(frames), generator=generator)
            item["clips"] = cut(frames, clips, generator=generator)
        except Exception as e:  # recorded in the item, reported by collate_clips
            item.update(
                clips=torch.zeros(EMPTY_CLIPS_SHAPE),
                error=f"{type(e).__name__}: {e}",
                n_frames=0,
                mean_delay_ms=math.nan,
                truncated=False,
            )
            return item
        item.update(
            error=None,
            n_frames=len(frames),
            mean_delay_ms=float(np.mean(delays)) if len(delays) else 0.0,
            truncated=bool(truncated),
        )
        return item


def _cat_clips(clips: list[torch.Tensor]) -> torch.Tensor:
    """torch.cat of the items' clips; in a DataLoader worker straight into shared memory.

    A worker's batch goes to the main process through shared memory; concatenating into a
    shared buffer (as ``default_collate`` does) saves one copy of the whole float32 batch.
    """
    clips = [c for c in clips if c.shape[0]]  # a failed GIF's empty float tensor: no dtype mix
    out = None
    if torch.utils.data.get_worker_info() is not None:
        total = sum(c.shape[0] for c in clips)
        storage = clips[0]._typed_storage()._new_shared(total * math.prod(clips[0].shape[1:]))
        out = clips[0].new(storage).view(total, *clips[0].shape[1:])
    return torch.cat(clips, out=out)


def collate_clips(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch of B items → clips of all GIFs concatenated, with the GIF each clip belongs to.

    Returns::

        {"clips": (ΣN, 3, 16, 112, 112) float32, "gif_index": (ΣN,) long in [0, B),
         "index": (B,) long, "ids": list[str], "paths": list[str],
         "labels": (B, t) float32              # when the items have labels
         "failures": list[{"index", "id", "path", "reason"}],
         "n_frames": (B,) long, "mean_delay_ms": (B,) float64, "truncated": (B,) bool}

    A failed GIF contributes no clips (so no row of ``gif_index`` points to it) and one entry
    in ``failures``.
    """
    if not items:
        raise ValueError("collate_clips got an empty batch")
    clips = [it["clips"] for it in items]
    counts = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
    batch: dict[str, Any] = {
        "clips": _cat_clips(clips) if counts.sum() else torch.zeros(EMPTY_CLIPS_SHAPE),
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
    }
    with_labels = ["labels" in it for it in items]
    if any(with_labels):
        if not all(with_labels):
            raise ValueError("collate_clips: some items have labels and some do not")
        batch["labels"] = torch.stack([torch.as_tensor(it["labels"]) for it in items])
    return batch


class EpochKeySampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, i)`` keys, in a (seed, epoch)-seeded random order when ``shuffle``."""

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = item_generator(self.seed, self.epoch, _ORDER_KEY)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return iter([(self.epoch, i) for i in order])


Split = tuple[Sequence[_Record], np.ndarray | None]


class ClipDataModule(L.LightningDataModule):
    """Train / val / test loaders of :class:`GifClipDataset` batches (``collate_clips``).

    Args:
        train, val, test, predict: ``(records, labels or None)`` per split, or None.
        batch_size: GIFs per training batch (the clip count varies: ΣN clips per batch).
        eval_batch_size: GIFs per evaluation batch (default ``batch_size``).
        train_sampler, eval_sampler: clip samplers (default ``RandomClip(num_clips=1)``, ``AllClips()``).
        train_transform, eval_transform: default ``C3DTransform(train=True)``, ``C3DTransform()``.
        num_workers, persistent_workers, prefetch_factor: DataLoader worker settings.
        read_kwargs: ``read_gif`` keyword arguments. seed: shuffling and augmentation seed.
    """

    def __init__(
        self,
        *,
        train: Split | None = None,
        val: Split | None = None,
        test: Split | None = None,
        predict: Split | None = None,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        train_sampler: _Sampler | None = None,
        eval_sampler: _Sampler | None = None,
        train_transform: C3DTransform | None = None,
        eval_transform: C3DTransform | None = None,
        num_workers: int = 2,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        read_kwargs: dict | None = None,
        seed: int = 0,
        cache: Any = None,
    ):
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test, "predict": predict}
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.train_sampler = train_sampler or RandomClip(num_clips=1)
        self.eval_sampler = eval_sampler or AllClips()
        self.train_transform = train_transform or C3DTransform(train=True)
        self.eval_transform = eval_transform or C3DTransform(train=False)
        self.num_workers = int(num_workers)
        self.persistent_workers = bool(persistent_workers)
        self.prefetch_factor = int(prefetch_factor)
        self.read_kwargs = dict(read_kwargs or {})
        self.seed = int(seed)
        self.datasets: dict[str, GifClipDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for name, split in self.splits.items():
            if split is None or name in self.datasets:
                continue
            records, labels = split
            train = name == "train"
            self.datasets[name] = GifClipDataset(
                records,
                sampler=self.train_sampler if train else self.eval_sampler,
                transform=self.train_transform if train else self.eval_transform,
                labels=labels,
                read_kwargs=self.read_kwargs,
                seed=self.seed,
            )

    def _loader(self, name: str) -> DataLoader:
        self.setup()
        if name not in self.datasets:
            raise ValueError(f"ClipDataModule was given no {name!r} split")
        dataset = self.datasets[name]
        train = name == "train"
        workers = self.num_workers
        return DataLoader(
            dataset,
            sampler=EpochKeySampler(len(dataset), shuffle=train, seed=self.seed),
            batch_size=self.batch_size if train else self.eval_batch_size,
            collate_fn=collate_clips,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
