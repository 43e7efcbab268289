"""One loader worker of the extraction, profiled: where its time goes per clip, stage by
stage, and the loader alone for the data paths before and now (:func:`worker_profile`, part of
``python -m gifemo.bench extract``; the bench's notes say what each figure means)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from gifemo.backbones.preprocessing import ClipTransform
from gifemo.backbones.resize import resize_frames
from gifemo.backbones.transfer import DeviceResize, SharedCrops
from gifemo.bench import loader_rate
from gifemo.data.clip_dataset import GifClipDataset, collate_clips
from gifemo.data.clips import AllClips, used_frames
from gifemo.data.gif import read_gif
from gifemo.data.worker_batches import SharedBuffers, TransferCollate
from gifemo.features.accumulate import collate_crops, collate_frames
from gifemo.features.execution import wire_transform
from gifemo.features.extract import PREFETCH

# The loader paths the worker profile compares, one worker each: "before" is the path of
# session 3 (RGB via swscale, the used frames gathered then resized, clips cut in the worker),
# "decode_all" the one after it (bgr0, every frame decoded and copied, the used ones resized
# in place, per-frame crops), "worker" and "device" are resize_on=worker|device now (worker:
# only the used frames kept, each resized and cropped as it is decoded — keep_used).
LOADER_PATHS = ("before", "decode_all", "worker", "device")
STAGES = (
    "decode_before", "decode_rgb", "decode", "resize_rgb", "resize", "cut_rgb", "cut",
    "device_cut", "kept",
)  # fmt: skip


# How the ``worker`` loader's batches travel, compared in the same run: "tensors" (every tensor
# of a batch in a fresh shared-memory segment of its own, as before), "numpy" (TransferCollate:
# only the crops, in a fresh segment; the small per-GIF tensors pickled with the batch) and
# "reused" (the crops in a shared buffer the worker reuses: as extraction sends them now).
TRANSFERS = ("tensors", "numpy", "reused")

DECODES = (  # read_gif arguments of the decode stages: before, RGB now, bgr0 now
    (("converter", "swscale"),), (), (("pixel_format", "bgr0"),),
)  # fmt: skip


def _rotate(items: tuple, k: int) -> tuple:
    k %= len(items)
    return items[k:] + items[:k]


def worker_profile(
    records: Sequence[Any], transform: Any, *, seconds: float = 3.0, rounds: int = 3
) -> dict[str, Any]:
    """One loader worker's time per clip, by stage, and the loader alone for each path.

    Stages (this process, over the distinct GIFs): ``decode_before`` (``read_gif`` RGB through
    swscale, the previous decode), ``decode_rgb`` (``read_gif`` RGB, direct copy), ``decode``
    (``read_gif(pixel_format="bgr0")``: every frame decoded and copied out — the decode
    bound), ``resize_rgb`` / ``resize`` (the frames the clips use, 3 / 4 channels), ``cut_rgb``
    (uint8 clips, ``from_resized``: before), ``cut`` (each used frame's crop window once,
    :meth:`SharedCrops.crop` — views; the collate puts their channels in order as it copies
    them into shared memory, which counts in ``ipc_and_rest``; the clips are gathered from
    them after the transfer),
    ``device_cut`` (resize + cut of the used frames as ``resize_on=device`` does on the
    model's device — here this CPU), ``kept`` (one item of ``GifClipDataset(keep_used=True)``
    with :class:`SharedCrops`: decoding with only the used frames kept, each resized and
    cropped as it is decoded — what a ``resize_on=worker`` worker runs now). Loaders
    (:data:`LOADER_PATHS`): ``GifClipDataset`` + its collate through a DataLoader with one
    worker, two GIFs per batch (as extraction loads them), no model. Stages and loaders
    alternate for ``rounds`` rounds (``seconds`` in all); each figure is its best round, the
    one least disturbed by other load on a shared machine. Per loader: clips/s, the share of
    the decode bound of one worker (``decode`` now; ``decode_before``: the previous one), the
    bytes a clip costs through shared memory, and ``ipc_and_rest`` = loader ms per clip − the
    sum of its stages (pickling, shared memory, collation, the main process's side).
    """
    sampler, wire = AllClips(), wire_transform(transform, "uint8")
    deferred, shared = DeviceResize(wire), SharedCrops(wire)
    distinct = list({str(r.path): r for r in records}.values())
    kept_items = GifClipDataset(distinct, sampler=sampler, transform=cast(Any, shared), keep_used=True,
                                read_kwargs={"pixel_format": "bgr0"})  # fmt: skip
    best = dict.fromkeys(STAGES, float("inf"))
    rates = dict.fromkeys(LOADER_PATHS, 0.0)
    transfer = {k: {"clips_per_s_per_worker": 0.0, "main_cpu_ms_per_batch": float("inf")}
                for k in TRANSFERS}  # fmt: skip
    clips_seen, wire_bytes = 0, {"clips": 0, "crops": 0, "frames": 0}
    part = seconds / rounds / (1 + len(LOADER_PATHS) + len(TRANSFERS) - 1)
    for _ in range(rounds):
        t = dict.fromkeys(best, 0.0)
        clips, start = 0, time.perf_counter()
        while clips == 0 or time.perf_counter() - start < part:
            for j, r in enumerate(distinct):
                decoded, took = {}, {}
                for kw in _rotate(DECODES, j + clips):  # no decode always goes first
                    t0 = time.perf_counter()
                    decoded[kw] = read_gif(r.path, **dict(kw)).frames
                    took[kw] = time.perf_counter() - t0
                for k, kw in zip(("decode_before", "decode_rgb", "decode"), DECODES, strict=True):
                    t[k] += took[kw]
                rgb, bgr0 = decoded[DECODES[1]], decoded[DECODES[2]]
                marks = [time.perf_counter()]
                idx = sampler(len(bgr0))
                used, local = used_frames(idx, len(bgr0))
                r3 = resize_frames(rgb[used], transform.resize_hw)  # as before: a gather first
                marks.append(time.perf_counter())
                r4 = resize_frames(bgr0, transform.resize_hw, index=used)  # as workers do now
                marks.append(time.perf_counter())
                wire.from_resized(r3, local)
                marks.append(time.perf_counter())
                crops = shared.crop(r4, local)  # the worker's cut now: each frame's crop once
                marks.append(time.perf_counter())
                sent = deferred(bgr0, idx)
                deferred.clips(torch.from_numpy(bgr0[sent.used]), torch.from_numpy(sent.clips),
                               torch.from_numpy(sent.windows))  # fmt: skip
                marks.append(time.perf_counter())
                kept_items[j]  # what a worker runs now: decode, keeping resized crops
                marks.append(time.perf_counter())
                for k, a, b in zip(STAGES[3:], marks[:-1], marks[1:], strict=True):
                    t[k] += b - a
                clips += len(idx.starts)
                wire_bytes["clips"] += len(idx.starts) * 3 * idx.frames.shape[1] * wire.crop**2
                wire_bytes["crops"] += crops.crops[..., :3].size  # three channels travel
                wire_bytes["frames"] += bgr0[used].nbytes
        clips_seen += clips
        best = {k: min(best[k], 1e3 * t[k] / clips) for k in best}
        for path in LOADER_PATHS:
            main_cpu: dict[str, float] = {}
            rate = _loader_rate(records, path, wire, seconds=part, main_cpu=main_cpu)
            rates[path] = max(rates[path], rate)
            if path == "worker":
                _best_transfer(transfer["reused"], rate, main_cpu)
        for how in TRANSFERS[:-1]:
            main_cpu = {}
            rate = _loader_rate(
                records, "worker", wire, seconds=part, transfer=how, main_cpu=main_cpu
            )
            _best_transfer(transfer[how], rate, main_cpu)
    per_clip = {k: round(v / clips_seen, 1) for k, v in wire_bytes.items()}
    decode_rate = 1e3 / best["decode"]
    before_rate = 1e3 / best["decode_before"]
    out: dict[str, Any] = {
        "clips": clips_seen,
        "rounds": rounds,
        "stage_ms_per_clip": {k: round(v, 4) for k, v in best.items()},
        "decode_only_clips_per_s": round(decode_rate, 2),
        "decode_only_clips_per_s_before": round(before_rate, 2),
        "decode_rgb_only_clips_per_s": round(1e3 / best["decode_rgb"], 2),
        "decode_speedup": round(best["decode_before"] / best["decode"], 3),
    }
    stages = {
        "before": ("decode_before", "resize_rgb", "cut_rgb"),
        "decode_all": ("decode", "resize", "cut"),
        "worker": ("kept",),
        "device": ("decode",),
    }
    for path in LOADER_PATHS:
        total = 1e3 / rates[path]
        parts = {k.replace("_before", "").replace("_rgb", ""): best[k] for k in stages[path]}
        rest = max(0.0, total - sum(parts.values()))
        whole = sum(parts.values()) + rest
        out[f"loader_{path}"] = {
            "clips_per_s_per_worker": round(rates[path], 2),
            "ms_per_clip": round(total, 3),
            "ipc_ms_per_clip": round(rest, 3),
            "bytes_per_clip": per_clip[
                {"before": "clips", "decode_all": "crops", "worker": "crops"}.get(path, "frames")
            ],
            "share_of_decode_bound": round(rates[path] / decode_rate, 3),
            "share_of_decode_bound_before": round(rates[path] / before_rate, 3),
            "share": {  # of the stages' sum plus the rest
                **{k: round(v / whole, 3) for k, v in parts.items()},
                "ipc_and_rest": round(rest / whole, 3),
            },
        }
    out["loader_device"]["device_ms_per_clip_on_cpu"] = round(best["device_cut"], 3)
    out["transfer"] = {k: {m: round(v, 3) for m, v in t.items()} for k, t in transfer.items()}
    out["transfer"]["main_cpu_per_batch_ratio"] = round(
        transfer["reused"]["main_cpu_ms_per_batch"] / transfer["tensors"]["main_cpu_ms_per_batch"],
        3,
    )
    out["transfer"]["worker_speedup"] = round(
        transfer["reused"]["clips_per_s_per_worker"]
        / transfer["tensors"]["clips_per_s_per_worker"],
        3,
    )
    return out


def _best_transfer(best: dict[str, float], rate: float, main_cpu: dict[str, float]) -> None:
    best["clips_per_s_per_worker"] = max(best["clips_per_s_per_worker"], rate)
    best["main_cpu_ms_per_batch"] = min(best["main_cpu_ms_per_batch"], main_cpu["ms_per_batch"])


class _GatherFirst(ClipTransform):
    """The worker's transform before: the used frames gathered (copied) first, then resized."""

    def __call__(
        self, frames: np.ndarray, clips: Any, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        used, local = used_frames(clips, len(frames))
        return self.from_resized(resize_frames(frames[used], self.resize_hw), local, generator)


def _loader_rate(
    records: Sequence[Any], path: str, wire: Any, *, seconds: float, transfer: str = "reused",
    main_cpu: dict[str, float] | None = None,
) -> float:  # fmt: skip
    """Clips/s of a one-worker DataLoader over ``records`` (2 GIFs per batch) for one of
    :data:`LOADER_PATHS`, no model. ``transfer``: how the batches travel (:data:`TRANSFERS`;
    the ``before`` path always as "tensors"); ``main_cpu``: :func:`loader_rate`'s."""
    read_kwargs: dict[str, Any] = {"pixel_format": "bgr0"}
    collate: Any = collate_clips
    transform: Any = wire
    keep_used = path == "worker"
    if path == "before":
        read_kwargs = {"pixel_format": "rgb24", "converter": "swscale"}
        transform = _GatherFirst(wire.preprocessing, output="uint8")
    elif path == "device":
        transform, collate = DeviceResize(wire), collate_frames
    else:
        transform, collate = SharedCrops(wire), collate_crops
    if path != "before" and transfer != "tensors":
        reused = transfer == "reused" and collate is not collate_clips
        buffers = SharedBuffers(1, per_worker=PREFETCH + 2) if reused else None  # as extraction
        collate = TransferCollate(collate, buffers)
    ds = GifClipDataset(records, sampler=AllClips(), transform=transform, read_kwargs=read_kwargs,
                        keep_used=keep_used)  # fmt: skip
    batches = [list(range(i, min(len(records), i + 2))) for i in range(0, len(records), 2)]
    loader = DataLoader(ds, batch_sampler=batches, collate_fn=collate, num_workers=1,
                        prefetch_factor=PREFETCH, persistent_workers=True)  # fmt: skip
    return loader_rate(loader, min_seconds=seconds, main_cpu=main_cpu)
