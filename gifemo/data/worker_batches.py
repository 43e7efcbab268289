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

Measured (``python -m gifemo.bench extract``, ``worker_profile.transfer``): the main
process's CPU time per batch and one worker's clips/s, before and after, in the same run.
"""

from __future__ import annotations

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


class TransferCollate:
    """``collate`` whose batches, built inside a DataLoader worker, travel with their small
    tensors as numpy arrays (:func:`numpy_for_transfer`); in the main process it is
    ``collate`` itself. Consumers call :func:`tensors_after_transfer` on every batch."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = self.collate(items)
        if torch.utils.data.get_worker_info() is None:
            return batch
        return numpy_for_transfer(batch)

    def __repr__(self) -> str:
        return f"TransferCollate({getattr(self.collate, '__name__', self.collate)!r})"
