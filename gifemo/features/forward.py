"""The model side of extraction: batches of pending clips through ``backbone.features``.

:class:`BatchedForward` takes ``batch_clips`` clips at a time from a
:class:`~gifemo.features.accumulate.ChunkAccumulator`, normalises uint8 clips on the device
(``preprocessing.normalize``), runs the model (bf16 autocast, channels_last_3d, optionally
``torch.compile``d) and hands each batch's features back to the accumulator, keeping one batch
in flight on a GPU.
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from gifemo.backbones import VideoBackbone
from gifemo.features.accumulate import ChunkAccumulator


class BatchedForward:
    """Runs the model over pending clips ``batch_clips`` at a time and adds up the features.

    Batches in flight: on a GPU the device computes batch k while the host adds up batch
    k − 1's features (copied to pinned memory, synchronised by an event).
    """

    def __init__(
        self, model: VideoBackbone, dev: torch.device, *, precision: str, channels_last: bool,
        batch_clips: int, normalize: Any = None, compile: bool = False,
    ) -> None:  # fmt: skip
        self.dev, self.batch_clips = dev, batch_clips
        self.normalize = normalize  # uint8 clips → the model's float input, on dev
        self.fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        model = model.eval().to(dev)
        if channels_last:
            model = model.to(memory_format=self.fmt)  # type: ignore[call-overload]
        self.model = model
        self.features = torch.compile(model.features) if compile else model.features
        self.compile_warmup_s: float | None = None
        self.amp = (
            torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        )
        self.inflight: deque[tuple[ChunkAccumulator, torch.Tensor, Any, np.ndarray]] = deque()
        self.clips = 0
        self.compute_s = 0.0

    def _drain(self, keep: int) -> None:
        while len(self.inflight) > keep:
            acc, host, done, owner = self.inflight.popleft()
            if done is not None:
                done.synchronize()
            acc.accumulate(host.numpy(), owner)

    def _batch(self, acc: ChunkAccumulator) -> None:
        clips, owner = acc.take(self.batch_clips)
        x = clips.to(self.dev, non_blocking=True, memory_format=self.fmt)  # (b, 3, T, h, w)
        if self.normalize is not None:
            x = self.normalize(x)  # uint8 → float32, elementwise: keeps the memory format
        warm = self.features is not self.model.features and self.compile_warmup_s is None
        t0 = time.perf_counter()
        with torch.inference_mode(), self.amp:
            feats = self.features(x).float()  # (b, D)
            if self.dev.type == "cuda":
                host = torch.empty(feats.shape, pin_memory=True)
                host.copy_(feats, non_blocking=True)
                done = torch.cuda.Event()
                done.record()
                self.inflight.append((acc, host, done, owner))
            else:
                self.inflight.append((acc, feats, None, owner))
        if warm:  # the first compiled call compiles: wait for it and report it
            if self.dev.type == "cuda":
                torch.cuda.synchronize(self.dev)
            self.compile_warmup_s = time.perf_counter() - t0
        self.clips += len(owner)

    def run(self, acc: ChunkAccumulator, *, final: bool) -> None:
        """Every full batch of pending clips; with ``final`` also the rest, and wait for all."""
        t0 = time.perf_counter()
        while acc.pending >= self.batch_clips or (final and acc.pending):
            self._batch(acc)
            self._drain(keep=1)
        if final:
            self._drain(keep=0)
        self.compute_s += time.perf_counter() - t0
