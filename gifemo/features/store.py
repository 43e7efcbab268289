"""The feature store: what extract.py writes and train.py reads.

Layout of a finished store ``out_dir/``::

    visual.npy         (N, D) float32, row i = GIF ids[i] (readable as a memmap)
    ids.jsonl          N lines, each one JSON string (ASCII, every control character and
                       U+2028/U+2029 escaped): the row order (dataset order, failed GIFs left out)
    n_frames.npy       (N,) int64 frames used per GIF
    n_clips.npy        (N,) int64 clips averaged per GIF
    truncated.npy      (N,) bool, True where the file ended early (its complete frames were used)
    mean_delay_ms.npy  (N,) float64 mean frame delay per GIF
    notes.jsonl        one {"index", "id", "path", "note"} per row that a budget cut or that was
                       truncated (what was left out, and why)
    failures.jsonl     one {"index", "id", "path", "reason"} per file that is not a row: GIFs that
                       could not be used, and files the dataset could not list (``index`` null)
    meta.json          backbone, weights_id, preprocessing, clip rule, budgets, versions,
                       counts (records, features, failures, truncated, noted), fingerprint
    COMPLETE           written last, names the fingerprint and the shape

While extracting, finished chunks of GIFs live as shards in ``out_dir/.partial/`` (each written
to a temporary name and renamed, so a shard on disk is whole). Finalising assembles them into
temporary files, renames those into place, re-reads and validates them (the same checks as
:meth:`FeatureStore.open`) and writes ``COMPLETE`` last; it first removes an old ``COMPLETE``, so
a store is complete exactly when ``COMPLETE`` exists and agrees with meta.json, and a store that
would not open is never marked complete. Stores written before ``ids.jsonl`` (``ids.txt``, one
id per line) still open.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PACKAGES = ("torch", "numpy", "av", "pillow")
COMPLETE = "COMPLETE"
PARTIAL = ".partial"
IDS = "ids.jsonl"
SHARD_FORMAT = 2  # version of the shard files; shards of another version are redone


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


def _jsonl(rows: Iterable[Any]) -> str:
    """JSON lines, ASCII only: no character inside a value can be read as a line break."""
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=True) + "\n" for r in rows)


def _read_jsonl(path: Path) -> list[Any]:
    text = path.read_text(encoding="ascii")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def read_ids(path: Path) -> list[str]:
    """The row ids of the store at ``path``: ``ids.jsonl``, or a legacy ``ids.txt``."""
    if (path / IDS).is_file():
        ids = _read_jsonl(path / IDS)
        bad = [i for i, g in enumerate(ids) if not isinstance(g, str)]
        if bad:
            raise StoreError(f"{path / IDS}: line {bad[0] + 1} is not a JSON string")
        return ids
    return (path / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]


# ---- identity of a store: everything that determines its features ----


def preprocessing_of(transform: Any) -> dict[str, Any]:
    """What a store records about the preprocessing: the backbone transform's own ``describe()``
    (resize, crop, channel order, divisor, mean/std, mean-cube hash; :mod:`gifemo.backbones`)."""
    return dict(transform.describe())


def backbone_config(model: Any) -> dict[str, Any]:
    """What a store records about the architecture: the backbone's own ``describe()``."""
    return dict(model.describe())


def fingerprint_of(parts: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines the features."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def records_digest(records: Sequence[Any]) -> str:
    """sha256 over (id, path, file size) of every record: the GIFs a store was made from.

    Each record is one ASCII JSON line, so any character in a name (a tab, a line break, a
    byte that is not UTF-8, kept by Python as a lone surrogate) hashes unambiguously.
    """
    h = hashlib.sha256()
    for r in records:
        try:
            size = os.path.getsize(r.path)
        except OSError:
            size = -1
        h.update((json.dumps([r.id, str(r.path), size], ensure_ascii=True) + "\n").encode())
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
    clip_rule: dict[str, Any],
    budget: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The fingerprint of a store and the parts it hashes. ``clip_rule``: :func:`clip_rule`;
    ``budget``: per-GIF limits that change rows (``max_clips``; ``read_frames`` is in
    ``read_kwargs``); ``execution``: how the model ran where that changes the bits of the
    features (``{"compile": True}``: torch.compile's fused kernels round differently)."""
    parts = {
        "dataset": dataset_name,
        "records": records_digest(records),
        "n_records": len(records),
        "backbone": backbone,
        "weights_id": weights_id,
        "preprocessing": preprocessing,
        "clip_rule": clip_rule,
        "precision": precision,
        "read_kwargs": read_kwargs or {},
    }
    if budget:  # absent when there is none: the fingerprints of unbudgeted stores stay as they were
        parts["budget"] = budget
    if execution:  # likewise absent for plain eager runs
        parts["execution"] = execution
    return fingerprint_of(parts), parts


def clip_rule(sampler: Any) -> dict[str, Any]:
    """What a store records about its clips: the sampler's ``describe()`` and the pooling."""
    return {**sampler.describe(), "pooling": "mean over clips, then L2"}


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
    truncated: np.ndarray = None  # type: ignore[assignment]  # (N,) bool; None → all False
    n_clips: np.ndarray = None  # type: ignore[assignment]  # (N,) int64; None → -1 (unknown)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.truncated is None:
            self.truncated = np.zeros(len(self.ids), bool)
        if self.n_clips is None:
            self.n_clips = np.full(len(self.ids), -1, np.int64)

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
        return cls._read(path, n=int(done["n"]), dim=int(done["dim"]), meta=meta)

    @classmethod
    def _read(cls, path: Path, *, n: int, dim: int, meta: dict[str, Any]) -> FeatureStore:
        """Read and check every file of the store at ``path`` against the shape (n, dim)."""
        ids = read_ids(path)
        visual = np.load(path / "visual.npy", mmap_mode="r")
        shape = (n, dim)
        if visual.shape != shape or visual.dtype != np.float32 or len(ids) != shape[0]:
            raise StoreError(
                f"{path}: visual.npy is {visual.dtype}{visual.shape} with {len(ids)} ids, "
                f"{COMPLETE} says float32{shape}"
            )
        if len(set(ids)) != len(ids):
            raise StoreError(f"{path}: {len(ids) - len(set(ids))} duplicate ids in {IDS}")
        arrays = {}
        for name, dtype, default in (
            ("n_frames", np.int64, None),
            ("mean_delay_ms", np.float64, None),
            ("truncated", np.bool_, False),
            ("n_clips", np.int64, -1),
        ):
            f = path / f"{name}.npy"
            if not f.is_file() and default is not None:  # a store from before the field
                arrays[name] = np.full(n, default, dtype)
                continue
            a = np.load(f, allow_pickle=False)
            if a.shape != (n,) or a.dtype != dtype:
                raise StoreError(f"{f}: {a.dtype}{a.shape}, expected {np.dtype(dtype)}({n},)")
            arrays[name] = a
        notes = _read_jsonl(path / "notes.jsonl") if (path / "notes.jsonl").is_file() else []
        failures = _read_jsonl(path / "failures.jsonl")
        return cls(
            path=path, ids=ids, visual=visual, meta=meta, failures=failures, notes=notes, **arrays
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


SHARD_ARRAYS: dict[str, Any] = {  # the per-row arrays of a shard and their dtypes
    "index": np.int64,
    "features": np.float32,
    "n_frames": np.int64,
    "mean_delay_ms": np.float64,
    "truncated": np.bool_,
    "n_clips": np.int64,
}


@dataclass
class Shard:
    """The features of one chunk of GIFs (rows only for the GIFs that worked)."""

    chunk: int
    index: np.ndarray  # (n,) int64 dataset indices
    features: np.ndarray  # (n, D) float32
    n_frames: np.ndarray  # (n,) int64
    mean_delay_ms: np.ndarray  # (n,) float64
    failures: list[dict[str, Any]]
    truncated: np.ndarray  # (n,) bool
    n_clips: np.ndarray  # (n,) int64
    notes: list[dict[str, Any]]  # {"index", "id", "path", "note"} of rows with something to say


def _discard(path: Path, stamp: Path, want: dict[str, Any]) -> None:
    """Remove shards of another work key, saying which of its fields changed."""
    try:
        had = json.loads(stamp.read_text())
    except (OSError, ValueError):
        had = {}
    changed = [
        f"{k}: {had.get(k)!r} → {want.get(k)!r}"
        for k in sorted(set(had) | set(want))
        if had.get(k) != want.get(k) and k != "fingerprint"
    ]
    if had.get("fingerprint") != want.get("fingerprint"):
        changed.insert(0, "the store's configuration (fingerprint)")
    n = len(list(path.glob("shard-*.npz")))
    if n:
        log.warning(
            "%s: discarding %d finished chunk(s) of another run (%s); rerun with the old "
            "values to keep them",
            path, n, "; ".join(changed) or "unreadable key.json",
        )  # fmt: skip
    shutil.rmtree(path)  # shards of another configuration: start afresh


class WorkDir:
    """``out_dir/.partial``: shards of finished chunks, valid for one work key.

    The key is everything that changes a shard's bytes: the store's fingerprint and the run's
    own settings that round differently (batch size, memory format, device type). Shards of
    another key are discarded with a warning that names what changed, so a resumed store is
    never a mix of two configurations.
    """

    def __init__(self, out_dir: Path, key: dict[str, Any]) -> None:
        self.path = Path(out_dir) / PARTIAL
        stamp = self.path / "key.json"
        want = {**key, "shard_format": SHARD_FORMAT}
        text = json.dumps(want, sort_keys=True)
        if self.path.exists() and (not stamp.is_file() or stamp.read_text() != text):
            _discard(self.path, stamp, want)
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
                arrays = {k: getattr(shard, k).astype(t) for k, t in SHARD_ARRAYS.items()}
                np.savez(
                    f,
                    **arrays,
                    failures=np.array(json.dumps(shard.failures)),
                    notes=np.array(json.dumps(shard.notes)),
                )

        atomic_write(self._file(shard.chunk), save)

    def read(self, chunk: int) -> Shard:
        with np.load(self._file(chunk), allow_pickle=False) as z:
            return Shard(
                chunk=chunk,
                **{k: z[k] for k in SHARD_ARRAYS},
                failures=json.loads(str(z["failures"])),
                notes=json.loads(str(z["notes"])),
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
    unlisted: Sequence[dict[str, Any]] = (),
    kill_hook: Callable[[str], None] = lambda stage: None,
) -> FeatureStore:
    """Assemble ``shards`` (in chunk order) into a complete store; atomic, ``COMPLETE`` last.

    ``unlisted``: files the dataset found but could not list as records ({"id", "path",
    "reason"}); they go to failures.jsonl with ``index`` null. Before ``COMPLETE`` the written
    files are read back and checked; a :class:`StoreError` leaves the store incomplete.
    """
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
    row_ids = [ids[int(i)] for i in index]
    write_text(out_dir / IDS, _jsonl(row_ids))
    (out_dir / "ids.txt").unlink(missing_ok=True)  # a legacy file must not be read instead
    for name, dtype in SHARD_ARRAYS.items():
        if name in ("index", "features"):
            continue
        parts = [getattr(s, name) for s in shards]
        values = np.concatenate(parts) if parts else np.zeros(0, dtype)
        atomic_write(out_dir / f"{name}.npy", save_array(values.astype(dtype)))
    failures = [f for s in shards for f in s.failures]
    failures += [{"index": None, **{k: u[k] for k in ("id", "path", "reason")}} for u in unlisted]
    write_text(out_dir / "failures.jsonl", _jsonl(failures))
    write_text(out_dir / "notes.jsonl", _jsonl([x for s in shards for x in s.notes]))
    write_text(out_dir / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    kill_hook("finalise:meta")
    store = FeatureStore._read(out_dir, n=n, dim=dim, meta=meta)  # validate before COMPLETE
    if store.ids != row_ids:
        raise StoreError(f"{out_dir / IDS}: ids read back differ from the ids written")
    done = {"fingerprint": meta["fingerprint"], "n": n, "dim": dim}
    write_text(out_dir / COMPLETE, json.dumps(done, sort_keys=True) + "\n")
    return FeatureStore.open(out_dir)
