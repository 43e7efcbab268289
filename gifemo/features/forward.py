"""The model side of extraction: batches of pending clips through ``backbone.features``.

With ``resize_on=device``, :func:`device_clips` first turns a loader batch of used frames
into clips on the model's device (resize + crop + channel order, uint8).
:class:`BatchedForward` takes ``batch_clips`` clips at a time from a
:class:`~gifemo.features.accumulate.ChunkAccumulator`, normalises uint8 clips on the device
(``preprocessing.normalize``), runs the model (bf16 autocast, channels_last_3d, optionally
``torch.compile``d) and hands each batch's features back to the accumulator, keeping one batch
in flight on a GPU.

Compiled, every batch has ``batch_clips`` rows: a chunk's last, shorter batch is padded with
zero clips whose features are dropped (rows are independent in evaluation). Otherwise its new
batch size would compile the model a second time, unreported, in the middle of the run (on
the CPU a tiny C3D took 8.7 s to compile and 7.5 s more at the first shorter batch).
"""

from __future__ import annotations

import math
import time
from collections import deque
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from gifemo.backbones import VideoBackbone
from gifemo.backbones.transfer import DeviceResize
from gifemo.features.accumulate import ChunkAccumulator


def device_clips(batch: dict[str, Any], resize: DeviceResize, dev: torch.device) -> torch.Tensor:
    """The clips of a :func:`~gifemo.features.accumulate.collate_frames` batch, cut on ``dev``:
    the batch's one frames tensor is copied there (non-blocking from pinned memory), then each
    GIF's used frames are resized (one ``interpolate`` per GIF: sizes differ) and cut.
    Returns (ΣN, 3, ℓ, crop, crop) uint8 in the order of ``batch["gif_index"]``."""
    flat = batch["frames"].to(dev, non_blocking=True)
    clip_frames = batch["clip_frames"].to(dev, non_blocking=True)
    windows = batch["windows"]  # stays on the host: its rows are read
    shapes = batch["frame_shapes"].tolist()
    counts = torch.bincount(batch["gif_index"], minlength=len(shapes)).tolist()
    out, at, first = [], 0, 0
    for shape, k in zip(shapes, counts, strict=True):
        n = math.prod(shape)
        if n and k:
            frames = flat[at : at + n].view(shape)
            out.append(
                resize.clips(frames, clip_frames[first : first + k], windows[first : first + k])
            )
        at, first = at + n, first + k
    if not out:
        c = resize.transform.crop
        return torch.zeros((0, 3, clip_frames.shape[1], c, c), dtype=torch.uint8, device=dev)
    return out[0] if len(out) == 1 else torch.cat(out)


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
        t0 = time.perf_counter()  # the first torch.compile in a process imports its stack (~1 s)
        self.features = torch.compile(model.features) if compile else model.features
        self._compile_setup_s = time.perf_counter() - t0
        self.compile_warmup_s: float | None = None  # set-up + the first (compiling) call
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
        compiled = self.features is not self.model.features
        b = len(x)
        if compiled and b < self.batch_clips:  # one shape: no second compile (module notes)
            full = x.new_zeros((self.batch_clips, *x.shape[1:])).to(memory_format=self.fmt)
            full[:b] = x
            x = full
        warm = compiled and self.compile_warmup_s is None
        t0 = time.perf_counter()
        with torch.inference_mode(), self.amp:
            feats = self.features(x)[:b].float()  # (b, D)
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
            self.compile_warmup_s = self._compile_setup_s + time.perf_counter() - t0
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
