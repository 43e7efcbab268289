"""Write a collection's dataset from its state: metadata.jsonl, failures.jsonl, deduplicated gifs/.

The row format is documented in :mod:`gifemo.apps.collect.collector` and docs/collecting.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gifemo.apps.collect.giphy import strip_query
from gifemo.apps.collect.state import State
from gifemo.data.tags import normalise_tag
from gifemo.emotions import EMOTIONS


def read_tags_file(path: str | Path) -> dict[str, list[str]]:
    """JSON lines ``{"id": giphy id, "tags": [...]}`` → {id: tags}."""
    out: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
                gid, tags = row["id"], row["tags"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f'{path}:{lineno}: expected {{"id": ..., "tags": [...]}} ({e})'
                ) from None
            if (
                not isinstance(gid, str)
                or not isinstance(tags, list)
                or not all(isinstance(t, str) for t in tags)
            ):
                raise ValueError(
                    f"{path}:{lineno}: 'id' must be a string and 'tags' a list of strings"
                )
            out.setdefault(gid, []).extend(tags)
    return out


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_dataset(
    st: State,
    out: Path,
    *,
    extra_tags: Mapping[str, Sequence[str]] = {},
    search_failures: Sequence[Mapping[str, Any]] = (),
) -> int:
    """Deduplicate ``out/gifs`` by sha256 and write ``metadata.jsonl`` and ``failures.jsonl``
    from the state (atomically); returns the number of rows.

    Byte-identical downloads form one row; its ``id`` is the member first in search order
    (query registration order, then rank), whose file is kept (moved from a member's if
    needed); the other members' files are deleted. A group whose files are all gone is marked
    failed ("file missing"), so the next run downloads it again.
    """
    gifs = out / "gifs"
    qinfo = {
        r["qid"]: (r["q"], json.loads(r["emotions"])) for r in st.rows("SELECT * FROM queries")
    }
    hits: dict[str, list[int]] = {}
    for r in st.rows("SELECT gid, qid FROM hits ORDER BY qid, rank"):
        hits.setdefault(r["gid"], []).append(r["qid"])
    ok = st.rows(
        "SELECT c.*, d.sha256 AS sha256, d.bytes AS nbytes FROM candidates c "
        "JOIN downloads d USING(gid) WHERE d.status='ok' ORDER BY c.qid, c.rank, c.gid"
    )
    groups: dict[str, list[Any]] = {}
    for r in ok:
        groups.setdefault(r["sha256"], []).append(r)
    lines: list[str] = []
    for members in groups.values():
        rep = members[0]
        target = gifs / f"{rep['gid']}.gif"
        if not target.is_file():
            src = next((gifs / f"{m['gid']}.gif" for m in members if (gifs / f"{m['gid']}.gif").is_file()), None)  # fmt: skip
            if src is None:
                for m in members:
                    st.record_download(m["gid"], ok=False, sha256=None, size=None, reason="file missing from gifs/")  # fmt: skip
                continue
            os.replace(src, target)
        for m in members[1:]:
            (gifs / f"{m['gid']}.gif").unlink(missing_ok=True)
        qids = sorted({q for m in members for q in hits.get(m["gid"], [])})
        queries = [qinfo[q][0] for q in qids]
        emos = {e for q in qids for e in qinfo[q][1]}
        tags: list[str] = []
        for t in queries + [t for m in members for t in extra_tags.get(m["gid"], [])]:
            if (n := normalise_tag(t)) and n not in tags:
                tags.append(n)
        row = {
            "id": rep["gid"],
            "file": f"gifs/{rep['gid']}.gif",
            "tags": tags,
            "giphy_ids": [m["gid"] for m in members],
            "title": rep["title"],
            "slug": rep["slug"],
            "rating": rep["rating"],
            "queries": queries,
            "found_for": [e for e in EMOTIONS if e in emos],
            "source_url": strip_query(rep["media_url"]),
            "giphy_url": rep["page_url"],
            "sha256": rep["sha256"],
            "bytes": rep["nbytes"],
            "width": rep["width"],
            "height": rep["height"],
            "frames": rep["frames"],
        }
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    write_atomic(out / "metadata.jsonl", "".join(lines))
    fails = [
        {"kind": "download", "id": r["gid"], "url": strip_query(r["media_url"]),
         "reason": r["reason"], "attempts": r["attempts"]}
        for r in st.rows(
            "SELECT c.gid, c.media_url, d.reason, d.attempts FROM candidates c JOIN downloads d "
            "USING(gid) WHERE d.status='failed' ORDER BY c.qid, c.rank, c.gid"
        )
    ] + list(search_failures)  # fmt: skip
    write_atomic(out / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in fails))
    return len(lines)
