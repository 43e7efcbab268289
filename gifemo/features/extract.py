"""C3D visual features for every GIF of a dataset (paper §3.3), resumable and batched.

For GIF g with clips c = 1..K_g (``AllClips``: 16 frames, stride 8, loop padding) the feature is

    v_g = m_g / ‖m_g‖₂,   m_g = (1/K_g) Σ_c relu(fc6(clip_c))          (D = fc_dim, 4096)

(a GIF whose mean is exactly zero keeps the zero vector). The GIFs are cut into fixed chunks
of ``chunk_gifs`` consecutive dataset indices; within a chunk, the clips of its GIFs in order
are fed to the model in consecutive batches of ``batch_clips`` (the last one shorter). Batch
composition therefore never depends on where a run resumed, and per-GIF sums are taken in
float64 in clip order, so a resumed run writes the same bytes as an uninterrupted one
(on a given device, precision and thread count). Each finished chunk becomes a shard
(see :mod:`gifemo.features.store`); a killed run redoes at most the chunks in flight.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gifemo.data.clip_dataset import GifClipDataset, collate_clips
from gifemo.data.clips import AllClips
from gifemo.features.store import (
    PARTIAL,
    FeatureStore,
    Shard,
    WorkDir,
    backbone_config,
    clip_rule,
    complete_fingerprint,
    feature_fingerprint,
    finalise,
    package_versions,
    preprocessing_of,
)
from gifemo.models.c3d import C3D

log = logging.getLogger(__name__)

KILL_ENV = "GIFEMO_EXTRACT_KILL_AT"  # test hook: "shard:K" or "finalise:visual" → SIGKILL self


def _kill_hook(stage: str) -> None:
    """Kill this process with SIGKILL when ``GIFEMO_EXTRACT_KILL_AT`` names ``stage`` (tests)."""
    if os.environ.get(KILL_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "32" | "bf16" as given; "auto" → bf16 where the hardware computes it natively.

    CUDA: bf16 when ``torch.cuda.is_bf16_supported()`` (H200: 562 vs 502 clips/s, bench).
    CPU: bf16 only when oneDNN has native bf16 (AVX512-BF16/AMX); on the 2-core AVX2 dev
    machine bf16 autocast falls back to a slow path (one clip took minutes, fp32 ~2 s).
    """
    if precision in ("32", "bf16"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be '32', 'bf16' or 'auto', got {precision!r}")
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32"


def _chunks(todo: Sequence[int], n: int, chunk_gifs: int, load_gifs: int) -> list[list[int]]:
    """Loader batches: groups of ≤ load_gifs GIF indices, never straddling a chunk."""
    batches = []
    for c in todo:
        lo, hi = c * chunk_gifs, min(n, (c + 1) * chunk_gifs)
        batches += [list(range(s, min(hi, s + load_gifs))) for s in range(lo, hi, load_gifs)]
    return batches


class _ChunkAccumulator:
    """Per-GIF float64 sums of clip features for the GIFs of one chunk, batched exactly."""

    def __init__(
        self, records: Sequence[Any], chunk: int, lo: int, hi: int, dim: int, device: torch.device
    ) -> None:
        self.records, self.chunk, self.lo, self.hi, self.device = records, chunk, lo, hi, device
        self.sums = np.zeros((hi - lo, dim), np.float64)
        self.counts = np.zeros(hi - lo, np.int64)
        self.n_frames = np.zeros(hi - lo, np.int64)
        self.delay = np.zeros(hi - lo, np.float64)
        self.ok = np.zeros(hi - lo, bool)
        self.failures: list[dict[str, Any]] = []
        self.seen = 0
        self.clips: list[torch.Tensor] = []  # pending clips (n, 3, 16, 112, 112)
        self.owner: list[np.ndarray] = []  # (n,) row within the chunk of each pending clip

    @property
    def pending(self) -> int:
        return sum(len(o) for o in self.owner)

    def add(self, batch: dict[str, Any]) -> None:
        for f in batch["failures"]:
            self.failures.append({k: f[k] for k in ("index", "id", "path", "reason")})
        rows = batch["index"].numpy() - self.lo  # (B,)
        self.seen += len(rows)
        failed = {int(f["index"]) - self.lo for f in batch["failures"]}
        for j, r in enumerate(rows):
            if r not in failed:
                self.ok[r] = True
                self.n_frames[r] = int(batch["n_frames"][j])
                self.delay[r] = float(batch["mean_delay_ms"][j])
        if len(batch["clips"]):
            self.clips.append(batch["clips"].to(self.device, non_blocking=True))
            self.owner.append(rows[batch["gif_index"].numpy()])

    def take(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """The next ``n`` pending clips (fewer if fewer are pending) and their owners."""
        clips, owner, got = [], [], 0
        while got < n and self.owner:
            k = min(n - got, len(self.owner[0]))
            clips.append(self.clips[0][:k])
            owner.append(self.owner[0][:k])
            got += k
            if k == len(self.owner[0]):
                del self.clips[0], self.owner[0]
            else:
                self.clips[0], self.owner[0] = self.clips[0][k:], self.owner[0][k:]
        return (clips[0] if len(clips) == 1 else torch.cat(clips)), np.concatenate(owner)

    def accumulate(self, feats: np.ndarray, owner: np.ndarray) -> None:
        """Add each clip's features to its GIF's sum, in clip order (``owner`` is sorted)."""
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        gifs = owner[starts]
        self.sums[gifs] += np.add.reduceat(feats.astype(np.float64), starts, axis=0)
        self.counts[gifs] += np.diff(np.r_[starts, len(owner)])

    def shard(self) -> Shard:
        for r in np.flatnonzero(self.ok & (self.counts == 0)):  # decoded, yet no clip came out
            rec = self.records[int(r) + self.lo]
            self.failures.append(
                {
                    "index": int(r + self.lo),
                    "id": rec.id,
                    "path": str(rec.path),
                    "reason": "no clips",
                }
            )
        rows = np.flatnonzero(self.ok & (self.counts > 0))
        mean = self.sums[rows] / self.counts[rows, None]
        norm = np.linalg.norm(mean, axis=1, keepdims=True)
        feats = (mean / np.where(norm > 0, norm, 1.0)).astype(np.float32)
        return Shard(
            chunk=self.chunk,
            index=(rows + self.lo).astype(np.int64),
            features=feats,
            n_frames=self.n_frames[rows],
            mean_delay_ms=self.delay[rows],
            failures=sorted(self.failures, key=lambda f: f["index"]),
        )


def extract_features(
    records: Sequence[Any],
    out_dir: str | Path,
    *,
    model: C3D,
    transform: Any,
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
    extra_meta: dict[str, Any] | None = None,
) -> FeatureStore:
    """Write (or finish) the feature store of ``records`` in ``out_dir`` and open it.

    ``precision``: "32", "bf16" (autocast; features are accumulated in float64 either way) or
    "auto" (:func:`resolve_precision`).
    ``channels_last``: channels_last_3d memory format for model and clips; measured to help on
    both targets (2-core AVX2 CPU fp32: +8–10 % clips per CPU-second; cuDNN's NDHWC kernels on GPUs).
    ``fingerprint``: identity of the result (computed from the inputs when None); a complete
    store with the same fingerprint is returned as is, shards of another one are discarded.
    """
    if batch_clips < 1 or chunk_gifs < 1 or load_gifs < 1:
        raise ValueError(
            f"batch_clips/chunk_gifs/load_gifs must be ≥ 1: {batch_clips}/{chunk_gifs}/{load_gifs}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    preprocessing = preprocessing_of(transform)
    if fingerprint is None:
        fingerprint, _ = feature_fingerprint(
            records,
            dataset_name=dataset_name,
            backbone=backbone_config(model),
            weights_id=model.weights_id,
            preprocessing=preprocessing,
            precision=precision,
            read_kwargs=read_kwargs,
        )
    if complete_fingerprint(out_dir) == fingerprint:
        shutil.rmtree(out_dir / PARTIAL, ignore_errors=True)  # left by a kill after COMPLETE
        return FeatureStore.open(out_dir)

    n, dim = len(records), model.feature_dim
    n_chunks = (n + chunk_gifs - 1) // chunk_gifs
    work = WorkDir(out_dir, {"fingerprint": fingerprint, "chunk_gifs": chunk_gifs})
    todo = [c for c in range(n_chunks) if c not in work.done()]
    log.info("extracting %d GIFs: %d of %d chunks to do", n, len(todo), n_chunks)

    use_cl = bool(channels_last)
    fmt = torch.channels_last_3d if use_cl else torch.contiguous_format
    model = model.eval().to(dev)
    if use_cl:
        model = model.to(memory_format=fmt)  # type: ignore[call-overload]
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    dataset = GifClipDataset(
        list(records), sampler=AllClips(), transform=transform, read_kwargs=read_kwargs
    )
    batches = _chunks(todo, n, chunk_gifs, load_gifs)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_clips,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )
    stats = {"clips": 0, "data_wait_s": 0.0, "compute_s": 0.0}
    bar = tqdm(total=sum(len(b) for b in batches), unit="gif", disable=not progress)
    bar.set_description("C3D features")
    written = 0
    t_start = time.perf_counter()

    # Batches in flight: the GPU computes batch k while the host adds up batch k-1's features.
    inflight: deque[tuple[_ChunkAccumulator, torch.Tensor, Any, np.ndarray]] = deque()

    def drain(keep: int) -> None:
        while len(inflight) > keep:
            acc, host, done, owner = inflight.popleft()
            if done is not None:
                done.synchronize()
            acc.accumulate(host.numpy(), owner)

    def run(acc: _ChunkAccumulator, final: bool) -> None:
        t0 = time.perf_counter()
        while acc.pending >= batch_clips or (final and acc.pending):
            clips, owner = acc.take(batch_clips)
            x = clips.to(dev, non_blocking=True, memory_format=fmt)  # (b, 3, 16, 112, 112)
            with torch.inference_mode(), amp:
                feats = model.features(x).float()  # (b, D)
                if dev.type == "cuda":
                    host = torch.empty(feats.shape, pin_memory=True)
                    host.copy_(feats, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record()
                    inflight.append((acc, host, done, owner))
                else:
                    inflight.append((acc, feats, None, owner))
            stats["clips"] += len(owner)
            drain(keep=1)
        if final:
            drain(keep=0)
        stats["compute_s"] += time.perf_counter() - t0
        bar.set_postfix(clips=stats["clips"], refresh=False)

    acc: _ChunkAccumulator | None = None
    it: Iterator[dict[str, Any]] = iter(loader)
    for _ in batches:
        t0 = time.perf_counter()
        batch = next(it)
        stats["data_wait_s"] += time.perf_counter() - t0
        chunk = int(batch["index"][0]) // chunk_gifs
        if acc is None:
            lo = chunk * chunk_gifs
            acc = _ChunkAccumulator(records, chunk, lo, min(n, lo + chunk_gifs), dim, dev)
        acc.add(batch)
        bar.update(len(batch["ids"]))
        run(acc, final=False)
        if acc.seen == acc.hi - acc.lo:
            run(acc, final=True)
            work.write(acc.shard())
            written += 1
            acc = None
            _kill_hook(f"shard:{written}")
    bar.close()
    elapsed = time.perf_counter() - t_start

    shards = [work.read(c) for c in range(n_chunks)]
    n_ok = sum(len(s.index) for s in shards)
    meta = {
        "fingerprint": fingerprint,
        "dataset": dataset_name,
        "backbone": backbone_config(model),
        "weights_id": model.weights_id,
        "preprocessing": preprocessing,
        "clip_rule": clip_rule(),
        "precision": precision,
        "read_kwargs": read_kwargs or {},
        "versions": package_versions(),
        "counts": {"records": n, "features": n_ok, "failures": n - n_ok, "dim": dim},
        "batching": {"batch_clips": batch_clips, "chunk_gifs": chunk_gifs},
        "last_run": {
            "device": str(dev),
            "channels_last_3d": use_cl,
            "threads": torch.get_num_threads(),
            "chunks": len(todo),
            "seconds": round(elapsed, 3),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
        },
        **(extra_meta or {}),
    }
    ids = [r.id for r in records]
    store = finalise(out_dir, shards, ids=ids, dim=dim, meta=meta, kill_hook=_kill_hook)
    work.remove()
    log.info("feature store %s: %d GIFs, %d failures", out_dir, n_ok, n - n_ok)
    return store


def _transform_from(cfg: Any) -> Any:
    from gifemo.data.transforms import C3DTransform

    kwargs: dict[str, Any] = {"train": False}
    for key in ("mean_bgr", "mean_cube"):
        value = cfg.get(key)
        if value is not None:
            kwargs[key] = tuple(value) if key == "mean_bgr" else str(value)
    return C3DTransform(**kwargs)


def extract(cfg: Any) -> FeatureStore:
    """Build dataset, transform and backbone from a composed config; reuse or (re)extract.

    Reads ``cfg.data`` (a GifDataset ``_target_``), ``cfg.backbone`` (``build_c3d``),
    ``cfg.extract.{out_dir, batch_clips, num_workers, precision, device, max_pixels,
    max_frames, threads, chunk_gifs, load_gifs, channels_last, mean_bgr, mean_cube, progress}``
    and ``cfg.paths.features_dir``. A complete store whose fingerprint (dataset name and files,
    backbone config, weights_id, preprocessing, clip rule, precision, read limits) matches is
    opened without building the model; otherwise the features are extracted (resuming any
    shards of the same fingerprint). ``out_dir: null`` → ``<features_dir>/<dataset>-<fp[:10]>``.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from gifemo.models.c3d import weights_identity

    ex = cfg.extract
    dataset = instantiate(cfg.data)
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    assert isinstance(backbone, dict)
    weights_id = weights_identity(backbone.get("weights"))
    transform = _transform_from(ex)
    read_kwargs = {k: ex.get(k) for k in ("max_pixels", "max_frames") if ex.get(k) is not None}
    precision = resolve_precision(str(ex.precision), resolve_device(str(ex.device)))
    fingerprint, _ = feature_fingerprint(
        dataset.records,
        dataset_name=dataset.name,
        backbone={str(k): v for k, v in backbone.items() if k != "weights"},
        weights_id=weights_id,
        preprocessing=preprocessing_of(transform),
        precision=precision,
        read_kwargs=read_kwargs,
    )
    out_dir = Path(
        ex.out_dir or Path(cfg.paths.features_dir) / f"{dataset.name}-{fingerprint[:10]}"
    )
    if complete_fingerprint(out_dir) == fingerprint:
        log.info("reusing feature store %s (fingerprint %s)", out_dir, fingerprint[:10])
        return FeatureStore.open(out_dir)
    if complete_fingerprint(out_dir) is not None:
        log.warning("feature store %s was made with another configuration: re-extracting", out_dir)
    if ex.get("threads"):
        torch.set_num_threads(int(ex.threads))
    model = instantiate(cfg.backbone)
    if model.weights_id != weights_id:
        raise RuntimeError(f"backbone weights_id {model.weights_id!r} != {weights_id!r}")
    return extract_features(
        dataset.records,
        out_dir,
        model=model,
        transform=transform,
        batch_clips=int(ex.batch_clips),
        num_workers=int(ex.num_workers),
        precision=precision,
        device=str(ex.device),
        read_kwargs=read_kwargs or None,
        progress=bool(ex.get("progress", True)),
        chunk_gifs=int(ex.get("chunk_gifs", 32)),
        load_gifs=int(ex.get("load_gifs", 2)),
        channels_last=bool(ex.get("channels_last", True)),
        dataset_name=dataset.name,
        fingerprint=fingerprint,
        extra_meta={"backbone_config": backbone},
    )
