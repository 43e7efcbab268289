"""Import the GIFGIF API's per-GIF records (what the paper downloaded, §3.1) into ``metadata.jsonl``.

GIFGIF's API answers one JSON record per GIF **and emotion**: the GIF's TrueSkill rating for
that emotion and what Giphy knows of the GIF::

    {"cID": "54a1d5d1e4b0ed6d4bd51e8a", "content": "MazO89pt5NljG", "metric": "happiness",
     "rank": 12, "parameters": {"mu": 31.82, "sigma": 1.27},
     "content_data": {"tags": ["happy", "laughing"], "embedLink": "https://giphy.com/embed/MazO89pt5NljG",
                      "still_image": "https://media.giphy.com/media/MazO89pt5NljG/200_s.gif"}}

- ``content``: the Giphy id (the GIF's id in gifemo);
- ``parameters.mu`` / ``parameters.sigma`` (``std``, GIFGIF's database name, is read too): the
  rating N(μ, σ²) for the record's emotion;
- the emotion: the record's ``metric`` (or ``emotion``) field; when the record has none, the
  name of the file it came from (``happiness.json``, ``happiness.jsonl``, case-insensitive),
  else the ``emotion`` argument; anything else is an error naming the file and line;
- ``content_data.tags``: a list of strings (a comma-separated string is split); the GIF's tags
  are the union over its records, in first-seen order;
- ``rank``, ``cID``, ``content_data.embedLink`` / ``still_image`` are kept under the row's
  ``gifgif`` key (other keys are ignored).

Input: a JSON-lines file (one record per line), a JSON file (a record, a list of records, or
an object whose ``results`` or ``data`` is that list), or a folder searched recursively for
``*.json`` / ``*.jsonl``. A record that repeats a (GIF, emotion) pair with the same numbers is
ignored; with different numbers it is an error naming both places.

Output (:func:`import_api_records`): one GIFGIF-style row per GIF whose file ``<id>.gif`` is
in the GIF folder (DESIGN §2; ``scores`` for all 17 emotions, an emotion without a record
keeping the prior (25, 25/3) and counted in the summary); GIFs without a file get no row and
are listed with their ``embedLink`` / ``still_image`` in ``missing_gifs.tsv`` beside the
output, so that they can be fetched. ``python -m gifemo gifgif`` (:mod:`gifemo.apps.gifgif`) is
the command line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gifemo.data.votes import relative_file, write_jsonl
from gifemo.emotions import EMOTION_INDEX, EMOTIONS, MU0, N_EMOTIONS, SIGMA0


class ApiRecordError(ValueError):
    """A bad API record; the message names the file and line (or record index)."""


@dataclass
class ApiGif:
    """Everything the records say about one GIF."""

    id: str
    scores: np.ndarray  # (17, 2) [μ, σ]; the prior where ``seen`` is False
    seen: np.ndarray  # (17,) bool: the emotions with a record
    where: dict[int, str] = field(default_factory=dict)  # emotion index -> "file:line"
    tags: list[str] = field(default_factory=list)
    ranks: dict[str, int] = field(default_factory=dict)
    cid: dict[str, str] = field(default_factory=dict)
    embed_link: str = ""
    still_image: str = ""


def _records_of(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) of one file: JSON lines, or one JSON document."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise ApiRecordError(f"{path}:{n}: not valid JSON: {e}") from e
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiRecordError(f"{path}: not valid JSON: {e}") from e
    if isinstance(doc, dict) and not ("content" in doc or "parameters" in doc):
        doc = doc.get("results", doc.get("data", doc))
    items = doc if isinstance(doc, list) else [doc]
    for k, rec in enumerate(items):
        yield (f"{path}[{k}]" if isinstance(doc, list) else str(path)), rec


def iter_api_records(source: str | os.PathLike[str]) -> Iterator[tuple[str, Path, Any]]:
    """(where, file, record) of a file or of every ``*.json``/``*.jsonl`` under a folder."""
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".json", ".jsonl"))
        if not files:
            raise ApiRecordError(f"{src}: no *.json or *.jsonl file in the folder")
    elif src.is_file():
        files = [src]
    else:
        raise ApiRecordError(f"{src}: no such file or folder")
    for f in files:
        for where, rec in _records_of(f):
            yield where, f, rec


def _number(x: Any, where: str, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise ApiRecordError(f"{where}: {name} must be a number, got {x!r}")
    try:
        v = float(x)
    except ValueError:
        raise ApiRecordError(f"{where}: {name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ApiRecordError(f"{where}: {name} must be finite, got {x!r}")
    return v


def _emotion(rec: dict[str, Any], file: Path, default: str | None, where: str) -> str:
    for key in ("metric", "emotion"):
        if rec.get(key) is not None:
            name = str(rec[key]).strip().lower()
            if name not in EMOTION_INDEX:
                raise ApiRecordError(
                    f"{where}: {key} {rec[key]!r} is not one of the 17 emotions ({', '.join(EMOTIONS)})"
                )
            return name
    stem = file.stem.lower()
    if stem in EMOTION_INDEX:
        return stem
    if default is not None:
        return default
    raise ApiRecordError(
        f"{where}: the record names no emotion (no 'metric' field), the file name {file.name!r} "
        f"is not an emotion, and no emotion was given"
    )


def _tags(data: dict[str, Any], where: str) -> list[str]:
    tags = data.get("tags", [])
    if isinstance(tags, str):
        tags = [t for t in (s.strip() for s in tags.split(",")) if t]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ApiRecordError(f"{where}: content_data.tags must be a list of strings, got {tags!r}")
    return tags


def read_api_records(
    source: str | os.PathLike[str], *, emotion: str | None = None
) -> dict[str, ApiGif]:
    """Every GIF of the records under ``source`` → {Giphy id: :class:`ApiGif`}, in first-seen order."""
    if emotion is not None and emotion not in EMOTION_INDEX:
        raise ValueError(f"emotion must be one of {', '.join(EMOTIONS)}, got {emotion!r}")
    gifs: dict[str, ApiGif] = {}
    for where, file, rec in iter_api_records(source):
        if not isinstance(rec, dict):
            raise ApiRecordError(
                f"{where}: a record must be a JSON object, got {type(rec).__name__}"
            )
        gid = rec.get("content")
        if not isinstance(gid, str) or not gid.strip():
            raise ApiRecordError(f"{where}: 'content' (the Giphy id) must be a non-empty string")
        gid = gid.strip()
        params = rec.get("parameters")
        if not isinstance(params, dict):
            raise ApiRecordError(f"{where}: 'parameters' must be an object with mu and sigma")
        mu = _number(params.get("mu"), where, "parameters.mu")
        sd = params.get("sigma", params.get("std"))
        sigma = _number(sd, where, "parameters.sigma")
        if sigma < 0:
            raise ApiRecordError(f"{where}: parameters.sigma must be >= 0, got {sigma}")
        name = _emotion(rec, file, emotion, where)
        i = EMOTION_INDEX[name]
        g = gifs.get(gid)
        if g is None:
            prior = np.tile([MU0, SIGMA0], (N_EMOTIONS, 1))
            g = gifs[gid] = ApiGif(gid, prior, np.zeros(N_EMOTIONS, dtype=bool))
        if g.seen[i]:
            if not np.allclose(g.scores[i], [mu, sigma], rtol=0, atol=1e-12):
                raise ApiRecordError(
                    f"{where}: GIF {gid!r}, {name}: (mu, sigma) = ({mu}, {sigma}) contradicts "
                    f"{tuple(g.scores[i])} at {g.where[i]}"
                )
            continue
        g.scores[i], g.seen[i], g.where[i] = (mu, sigma), True, where
        data = rec.get("content_data") or {}
        if not isinstance(data, dict):
            raise ApiRecordError(f"{where}: 'content_data' must be an object")
        g.tags.extend(t for t in _tags(data, where) if t not in g.tags)
        if rec.get("rank") is not None:
            g.ranks[name] = int(_number(rec["rank"], where, "rank"))
        if rec.get("cID") is not None:
            g.cid[name] = str(rec["cID"])
        g.embed_link = g.embed_link or str(data.get("embedLink") or "")
        g.still_image = g.still_image or str(data.get("still_image") or "")
    if not gifs:
        raise ApiRecordError(f"{source}: no record found")
    return gifs


def import_api_records(
    source: str | os.PathLike[str],
    gifs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    emotion: str | None = None,
) -> dict[str, Any]:
    """API records + GIF folder → GIFGIF-style ``out`` (metadata.jsonl, written atomically) and
    ``missing_gifs.tsv`` beside it (id, embedLink, still_image of GIFs without a file)."""
    gifs = read_api_records(source, emotion=emotion)
    folder, out = Path(gifs_dir), Path(out)
    rows, missing = [], []
    for g in gifs.values():
        path = folder / f"{g.id}.gif"
        if not path.is_file():
            missing.append(g)
            continue
        rows.append({
            "id": g.id, "file": relative_file(path, out), "tags": g.tags,
            "scores": {e: [float(g.scores[i, 0]), float(g.scores[i, 1])] for i, e in enumerate(EMOTIONS)},
            "gifgif": {"rank": g.ranks, "cID": g.cid, "embedLink": g.embed_link,
                       "still_image": g.still_image},
        })  # fmt: skip
    if not rows:
        raise ApiRecordError(
            f"none of the {len(gifs)} GIFs of {source} has a file <id>.gif in {folder}"
        )
    write_jsonl(rows, out)
    miss_path = out.resolve().parent / "missing_gifs.tsv"
    if missing:
        lines = ["id\tembedLink\tstill_image\n"]
        lines += [f"{g.id}\t{g.embed_link}\t{g.still_image}\n" for g in missing]
        miss_path.write_text("".join(lines), encoding="utf-8")
    elif miss_path.exists():
        miss_path.unlink()
    incomplete = [g for g in gifs.values() if not g.seen.all()]
    return {
        "gifs": len(gifs),
        "rows": len(rows),
        "without_file": len(missing),
        "missing_list": str(miss_path) if missing else "",
        "records": int(sum(int(g.seen.sum()) for g in gifs.values())),
        "gifs_missing_emotions": len(incomplete),
        "tagless": sum(1 for g in gifs.values() if not g.tags),
    }
