"""The feature store: what extract.py writes and train.py reads.

Layout of a finished store ``out_dir/``::

    visual.npy         (N, D) float32, row i = GIF ids[i] (readable as a memmap)
    ids.txt            N lines, the row order (the dataset order, failed GIFs left out)
    n_frames.npy       (N,) int64 decoded frames per GIF
    mean_delay_ms.npy  (N,) float64 mean frame delay per GIF
    failures.jsonl     one {"index", "id", "path", "reason"} per GIF that could not be used
    meta.json          backbone, weights_id, preprocessing, clip rule, versions, counts, fingerprint
    COMPLETE           written last, names the fingerprint and the shape

While extracting, finished chunks of GIFs live as shards in ``out_dir/.partial/`` (each written
to a temporary name and renamed, so a shard on disk is whole). Finalising assembles them into
temporary files, renames those into place and writes ``COMPLETE`` last; it first removes an old
``COMPLETE``, so a store is complete exactly when ``COMPLETE`` exists and agrees with meta.json.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("torch", "numpy", "av", "pillow")
COMPLETE = "COMPLETE"
PARTIAL = ".partial"


class StoreError(RuntimeError):
    """A feature store is missing, incomplete or inconsistent; names the directory and file."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path``, fsync it, rename onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


# ---- identity of a store: everything that determines its features ----


def preprocessing_of(transform: Any) -> dict[str, Any]:
    """The preprocessing parameters of a C3DTransform (for meta.json and the fingerprint)."""
    from gifemo.data import transforms

    out: dict[str, Any] = {
        "transform": f"{type(transform).__module__}.{type(transform).__qualname__}",
        "resize_hw": list(transforms.RESIZE_HW),
        "crop": transforms.CROP,
        "channel_order": "BGR",
    }
    for name in ("train", "flip", "mean_bgr", "mean_cube"):
        if hasattr(transform, name):
            value = getattr(transform, name)
            out[name] = list(value) if isinstance(value, tuple) else value
    if out.get("mean_cube"):  # the cube's content, not just its path, decides the features
        out["mean_cube_sha256"] = _sha256_file(Path(out["mean_cube"]))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def backbone_config(model: Any) -> dict[str, Any]:
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "channels": list(model.channels),
        "fc_dim": model.feature_dim,
        "pool5": model.pool5_mode,
        "feature": "fc6 after ReLU",
    }


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_of(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines the features."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def records_digest(records: Sequence[Any]) -> str:
    """sha256 over (id, path, file size) of every record: the GIFs a store was made from."""
    h = hashlib.sha256()
    for r in records:
        try:
            size = os.path.getsize(r.path)
        except OSError:
            size = -1
        h.update(f"{r.id}\t{r.path}\t{size}\n".encode())
    return h.hexdigest()


def feature_fingerprint(
    records: Sequence[Any],
    *,
    dataset_name: str,
    backbone: dict[str, Any],
    weights_id: str,
    preprocessing: dict[str, Any],
    precision: str,
    read_kwargs: dict[str, Any] | None,
) -> tuple[str, dict[str, Any]]:
    parts = {
        "dataset": dataset_name,
        "records": records_digest(records),
        "n_records": len(records),
        "backbone": backbone,
        "weights_id": weights_id,
        "preprocessing": preprocessing,
        "clip_rule": clip_rule(),
        "precision": precision,
        "read_kwargs": read_kwargs or {},
    }
    return fingerprint_of(parts), parts


def clip_rule() -> dict[str, Any]:
    from gifemo.data.clips import CLIP_LEN, CLIP_STRIDE

    return {
        "sampler": "AllClips",
        "clip_len": CLIP_LEN,
        "stride": CLIP_STRIDE,
        "padding": "loop to max(16, 8*ceil(n/8)) frames",
        "pooling": "mean over clips, then L2",
    }


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@dataclass
class FeatureStore:
    """A finished store, opened read-only. ``visual`` is a (N, D) float32 memmap."""

    path: Path
    ids: list[str]
    visual: np.ndarray
    meta: dict[str, Any]
    failures: list[dict[str, Any]]
    n_frames: np.ndarray
    mean_delay_ms: np.ndarray

    @classmethod
    def open(cls, path: str | Path) -> FeatureStore:
        path = Path(path)
        marker = path / COMPLETE
        if not marker.is_file():
            raise StoreError(f"{path}: not a complete feature store (no {COMPLETE} marker)")
        done = json.loads(marker.read_text())
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("fingerprint") != done.get("fingerprint"):
            raise StoreError(f"{path}: meta.json and {COMPLETE} disagree on the fingerprint")
        ids = (path / "ids.txt").read_text(encoding="utf-8").splitlines()
        visual = np.load(path / "visual.npy", mmap_mode="r")
        shape = (int(done["n"]), int(done["dim"]))
        if visual.shape != shape or visual.dtype != np.float32 or len(ids) != shape[0]:
            raise StoreError(
                f"{path}: visual.npy is {visual.dtype}{visual.shape} with {len(ids)} ids, "
                f"{COMPLETE} says float32{shape}"
            )
        text = (path / "failures.jsonl").read_text(encoding="utf-8")
        failures = [json.loads(line) for line in text.splitlines() if line.strip()]
        return cls(
            path=path,
            ids=ids,
            visual=visual,
            meta=meta,
            failures=failures,
            n_frames=np.load(path / "n_frames.npy"),
            mean_delay_ms=np.load(path / "mean_delay_ms.npy"),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, gif_id: str) -> int:
        if not hasattr(self, "_rows"):
            self._rows = {g: i for i, g in enumerate(self.ids)}
        try:
            return self._rows[gif_id]
        except KeyError:
            raise KeyError(f"{self.path}: no features for GIF id {gif_id!r}") from None


def complete_fingerprint(path: str | Path) -> str | None:
    """The fingerprint of a complete store at ``path``, or None when there is none."""
    try:
        return json.loads((Path(path) / COMPLETE).read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


@dataclass
class Shard:
    """The features of one chunk of GIFs (rows only for the GIFs that worked)."""

    chunk: int
    index: np.ndarray  # (n,) int64 dataset indices
    features: np.ndarray  # (n, D) float32
    n_frames: np.ndarray  # (n,) int64
    mean_delay_ms: np.ndarray  # (n,) float64
    failures: list[dict[str, Any]]


class WorkDir:
    """``out_dir/.partial``: shards of finished chunks, valid for one work fingerprint."""

    def __init__(self, out_dir: Path, key: dict[str, Any]) -> None:
        self.path = Path(out_dir) / PARTIAL
        stamp = self.path / "key.json"
        text = json.dumps(key, sort_keys=True)
        if self.path.exists() and (not stamp.is_file() or stamp.read_text() != text):
            shutil.rmtree(self.path)  # shards of another configuration: start afresh
        self.path.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file():
            write_text(stamp, text)

    def _file(self, chunk: int) -> Path:
        return self.path / f"shard-{chunk:06d}.npz"

    def done(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.path.glob("shard-*.npz")}

    def write(self, shard: Shard) -> None:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    index=shard.index.astype(np.int64),
                    features=shard.features.astype(np.float32),
                    n_frames=shard.n_frames.astype(np.int64),
                    mean_delay_ms=shard.mean_delay_ms.astype(np.float64),
                    failures=np.array(json.dumps(shard.failures)),
                )

        atomic_write(self._file(shard.chunk), save)

    def read(self, chunk: int) -> Shard:
        with np.load(self._file(chunk), allow_pickle=False) as z:
            return Shard(
                chunk=chunk,
                index=z["index"],
                features=z["features"],
                n_frames=z["n_frames"],
                mean_delay_ms=z["mean_delay_ms"],
                failures=json.loads(str(z["failures"])),
            )

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def finalise(
    out_dir: Path,
    shards: list[Shard],
    *,
    ids: list[str],
    dim: int,
    meta: dict[str, Any],
    kill_hook: Callable[[str], None] = lambda stage: None,
) -> FeatureStore:
    """Assemble ``shards`` (in chunk order) into a complete store; atomic, ``COMPLETE`` last."""
    out_dir = Path(out_dir)
    shards = sorted(shards, key=lambda s: s.chunk)
    n = sum(len(s.index) for s in shards)
    (out_dir / COMPLETE).unlink(missing_ok=True)
    _fsync_dir(out_dir)

    def save_visual(tmp: Path) -> None:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        at = 0
        for s in shards:
            rows[at : at + len(s.index)] = s.features
            at += len(s.index)
        rows.flush()
        del rows

    def save_array(values: np.ndarray) -> Callable[[Path], None]:
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.save(f, values)

        return save

    atomic_write(out_dir / "visual.npy", save_visual)
    kill_hook("finalise:visual")
    index = np.concatenate([s.index for s in shards]) if shards else np.zeros(0, np.int64)
    write_text(out_dir / "ids.txt", "".join(ids[int(i)] + "\n" for i in index))
    cat = np.concatenate
    n_frames = cat([s.n_frames for s in shards]) if shards else np.zeros(0, np.int64)
    delays = cat([s.mean_delay_ms for s in shards]) if shards else np.zeros(0)
    atomic_write(out_dir / "n_frames.npy", save_array(n_frames.astype(np.int64)))
    atomic_write(out_dir / "mean_delay_ms.npy", save_array(delays.astype(np.float64)))
    failures = [f for s in shards for f in s.failures]
    write_text(out_dir / "failures.jsonl", _jsonl(failures))
    write_text(out_dir / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    kill_hook("finalise:meta")
    done = {"fingerprint": meta["fingerprint"], "n": n, "dim": dim}
    write_text(out_dir / COMPLETE, json.dumps(done, sort_keys=True) + "\n")
    return FeatureStore.open(out_dir)
