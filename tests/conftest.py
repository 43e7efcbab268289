"""Shared pytest settings and hooks.

Tests import their helpers as ``tests.<module>`` (pyproject puts the repository root on the
path): tests/gifmaker.py writes GIFs (a byte-level encoder, Pillow and PyAV writers) into
``tmp_path``.
"""

from __future__ import annotations

import os

import pytest
import torch

# Keep W&B offline and inside the test's tmp dirs; never let a real key leak into a test run.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.pop("WANDB_API_KEY", None)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
