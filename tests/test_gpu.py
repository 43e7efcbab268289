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
