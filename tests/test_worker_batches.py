"""Loader batches leave a DataLoader worker with one shared-memory tensor; their small tensors
travel as numpy arrays and are tensors again in the main process (``TransferCollate``). The
consumer must get the collate's own batch: the same keys, dtypes and values as in-process."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gifemo.backbones.c3d import c3d_preprocessing
from gifemo.backbones.transfer import SharedCrops, worker_read_kwargs
from gifemo.data.clip_dataset import GifClipDataset
from gifemo.data.clips import AllClips
from gifemo.data.worker_batches import (
    NUMPY_KEYS,
    SharedBuffers,
    TransferCollate,
    hand_back,
    numpy_for_transfer,
    tensors_after_transfer,
)
from gifemo.features.accumulate import collate_crops
from gifemo.finetune.data import FinetuneDataModule
from tests.test_extract_fast import make_gifs


def same_batch(got: dict, ref: dict) -> None:
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        if isinstance(v, torch.Tensor):
            assert isinstance(got[k], torch.Tensor), k
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
            as_bytes = [t.contiguous().view(-1).view(torch.uint8) for t in (got[k], v)]
            assert torch.equal(*as_bytes), k  # bit for bit (a failed GIF's delay is NaN)
        else:
            assert got[k] == v, k


def test_small_tensors_become_numpy_and_come_back_as_the_same_tensors():
    shared = torch.arange(6, dtype=torch.uint8).share_memory_()
    batch = {
        "index": torch.tensor([3, 5]),
        "mean_delay_ms": torch.tensor([40.0, 70.5], dtype=torch.float64),
        "truncated": torch.tensor([False, True]),
        "labels": torch.eye(2, 3),
        "empty": torch.zeros((0, 16), dtype=torch.long),
        "strided": torch.arange(12).view(3, 4)[:, ::2],
        "crops": shared,
        "half": torch.ones(2, dtype=torch.bfloat16),  # numpy has no bfloat16
        "grad": torch.ones(2, requires_grad=True),
        "ids": ["a", "b"],
        "failures": [],
    }
    sent = numpy_for_transfer(batch)
    moved = {"index", "mean_delay_ms", "truncated", "labels", "empty", "strided"}
    assert set(sent[NUMPY_KEYS]) == moved
    assert all(isinstance(sent[k], np.ndarray) for k in moved)
    assert sent["crops"] is shared  # already in shared memory: it travels as it is
    assert sent["half"] is batch["half"] and sent["grad"] is batch["grad"]
    back = tensors_after_transfer(sent)
    assert NUMPY_KEYS not in back
    same_batch({k: v for k, v in back.items() if k != "grad"},
               {k: v for k, v in batch.items() if k != "grad"})  # fmt: skip
    assert tensors_after_transfer(dict(batch)).keys() == batch.keys()  # never sent: unchanged
    plain = torch.ones(3)  # default_collate's batch of a list dataset
    assert tensors_after_transfer(plain) is plain
    with pytest.raises(ValueError, match="numpy_keys"):
        numpy_for_transfer({NUMPY_KEYS: 1})


def test_a_workers_batches_send_one_tensor_and_equal_the_in_process_batches(tmp_path):
    """A real worker process: what arrives holds only the crops as a tensor (one shared
    segment, one descriptor), and after tensors_after_transfer every batch equals the
    collate's in-process batch, failed GIF included."""
    recs = make_gifs(tmp_path / "g", frames=(16, 9, 24, 17), bad=(1,))
    wire = SharedCrops(c3d_preprocessing().transform(train=False, output="uint8"))
    ds = GifClipDataset(recs, sampler=AllClips(), transform=wire,
                        read_kwargs=worker_read_kwargs(None, wire), keep_used=True)  # fmt: skip
    pairs = [[0, 1], [2, 3]]
    loader = DataLoader(ds, batch_sampler=pairs, collate_fn=TransferCollate(collate_crops),
                        num_workers=1)  # fmt: skip
    for raw, pair in zip(loader, pairs, strict=True):
        tensors = [k for k, v in raw.items() if isinstance(v, torch.Tensor)]
        assert tensors == ["crops"]
        assert set(raw[NUMPY_KEYS]) == {"gif_index", "index", "n_frames", "mean_delay_ms",
                                        "truncated", "clip_frames"}  # fmt: skip
        same_batch(tensors_after_transfer(raw), collate_crops([ds[i] for i in pair]))
    assert TransferCollate(collate_crops)([ds[0]]).keys() == collate_crops([ds[0]]).keys()


def test_finetune_batches_from_workers_are_the_in_process_batches(tmp_path):
    """The fine-tuning loader turns its batches back into tensors itself: with a worker
    process its batches equal those of num_workers=0 (training: random clips, crops, flips
    drawn from (seed, epoch, index), not from the process), their clips in a shared buffer
    the worker reuses."""
    recs = make_gifs(tmp_path / "g", frames=(16, 20, 24, 17), bad=())
    labels = (np.arange(4 * 3).reshape(4, 3) % 2).astype(np.float32)
    kw = dict(preprocessing=c3d_preprocessing(), train=(recs, labels), val=(recs[:2], labels[:2]),
              batch_size=2, num_clips=1)  # fmt: skip
    for split in ("train", "val"):
        ref = list(FinetuneDataModule(num_workers=0, **kw).loader(split))
        loader = FinetuneDataModule(num_workers=1, **kw).loader(split)
        got = list(loader)
        assert len(got) == len(ref) > 0
        for g, r in zip(got, ref, strict=True):
            assert NUMPY_KEYS not in g
            token, _, _ = g.pop(SharedBuffers.KEY)  # the clips came in a reused buffer
            assert token == loader.collate_fn.buffers.token
            same_batch(g, r)


def test_shared_buffers_reuse_a_slot_only_after_it_is_handed_back(monkeypatch):
    buffers = SharedBuffers(workers=2, per_worker=2)
    flat, ticket = buffers.take(100)  # not in a worker: private memory, no slot
    assert ticket is None and not flat.is_shared() and flat.numel() == 100
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=1))
    a, ta = buffers.take(1000)
    b, tb = buffers.take(1000)
    assert a.is_shared() and [ta[1], tb[1]] == [2, 3]  # worker 1's two slots
    c, tc = buffers.take(1000)  # both with the consumer: a fresh segment, no ticket
    assert tc is None and c.is_shared() and c.data_ptr() not in (a.data_ptr(), b.data_ptr())
    batch_a = {SharedBuffers.KEY: ta}
    hand_back(batch_a)
    assert SharedBuffers.KEY not in batch_a
    hand_back(batch_a)  # handed back already: nothing
    again, t_again = buffers.take(900)  # slot 2 again, the same memory
    assert t_again[1] == 2 and t_again != ta and again.data_ptr() == a.data_ptr()
    hand_back({SharedBuffers.KEY: ta})  # a stale ticket must not free the new batch
    assert buffers.take(10)[1] is None
    hand_back({SharedBuffers.KEY: t_again})
    bigger, t_big = buffers.take(5000)  # too small now: slot 2 gets a larger buffer
    assert t_big[1] == 2 and bigger.numel() == 5000 and bigger.data_ptr() != a.data_ptr()
    copy = pickle.loads(pickle.dumps(buffers))  # a spawned worker's: no buffers of its own
    assert copy._own == {} and torch.equal(copy.state, buffers.state)
    hand_back({SharedBuffers.KEY: ("not-a-token", 0, 1)})  # a loader gone: nothing to free
    hand_back(torch.ones(2))  # not a dict: nothing
    with pytest.raises(ValueError, match="workers >= 1"):
        SharedBuffers(workers=0)


@pytest.mark.parametrize("handed", [True, False], ids=["handed-back", "never-handed-back"])
def test_reused_buffers_never_change_a_batch_the_consumer_still_holds(tmp_path, handed):
    """Two real workers reuse their crops' buffers while the consumer holds the two latest
    batches: every batch still equals its in-process collate when it is let go. A consumer
    that never hands back gets fresh segments once the slots run out, and the same bytes."""
    recs = make_gifs(tmp_path / "g", frames=(16, 9, 24, 17, 30, 12, 20, 16) * 2, bad=(5,))
    wire = SharedCrops(c3d_preprocessing().transform(train=False, output="uint8"))
    ds = GifClipDataset(recs, sampler=AllClips(), transform=wire,
                        read_kwargs=worker_read_kwargs(None, wire), keep_used=True)  # fmt: skip
    pairs = [[i, i + 1] for i in range(0, len(recs), 2)]
    collate = TransferCollate(collate_crops, SharedBuffers(workers=2, per_worker=3))
    loader = DataLoader(ds, batch_sampler=pairs, collate_fn=collate, num_workers=2,
                        prefetch_factor=1)  # fmt: skip
    held, tickets = [], []
    for batch, pair in zip(loader, pairs, strict=True):
        batch = tensors_after_transfer(batch)
        tickets.append(batch.get(SharedBuffers.KEY))
        held.append((batch, collate_crops([ds[i] for i in pair])))
        if len(held) > 2:
            got, ref = held.pop(0)
            assert torch.equal(got["crops"], ref["crops"])
            if handed:
                hand_back(got)
    for got, ref in held:
        assert torch.equal(got["crops"], ref["crops"])
    slots = [t[1] for t in tickets if t is not None]
    if handed:  # every batch in a slot's buffer, and slots used again
        assert len(slots) == len(pairs) > len(set(slots))
    else:  # three slots per worker, then fresh segments
        assert len(slots) == 6 and tickets[-1] is None


def test_batches_survive_the_pin_memory_thread(tmp_path, monkeypatch):
    """On CUDA the loader's pin-memory thread copies each batch before the consumer sees it
    (``torch.utils.data._utils.pin_memory.pin_memory``: tensors pinned, tuples and lists
    rebuilt, numpy arrays passed through). This CPU has no pinned memory, so a tensor's
    ``pin_memory`` is replaced by a copy into fresh memory, which is what pinning does to the
    bytes. The consumer must still get the in-process batch, and its hand-back must still free
    the worker's slot: the pinned copy no longer reads the shared buffer."""
    from torch.utils.data._utils.pin_memory import pin_memory

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self.clone())
    recs = make_gifs(tmp_path / "g", frames=(16, 9, 24, 17), bad=(1,))
    wire = SharedCrops(c3d_preprocessing().transform(train=False, output="uint8"))
    ds = GifClipDataset(recs, sampler=AllClips(), transform=wire,
                        read_kwargs=worker_read_kwargs(None, wire), keep_used=True)  # fmt: skip
    pairs = [[0, 1], [2, 3]]
    buffers = SharedBuffers(workers=1, per_worker=3)
    loader = DataLoader(ds, batch_sampler=pairs, collate_fn=TransferCollate(collate_crops, buffers),
                        num_workers=1)  # fmt: skip
    for raw, pair in zip(loader, pairs, strict=True):
        shared = raw["crops"].data_ptr()
        batch = tensors_after_transfer(pin_memory(raw))
        assert batch["crops"].data_ptr() != shared  # the consumer reads the pinned copy
        _, slot, tag = batch[SharedBuffers.KEY]
        assert buffers.state[slot] == tag  # held until the consumer is done with it
        hand_back(batch)
        assert buffers.state[slot] == 0
        same_batch(batch, collate_crops([ds[i] for i in pair]))
