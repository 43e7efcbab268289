"""Extraction on several processes (GPUs, nodes) through ``torch.distributed``.

The launcher is torch's own (``torchrun``, or SLURM's ``srun`` with the same variables): every
process runs the same ``extract.py`` command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in its environment. :func:`init_from_env` joins the process
group (NCCL on CUDA, gloo on CPU). Extraction then splits the work by chunk: chunk ``c`` (GIFs
``c·chunk_gifs … (c+1)·chunk_gifs − 1``) belongs to rank ``c mod W``, so every rank decodes and
runs a disjoint set of GIFs and writes its own shards into the shared ``.partial`` folder. A
chunk's shard depends only on its GIFs (batch composition is fixed by the chunk,
:mod:`gifemo.features.extract`), so the shards — and the store that rank 0 assembles from them
once all ranks have finished — are byte-identical to a one-process run on the same device type,
precision and thread count. A killed run is resumed by running the same command again (any
world size): finished shards are kept.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The slowest rank's last chunk plus rank 0's assembly of the store happen inside one barrier.
BARRIER_TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: ``rank`` of ``world``; ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, chunks: list[int]) -> list[int]:
        """The chunks this rank extracts: chunk c belongs to rank c mod world."""
        return [c for c in chunks if c % self.world == self.rank]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks (float64, on the group's device)."""
        if self.world == 1:
            return list(values)
        dev = torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return t.cpu().tolist()


def _nccl() -> bool:
    return dist.is_initialized() and dist.get_backend() == "nccl"


def current() -> Ranks:
    """The ranks of an initialised default process group, else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return Ranks(dist.get_rank(), dist.get_world_size(), local)


def init_from_env(device: str) -> tuple[Ranks, str]:
    """Join the process group that ``torchrun``/SLURM describe in the environment.

    ``WORLD_SIZE`` unset or 1: a single process, nothing is initialised. Otherwise the default
    group is initialised (``env://``; NCCL when ``device`` is CUDA or "auto" with CUDA present,
    gloo else). Returns the ranks and the device this rank uses: ``cuda:LOCAL_RANK`` for a
    CUDA device without an index, else ``device`` as given.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and ":" not in device:
        device = f"cuda:{local}"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", init_method="env://", timeout=BARRIER_TIMEOUT
        )
    return Ranks(rank, world, local), device


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
