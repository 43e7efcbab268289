"""The CUDA paths, checked on a GPU machine (``pytest -m gpu``; skipped where no CUDA device is).

What the CPU tests cannot show: the same features from a CUDA extraction as from the CPU one
(cuDNN's kernels round differently, so within a stated tolerance, not byte for byte), and the
fine-tuning step free of device→host synchronisations (``torch.cuda.set_sync_debug_mode``
turns each one into an error). The GPU check (``python -m gifemo.bench gpu``, docs/extraction.md)
runs these first.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gifemo.backbones.c3d import build_c3d
from gifemo.features.extract import extract_features
from tests.test_extract_fast import make_gifs

pytestmark = pytest.mark.gpu


def _c3d_small():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        torch.manual_seed(0)
        return build_c3d(channels=(16, 32, 32, 64, 64), fc_dim=128)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_cuda_extraction_matches_the_cpu_store(tmp_path, precision):
    recs = make_gifs(tmp_path / "gifs")
    model = _c3d_small()
    common = dict(model=model, batch_clips=4, num_workers=2, progress=False, chunk_gifs=3)
    cpu = extract_features(recs, tmp_path / "cpu", precision="32", device="cpu", **common)
    gpu = extract_features(recs, tmp_path / precision, precision=precision, device="cuda", **common)
    assert gpu.meta["last_run"]["device"].startswith("cuda")
    assert gpu.ids == cpu.ids and [f["id"] for f in gpu.failures] == ["g4"]
    a, b = np.asarray(cpu.visual, np.float64), np.asarray(gpu.visual, np.float64)
    cos = _cosines(a, b)
    # "32" on cuDNN: convolutions in TF32 (torch's default for cuDNN, 10-bit mantissa);
    # bf16 autocast keeps 8 bits. Both round; neither may change what a feature says.
    assert cos.min() > (1 - 1e-4 if precision == "32" else 0.999), cos


def test_cuda_device_resize_is_within_1_of_the_workers_and_gives_the_same_features(tmp_path):
    """``extract.resize_on=device`` on CUDA: its float32-and-round resize against the CPU's uint8
    kernel (pixels within 1), and the two stores' features (cosine)."""
    from gifemo.backbones.resize import resize_frames, resize_frames_tensor
    from gifemo.data.gif import read_gif

    recs = make_gifs(tmp_path / "gifs")
    frames = read_gif(recs[2].path, pixel_format="bgr0").frames
    on_gpu = resize_frames_tensor(torch.from_numpy(frames).cuda(), (128, 171)).cpu().numpy()
    diff = np.abs(on_gpu.astype(int) - resize_frames(frames, (128, 171)).astype(int))
    assert diff.max() <= 1
    model = _c3d_small()
    common = dict(model=model, batch_clips=4, num_workers=2, progress=False, chunk_gifs=3)
    stores = {
        where: extract_features(
            recs, tmp_path / where, precision="32", device="cuda", resize_on=where, **common
        )
        for where in ("worker", "device")
    }
    assert stores["device"].meta["fingerprint"] != stores["worker"].meta["fingerprint"]
    a, b = (np.asarray(s.visual, np.float64) for s in stores.values())
    assert _cosines(a, b).min() > 1 - 1e-3


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_cuda_training_step_does_not_synchronise(precision):
    """The module's training step under a real Trainer on CUDA, with
    ``torch.cuda.set_sync_debug_mode("error")`` from the second step on: any device→host read or
    synchronous copy in it raises (the first step builds the logged metric and the constants)."""
    from tests.test_finetune import _module
    from tests.test_finetune_step import _fit, _uint8_batch

    m = _module(feature_dropout=0.5, freeze_epochs=0)
    step, ran = m.training_step, []

    def guarded(batch, batch_idx):
        if batch_idx == 0:
            return step(batch, batch_idx)
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = step(batch, batch_idx)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        ran.append(batch_idx)
        return out

    m.training_step = guarded
    _fit(m, _uint8_batch(), 4, accelerator="gpu", devices=1, precision=precision)
    assert ran == [1, 2, 3] and m.history[0]["train/loss"] > 0
