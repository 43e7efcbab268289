"""Visual features of every GIF of a dataset (paper §3.3), resumable, batched, memory-bounded.

For GIF g with clips c = 1..K_g (from a clip sampler, :mod:`gifemo.data.clips`; the paper's is
``AllClips``: 16 frames, stride 8, loop padding) the feature is

    v_g = m_g / ‖m_g‖₂,   m_g = (1/K_g) Σ_c f(clip_c)          (D = model.feature_dim)

(f: the backbone's ``features``, C3D's relu(fc6); a GIF whose mean is exactly zero keeps the
zero vector). The GIFs are cut into fixed chunks of ``chunk_gifs`` consecutive dataset indices;
within a chunk, the clips of its GIFs in order are fed to the model in consecutive batches of
``batch_clips`` (the last one shorter), and each clip's features are added to its GIF's running
float64 sum (:class:`~gifemo.features.accumulate.ChunkAccumulator`). Batch composition
therefore never depends on where a run resumed, so a resumed run writes the same bytes as an
uninterrupted one (on a given device, precision and thread count). Each finished chunk becomes
a shard (see :mod:`gifemo.features.store`); a killed run redoes at most the chunks in flight.

Memory is bounded by the batch, not by the GIF. A loader batch holds the clips of ``load_gifs``
GIFs, and each GIF contributes at most ``max_clips`` clips (more are subsampled evenly) from
at most ``read_kwargs["read_frames"]`` decoded frames (the first ones; the rest are not
decoded); both cuts are recorded per row in ``notes.jsonl``. Clips wait in the accumulator only
until ``batch_clips`` of them are there. So the peak is about
(workers · prefetch + 2) · load_gifs · max_clips · (bytes of one clip) plus one GIF's decoded
frames (≤ read_frames · H · W · 3, and ``max_bytes``), whatever the length of the GIF.

Data path (``clip_dtype="uint8"``, the default): workers only decode, resize the frames the
clips use and cut the clips (crop, channel order) as uint8 — a quarter of the bytes of float32
through shared memory, pinning and the host-to-device copy; the model's device converts and
normalises them (``preprocessing.normalize``), as fine-tuning does. The clips the model sees are
bit-identical to the float32 path's (``tests/test_extract_fast.py``), so the store and its
fingerprint do not depend on it; a C3D mean cube (per-crop means) keeps the float32 path. With
the evaluation transform (one crop window for every clip) workers send each used frame's crop
once instead of the clips (:class:`SharedCrops`, one shared tensor per loader batch) and the
clips are gathered after the transfer: clips overlap (16 frames, stride 8), so this is about
half the bytes, and the same clips.

Where the resize runs (``resize_on``): ``worker`` — as above; ``device`` — workers only
decode and send the frames the clips use, uint8 at their own size (one flat tensor per loader
batch, with each clip's frame indices and crop window); the model's device resizes them (the
same ``interpolate`` call on the same chunks of frames, one call per GIF), cuts and normalises.
On a CPU that is the same kernel, so the store is byte-identical and the fingerprint does not
change (``tests/test_extract_resize.py``); on CUDA the resize runs in float32, rounded
(CUDA's bilinear kernel takes no uint8), within 1 of the CPU's bytes, so the fingerprint records ``resize_on`` there (``execution``).
``worker`` is the default: a 480×270 GIF's used frames are ~14× the bytes of its frame crops,
and one worker's loader measured 134.8–137.1 clips/s with ``worker`` against 111.5–112.8 with
``device`` (session 7; the larger transfer costs more than the resize it saves on a CPU, and a
GPU run is to compare them there: docs/extraction.md). The device
path cannot run with float32 clips, a mean cube or a transform that is not a uint8
:class:`ClipTransform` (refused, naming the option). Either way workers decode to FFmpeg's
own ``bgr0`` layout (no RGB conversion; the resize and the cut take the channels in the model's
order, the same bytes).

Several processes (torchrun / SLURM): with an initialised ``torch.distributed`` group, chunk
``c`` belongs to rank ``c mod W``; every rank writes its chunks' shards and rank 0 assembles the
store once all are done (:mod:`gifemo.features.distributed`), byte-identical to one process.

The workers' transform, ``resize_on``, the device, the precision and the store's fingerprint
are resolved in :mod:`gifemo.features.execution`.

``compile=True`` runs ``torch.compile(model.features)``; its warm-up (the first batch, which
compiles) is reported in ``meta.json`` ``last_run.compile_warmup_s``, and shorter batches are
padded to ``batch_clips`` so that nothing compiles again (:mod:`gifemo.features.forward`).
Compiled kernels round differently, so the fingerprint records it (``execution``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gifemo.backbones import VideoBackbone
from gifemo.backbones.transfer import (
    DeviceResize,
    SharedCrops,
    keeps_used,
    worker_read_kwargs,
)
from gifemo.data.clip_dataset import GifClipDataset, collate_clips
from gifemo.data.clips import AllClips, ClipSampler
from gifemo.data.worker_batches import (
    SharedBuffers,
    TransferCollate,
    hand_back,
    tensors_after_transfer,
)
from gifemo.features.accumulate import (
    ChunkAccumulator,
    chunk_batches,
    collate_crops,
    collate_frames,
    gather_clips,
)
from gifemo.features.distributed import current
from gifemo.features.execution import (
    IDENTITY_FIELDS,
    resize_device,
    resolve_device,
    resolve_precision,
    resolve_resize_on,
    store_identity,
    wire_transform,
    worker_wire,
)
from gifemo.features.forward import BatchedForward, device_clips
from gifemo.features.store import (
    PARTIAL,
    FeatureStore,
    WorkDir,
    complete_fingerprint,
    finalise,
    package_versions,
)

log = logging.getLogger(__name__)

KILL_ENV = "GIFEMO_EXTRACT_KILL_AT"  # test hook: "shard:K" or "finalise:visual" → SIGKILL self


def _kill_hook(stage: str) -> None:
    """Kill this process with SIGKILL when ``GIFEMO_EXTRACT_KILL_AT`` names ``stage`` (tests);
    ``stage@R`` only on rank R of a process group."""
    want = os.environ.get(KILL_ENV, "")
    at, _, rank = want.partition("@")
    if at == stage and (not rank or int(rank) == current().rank):
        os.kill(os.getpid(), signal.SIGKILL)


PREFETCH = 4  # loader batches in flight per worker


def _loader(
    dataset: GifClipDataset, batches: list[list[int]], num_workers: int, dev: torch.device
) -> DataLoader:
    """The extraction's DataLoader. Crops (``resize_on=worker``) or used frames (``device``)
    travel in shared buffers the workers reuse (:class:`SharedBuffers`: ``_run_chunks`` hands
    each batch back once its clips are made); the small tensors as numpy arrays."""
    collate: dict[type, Any] = {DeviceResize: collate_frames, SharedCrops: collate_crops}
    make = collate.get(type(dataset.transform), collate_clips)
    buffers = (
        SharedBuffers(num_workers, per_worker=PREFETCH + 2)
        if num_workers > 0 and make is not collate_clips
        else None
    )
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=TransferCollate(make, buffers),
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
        prefetch_factor=PREFETCH if num_workers > 0 else None,
    )


def extract_features(
    records: Sequence[Any],
    out_dir: str | Path,
    *,
    model: VideoBackbone,
    transform: Any = None,
    sampler: ClipSampler | None = None,
    max_clips: int | None = None,
    batch_clips: int = 32,
    num_workers: int = 2,
    precision: str = "32",
    device: str = "auto",
    read_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    chunk_gifs: int = 32,
    load_gifs: int = 2,
    channels_last: bool = True,
    dataset_name: str = "gifs",
    fingerprint: str | None = None,
    unlisted: Sequence[dict[str, Any]] = (),
    extra_meta: dict[str, Any] | None = None,
    clip_dtype: str = "uint8",
    compile: bool = False,
    resize_on: str = "worker",
) -> FeatureStore:
    """Write (or finish) the feature store of ``records`` in ``out_dir`` and open it.

    ``transform``: frames → clips; default ``model.preprocessing.transform()`` (the backbone's own).
    ``sampler``: the clip sampler (default ``AllClips()``, the paper's 16/8 rule).
    ``max_clips``: per-GIF clip budget (None: every clip); ``read_kwargs["read_frames"]``: the
    per-GIF frame budget (module notes).
    ``precision``: "32", "bf16" (autocast; features are accumulated in float64 either way) or
    "auto" (:func:`resolve_precision`).
    ``channels_last``: channels_last_3d memory format for model and clips; measured to help on
    both targets (2-core AVX2 CPU fp32: +8–10 % clips per CPU-second; cuDNN's NDHWC kernels on GPUs).
    ``unlisted``: files the dataset found but could not list ({"id", "path", "reason"}), recorded
    in failures.jsonl.
    ``fingerprint``: identity of the result (computed from the inputs when None); a complete
    store with the same fingerprint is returned as is, shards of another one are discarded.
    ``clip_dtype``: what the loader workers send, "uint8" (normalised on the device) or
    "float32" (normalised in the workers); the same features either way (module notes).
    ``compile``: ``torch.compile`` the backbone's ``features`` (recorded in the fingerprint).
    ``resize_on``: "worker" or "device" (module notes; a ValueError names the option where
    the device path cannot run).
    In an initialised ``torch.distributed`` group every rank calls this with the same arguments
    and extracts its own chunks; rank 0 assembles the store, the others wait and then open it.
    """
    if batch_clips < 1 or chunk_gifs < 1 or load_gifs < 1:
        raise ValueError(
            f"batch_clips/chunk_gifs/load_gifs must be ≥ 1: {batch_clips}/{chunk_gifs}/{load_gifs}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    sampler = sampler if sampler is not None else AllClips()
    if transform is None:
        transform = model.preprocessing.transform(train=False)
    wire = wire_transform(transform, clip_dtype)
    resize_on = resolve_resize_on(resize_on, wire)
    computed, identity = store_identity(
        records, dataset_name=dataset_name, model=model, transform=transform,
        sampler=sampler, precision=precision, read_kwargs=read_kwargs, max_clips=max_clips,
        unlisted=unlisted, compile=compile,
        resize_device=resize_device(resize_on, transform, clip_dtype, str(dev)),
    )  # fmt: skip
    fingerprint = fingerprint or computed
    ranks = current()
    if complete_fingerprint(out_dir) == fingerprint:
        ranks.barrier()  # every rank has seen COMPLETE before rank 0 tidies up
        if ranks.main:
            shutil.rmtree(out_dir / PARTIAL, ignore_errors=True)  # left by a kill after COMPLETE
        return FeatureStore.open(out_dir)

    n, n_chunks = len(records), (len(records) + chunk_gifs - 1) // chunk_gifs
    key = {  # what changes a shard's bytes (WorkDir): a resume never mixes two of them
        "fingerprint": fingerprint, "chunk_gifs": chunk_gifs, "batch_clips": batch_clips,
        "channels_last_3d": bool(channels_last), "device_type": dev.type,
    }  # fmt: skip
    if ranks.main:  # rank 0 alone clears shards of another configuration
        work = WorkDir(out_dir, key)
    ranks.barrier()
    if not ranks.main:
        work = WorkDir(out_dir, key)
    todo = ranks.mine([c for c in range(n_chunks) if c not in work.done()])
    log.info("extracting %d GIFs: %d of %d chunks to do (rank %d of %d)", n, len(todo),
             n_chunks, ranks.rank, ranks.world)  # fmt: skip
    forward = BatchedForward(
        model, dev, precision=precision, channels_last=bool(channels_last),
        batch_clips=batch_clips, compile=compile,
        normalize=wire.preprocessing.normalize if wire is not transform else None,
    )  # fmt: skip
    uint8 = wire is not transform
    wire = worker_wire(wire, resize_on)
    dataset = GifClipDataset(
        list(records), sampler=sampler, transform=wire,
        read_kwargs=worker_read_kwargs(read_kwargs, wire), max_clips=max_clips,
        keep_used=keeps_used(wire),
    )  # fmt: skip
    batches = chunk_batches(todo, n, chunk_gifs, load_gifs)
    t_start = time.perf_counter()
    data_wait_s, cut_s = _run_chunks(
        records, _loader(dataset, batches, num_workers, dev), batches, work, forward,
        chunk_gifs=chunk_gifs, progress=progress and ranks.main,
        label=f"{type(model).__name__} features",
        resize=wire if isinstance(wire, DeviceResize) else None,
    )  # fmt: skip
    seconds = time.perf_counter() - t_start
    chunks, clips, wait_s, compute_s, cut_s = ranks.sum(
        [len(todo), forward.clips, data_wait_s, forward.compute_s, cut_s]
    )
    last_run = {
        "device": str(dev),
        "channels_last_3d": bool(channels_last),
        "clip_dtype": "uint8" if uint8 else "float32",
        "resize_on": resize_on,
        "wire": {DeviceResize: "frames", SharedCrops: "crops"}.get(type(wire), "clips"),
        "pixel_format": dataset.read_kwargs.get("pixel_format", "rgb24"),
        "keep_used": dataset.keep_used,  # used frames resized (cropped) as they are decoded
        "threads": torch.get_num_threads(),
        "world_size": ranks.world,
        "chunks": int(chunks),
        "seconds": round(seconds, 3),  # rank 0's wall time
        "clips": int(clips),  # the sums below are over the ranks
        "data_wait_s": round(wait_s, 3),
        "compute_s": round(compute_s, 3),
        "device_cut_s": round(cut_s, 3),  # clips made on the device (gather, or resize + cut)
    }
    if compile:
        last_run["compile_warmup_s"] = forward.compile_warmup_s
    if not ranks.main:
        ranks.barrier()  # rank 0 assembles the store
        return FeatureStore.open(out_dir)
    shards = [work.read(c) for c in range(n_chunks)]
    meta = {
        "fingerprint": fingerprint,
        **{k: identity[k] for k in IDENTITY_FIELDS},
        **{k: identity[k] for k in ("execution",) if k in identity},
        "budget": {
            "read_frames": (read_kwargs or {}).get("read_frames"),
            "max_clips": max_clips,
        },
        "versions": package_versions(),
        "counts": _counts(n, shards, len(unlisted), model.feature_dim),
        "batching": {"batch_clips": batch_clips, "chunk_gifs": chunk_gifs},
        "last_run": last_run,
        **(extra_meta or {}),
    }
    store = finalise(
        out_dir, shards, ids=[r.id for r in records], dim=model.feature_dim, meta=meta,
        unlisted=unlisted, kill_hook=_kill_hook,
    )  # fmt: skip
    work.remove()
    ranks.barrier()
    c = meta["counts"]
    log.info(
        "feature store %s: %d GIFs, %d failures, %d truncated, %d with notes (notes.jsonl)",
        out_dir, c["features"], c["failures"], c["truncated"], c["noted"],
    )  # fmt: skip
    return store


def _run_chunks(
    records: Sequence[Any],
    loader: DataLoader,
    batches: list[list[int]],
    work: WorkDir,
    forward: BatchedForward,
    *,
    chunk_gifs: int,
    progress: bool,
    label: str,
    resize: DeviceResize | None = None,
) -> tuple[float, float]:
    """Feed the loader's batches through ``forward``; write each finished chunk as a shard.
    Batches of used frames (``resize``) or of frame crops are made into clips on the device
    first.

    Returns the seconds spent waiting for data and making clips on the device.
    """
    n = len(records)
    bar = tqdm(total=sum(len(b) for b in batches), unit="gif", disable=not progress)
    bar.set_description(label)
    acc: ChunkAccumulator | None = None
    it: Iterator[dict[str, Any]] = iter(loader)
    data_wait_s, resize_s, written = 0.0, 0.0, 0
    for _ in batches:
        t0 = time.perf_counter()
        batch = tensors_after_transfer(next(it))
        data_wait_s += time.perf_counter() - t0
        if resize is not None or "crops" in batch:
            t0 = time.perf_counter()
            batch["clips"] = (
                device_clips(batch, resize, forward.dev)
                if resize is not None
                else gather_clips(batch, forward.dev)
            )
            for copied_out in ("crops", "frames"):  # not read again: their buffer goes back
                batch.pop(copied_out, None)
            hand_back(batch)
            resize_s += time.perf_counter() - t0
        if acc is None:
            lo = int(batch["index"][0]) // chunk_gifs * chunk_gifs
            acc = ChunkAccumulator(
                records, lo // chunk_gifs, lo, min(n, lo + chunk_gifs), forward.model.feature_dim,
                forward.dev,
            )  # fmt: skip
        acc.add(batch)
        bar.update(len(batch["ids"]))
        forward.run(acc, final=acc.complete)
        bar.set_postfix(clips=forward.clips, refresh=False)
        if acc.complete:
            work.write(acc.shard())
            written += 1
            acc = None
            _kill_hook(f"shard:{written}")
    bar.close()
    return data_wait_s, resize_s


def _counts(n: int, shards: Sequence[Any], n_unlisted: int, dim: int) -> dict[str, int]:
    rows = sum(len(s.index) for s in shards)
    return {
        "records": n,
        "features": rows,
        "failures": n - rows + n_unlisted,
        "unlisted": n_unlisted,
        "truncated": int(sum(int(s.truncated.sum()) for s in shards)),
        "noted": sum(len(s.notes) for s in shards),
        "dim": dim,
    }
