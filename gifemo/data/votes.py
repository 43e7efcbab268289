"""Import the public GIFGIF pairwise-vote dump into TrueSkill scores (paper §3.1, DESIGN §2).

GIFGIF asks "which of these two GIFs better expresses <emotion>?" and the user clicks one GIF or
"neither". The dump is a CSV with rows ``emotion,left,right,choice`` (an optional header row
naming these columns is skipped; blank lines and lines starting with ``#`` are ignored):

- ``emotion``: one of the 17 emotion names (case-insensitive);
- ``left``, ``right``: the two GIF ids (Giphy ids), different from each other;
- ``choice``: who won, case-insensitive — ``left``/``l``/``1`` or the left GIF's id (left wins),
  ``right``/``r``/``2`` or the right GIF's id (right wins), ``neither``/``none``/``draw``/
  ``tie``/``0`` (a draw).

Each emotion is an independent TrueSkill ladder: every GIF starts at N(μ0 = 25, σ0 = 25/3)
and the votes are applied one by one in file order with ``trueskill.rate_1vs1``
(β = σ0/2, τ = σ0/100, the package defaults; ``draw_probability`` is configurable), a "neither"
being a draw. A GIF never voted on for an emotion keeps the prior (25, 25/3).

``python -m gifemo.data.votes votes.csv --gifs DIR --out DIR/metadata.jsonl [--tags tags.json]``
writes a GIFGIF-style ``metadata.jsonl`` with one row per GIF file in ``DIR`` (ids are the file
names without ``.gif``; votes on GIFs without a file still count for their opponents but get no
row). ``--tags`` is a JSON object ``{id: [tags]}`` or a JSON-lines file of ``{"id", "tags"}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trueskill

from gifemo.data.metadata import read_folder
from gifemo.emotions import EMOTION_INDEX, EMOTIONS, MU0, N_EMOTIONS, SIGMA0

LEFT_WORDS = frozenset({"left", "l", "1"})
RIGHT_WORDS = frozenset({"right", "r", "2"})
DRAW_WORDS = frozenset({"neither", "none", "draw", "tie", "0"})
HEADER = ("emotion", "left", "right", "choice")


class VoteError(ValueError):
    """A bad row of the vote dump; the message names the file and line."""


@dataclass(frozen=True)
class Vote:
    emotion: str
    left: str
    right: str
    outcome: str  # "left" | "right" | "draw"
    line: int


def _outcome(choice: str, left: str, right: str) -> str | None:
    c = choice.strip()
    if c.lower() in LEFT_WORDS or c == left:
        return "left"
    if c.lower() in RIGHT_WORDS or c == right:
        return "right"
    return "draw" if c.lower() in DRAW_WORDS else None


def parse_votes(lines: Iterable[str], *, source: str = "<votes>") -> list[Vote]:
    """Parse CSV text lines into votes (see the module docstring for the accepted values)."""
    votes = []
    for lineno, row in enumerate(csv.reader(lines), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if lineno == 1 and tuple(c.lower() for c in cells) == HEADER:
            continue
        if len(cells) != 4:
            raise VoteError(
                f"{source}:{lineno}: expected 4 columns emotion,left,right,choice, got {len(cells)}"
            )
        emotion, left, right, choice = cells
        if emotion.lower() not in EMOTION_INDEX:
            raise VoteError(
                f"{source}:{lineno}: unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}"
            )
        if not left or not right:
            raise VoteError(
                f"{source}:{lineno}: empty GIF id in column {'left' if not left else 'right'}"
            )
        if left == right:
            raise VoteError(f"{source}:{lineno}: a GIF cannot be compared with itself ({left!r})")
        outcome = _outcome(choice, left, right)
        if outcome is None:
            raise VoteError(
                f"{source}:{lineno}: choice {choice!r} is none of left/l/1, right/r/2, "
                f"neither/none/draw/tie/0, or one of the two GIF ids"
            )
        votes.append(Vote(emotion.lower(), left, right, outcome, lineno))
    return votes


def read_votes(path: str | os.PathLike[str]) -> list[Vote]:
    with open(path, newline="", encoding="utf-8") as f:
        return parse_votes(f, source=str(path))


def make_env(*, draw_probability: float = 0.1) -> trueskill.TrueSkill:
    """TrueSkill with GIFGIF's prior N(25, (25/3)²); β, τ the package defaults (σ0/2, σ0/100)."""
    return trueskill.TrueSkill(mu=MU0, sigma=SIGMA0, beta=SIGMA0 / 2, tau=SIGMA0 / 100,
                               draw_probability=draw_probability)  # fmt: skip


def rate_votes(
    votes: Iterable[Vote], *, ids: Sequence[str] = (), env: trueskill.TrueSkill | None = None
) -> dict[str, np.ndarray]:
    """Apply the votes in order; returns ``{id: (17, 2) [μ, σ]}`` for every id voted on or in ``ids``."""
    env = env or make_env()
    ratings: list[dict[str, trueskill.Rating]] = [{} for _ in range(N_EMOTIONS)]
    for v in votes:
        table = ratings[EMOTION_INDEX[v.emotion]]
        a = table.get(v.left) or env.create_rating()
        b = table.get(v.right) or env.create_rating()
        if v.outcome == "right":
            b, a = trueskill.rate_1vs1(b, a, env=env)
        else:
            a, b = trueskill.rate_1vs1(a, b, drawn=v.outcome == "draw", env=env)
        table[v.left], table[v.right] = a, b
    all_ids = dict.fromkeys(ids)
    for table in ratings:
        all_ids.update(dict.fromkeys(table))
    out = {}
    for gid in all_ids:
        s = np.empty((N_EMOTIONS, 2))
        for e, table in enumerate(ratings):
            r = table.get(gid)
            s[e] = (r.mu, r.sigma) if r is not None else (env.mu, env.sigma)
        out[gid] = s
    return out


def read_tags(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``{id: [tags]}`` from a JSON object or JSON lines of ``{"id": ..., "tags": [...]}``."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        rows: Iterable[tuple[int, Any]] = ((0, {"id": k, "tags": v}) for k, v in whole.items())
    else:
        rows = ((n, json.loads(t)) for n, t in enumerate(text.splitlines(), 1) if t.strip())
    out = {}
    for n, row in rows:
        where = f"{path}:{n}" if n else str(path)
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise VoteError(f"{where}: expected {{'id': str, 'tags': [str, ...]}}")
        tags = row.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise VoteError(f"{where}: tags of {row['id']!r} must be a list of strings")
        out[row["id"]] = tags
    return out


def import_votes(
    votes_csv: str | os.PathLike[str],
    gifs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tags: str | os.PathLike[str] | None = None,
    draw_probability: float = 0.1,
) -> dict[str, int]:
    """Votes + GIF folder (+ tags) → GIFGIF-style metadata.jsonl at ``out`` (written atomically)."""
    votes = read_votes(votes_csv)
    folder = read_folder(Path(gifs_dir))
    scores = rate_votes(votes, ids=folder.ids(), env=make_env(draw_probability=draw_probability))
    tag_map = read_tags(tags) if tags is not None else {}
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in folder.records:
        try:
            file = r.path.relative_to(out.parent).as_posix()
        except ValueError:
            file = str(r.path)
        s = scores[r.id]
        row = {"id": r.id, "file": file, "tags": tag_map.get(r.id, []),
               "scores": {e: [float(s[i, 0]), float(s[i, 1])] for i, e in enumerate(EMOTIONS)}}  # fmt: skip
        lines.append(json.dumps(row) + "\n")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, out)
    voted = {g for v in votes for g in (v.left, v.right)}
    return {
        "votes": len(votes),
        "gifs": len(folder),
        "gifs_voted": len(voted & set(folder.ids())),
        "voted_without_file": len(voted - set(folder.ids())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gifemo.data.votes",
                                 description="GIFGIF vote dump → TrueSkill GIFGIF-style metadata.jsonl")  # fmt: skip
    ap.add_argument("votes", help="CSV of emotion,left,right,choice rows")
    ap.add_argument("--gifs", required=True, help="folder of the GIF files (<id>.gif)")
    ap.add_argument("--out", required=True, help="metadata.jsonl to write")
    ap.add_argument("--tags", default=None, help="JSON {id: [tags]} or JSON lines {id, tags}")
    ap.add_argument("--draw-probability", type=float, default=0.1)
    args = ap.parse_args(argv)
    try:
        summary = import_votes(args.votes, args.gifs, args.out, tags=args.tags,
                               draw_probability=args.draw_probability)  # fmt: skip
    except (VoteError, ValueError) as e:
        ap.exit(2, f"error: {e}\n")
    print(f"{args.out}: {summary['gifs']} GIFs ({summary['gifs_voted']} voted on), {summary['votes']} votes"
          + (f"; {summary['voted_without_file']} voted GIFs have no file" if summary["voted_without_file"] else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
