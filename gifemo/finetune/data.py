"""GIF → clip batches for fine-tuning: cached decoding, seeded augmentation, DDP-aware loaders.

:class:`FinetuneClipDataset` turns GIF records into the item dicts of
:class:`gifemo.data.clip_dataset.GifClipDataset` (batched by ``collate_clips``), with one
difference in where frames come from: ``resize_frames(read_gif(path).frames)`` is read through
a :class:`gifemo.finetune.cache.ClipCache` when one is given (decoded once, shared by workers
and epochs), and the clip sampler + ``C3DTransform.from_resized`` (random crop and flip at
training) run on top every time. Without a cache the same function decodes directly, so cached
and uncached runs produce the same tensors.

Randomness: the training sampler yields ``(epoch, index, pad)`` keys and item i of epoch e draws
its clips, crops and flips from ``torch.Generator`` seeded by (seed, epoch, i) — independent of
worker count, worker assignment, rank, persistent workers and resumption. :func:`collate_finetune`
adds the per-GIF loss weight (0 for a DDP padding repeat) to ``collate_clips``'s batch.

A GIF that fails to decode never stops training: its item has 0 clips and ``error`` set, and the
collated batch lists it under ``failures`` (the module records them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from gifemo.finetune.cache import CachedGif, ClipCache
from gifemo.finetune.sampling import EpochSampler, ResumableDataLoader

log = logging.getLogger(__name__)


def _decode(path: str, read_kwargs: dict[str, Any]) -> CachedGif:
    from gifemo.data.gif import read_gif
    from gifemo.data.transforms import resize_frames

    gif = read_gif(path, **read_kwargs)
    return CachedGif(
        resize_frames(gif.frames), gif.delays_ms.astype(np.int64), bool(gif.truncated), False
    )


def collate_finetune(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``collate_clips`` + ``"weight"`` (B,) float32: 0 for padding repeats (``item["pad"]``), else 1."""
    from gifemo.data.clip_dataset import collate_clips

    batch = collate_clips(items)
    batch["weight"] = torch.tensor([0.0 if it.get("pad") else 1.0 for it in items])
    return batch


class FinetuneClipDataset(Dataset):
    """records (GifRecord-like: ``.id``, ``.path``) → item dicts of (N, 3, 16, 112, 112) clips.

    Args:
        records: GIF records.
        labels: (n, 17) binary labels or None.
        sampler: a clip sampler (``RandomClip(num_clips=k)`` for training, ``AllClips()`` for evaluation).
        transform: a ``C3DTransform`` (``train=True``: random crop + flip).
        cache: a :class:`ClipCache` or None (decode every time).
        read_kwargs: ``read_gif`` keyword arguments (when no cache; a cache has its own).
        seed: base seed of the per-item generators.
    """

    def __init__(
        self,
        records: Sequence[Any],
        *,
        sampler: Any,
        transform: Any,
        labels: np.ndarray | None = None,
        cache: ClipCache | None = None,
        read_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if labels is not None and (labels.ndim != 2 or len(labels) != len(records)):
            raise ValueError(f"labels must be (n_records={len(records)}, t); got {labels.shape}")
        self.records = list(records)
        self.labels = None if labels is None else np.asarray(labels, np.float32)
        self.sampler, self.transform, self.cache = sampler, transform, cache
        self.read_kwargs = dict(read_kwargs or {})
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.records)

    def frames(self, i: int) -> CachedGif:
        path = str(self.records[i].path)
        return self.cache.get(path) if self.cache is not None else _decode(path, self.read_kwargs)

    def __getitem__(self, key: int | tuple[int, ...]) -> dict[str, Any]:
        """key: i, (epoch, i) or (epoch, i, pad) (the training sampler's keys)."""
        from gifemo.data.clip_dataset import item_generator

        epoch, i, pad = (*key, False)[:3] if isinstance(key, tuple) else (0, key, False)
        record = self.records[i]
        item: dict[str, Any] = {
            "index": i,
            "id": record.id,
            "path": str(record.path),
            "error": None,
            "pad": bool(pad),
        }
        if self.labels is not None:
            item["labels"] = torch.from_numpy(self.labels[i])
        gen = item_generator(self.seed, epoch, i)  # the same draws as GifClipDataset
        try:
            gif = self.frames(i)
            clips = self.sampler(len(gif.resized), generator=gen)
            item["clips"] = self.transform.from_resized(
                np.asarray(gif.resized), clips, generator=gen
            )
            item["n_frames"] = len(gif.resized)
            item["mean_delay_ms"] = float(gif.delays_ms.mean())
            item["truncated"] = gif.truncated
        except (
            Exception
        ) as e:  # recorded in the item, reported by collate_clips (as GifClipDataset)
            item["clips"] = torch.zeros(0, 3, 16, 112, 112)
            item["error"] = f"{type(e).__name__}: {e}"
            item["n_frames"], item["mean_delay_ms"], item["truncated"] = 0, float("nan"), False
        return item


class FinetuneDataModule(L.LightningDataModule):
    """Train / val / test clip loaders for :class:`gifemo.finetune.module.FinetuneModule`.

    Training: ``RandomClip(num_clips)`` + ``C3DTransform(train=True)``, shuffled by (seed, epoch),
    padded across ranks. Evaluation: ``AllClips`` + centre crop, sharded across ranks without
    padding (each GIF once). ``batch_size`` is GIFs per device. Under DDP it takes rank and world
    size from the trainer and needs ``Trainer(use_distributed_sampler=False)``.
    """

    def __init__(
        self,
        *,
        train: tuple[Sequence[Any], np.ndarray],
        val: tuple[Sequence[Any], np.ndarray],
        test: tuple[Sequence[Any], np.ndarray] | None = None,
        batch_size: int = 8,
        eval_batch_size: int = 4,
        num_clips: int = 1,
        num_workers: int = 2,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        cache_dir: str | None = None,
        cache_max_mb: float = 4096,
        read_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test}
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_clips, self.num_workers = int(num_clips), int(num_workers)
        self.persistent_workers, self.prefetch_factor = (
            bool(persistent_workers),
            int(prefetch_factor),
        )
        self.read_kwargs = dict(read_kwargs or {})
        self.cache = (
            ClipCache(cache_dir, max_mb=cache_max_mb, read_kwargs=self.read_kwargs)
            if cache_dir
            else None
        )
        self.seed = int(seed)
        self.rank, self.world_size = 0, 1

    def setup(self, stage: str | None = None) -> None:
        trainer = self.trainer
        if trainer is not None:
            self.rank, self.world_size = trainer.global_rank, trainer.world_size
            if self.world_size > 1 and trainer._accelerator_connector.use_distributed_sampler:
                raise ValueError(
                    "fine-tuning shards its data itself: run DDP with Trainer(use_distributed_sampler=False) "
                    "(conf/trainer/ddp.yaml sets it)"
                )

    def dataset(self, split: str) -> FinetuneClipDataset:
        from gifemo.data.clips import AllClips, RandomClip
        from gifemo.data.transforms import C3DTransform

        part = self.splits[split]
        if part is None:
            raise ValueError(f"no {split} split was given to FinetuneDataModule")
        records, labels = part
        train = split == "train"
        return FinetuneClipDataset(
            records,
            labels=labels,
            sampler=RandomClip(num_clips=self.num_clips) if train else AllClips(),
            transform=C3DTransform(train=train),
            cache=self.cache,
            read_kwargs=self.read_kwargs,
            seed=self.seed,
        )

    def loader(self, split: str) -> ResumableDataLoader:
        train = split == "train"
        dataset = self.dataset(split)
        sampler = EpochSampler(
            len(dataset), shuffle=train, seed=self.seed, rank=self.rank, world_size=self.world_size,
            pad=train, with_epoch=train,
        )  # fmt: skip
        workers = self.num_workers
        return ResumableDataLoader(
            dataset,
            sampler=sampler,
            batch_size=self.batch_size if train else self.eval_batch_size,
            collate_fn=collate_finetune,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self.loader("train")

    def val_dataloader(self) -> ResumableDataLoader:
        return self.loader("val")

    def test_dataloader(self) -> ResumableDataLoader:
        return self.loader("test")
