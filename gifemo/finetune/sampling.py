"""Deterministic, rank-aware, resumable sampling for fine-tuning (DDP-correct, exact resume).

:class:`EpochSampler` draws the order of an epoch from (seed, epoch) only — never from the global
RNG — so a resumed run sees the same order as an uninterrupted one. Across ``world_size`` ranks:

- training (``pad=True``): one permutation of range(n) shared by all ranks is padded by
  repeating its head to a multiple of ``world_size`` (every rank then runs the same number of
  steps, which DDP needs) and rank r takes positions r, r + W, r + 2W, … — the scheme of
  ``torch.utils.data.DistributedSampler``. Per-device batch size × W × accumulation is the
  effective batch. With ``with_epoch=True`` the keys are ``(epoch, index, pad)``: ``pad`` marks
  the repeated head, which the loss weights 0 so that no GIF counts twice in a step.
- evaluation (``pad=False``): rank r takes r, r + W, … of range(n) with no padding, so every
  GIF is evaluated exactly once over all ranks (ranks may differ by one GIF; evaluation has no
  per-step collective, and predictions are gathered and deduplicated by index at epoch end).

:class:`ResumableDataLoader` implements Lightning's ``state_dict``/``load_state_dict`` loader
protocol: it records (epoch, batches consumed in the epoch), and after ``load_state_dict`` its
next iterator starts at that epoch's next batch by skipping sampler positions (no decoding). The
skip belongs to the saved epoch only: when the trainer goes on with the next epoch instead (the
saved one had ended early, e.g. at ``trainer.limit_train_batches``), that epoch starts whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Sampler

from gifemo.data.worker_batches import tensors_after_transfer


class EpochSampler(Sampler[Any]):
    """Indices of one rank for one epoch; ``set_epoch(e)`` as in DistributedSampler.

    With ``with_epoch=True`` it yields ``(epoch, index, pad)`` keys, so that a dataset running in a
    (persistent) worker process knows the epoch without any shared state; ``pad`` is True for the
    repeats that only even out the ranks' lengths.
    """

    def __init__(
        self,
        n: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        with_epoch: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.rank, self.world_size, self.pad = int(rank), int(world_size), bool(pad)
        self.with_epoch = bool(with_epoch)
        self.epoch = 0
        # positions of this rank's list to skip once, in epoch start_epoch only (set by a
        # resumed loader; another epoch — the trainer moved on — starts at its beginning)
        self.start, self.start_epoch = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's (padded) global order and its padding flags, before sharding."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.pad and self.world_size > 1 and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            order = np.concatenate([order, np.resize(order, extra)])
        return order, np.arange(len(order)) >= self.n

    def skip(self) -> int:
        """Positions the next iterator skips: ``start`` if the epoch is the resumed one, else 0."""
        return self.start if self.epoch == self.start_epoch else 0

    def indices(self) -> np.ndarray:
        """This rank's full list for the current epoch."""
        return self._order()[0][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Any]:
        skip = self.skip()
        order, pad = (x[self.rank :: self.world_size][skip:].tolist() for x in self._order())
        self.start = 0
        if self.with_epoch:  # (epoch, index, pad) keys: the dataset seeds its draws from them
            return iter([(self.epoch, i, p) for i, p in zip(order, pad, strict=True)])
        return iter(order)

    def __len__(self) -> int:
        if self.pad and self.world_size > 1:
            return -(-self.n // self.world_size)
        return len(range(self.rank, self.n, self.world_size))


class ResumableDataLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that can restart mid-epoch (see module notes).
    Its batches are the collate's own: those of a
    :class:`~gifemo.data.worker_batches.TransferCollate` are made tensors again as they come."""

    def __init__(
        self, dataset: Any, *, sampler: EpochSampler, batch_size: int, **kwargs: Any
    ) -> None:
        super().__init__(dataset, sampler=sampler, batch_size=batch_size, **kwargs)
        self._consumed = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        assert self.batch_size is not None
        self._consumed = sampler.skip() // self.batch_size
        for batch in super().__iter__():
            self._consumed += 1
            yield tensors_after_transfer(batch)  # a TransferCollate's batch: tensors again

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        return {"epoch": sampler.epoch, "consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        assert self.batch_size is not None
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if consumed >= len(self):  # saved at the end of an epoch: the next one starts afresh
            epoch, consumed = epoch + 1, 0
        sampler.set_epoch(epoch)
        sampler.start, sampler.start_epoch = consumed * self.batch_size, epoch
        self._consumed = consumed
