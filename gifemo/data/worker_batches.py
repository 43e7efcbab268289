"""Loader batches on their way from a DataLoader worker to the main process.

A worker's batch reaches the main process pickled through a queue, except its tensors: each
tensor moves to a shared-memory segment of its own, and the main process fetches that
segment's file descriptor over a fresh authenticated connection to the worker (PyTorch's
default ``file_descriptor`` sharing on Linux). That costs ~0.2 ms of CPU on *each* side per
tensor, whatever its size — for a batch's six small per-GIF tensors (``index``, ``gif_index``,
``n_frames``, ``mean_delay_ms``, ``truncated``, ``labels``…) more than its one large one.

:class:`TransferCollate` wraps a collate so that, inside a worker, the batch's tensors that
are not in shared memory already (the small ones) travel as numpy arrays, pickled in-band
with the batch; the clips, crops or frames that the collates write straight into shared
memory still travel as tensors. The consumer calls :func:`tensors_after_transfer` on each
batch (``torch.from_numpy``: no copy) and gets the collate's own batch back: the same keys,
dtypes and values. Out of a worker (``num_workers=0``) the wrapper changes nothing.

:class:`SharedBuffers` goes one step further for the large tensor: each worker keeps a few
shared-memory buffers and reuses them, once the consumer has copied a batch out and handed
its buffer back (:func:`hand_back`). A fresh segment costs the kernel a zeroed
page and a page fault per 4 kB written (~2.8 µs a page on the dev machine: ~0.2 ms for a
480×270 clip's crops); a reused one, only the copy.

Measured (``python -m gifemo.bench extract``, ``worker_profile.transfer``): the main
process's CPU time per batch and one worker's clips/s, before and after, in the same run.
"""

from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Callable
from typing import Any

import torch

# The batch key listing the keys that travel as numpy arrays (removed by tensors_after_transfer).
NUMPY_KEYS = "numpy_keys"


def numpy_for_transfer(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with each top-level CPU tensor that is not in shared memory as a numpy array
    (a view, no copy), and :data:`NUMPY_KEYS` naming them. Tensors numpy cannot hold
    (bfloat16, …) or that need grad stay tensors."""
    if NUMPY_KEYS in batch:
        raise ValueError(f"a batch must not have a key {NUMPY_KEYS!r} of its own")
    out, keys = dict(batch), []
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor) or v.is_shared() or v.layout != torch.strided:
            continue
        try:
            out[k] = v.numpy()  # refuses other devices, grad and dtypes numpy lacks
        except (TypeError, RuntimeError):
            continue
        keys.append(k)
    out[NUMPY_KEYS] = tuple(keys)
    return out


def tensors_after_transfer(batch: Any) -> Any:
    """The collate's batch again: the keys :func:`numpy_for_transfer` turned into numpy
    arrays back as tensors (sharing their memory). Any other batch (one that never left a
    worker, or not a dict) is returned as it is."""
    if not isinstance(batch, dict) or NUMPY_KEYS not in batch:
        return batch
    for k in batch.pop(NUMPY_KEYS):
        batch[k] = torch.from_numpy(batch[k])
    return batch


class SharedBuffers:
    """Shared-memory buffers that DataLoader workers reuse for their batches' large tensor.

    Each worker owns ``per_worker`` slots. A slot's state, in one small tensor in shared
    memory, is 0 (free) or the tag of the batch that holds its buffer. In a worker,
    :meth:`take` gives the buffer of a free slot (grown when too small) and marks the slot;
    the batch carries its ticket under :data:`SharedBuffers.KEY`. The consumer calls
    :func:`hand_back` once it no longer reads the batch's tensor (a copy of it made, or the
    host-to-device copy issued from pinned memory): the slot is freed if that batch still
    holds it. A worker with no free slot — the consumer holds more batches than there are
    slots, or never hands them back — allocates a fresh segment, as without buffers: slower,
    never wrong. Outside a worker :meth:`take` gives private memory.

    ``per_worker`` should exceed the batches a worker can have in flight (the DataLoader's
    ``prefetch_factor``) plus the one being consumed. A worker's buffers live as long as it
    does; a pickled copy (a spawned worker's) starts with none.
    """

    KEY = "shared_slot"

    def __init__(self, workers: int, per_worker: int = 6) -> None:
        if workers < 1 or per_worker < 1:
            raise ValueError(f"SharedBuffers needs workers >= 1 and per_worker >= 1, got "
                             f"{workers} and {per_worker}")  # fmt: skip
        self.per_worker = int(per_worker)
        self.state = torch.zeros(workers * self.per_worker, dtype=torch.int64).share_memory_()
        self.token = secrets.token_hex(8)  # names these buffers in tickets
        self._own: dict[int, torch.Tensor] = {}  # this worker's buffers, by slot
        self._taken = 0
        _LIVE[self.token] = self

    def __getstate__(self) -> dict[str, Any]:
        return {"per_worker": self.per_worker, "state": self.state, "token": self.token}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.per_worker, self.state, self.token = state["per_worker"], state["state"], state["token"]
        self._own, self._taken = {}, 0
        _LIVE[self.token] = self

    def take(self, nbytes: int) -> tuple[torch.Tensor, tuple[str, int, int] | None]:
        """A flat uint8 tensor of ``nbytes`` (shared memory in a worker) and its ticket:
        ``(token, slot, tag)`` for a slot's buffer, None for fresh memory."""
        info = torch.utils.data.get_worker_info()
        if info is None:
            return torch.empty(nbytes, dtype=torch.uint8), None
        state = self.state.numpy()
        first = info.id * self.per_worker
        for slot in range(first, min(first + self.per_worker, len(state))):
            if state[slot]:
                continue  # with the consumer
            buf = self._own.get(slot)
            if buf is None or buf.numel() < nbytes:  # regrown with room for the next ones
                room = 0 if buf is None else nbytes // 4
                buf = self._own[slot] = shared_uint8(nbytes + room)
            self._taken += 1
            tag = os.getpid() << 32 | self._taken  # unique across workers and restarts
            state[slot] = tag
            return buf[:nbytes], (self.token, slot, tag)
        return shared_uint8(nbytes), None


# The SharedBuffers of this process by token, so that hand_back needs only the batch.
_LIVE: weakref.WeakValueDictionary[str, SharedBuffers] = weakref.WeakValueDictionary()


def hand_back(batch: Any) -> None:
    """Free the shared buffer slot of ``batch`` (a dict with a :data:`SharedBuffers.KEY`
    ticket) for its worker to reuse; anything else is left alone, as is a batch handed back
    already. The consumer must not read the batch's shared tensor afterwards."""
    if not isinstance(batch, dict) or SharedBuffers.KEY not in batch:
        return
    token, slot, tag = batch.pop(SharedBuffers.KEY)
    buffers = _LIVE.get(token)
    if buffers is None:  # its loader is gone
        return
    state = buffers.state.numpy()
    if state[slot] == tag:  # still this batch's (not re-taken after an earlier hand-back)
        state[slot] = 0


def shared_uint8(nbytes: int) -> torch.Tensor:
    """A fresh flat uint8 tensor in shared memory."""
    base = torch.empty(0, dtype=torch.uint8)
    return base.new(base._typed_storage()._new_shared(nbytes))


def batch_memory(
    nbytes: int, batch: dict[str, Any], buffers: SharedBuffers | None = None
) -> torch.Tensor:
    """A flat uint8 tensor of ``nbytes`` for a collate to write a batch's large tensor into:
    in a DataLoader worker shared memory (one copy, one transfer to the main process) — one
    of ``buffers`` when given, its ticket put in ``batch`` — else private memory."""
    if buffers is None:
        if torch.utils.data.get_worker_info() is None:
            return torch.empty(nbytes, dtype=torch.uint8)
        return shared_uint8(nbytes)
    flat, ticket = buffers.take(nbytes)
    if ticket is not None:
        batch[SharedBuffers.KEY] = ticket
    return flat


class TransferCollate:
    """``collate`` whose batches, built inside a DataLoader worker, travel with their small
    tensors as numpy arrays (:func:`numpy_for_transfer`); in the main process it is
    ``collate`` itself. Consumers call :func:`tensors_after_transfer` on every batch.

    ``buffers``: the large tensor goes into one of them (``collate(items, buffers=…)``);
    the consumer calls :func:`hand_back` once it has copied the batch out."""

    def __init__(
        self, collate: Callable[..., dict[str, Any]], buffers: SharedBuffers | None = None
    ) -> None:
        self.collate, self.buffers = collate, buffers

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        if self.buffers is None:
            batch = self.collate(items)
        else:
            batch = self.collate(items, buffers=self.buffers)
        if torch.utils.data.get_worker_info() is None:
            return batch
        return numpy_for_transfer(batch)

    def __repr__(self) -> str:
        return f"TransferCollate({getattr(self.collate, '__name__', self.collate)!r})"
