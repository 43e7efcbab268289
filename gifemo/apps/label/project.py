"""A labelling project folder: ``project.json`` (settings) + ``label.sqlite`` (data, the log).

``init_project(DIR, data=ROOT, ranked=FILE, ...)`` reads a dataset folder (``metadata.jsonl``:
a collected folder, or any dataset; labels in it are ignored) and a ranked list — the
``ranked.csv`` / ``ranked.jsonl`` that ``python -m gifemo predict`` writes (columns ``emotion``,
``rank``, ``id``; ``path`` and ``score`` optional) — and stores each emotion's candidates in
ranked order. Every id of the ranked list must be in the dataset (an error names file and line).

Settings (``project.json``, editable between runs of ``serve``):

==================  =========================================================================
``n_p``             consensus positives wanted per emotion (paper: 3000); an emotion's queue
                    stops when it has them or its candidates run out
``policy``          ``drop`` (the paper: a GIF enters an emotion only when both labellers say
                    yes; a disagreement is dropped) or ``adjudicate`` (a disagreement waits for
                    the admin's decision on the admin page)
``strategy``        ``static`` (the ranked order, the paper) or ``active`` (a Reranker reorders
                    each emotion's unchecked candidates as consensus labels arrive)
``rerank_every``    active: rerank an emotion after this many new consensus decisions in it
``rerank_seconds``  active: ... or when this many seconds passed since its last rerank and it
                    has new consensus decisions
``lease_seconds``   an item served to a labeller is held for them this long (then another
                    labeller may get it)
``predicted``       optional ``metrics.json`` of the training run (``test/n_tilde/<emotion>``):
                    the model's predicted Ñ, shown next to the empirical Ñ
``reranker``        optional ``module:callable`` returning a Reranker (active strategy)
``run``, ``store``  optional trained run directory and candidate feature store for
                    ``gifemo.active.load_reranker`` (active strategy)
==================  =========================================================================
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gifemo.apps.label.store import DB_NAME, Store
from gifemo.emotions import EMOTIONS

CONFIG_NAME = "project.json"
POLICIES = ("drop", "adjudicate")
STRATEGIES = ("static", "active")
LABELLERS_PER_GIF = 2  # paper §3.7: "two labelers manually checked the GIF candidates"


@dataclass
class ProjectConfig:
    data: str
    ranked: str
    n_p: int = 3000
    policy: str = "drop"
    strategy: str = "static"
    rerank_every: int = 50
    rerank_seconds: float = 300.0
    lease_seconds: float = 900.0
    predicted: str | None = None
    reranker: str | None = None
    run: str | None = None
    store: str | None = None

    def check(self) -> ProjectConfig:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if int(self.n_p) < 1:
            raise ValueError(f"n_p must be >= 1, got {self.n_p}")
        if int(self.rerank_every) < 1 or float(self.rerank_seconds) <= 0:
            raise ValueError("rerank_every must be >= 1 and rerank_seconds > 0")
        if float(self.lease_seconds) <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {self.lease_seconds}")
        return self


def load_config(project: str | Path) -> ProjectConfig:
    path = Path(project) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a labelling project (run `label init` first)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(ProjectConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")
    try:
        return ProjectConfig(**raw).check()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def save_config(project: str | Path, cfg: ProjectConfig) -> Path:
    path = Path(project) / CONFIG_NAME
    path.write_text(json.dumps(asdict(cfg), indent=1) + "\n", encoding="utf-8")
    return path


def open_store(project: str | Path) -> Store:
    path = Path(project) / DB_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no project database (run `label init` first)")
    return Store(path)


def read_ranked(path: str | Path) -> list[tuple[str, int, str, float | None]]:
    """``(emotion, rank, id, score)`` rows of a ranked.csv / ranked.jsonl, sorted by emotion
    then rank. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ranked list not found")
    raw: list[tuple[int, dict[str, Any]]] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    raw.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: invalid JSON: {e.msg}") from e
    else:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"emotion", "rank", "id"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}:1: missing column(s) {sorted(missing)}")
            raw = [(n, row) for n, row in enumerate(reader, start=2)]
    out: list[tuple[str, int, str, float | None]] = []
    seen: dict[tuple[str, str], int] = {}
    for n, row in raw:
        where = f"{path}:{n}"
        emotion = str(row.get("emotion", "")).strip().lower()
        if emotion not in EMOTIONS:
            raise ValueError(f"{where}: field 'emotion': unknown emotion {row.get('emotion')!r}")
        gid = str(row.get("id") or "").strip()
        if not gid:
            raise ValueError(f"{where}: field 'id': missing")
        try:
            rank = int(row.get("rank"))  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: field 'rank': expected an integer, got {row.get('rank')!r}"
            ) from e
        score = row.get("score")
        try:
            sc = None if score in (None, "") else float(score)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValueError(f"{where}: field 'score': expected a number, got {score!r}") from e
        if (emotion, gid) in seen:
            raise ValueError(
                f"{where}: id {gid!r} listed twice for {emotion} (line {seen[emotion, gid]})"
            )
        seen[emotion, gid] = n
        out.append((emotion, rank, gid, sc))
    if not out:
        raise ValueError(f"{path}: no rows")
    out.sort(key=lambda r: (r[0], r[1], r[2]))
    return out


def _raw_rows(meta: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for line in meta.read_text(encoding="utf-8-sig").splitlines():  # a BOM, as read_dataset
        if line.strip():
            row = json.loads(line)
            rows[str(row["id"])] = row
    return rows


def init_project(
    project: str | Path, *, data: str | Path, ranked: str | Path, **settings: Any
) -> ProjectConfig:
    """Create ``project`` from a dataset folder and a ranked list (see the module docstring)."""
    from gifemo.data.metadata import read_dataset

    out = Path(project)
    if (out / DB_NAME).exists():
        raise FileExistsError(f"{out / DB_NAME}: project exists (choose another folder)")
    cfg = ProjectConfig(
        data=str(Path(data).resolve()), ranked=str(Path(ranked).resolve()), **settings
    ).check()
    dataset = read_dataset(data, kind="unlabelled")
    rows = _raw_rows(dataset.root / "metadata.jsonl")
    ranked_rows = read_ranked(ranked)
    by_id = {r.id: r for r in dataset.records}
    for emotion, rank, gid, _ in ranked_rows:
        if gid not in by_id:
            raise ValueError(
                f"{ranked}: {emotion} rank {rank}: id {gid!r} is not in {dataset.root / 'metadata.jsonl'}"
            )
    used = sorted({gid for _, _, gid, _ in ranked_rows})
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / DB_NAME)
    try:
        store.add_gifs(
            (
                gid,
                str(by_id[gid].path),
                str(rows[gid].get("title") or ""),
                list(rows[gid].get("tags") or []),
                rows[gid],
            )
            for gid in used
        )
        positions: dict[str, int] = {}
        cands = []
        for emotion, _, gid, score in ranked_rows:
            positions[emotion] = positions.get(emotion, 0) + 1
            cands.append((emotion, positions[emotion], gid, score))
        store.add_candidates(cands)
    finally:
        store.close()
    save_config(out, cfg)
    return cfg


def predicted_n_tilde(path: str | Path | None, n_p: int) -> dict[str, float]:
    """emotion -> the model's predicted Ñ for this project's quota, from a training run's
    ``metrics.json`` (or its folder): N_p / ``test/precision_at_recall/<emotion>`` (eq. 9 with
    the model's test-set precision), else ``test/n_tilde/<emotion>`` as written (computed for
    the run's own N_p). Empty when no file is configured."""
    if not path:
        return {}
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: predicted Ñ file not found (a training run's metrics.json)")
    metrics = json.loads(p.read_text(encoding="utf-8"))
    out = {}
    for e in EMOTIONS:
        prec = metrics.get(f"test/precision_at_recall/{e}")
        v = metrics.get(f"test/n_tilde/{e}")
        if isinstance(prec, int | float) and prec > 0:
            out[e] = n_p / float(prec)
        elif isinstance(v, int | float):
            out[e] = float(v)
    return out
