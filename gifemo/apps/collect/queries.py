"""What to search for: plain queries, or each emotion's top tags from a trained run.

The paper (§3.2) searched Giphy with each emotion's 10 most frequent non-generic tags
(Table 1). ``train.py`` records exactly these per emotion in the run directory's ``run.json``
(``protocol.emotions.<emotion>.top_tags``, most frequent first, generic tags already left
out; see :mod:`gifemo.eval.protocol`). :func:`queries_from_run` reads them back as
``{tag: [emotions whose list holds it]}`` — a tag on several lists (Table 1's lists overlap)
is searched once and remembered for each of its emotions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from gifemo.apps.collect.giphy import MAX_QUERY_CHARS
from gifemo.data.tags import GENERIC_TAGS, TABLE1_TAGS, normalise_tag
from gifemo.emotions import EMOTIONS


def _add(out: dict[str, list[str]], tag: str, emotion: str | None) -> None:
    emos = out.setdefault(tag, [])
    if emotion is not None and emotion not in emos:
        emos.append(emotion)


def queries_from_run(
    run_dir: str | Path, *, n_tags: int = 10, emotions: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """``{tag: emotions}`` from ``run_dir/run.json`` (or a ``run.json`` path): each emotion's
    first ``n_tags`` top tags, emotions in EMOTIONS order (``emotions`` restricts them)."""
    path = Path(run_dir)
    path = path / "run.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no run.json (collect.from_run wants a train.py run directory)"
        )
    try:
        run = json.loads(path.read_text())
        per = run["protocol"]["emotions"]
        if not isinstance(per, dict):
            raise TypeError(f"protocol.emotions is a {type(per).__name__}, not a mapping")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: no protocol.emotions.<emotion>.top_tags ({type(exc).__name__}: {exc}); runs of "
            "the closed-form models (train.py model=cmtl|lasso|ridge|trace|gp|unsorted) record them"
        ) from None
    want = list(EMOTIONS if emotions is None else emotions)
    unknown = [e for e in want if e not in EMOTIONS]
    if unknown:
        raise ValueError(f"unknown emotion {unknown[0]!r}; expected one of {', '.join(EMOTIONS)}")
    out: dict[str, list[str]] = {}
    for e in want:
        tags = per.get(e, {}).get("top_tags") if isinstance(per.get(e), dict) else None
        if not isinstance(tags, list):
            raise ValueError(f"{path}: protocol.emotions.{e}.top_tags missing")
        for t in tags[:n_tags]:
            if isinstance(t, str) and normalise_tag(t):
                _add(out, normalise_tag(t), e)
    return out


def table1_queries(
    *,
    n_tags: int = 10,
    emotions: Sequence[str] | None = None,
    generic: Iterable[str] = GENERIC_TAGS,
) -> dict[str, list[str]]:
    """The paper's Table 1 without its generic tags, as ``{tag: emotions}`` (offline demo)."""
    skip = set(generic)
    out: dict[str, list[str]] = {}
    for e in EMOTIONS if emotions is None else emotions:
        for t in [t for t in TABLE1_TAGS[e] if t not in skip][:n_tags]:
            _add(out, t, e)
    return out


def merge_queries(
    plain: Iterable[str], by_emotion: Mapping[str, Sequence[str]] = {}
) -> dict[str, list[str]]:
    """One ``{q: emotions}`` from plain queries (no emotion) and emotion queries; checks q."""
    out: dict[str, list[str]] = {}
    for q, emos in by_emotion.items():
        for e in emos:
            _add(out, q, e)
        out.setdefault(q, [])
    for q in plain:
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"collect.queries: expected non-empty strings, got {q!r}")
        _add(out, q.strip(), None)
    for q in out:
        if len(q) > MAX_QUERY_CHARS:
            raise ValueError(
                f"query {q!r} has {len(q)} characters; Giphy's search allows {MAX_QUERY_CHARS}"
            )
    return out
