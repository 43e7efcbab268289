"""Dataset readers: ``metadata.jsonl`` (GIFGIF, GIFGIF+, unlabelled) and plain GIF folders.

A dataset is a folder with a ``metadata.jsonl`` — UTF-8 text (a leading byte-order mark is
ignored), one JSON object per line (blank lines are skipped) — and the GIF files (DESIGN §2).
Fields of a row:

=============  ==========================================================================
``id``         required, non-empty string, unique in the file (a Giphy id on GIFGIF)
``file``       required, path of the GIF; a relative path resolves against the folder
               holding ``metadata.jsonl``; must exist when ``check_files``
``tags``       optional list of strings (default ``[]``), normalised by
               :func:`gifemo.data.tags.normalise_tag`; empty tags are dropped
``scores``     GIFGIF style: an object mapping *each* of the 17 emotions to ``[mu, sigma]``,
               finite numbers with ``sigma >= 0``
``emotions``   GIFGIF+ style: a list of emotion names (the GIF's binary labels)
``cartoon``    GIFGIF+ style, optional bool (made from cartoons or comics)
``multi_scene``GIFGIF+ style, optional bool (several scenes and/or characters)
=============  ==========================================================================

Other keys are ignored. A row with ``scores`` is GIFGIF style, one with ``emotions`` is GIFGIF+
style, one with neither is unlabelled; a row with both is an error. ``kind="auto"`` takes the
style of the rows and refuses a file that mixes styles; ``kind="unlabelled"`` reads any rows and
drops their labels. Every problem raises :class:`MetadataError` naming file, line and field.
"""

from __future__ import annotations

import codecs
import errno
import io
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.data.labels import positives, score_labels
from gifemo.data.tags import normalise_tag
from gifemo.emotions import EMOTION_INDEX, EMOTIONS, N_EMOTIONS

KINDS = ("gifgif", "gifgif_plus", "unlabelled", "folder")
_ROW_KINDS = ("gifgif", "gifgif_plus", "unlabelled")
GIF_SUFFIXES = (".gif",)


class MetadataError(ValueError):
    """Bad metadata; the message reads ``FILE:LINE: field 'F': what is wrong``."""

    def __init__(self, file: str | Path, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field = str(file), line, field
        where = self.file if line is None else f"{self.file}:{line}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


@dataclass(frozen=True, eq=False)
class GifRecord:
    """One GIF of a dataset. ``scores`` is (17, 2) [μ, σ] in EMOTIONS order (GIFGIF style)."""

    id: str
    path: Path
    tags: tuple[str, ...] = ()
    scores: np.ndarray | None = None
    emotions: frozenset[str] | None = None
    cartoon: bool | None = None
    multi_scene: bool | None = None
    source: str = ""


@dataclass
class GifDataset:
    """A list of records of one ``kind`` (gifgif | gifgif_plus | unlabelled | folder)."""

    root: Path
    kind: str
    records: list[GifRecord]
    name: str
    # files found but not listed as records ({"id", "path", "reason"}: symlink loops, dangling
    # links, unreadable folders); extraction records them in failures.jsonl
    unlisted: list[dict[str, str]] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {r.id: i for i, r in enumerate(self.records)}

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def index_of(self, gif_id: str) -> int:
        return self._index[gif_id]

    def tag_lists(self) -> list[tuple[str, ...]]:
        return [r.tags for r in self.records]

    def scores(self) -> np.ndarray:
        """``(n, 17, 2)`` float64 [μ, σ]; only for GIFGIF-style datasets."""
        if self.kind != "gifgif":
            raise ValueError(
                f"dataset {self.name!r} is {self.kind!r}: it has no [mu, sigma] scores"
            )
        return np.stack([r.scores for r in self.records]).astype(np.float64)  # type: ignore[misc]

    def labels(self) -> np.ndarray:
        """``(n, 17)`` y = μ − 3σ (GIFGIF style)."""
        return score_labels(self.scores())

    def binary_labels(self) -> np.ndarray:
        """``(n, 17)`` bool: GIFGIF+ emotions, or the positives y > 25 of a GIFGIF dataset."""
        if self.kind == "gifgif":
            return positives(self.labels())
        if self.kind != "gifgif_plus":
            raise ValueError(f"dataset {self.name!r} is {self.kind!r}: it has no labels")
        out = np.zeros((len(self.records), N_EMOTIONS), dtype=bool)
        for n, r in enumerate(self.records):
            for e in r.emotions or ():
                out[n, EMOTION_INDEX[e]] = True
        return out

    def subset(self, indices: Any) -> GifDataset:
        idx = np.arange(len(self.records))[indices]
        return GifDataset(self.root, self.kind, [self.records[int(i)] for i in idx], self.name)


# -- row parsing ----------------------------------------------------------------------------


def _row_kind(row: dict[str, Any], err: Any) -> str:
    if "scores" in row and "emotions" in row:
        raise err("scores", "a row has either 'scores' (GIFGIF) or 'emotions' (GIFGIF+), not both")
    if "scores" in row:
        return "gifgif"
    return "gifgif_plus" if "emotions" in row else "unlabelled"


def _number(x: Any, err: Any, fname: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise err(fname, f"expected a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise err(fname, f"must be finite, got {x!r}")
    return v


def _parse_scores(obj: Any, err: Any) -> np.ndarray:
    if not isinstance(obj, dict):
        raise err("scores", f"expected an object emotion -> [mu, sigma], got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(EMOTIONS))
    if unknown:
        raise err(f"scores.{unknown[0]}", f"unknown emotion; expected one of {', '.join(EMOTIONS)}")
    out = np.empty((N_EMOTIONS, 2), dtype=np.float64)
    for i, e in enumerate(EMOTIONS):
        if e not in obj:
            raise err(f"scores.{e}", "missing (all 17 emotions need [mu, sigma])")
        pair = obj[e]
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise err(f"scores.{e}", f"expected [mu, sigma] (2 numbers), got {pair!r}")
        out[i, 0] = _number(pair[0], err, f"scores.{e}[0]")
        out[i, 1] = _number(pair[1], err, f"scores.{e}[1]")
        if out[i, 1] < 0:
            raise err(f"scores.{e}[1]", f"sigma must be >= 0, got {pair[1]!r}")
    return out


def _parse_emotions(obj: Any, err: Any) -> frozenset[str]:
    if not isinstance(obj, list):
        raise err("emotions", f"expected a list of emotion names, got {type(obj).__name__}")
    out = set()
    for j, e in enumerate(obj):
        name = e.strip().lower() if isinstance(e, str) else e
        if not isinstance(name, str) or name not in EMOTION_INDEX:
            raise err(
                f"emotions[{j}]", f"unknown emotion {e!r}; expected one of {', '.join(EMOTIONS)}"
            )
        out.add(name)
    return frozenset(out)


def _parse_flag(row: dict[str, Any], key: str, err: Any) -> bool | None:
    v = row.get(key)
    if v is not None and not isinstance(v, bool):
        raise err(key, f"expected true/false, got {v!r}")
    return v


def _parse_row(
    row: Any, kind: str, base: Path, check_files: bool, err: Any, source: str
) -> GifRecord:
    if not isinstance(row, dict):
        raise err(None, f"expected a JSON object, got {type(row).__name__}")
    gif_id = row.get("id", None)
    if gif_id is None:
        raise err("id", "missing")
    if not isinstance(gif_id, str) or not gif_id.strip():
        raise err("id", f"expected a non-empty string, got {gif_id!r}")
    file = row.get("file", None)
    if file is None:
        raise err("file", "missing")
    if not isinstance(file, str) or not file:
        raise err("file", f"expected a path string, got {file!r}")
    if "\x00" in file:
        raise err("file", f"a path cannot hold a NUL character (\\u0000), got {file!r}")
    path = Path(file).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if check_files and not path.is_file():
        raise err("file", f"GIF file not found: {path}")
    tags = row.get("tags", [])
    if not isinstance(tags, list):
        raise err("tags", f"expected a list of strings, got {type(tags).__name__}")
    for j, t in enumerate(tags):
        if not isinstance(t, str):
            raise err(f"tags[{j}]", f"expected a string, got {t!r}")
    norm = tuple(n for n in (normalise_tag(t) for t in tags) if n)
    rec: dict[str, Any] = {"id": gif_id, "path": path, "tags": norm, "source": source}
    if kind == "gifgif":
        if "scores" not in row:
            raise err("scores", "missing (a GIFGIF-style dataset needs [mu, sigma] per emotion)")
        rec["scores"] = _parse_scores(row["scores"], err)
    elif kind == "gifgif_plus":
        if "emotions" not in row:
            raise err("emotions", "missing (a GIFGIF+-style dataset needs a list of emotions)")
        rec["emotions"] = _parse_emotions(row["emotions"], err)
        rec["cartoon"] = _parse_flag(row, "cartoon", err)
        rec["multi_scene"] = _parse_flag(row, "multi_scene", err)
    return GifRecord(**rec)


def read_dataset(
    root: str | Path,
    *,
    kind: str = "auto",
    metadata: str = "metadata.jsonl",
    check_files: bool = True,
    name: str | None = None,
) -> GifDataset:
    """Read ``root/metadata`` (an absolute ``metadata`` path is used as is) into a GifDataset.

    ``kind``: "auto" (from the rows), "gifgif", "gifgif_plus" or "unlabelled".
    """
    if kind not in ("auto", *_ROW_KINDS):
        raise ValueError(f"kind must be 'auto' or one of {_ROW_KINDS}, got {kind!r}")
    root = Path(root).expanduser().resolve()
    meta = (root / metadata).resolve()
    if not meta.is_file():
        raise MetadataError(meta, None, None, "metadata file not found")
    base = meta.parent
    rows: list[tuple[int, Any]] = []
    raw = meta.read_bytes().removeprefix(codecs.BOM_UTF8)  # a BOM (Notepad's "UTF-8 with BOM")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetadataError(
            meta,
            raw.count(b"\n", 0, e.start) + 1,
            None,
            f"not UTF-8 text: byte 0x{raw[e.start]:02x} ({e.reason}); save the file as UTF-8",
        ) from None
    with io.StringIO(content, newline=None) as f:  # universal newlines, as a text file
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rows.append((lineno, json.loads(text)))
            except json.JSONDecodeError as e:
                raise MetadataError(
                    meta, lineno, None, f"invalid JSON: {e.msg} (column {e.colno})"
                ) from e
    if not rows:
        raise MetadataError(meta, None, None, "no records")

    def err_at(lineno: int) -> Any:
        return lambda fname, msg: MetadataError(meta, lineno, fname, msg)

    if kind == "auto":
        first_line, first = rows[0]
        if not isinstance(first, dict):
            raise MetadataError(meta, first_line, None, "expected a JSON object")
        kind = _row_kind(first, err_at(first_line))
        for lineno, row in rows[1:]:
            if isinstance(row, dict) and (k := _row_kind(row, err_at(lineno))) != kind:
                style_field = {"gifgif": "scores", "gifgif_plus": "emotions"}
                raise MetadataError(
                    meta,
                    lineno,
                    style_field.get(k, style_field.get(kind)),
                    f"row is {k}-style but line {first_line} is {kind}-style (kind='auto' refuses a mix)",
                )
    records: list[GifRecord] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        err = err_at(lineno)
        if kind != "unlabelled" and isinstance(row, dict):
            _row_kind(row, err)  # both 'scores' and 'emotions' is always an error
        rec = _parse_row(row, kind, base, check_files, err, f"{meta.name}:{lineno}")
        if rec.id in seen:
            raise err("id", f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = lineno
        records.append(rec)
    return GifDataset(root=root, kind=kind, records=records, name=name or root.name)


def _unlisted(root: Path, path: Path, reason: str) -> dict[str, str]:
    rel = path.relative_to(root)
    return {"id": rel.with_suffix("").as_posix(), "path": str(path), "reason": reason}


def _walk_files(root: Path, suff: tuple[str, ...]) -> tuple[list[Path], list[dict[str, str]]]:
    """Regular files under ``root`` with a suffix in ``suff``, following folder symlinks once
    each; and every entry left out, with the reason (loops, dangling links, …)."""
    found: list[Path] = []
    unlisted: list[dict[str, str]] = []
    seen = {os.path.realpath(root)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            unlisted.append(_unlisted(root, folder, f"folder cannot be read ({e.strerror})"))
            continue
        for entry in entries:
            path = Path(entry.path)
            wanted = path.suffix.lower() in suff
            try:
                mode = os.stat(path).st_mode  # follows symlinks
            except OSError as e:
                if wanted or entry.is_symlink():
                    if e.errno == errno.ELOOP:
                        what = "symlink loop"
                    elif e.errno == errno.ENOENT and entry.is_symlink():
                        what = "dangling symlink (its target does not exist)"
                    else:
                        what = f"cannot be read ({e.strerror})"
                    unlisted.append(_unlisted(root, path, what))
                continue
            if stat.S_ISDIR(mode):
                real = os.path.realpath(path)
                if real in seen:
                    unlisted.append(
                        _unlisted(
                            root, path, f"folder link to {real}, already listed: not followed"
                        )
                    )
                    continue
                seen.add(real)
                stack.append(path)
                if wanted:
                    unlisted.append(_unlisted(root, path, "a folder, not a file"))
            elif wanted and stat.S_ISREG(mode):
                found.append(path)
            elif wanted:
                unlisted.append(_unlisted(root, path, "not a regular file"))
    return sorted(found), sorted(unlisted, key=lambda u: u["path"])


def read_folder(
    root: str | Path, *, suffixes: tuple[str, ...] = GIF_SUFFIXES, name: str | None = None
) -> GifDataset:
    """Every file under ``root`` (recursively, following folder symlinks once) whose suffix is
    in ``suffixes`` → unlabelled records, sorted by path; the id is the relative path without
    its suffix (``a/b`` for ``root/a/b.gif``; two files with one id, ``a.gif`` and ``a.GIF``,
    are a :class:`MetadataError` naming both). Entries that are not readable regular files
    (symlink loops, dangling links, folder links already listed, unreadable folders) are in
    ``GifDataset.unlisted`` with the reason."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise MetadataError(root, None, None, "GIF folder not found")
    suff = tuple(s.lower() for s in suffixes)
    paths, unlisted = _walk_files(root, suff)
    if not paths:
        raise MetadataError(
            root, None, None, f"no files with suffix {'/'.join(suff)} in the folder"
        )
    records = [
        GifRecord(
            id=p.relative_to(root).with_suffix("").as_posix(),
            path=p,
            source=p.relative_to(root).as_posix(),
        )
        for p in paths
    ]
    first: dict[str, Path] = {}
    for r in records:  # a.gif and a.GIF (or x.gif and x.mp4) would be one row of a store
        if r.id in first:
            raise MetadataError(
                r.path, None, None,
                f"same id {r.id!r} as {first[r.id]} (a folder's ids are the paths without their "
                "suffix): rename one of them",
            )  # fmt: skip
        first[r.id] = r.path
    return GifDataset(
        root=root, kind="folder", records=records, name=name or root.name, unlisted=unlisted
    )


_SYNTHETIC_SUBDIR = {
    "gifgif": "gifgif",
    "auto": "gifgif",
    "gifgif_plus": "gifgif_plus",
    "unlabelled": "candidates",
}


def load_dataset(
    *,
    kind: str,
    root: str | None = None,
    metadata: str = "metadata.jsonl",
    synthetic_dir: str = "data/synthetic",
    synthetic_seed: int = 0,
    synthetic_size: str = "default",
    synthetic_structure: str = "clusters",
    check_files: bool = True,
    generate: bool = True,
) -> GifDataset:
    """The ``_target_`` of ``conf/data/*.yaml``.

    ``root`` given: read it (``kind="folder"`` → :func:`read_folder`, else :func:`read_dataset`).
    ``root=None`` and ``generate=False`` (``data=gifgif``, ``gifgif_plus``, ``folder``): an error
    naming ``data.root``, never a silent fall-back to generated data.
    ``root=None`` and ``generate`` (``data=synthetic``): generate the synthetic dataset under
    ``synthetic_dir`` once (idempotent, see
    :mod:`gifemo.data.synthetic`) and read its part for ``kind``: gifgif → ``gifgif/``,
    gifgif_plus → ``gifgif_plus/``, unlabelled → ``candidates/``, folder → ``candidates/gifs``.
    """
    if kind not in ("auto", *KINDS):
        raise ValueError(f"data kind must be 'auto' or one of {KINDS}, got {kind!r}")
    if root is not None:
        if kind == "folder":
            return read_folder(root)
        return read_dataset(root, kind=kind, metadata=metadata, check_files=check_files)
    if not generate:  # data=gifgif / gifgif_plus / folder: never fall back to generated data
        what = "a folder of GIFs" if kind == "folder" else f"the folder holding {metadata}"
        raise ValueError(
            f"data.root is not set: data={kind} reads real data, give data.root=/path/to/it "
            f"({what}). Only data=synthetic generates data (data=synthetic data.kind={kind} "
            f"for the generated {kind} part)"
        )
    from gifemo.data.synthetic import generate as generate_parts

    sub = "candidates" if kind == "folder" else _SYNTHETIC_SUBDIR[kind]
    out = generate_parts(synthetic_dir, seed=synthetic_seed, size=synthetic_size, parts=(sub,),
                   structure=synthetic_structure)  # fmt: skip
    tag = f"synthetic-s{synthetic_seed}-{synthetic_size}"
    if synthetic_structure != "clusters":
        tag += f"-{synthetic_structure}"
    if kind == "folder":
        return read_folder(out / "candidates" / "gifs", name=f"{tag}-folder")
    return read_dataset(out / sub, kind=kind, check_files=check_files, name=f"{tag}-{sub}")
