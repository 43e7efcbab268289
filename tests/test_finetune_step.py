"""The fine-tuning step's speed work (issue 16): device-side dropout masks (counter-based hash)
against a naive pure-Python reference, no device→host transfer in ``training_step`` nor in
Lightning's step between logging steps, the cached normalisation, channels_last_3d, the step
timing in the history, and (slow) a torch.compile'd step against eager."""

from __future__ import annotations

import contextlib
import warnings

import lightning as L
import numpy as np
import pytest
import torch

from gifemo.bench.finetune_step import SameBatch
from gifemo.finetune.dropout import _DROPOUT_TAG, clip_in_gif, dropout_keep_mask, mix32
from gifemo.finetune.module import mean_by_gif
from tests.test_finetune import _batch, _module

M32 = 0xFFFFFFFF


# -- the hash, against plain Python integers ---------------------------------------------------
def py_fmix32(x: int) -> int:
    """murmur3's fmix32, written from its definition on Python ints (the reference)."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def py_keep_mask(seed, epoch, index, gif_index, d, p):
    """The documented mask, one Python int at a time: row key = fmix32 chained over the low and
    high words of (seed, epoch, index of the row's GIF, j), starting from the tag; entry (n, c)
    kept iff fmix32(row ⊕ fmix32(c ⊕ tag)) ≥ ⌊p·2³²⌋."""

    def absorb(h, v):
        h = py_fmix32(h ^ (v & M32))
        return py_fmix32(h ^ ((v >> 32) & M32))

    seen: dict[int, int] = {}
    out = np.zeros((len(gif_index), d), bool)
    for n, b in enumerate(gif_index):
        j = seen.get(b, 0)
        seen[b] = j + 1
        h = _DROPOUT_TAG
        for v in (seed, epoch, index[b], j):
            h = absorb(h, v)
        for c in range(d):
            out[n, c] = py_fmix32(h ^ py_fmix32(c ^ _DROPOUT_TAG)) >= int(p * 2**32)
    return out


def test_mix32_equals_fmix32_on_python_ints():
    rng = np.random.default_rng(0)
    xs = [0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, *rng.integers(0, 2**32, 500).tolist()]
    got = mix32(torch.tensor(xs, dtype=torch.long)).tolist()
    assert got == [py_fmix32(x) for x in xs]


def test_keep_mask_equals_naive_python_loop():
    gif_index = [2, 0, 2, 1, 2, 0]  # unsorted, several clips per GIF
    index = [7, 2**33 + 5, 123456]  # a dataset index above 2³² (its high word counts)
    for seed, epoch, p in [(0, 0, 0.5), (2**40 + 3, 7, 0.3), (5, 1, 0.9)]:
        got = dropout_keep_mask(
            seed, epoch, torch.tensor(index), torch.tensor(gif_index), 37, p
        ).numpy()
        np.testing.assert_array_equal(got, py_keep_mask(seed, epoch, index, gif_index, 37, p))


def test_clip_in_gif_counts_earlier_rows_of_the_same_gif():
    g = torch.tensor([3, 0, 3, 3, 1, 0, 5, 3])
    expected, seen = [], {}
    for b in g.tolist():
        expected.append(seen.get(b, 0))
        seen[b] = seen.get(b, 0) + 1
    assert clip_in_gif(g, 6).tolist() == expected
    assert clip_in_gif(torch.zeros(0, dtype=torch.long), 2).tolist() == []


def test_keep_rate_and_independence_of_the_masks():
    """Keep rate 1 − p within 5 binomial σ (over all entries, per column and per row); masks of
    other clips / epochs / seeds / GIFs disagree on ≈ 2p(1 − p) of the entries, as independent
    draws do."""
    n_gifs, clips, d = 64, 2, 2048
    index = torch.arange(1000, 1000 + n_gifs)
    gi = torch.arange(n_gifs).repeat_interleave(clips)
    for p in (0.5, 0.2):
        m = dropout_keep_mask(3, 1, index, gi, d, p).float()
        n = m.numel()
        assert abs(m.mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
        col_sd, row_sd = (p * (1 - p) / m.shape[0]) ** 0.5, (p * (1 - p) / d) ** 0.5
        assert (m.mean(0) - (1 - p)).abs().max().item() < 5.5 * col_sd
        assert (m.mean(1) - (1 - p)).abs().max().item() < 5.5 * row_sd
    p = 0.5
    base = dropout_keep_mask(3, 1, index, gi, d, p)
    others = {
        "clip": base[1::2],  # clip 1 of each GIF vs clip 0
        "epoch": dropout_keep_mask(3, 2, index, gi, d, p)[::2],
        "seed": dropout_keep_mask(4, 1, index, gi, d, p)[::2],
        "gif": dropout_keep_mask(3, 1, index + 1, gi, d, p)[::2],
    }
    n = base[::2].numel()
    for name, other in others.items():
        differ = (other != base[::2]).float().mean().item()
        assert abs(differ - 2 * p * (1 - p)) < 5 * (0.25 / n) ** 0.5, name


def test_keep_mask_is_keyed_by_gif_not_position_and_reproducible():
    a = dropout_keep_mask(1, 2, torch.tensor([5, 9]), torch.tensor([0, 1, 0]), 300, 0.4)
    b = dropout_keep_mask(1, 2, torch.tensor([9, 5]), torch.tensor([1, 1, 0]), 300, 0.4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[1]) and torch.equal(a[1], b[2])
    assert torch.equal(
        a, dropout_keep_mask(1, 2, torch.tensor([5, 9]), torch.tensor([0, 1, 0]), 300, 0.4)
    )
    with pytest.raises(ValueError, match="dropout p"):
        dropout_keep_mask(1, 2, torch.tensor([5]), torch.tensor([0]), 3, 1.0)


def test_mean_by_gif_counts_without_bincount(monkeypatch):
    def no_bincount(*a, **k):
        raise AssertionError("bincount reads its maximum back to the host")

    monkeypatch.setattr(torch, "bincount", no_bincount)
    mean, counts = mean_by_gif(torch.ones(4, 2), torch.tensor([2, 0, 2, 2]), 4)
    assert counts.tolist() == [1, 0, 3, 0] and mean[:, 0].tolist() == [1, 0, 1, 0]


# -- no device→host transfer in the step ---------------------------------------------------------
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def no_host_transfer():
    """Every way a tensor's values reach Python (a device sync on a GPU) raises, and so does
    making a tensor from host data (a host→device copy on a GPU, synchronous from pageable
    memory); tensor factories without a device go to the meta device, where using them with the
    model's tensors fails."""

    def refuse(name):
        def f(*a, **k):
            raise AssertionError(f"host transfer in the training step: {name}")

        return f

    saved = {n: getattr(torch.Tensor, n) for n in HOST_READS}
    makers = {n: getattr(torch, n) for n in ("tensor", "as_tensor", "from_numpy")}
    try:
        for n in HOST_READS:
            setattr(torch.Tensor, n, refuse(f"Tensor.{n}"))
        for n in makers:
            setattr(torch, n, refuse(f"torch.{n}"))
        with torch.device("meta"):
            yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        for n, f in makers.items():
            setattr(torch, n, f)


def _uint8_batch(n_clips=(2, 1, 0, 3)):
    batch = _batch(n_clips)
    g = torch.Generator().manual_seed(1)
    batch["clips"] = torch.randint(0, 256, batch["clips"].shape, generator=g, dtype=torch.uint8)
    batch["weight"] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    batch["index"] = torch.tensor([11, 3, 8, 2**33])
    return batch


def _fit(module, batch, steps, callbacks=(), **trainer_kw):
    loader = torch.utils.data.DataLoader(
        SameBatch(batch, steps), batch_size=None, collate_fn=lambda b: b
    )
    kw = dict(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=list(callbacks))  # fmt: skip
    trainer = L.Trainer(**{**kw, **trainer_kw})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    return trainer


def test_training_step_reads_nothing_back_from_the_device():
    """The module's own training step (real Trainer attached, dropout on, uint8 clips, a padding
    weight, a failed GIF) runs with every host read refused, from the second step on (the first
    one registers the logged metric and caches the normalisation constants)."""
    m = _module(feature_dropout=0.5, freeze_epochs=0)
    ran = []
    step = m.training_step

    def guarded(batch, batch_idx):
        if batch_idx == 0:
            return step(batch, batch_idx)
        with no_host_transfer():
            out = step(batch, batch_idx)
        ran.append(batch_idx)
        return out

    m.training_step = guarded
    _fit(m, _uint8_batch(), 4)
    assert ran == [1, 2, 3]
    assert m.history[0]["train/loss"] > 0


def test_no_host_transfer_guard_catches_a_sync():
    with pytest.raises(AssertionError, match=r"Tensor\.tolist"), no_host_transfer():
        torch.ones(2, device="cpu").tolist()
    with pytest.raises(AssertionError, match=r"torch\.tensor"), no_host_transfer():
        torch.tensor([1.0])
    with pytest.raises(RuntimeError), no_host_transfer():  # a CPU factory with no device
        torch.ones(3, device="cpu") * torch.ones(3)
    assert torch.ones(1).tolist() == [1.0]  # restored


class _HostReads(L.Callback):
    """Counts host reads of tensors per training step: from one step's batch start to the next
    (so Lightning's work after ``on_train_batch_end``, the logging, counts too)."""

    def __init__(self):
        self.calls: dict[int, list[str]] = {}
        self.saved = {n: getattr(torch.Tensor, n) for n in HOST_READS}
        self.step = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = batch_idx
        self.calls[batch_idx] = []
        for n, f in self.saved.items():
            setattr(torch.Tensor, n, self._count(n, f))

    def _count(self, name, f):
        def g(*a, **k):
            self.calls[self.step].append(name)
            return f(*a, **k)

        return g

    def on_train_epoch_end(self, trainer, pl_module):
        self.restore()

    def restore(self):
        for n, f in self.saved.items():
            setattr(torch.Tensor, n, f)


def test_lightning_step_reads_back_only_when_it_logs(tmp_path):
    """Through Lightning's whole step (closure, backward, optimiser, logging, progress bar): no
    host read except on the steps the logger writes (every log_every_n_steps)."""
    from lightning.pytorch.loggers import CSVLogger

    m = _module(feature_dropout=0.5, freeze_epochs=0)
    probe = _HostReads()
    try:
        _fit(m, _uint8_batch(), 10, [probe], logger=CSVLogger(tmp_path), log_every_n_steps=4,
             enable_progress_bar=True)  # fmt: skip
    finally:
        probe.restore()
    assert len(probe.calls) == 10
    reads = {s: c for s, c in probe.calls.items() if c and s > 0}
    assert set(reads) == {3, 7}, probe.calls  # steps 4 and 8 write the log
    assert all(c == ["item"] for c in reads.values()), reads  # the one logged scalar


# -- normalisation, channels_last, step timing ---------------------------------------------------
def test_normalisation_constants_are_made_once_per_device_and_bit_identical():
    """``Preprocessing.normalize`` keeps its mean/std per device (no host→device copy per
    batch, a stream sync on CUDA) and computes what the plain float32 formula does."""
    from gifemo.backbones.preprocessing import channel_constants
    from gifemo.backbones.r2plus1d import kinetics400_preprocessing

    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 3, 16, 12, 12), generator=g, dtype=torch.uint8)
    for pre in (_module().backbone.preprocessing, kinetics400_preprocessing()):
        mean = torch.tensor(pre.mean, dtype=torch.float32).reshape(3, 1, 1, 1)
        std = torch.tensor(pre.std, dtype=torch.float32).reshape(3, 1, 1, 1)
        for x in (clips, clips.contiguous(memory_format=torch.channels_last_3d)):
            ref = (x.float() / pre.divisor - mean) / std
            pre.normalize(x)  # the first call on a device makes its constants
            with no_host_transfer():  # later calls make no tensor from host data
                out = pre.normalize(x)
            assert torch.equal(out, ref)
    assert channel_constants((1.0, 2.0, 3.0), "cpu") is channel_constants((1.0, 2.0, 3.0), "cpu")
    f = torch.randn(1, 3, 16, 4, 4)
    assert pre.normalize(f) is f  # float clips pass unchanged


def test_channels_last_is_cuda_only_by_default_and_changes_nothing_but_rounding():
    m = _module(feature_dropout=0.5)
    assert m.use_channels_last("cuda") and not m.use_channels_last("cpu")
    assert _module(channels_last=True).use_channels_last("cpu")
    assert not _module(channels_last=False).use_channels_last("cuda")
    batch = _uint8_batch()
    m.train()
    ref, _ = m.gif_logits(batch)
    m.set_memory_format("cpu")  # default: nothing changes on a CPU
    assert m.backbone.conv1.weight.is_contiguous()
    assert torch.equal(m.gif_logits(batch)[0], ref)
    m.set_memory_format("cuda")  # the CUDA layout, applied here to CPU tensors
    assert m.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    out, _ = m.gif_logits(batch)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fit_records_first_step_and_steady_step_times_in_the_history():
    m = _module(feature_dropout=0.5, freeze_epochs=0)
    m.TIMED_STEPS = 3
    _fit(m, _uint8_batch(), 6)
    row = m.history[0]
    assert row["first_step_s"] == m.first_step_s > 0 and row["step_s"] == m.step_s > 0
    short = _module(feature_dropout=0.5, freeze_epochs=0)
    _fit(short, _uint8_batch(), 3)  # the epoch ends inside the timed window: no step_s
    assert short.first_step_s > 0 and short.step_s is None and "step_s" not in short.history[0]


def test_runner_passes_channels_last_and_compile_from_the_config():
    from gifemo.runners.finetune import _channels_last

    assert [_channels_last(v) for v in ("auto", None, True, False)] == [None, None, True, False]
    with pytest.raises(ValueError, match=r"model\.channels_last"):
        _channels_last("yes")


# -- torch.compile -------------------------------------------------------------------------------
def _compile_works() -> str | None:
    try:
        torch.compile(lambda x: torch.relu(x) * 2)(torch.randn(4))
    except Exception as e:  # no C++ compiler, unsupported platform, …
        return f"torch.compile does not work here: {type(e).__name__}: {e}"
    return None


@pytest.mark.slow
def test_compiled_step_matches_eager_within_tolerance():
    """One training step (tiny C3D, dropout, trainable backbone, uint8 clips) with compiled
    backbone features: the same loss and gradients as eager to rtol 1e-4 / atol 1e-5 (fused
    kernels sum in another order); under a real Trainer the compiling first step and the steady
    ones are recorded in the history."""
    why = _compile_works()
    if why:
        pytest.skip(why)
    batch = _uint8_batch()

    def step(m):
        m.train()
        m._world_size = lambda: 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = m.training_step(batch, 0)
        loss.backward()
        return loss.detach(), {
            n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None
        }

    torch._dynamo.reset()  # nothing compiled yet in this process: the first step compiles
    fresh = _module(feature_dropout=0.5, freeze_epochs=0)
    fresh.compile_features()
    fresh.TIMED_STEPS = 2
    _fit(fresh, batch, 3)
    row = fresh.history[0]  # the warm-up's record (its size is the bench's business)
    assert row["first_step_s"] > 0 and row["step_s"] > 0, row

    eager_loss, eager_grads = step(_module(feature_dropout=0.5, freeze_epochs=0))
    compiled = _module(feature_dropout=0.5, freeze_epochs=0, compile=True)
    assert compiled.compiled
    loss, grads = step(compiled)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
    assert grads.keys() == eager_grads.keys() and "backbone.conv1.weight" in grads
    for name, g in grads.items():
        torch.testing.assert_close(g, eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)
