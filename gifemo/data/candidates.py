"""Each emotion's own candidates: the rows of a collected folder whose ``found_for`` holds it.

The paper ranks each emotion's list **within that emotion's candidates** — the GIFs found by
its own tags (§3.2) — not over the whole pool. A collected ``metadata.jsonl`` records, per row,
``found_for``: the emotions whose search tags found it (:mod:`gifemo.apps.collect.collector`).
:func:`candidates_by_emotion` turns that into ``{emotion: ids}`` for
:func:`gifemo.apps.predict.rank`'s ``candidates`` argument and for the screening pools of
:mod:`gifemo.active.realdata`.
"""

from __future__ import annotations

import json
from pathlib import Path

from gifemo.emotions import EMOTIONS


def candidates_by_emotion(metadata: str | Path) -> dict[str, frozenset[str]] | None:
    """``{emotion: ids of the rows whose found_for holds it}`` for all 17 emotions (an emotion
    nobody searched for gets an empty set); None when no row has ``found_for`` (a dataset that
    was not collected by tags, where every GIF is a candidate for every emotion).

    ``metadata``: a ``metadata.jsonl`` path or the folder holding it. Raises ValueError naming
    file and line for a ``found_for`` that is not a list of emotion names.
    """
    path = Path(metadata)
    path = path / "metadata.jsonl" if path.is_dir() else path
    out: dict[str, set[str]] = {e: set() for e in EMOTIONS}
    seen = False
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # a BOM, as read_dataset
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON object ({exc})") from None
            if not isinstance(row, dict) or "found_for" not in row:
                continue
            found = row["found_for"]
            if not isinstance(found, list) or not all(isinstance(e, str) and e in out for e in found):
                raise ValueError(
                    f"{path}:{lineno}: field 'found_for': expected a list of emotion names "
                    f"({', '.join(EMOTIONS)}), got {found!r}"
                )
            seen = True
            for e in found:
                out[e].add(str(row.get("id")))
    return {e: frozenset(ids) for e, ids in out.items()} if seen else None
