"""GIF → clip batches for fine-tuning: cached decoding, seeded augmentation, DDP-aware loaders.

The items are :class:`gifemo.data.clip_dataset.GifClipDataset`'s (batched by ``collate_clips``),
with its ``cache`` hook: frames come from a :class:`gifemo.finetune.cache.ClipCache` when one is
given (frames decoded and resized to the backbone's ``resize_hw`` once, shared by workers and
epochs), and the clip sampler + the backbone's transform ``from_resized`` (random crop and flip
at training) run on top every time; cached and uncached runs produce the same tensors. The
transform is ``preprocessing.transform(...)`` of the backbone's own :class:`Preprocessing`.

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

from gifemo.backbones.preprocessing import Preprocessing
from gifemo.backbones.transfer import keeps_used, worker_read_kwargs
from gifemo.data.clip_dataset import GifClipDataset, collate_clips
from gifemo.data.clips import AllClips
from gifemo.data.worker_batches import SharedBuffers, TransferCollate
from gifemo.finetune.cache import ClipCache
from gifemo.finetune.sampling import EpochSampler, ResumableDataLoader

log = logging.getLogger(__name__)


def collate_finetune(
    items: list[dict[str, Any]], buffers: SharedBuffers | None = None
) -> dict[str, Any]:
    """``collate_clips`` + ``"weight"`` (B,) float32: 0 for padding repeats (``item["pad"]``), else 1."""
    batch = collate_clips(items, buffers)
    batch["weight"] = torch.tensor([0.0 if it.get("pad") else 1.0 for it in items])
    return batch


class FinetuneDataModule(L.LightningDataModule):
    """Train / val / test clip loaders for :class:`gifemo.finetune.module.FinetuneModule`.

    Evaluation: the clip rule ``clips`` (default ``AllClips()``, the paper's; ``FpsClips(fps)``
    with ``clips=fps``, as extraction uses it) + centre crop, sharded across ranks without
    padding (each GIF once). Training: the rule's random version,
    ``clips.training(num_clips)`` (``RandomClip`` / ``RandomFpsClip``), +
    ``preprocessing.transform(train=True)`` (random crop and flip), shuffled by (seed, epoch),
    padded across ranks. ``batch_size`` is GIFs per device. Under DDP it takes rank and world
    size from the trainer and needs ``Trainer(use_distributed_sampler=False)``.

    ``preprocessing``: the backbone's (``backbone.preprocessing``): resize, crop, channel order,
    mean/std of its weights.

    ``clip_dtype="uint8"`` (default): batches carry the cropped, flipped, channel-ordered clips
    as uint8 and :class:`~gifemo.finetune.module.FinetuneModule` normalises them on its device
    (``backbone.preprocessing.normalize``) — a quarter
    of the bytes through workers, shared memory, pinning and the host-to-device copy, with
    bit-identical inputs to the model. ``"float32"`` normalises in the workers.

    Without a cache the workers decode FFmpeg's ``bgr0`` layout and, with ``keep_used``
    (default), keep only the frames the clips use, resized as they are decoded
    (``GifClipDataset(keep_used=True)``); at training, decoding also stops after the GIF's
    random clip (``stop_after_used``: the frames after it are never decoded, so damage there
    goes unnoticed — the clip is still a valid draw). ``keep_used=False`` decodes every frame
    first (a bench A/B; the same clips on undamaged files).
    """

    def __init__(
        self,
        *,
        preprocessing: Preprocessing,
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
        clip_dtype: str = "uint8",
        keep_used: bool = True,
        clips: Any = None,
    ) -> None:
        super().__init__()
        if clip_dtype not in ("uint8", "float32"):
            raise ValueError(f"clip_dtype must be 'uint8' or 'float32', got {clip_dtype!r}")
        self.clip_dtype = clip_dtype
        self.preprocessing = preprocessing
        self.splits = {"train": train, "val": val, "test": test}
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_clips, self.num_workers = int(num_clips), int(num_workers)
        self.persistent_workers, self.prefetch_factor = (
            bool(persistent_workers),
            int(prefetch_factor),
        )
        self.read_kwargs = dict(read_kwargs or {})
        self.cache = (
            ClipCache(
                cache_dir,
                max_mb=cache_max_mb,
                read_kwargs=self.read_kwargs,
                resize_hw=preprocessing.resize_hw,
            )
            if cache_dir
            else None
        )
        self.seed = int(seed)
        self.keep_used = bool(keep_used)
        self.clips = AllClips() if clips is None else clips
        if not hasattr(self.clips, "training"):
            raise ValueError(
                f"clips must be an evaluation clip rule with a training sampler (AllClips, "
                f"FpsClips), got {self.clips!r}"
            )
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

    def dataset(self, split: str) -> GifClipDataset:
        part = self.splits[split]
        if part is None:
            raise ValueError(f"no {split} split was given to FinetuneDataModule")
        records, labels = part
        train = split == "train"
        transform = self.preprocessing.transform(train=train, output=self.clip_dtype)
        keep = self.keep_used and self.cache is None and keeps_used(transform)
        return GifClipDataset(
            records,
            labels=labels,
            sampler=self.clips.training(self.num_clips) if train else self.clips,
            transform=transform,
            cache=self.cache,
            # without a cache the workers decode to FFmpeg's bgr0 layout (the same clips, no
            # RGB conversion) and keep only the frames the clips use, resized as they are
            # decoded; the cache keeps its RGB frames
            read_kwargs=(
                self.read_kwargs
                if self.cache is not None
                else worker_read_kwargs(self.read_kwargs, transform)
            ),
            keep_used=keep,
            stop_after_used=keep and train,  # one random clip: the rest need not be decoded
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
        # the clips go through shared buffers each worker reuses; FinetuneModule hands each
        # batch back after its step (a worker can have prefetch_factor batches in flight,
        # Lightning holds the batch being trained on and the next one)
        buffers = SharedBuffers(workers, self.prefetch_factor + 3) if workers > 0 else None
        return ResumableDataLoader(
            dataset,
            sampler=sampler,
            batch_size=self.batch_size if train else self.eval_batch_size,
            collate_fn=TransferCollate(collate_finetune, buffers),
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
