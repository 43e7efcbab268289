"""Import the public GIFGIF pairwise-vote dump into TrueSkill scores (paper §3.1, DESIGN §2).

GIFGIF asks "which of these two GIFs better expresses <emotion>?" and the user clicks one GIF or
"neither". The published dump (a 2015 snapshot, ~1.1 M votes) is a CSV with the header
``metric,left,right,choice``::

    metric,left,right,choice
    happiness,MazO89pt5NljG,10UUe8ZsLnaqwo,left
    fear,3o7TKSjRrfIPjeiVyM,,right          <- an empty id: counted and skipped
    sadness,xT0xeJpnrWC4XWblEk,l4FGuhL4U2WyjdkaY,neither

- ``metric`` (the emotion; a header naming it ``emotion`` is read too): one of the 17 emotion
  names, case-insensitive;
- ``left``, ``right``: the two Giphy ids, different from each other;
- ``choice``: ``left`` (left wins), ``right`` (right wins) or ``neither`` (a draw). Also read:
  ``l``/``1``, ``r``/``2``, ``none``/``draw``/``tie``/``both``/``0`` and either GIF's id.

Blank lines and lines starting with ``#`` are ignored. A row that is not a vote (wrong column
count, unknown emotion, empty id, a GIF against itself, unknown choice) is **counted and
skipped** by :func:`read_vote_dump` (the dump has rows with an empty id), and the summary says
how many rows of each kind were skipped with their first line numbers; ``strict=True`` (and
:func:`parse_votes` without a ``skipped`` collector) raises :class:`VoteError` at the first
one instead, naming file and line.

**Rating.** Each emotion is an independent TrueSkill ladder: every GIF starts at
N(μ0 = 25, σ0 = 25/3), the votes are applied one by one in file order with
``trueskill.rate_1vs1`` and "neither" is a draw. A GIF never voted on for an emotion keeps the
prior (25, 25/3). Two settings (:data:`TRUESKILL_SETTINGS`):

- ``"gifgif"`` (default) — GIFGIF's own, from its analysis code (Viral-MediaLab/GIFGIF_Analysis,
  ``scripts/trueskill.py``): β² = σ0²/4, τ² = σ0²/10000 (β = σ0/2, τ = σ0/100), draw
  probability 0.13 and the draw margin

      ε = Φ⁻¹((0.13 + 1)/2) · √(2β² + 2σ0²) = 0.16365 · σ0 · √2.5 ≈ 2.156,

  a constant (it uses the prior σ0, not the players' current σ). The ``trueskill`` package
  derives its margin from a draw probability p as Φ⁻¹((p + 1)/2) · √2 · β, so GIFGIF's ε is
  the package's margin at p = 2Φ(ε / (√2 β)) − 1 ≈ 0.2856 (:func:`gifgif_draw_probability`);
  that is what is handed to the package, and the tests check the updates against GIFGIF's
  update equations written out independently.
- ``"package"`` — the ``trueskill`` package's defaults for the same prior (β = σ0/2,
  τ = σ0/100, draw probability 0.10, margin Φ⁻¹(0.55) · √2 · β ≈ 0.74), gifemo's earlier
  setting.

The command line is ``python -m gifemo votes`` (:mod:`gifemo.apps.votes`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trueskill
from tqdm.auto import tqdm

from gifemo.data.metadata import read_folder
from gifemo.emotions import EMOTION_INDEX, EMOTIONS, MU0, N_EMOTIONS, SIGMA0

LEFT_WORDS = frozenset({"left", "l", "1"})
RIGHT_WORDS = frozenset({"right", "r", "2"})
DRAW_WORDS = frozenset({"neither", "none", "draw", "tie", "both", "0"})
HEADERS = (("metric", "left", "right", "choice"), ("emotion", "left", "right", "choice"))

GIFGIF_DRAW_PROBABILITY = 0.13  # Viral-MediaLab/GIFGIF_Analysis scripts/trueskill.py, PROB_DRAW
PACKAGE_DRAW_PROBABILITY = 0.10  # trueskill.DRAW_PROBABILITY
TRUESKILL_SETTINGS = ("gifgif", "package")


class VoteError(ValueError):
    """A bad row of the vote dump; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Vote:
    emotion: str
    left: str
    right: str
    outcome: str  # "left" | "right" | "draw"
    line: int


@dataclass
class SkippedRows:
    """Rows that are not votes, by reason (``counts``) with their first line numbers."""

    counts: Counter[str] = field(default_factory=Counter)
    first_lines: dict[str, list[int]] = field(default_factory=dict)
    keep: int = 5

    def add(self, reason: str, line: int) -> None:
        self.counts[reason] += 1
        lines = self.first_lines.setdefault(reason, [])
        if len(lines) < self.keep:
            lines.append(line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``"12 rows skipped: 10 empty GIF id (lines 4, 9, …); 2 unknown emotion (…)"``."""
        if not self.total:
            return "no row skipped"
        parts = []
        for reason, n in self.counts.most_common():
            lines = ", ".join(map(str, self.first_lines[reason]))
            more = ", …" if n > len(self.first_lines[reason]) else ""
            parts.append(f"{n} {reason} (line{'s' if n > 1 else ''} {lines}{more})")
        return f"{self.total} rows skipped: " + "; ".join(parts)


def _outcome(choice: str, left: str, right: str) -> str | None:
    c = choice.strip()
    if c.lower() in LEFT_WORDS or c == left:
        return "left"
    if c.lower() in RIGHT_WORDS or c == right:
        return "right"
    return "draw" if c.lower() in DRAW_WORDS else None


def _check_row(cells: list[str]) -> tuple[str, str, Vote | None]:
    """(reason, message, vote): reason is "" for a good row."""
    if len(cells) != 4:
        return (
            "wrong column count",
            f"expected 4 columns metric,left,right,choice, got {len(cells)}",
            None,
        )
    emotion, left, right, choice = cells
    if emotion.lower() not in EMOTION_INDEX:
        return (
            "unknown emotion",
            f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}",
            None,
        )
    if not left or not right:
        return "empty GIF id", f"empty GIF id in column {'left' if not left else 'right'}", None
    if left == right:
        return "GIF against itself", f"a GIF cannot be compared with itself ({left!r})", None
    outcome = _outcome(choice, left, right)
    if outcome is None:
        return (
            "unknown choice",
            f"choice {choice!r} is none of left/l/1, right/r/2, neither/none/draw/tie/both/0, "
            f"or one of the two GIF ids",
            None,
        )
    return "", "", Vote(emotion.lower(), left, right, outcome, 0)


def iter_votes(
    lines: Iterable[str], *, source: str = "<votes>", skipped: SkippedRows | None = None
) -> Iterator[Vote]:
    """Votes of CSV text lines, in order (see the module docstring for the accepted values).

    A bad row raises :class:`VoteError` (``FILE:LINE: …``) when ``skipped`` is None, else it is
    counted in ``skipped`` and left out. A header row (the first row that is not blank or a
    comment) is skipped; a UTF-8 byte-order mark before it is ignored.
    """
    first = True
    for lineno, row in enumerate(csv.reader(lines), start=1):
        if lineno == 1 and row:
            row[0] = row[0].removeprefix("\ufeff")
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if first and tuple(c.lower() for c in cells) in HEADERS:
            first = False
            continue
        first = False
        reason, message, vote = _check_row(cells)
        if vote is None:
            if skipped is None:
                raise VoteError(f"{source}:{lineno}: {message}")
            skipped.add(reason, lineno)
            continue
        yield Vote(vote.emotion, vote.left, vote.right, vote.outcome, lineno)


def parse_votes(
    lines: Iterable[str], *, source: str = "<votes>", skipped: SkippedRows | None = None
) -> list[Vote]:
    """:func:`iter_votes` as a list."""
    return list(iter_votes(lines, source=source, skipped=skipped))


def read_votes(path: str | os.PathLike[str]) -> list[Vote]:
    """Every vote of a CSV file; the first bad row raises :class:`VoteError`."""
    with open(path, newline="", encoding="utf-8") as f:
        return parse_votes(f, source=str(path))


# -- TrueSkill ---------------------------------------------------------------------------------


def gifgif_draw_margin(draw_probability: float = GIFGIF_DRAW_PROBABILITY) -> float:
    """GIFGIF's draw margin ε = Φ⁻¹((p + 1)/2) · √(2β² + 2σ0²), β = σ0/2 (scripts/trueskill.py)."""
    beta2 = SIGMA0**2 / 4
    return _ppf((draw_probability + 1) / 2) * math.sqrt(2 * beta2 + 2 * SIGMA0**2)


def gifgif_draw_probability(draw_probability: float = GIFGIF_DRAW_PROBABILITY) -> float:
    """The ``trueskill`` package's draw probability whose margin equals GIFGIF's:
    p' = 2Φ(ε / (√2 β)) − 1 (≈ 0.2856 for GIFGIF's 0.13)."""
    beta = SIGMA0 / 2
    return 2 * _cdf(gifgif_draw_margin(draw_probability) / (math.sqrt(2) * beta)) - 1


def _cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _ppf(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def make_env(
    settings: str = "gifgif", *, draw_probability: float | None = None
) -> trueskill.TrueSkill:
    """TrueSkill with GIFGIF's prior N(25, (25/3)²), β = σ0/2, τ = σ0/100 and the draw margin of
    ``settings`` (``"gifgif"``: GIFGIF's; ``"package"``: the package's). ``draw_probability``
    replaces the setting's probability (0.13 / 0.10); under ``"gifgif"`` it goes through
    GIFGIF's margin formula."""
    if settings not in TRUESKILL_SETTINGS:
        raise ValueError(
            f"TrueSkill settings must be one of {TRUESKILL_SETTINGS}, got {settings!r}"
        )
    if settings == "gifgif":
        p = gifgif_draw_probability(
            GIFGIF_DRAW_PROBABILITY if draw_probability is None else draw_probability
        )
    else:
        p = PACKAGE_DRAW_PROBABILITY if draw_probability is None else draw_probability
    if not 0.0 <= p < 1.0:
        raise ValueError(f"draw probability must lie in [0, 1), got {p}")
    return trueskill.TrueSkill(mu=MU0, sigma=SIGMA0, beta=SIGMA0 / 2, tau=SIGMA0 / 100,
                               draw_probability=p)  # fmt: skip


def rate_votes(
    votes: Iterable[Vote],
    *,
    ids: Sequence[str] = (),
    env: trueskill.TrueSkill | None = None,
    progress: bool = False,
    total: int | None = None,
) -> dict[str, np.ndarray]:
    """Apply the votes in order; returns ``{id: (17, 2) [μ, σ]}`` for every id voted on or in
    ``ids``. ``progress`` shows a tqdm bar (``total`` votes, when known)."""
    env = env or make_env()
    ratings: list[dict[str, trueskill.Rating]] = [{} for _ in range(N_EMOTIONS)]
    bar = tqdm(votes, total=total, unit="vote", desc="TrueSkill", disable=not progress,
               mininterval=1.0)  # fmt: skip
    for v in bar:
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


@dataclass
class VoteDump:
    """A rated dump: ``scores`` {id: (17, 2)}, the ids voted on, the counts, the rows skipped."""

    scores: dict[str, np.ndarray]
    voted: set[str]
    n_votes: int
    votes_per_emotion: dict[str, int]
    draws: int
    skipped: SkippedRows


def rate_vote_dump(
    path: str | os.PathLike[str],
    *,
    settings: str = "gifgif",
    draw_probability: float | None = None,
    strict: bool = False,
    progress: bool = True,
    ids: Sequence[str] = (),
) -> VoteDump:
    """Read and rate a vote dump in one streaming pass (the votes are not held in memory).

    Bad rows are counted and skipped (``strict=False``) or raise :class:`VoteError`. A file with
    no vote at all is an error that names it and the skipped rows.
    """
    skipped = SkippedRows()
    per_emotion: Counter[str] = Counter()
    voted: set[str] = set()
    draws = 0
    with open(path, encoding="utf-8", newline="") as f:
        total = sum(1 for _ in f) if progress else None
        f.seek(0)

        def counted() -> Iterator[Vote]:
            nonlocal draws
            for v in iter_votes(f, source=str(path), skipped=None if strict else skipped):
                per_emotion[v.emotion] += 1
                draws += v.outcome == "draw"
                voted.update((v.left, v.right))
                yield v

        env = make_env(settings, draw_probability=draw_probability)
        scores = rate_votes(counted(), ids=ids, env=env, progress=progress,
                            total=None if total is None else max(0, total - 1))  # fmt: skip
    n = sum(per_emotion.values())
    if n == 0:
        raise VoteError(f"{path}: no vote in the file ({skipped.summary()})")
    return VoteDump(scores, voted, n, {e: per_emotion[e] for e in EMOTIONS}, draws, skipped)


# -- metadata ----------------------------------------------------------------------------------


def read_tags(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """``{id: [tags]}`` from a JSON object or JSON lines of ``{"id": ..., "tags": [...]}``."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict) and not isinstance(whole.get("id"), str):
        rows: Iterable[tuple[int, Any]] = ((0, {"id": k, "tags": v}) for k, v in whole.items())
    else:  # JSON lines (a file of one line is one row, not an {id: tags} object)
        rows = ((n, _json_line(t, f"{path}:{n}")) for n, t in enumerate(text.splitlines(), 1)
                if t.strip())  # fmt: skip
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


def _json_line(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise VoteError(f"{where}: not valid JSON ({e})") from e


def write_jsonl(rows: Iterable[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as JSON lines at ``out`` atomically (temp file + rename)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(tmp, out)
    return out


def relative_file(path: Path, out: Path) -> str:
    """``path`` relative to the folder of ``out`` when below it, else absolute."""
    try:
        return path.resolve().relative_to(out.resolve().parent).as_posix()
    except ValueError:
        return str(path)


def import_votes(
    votes_csv: str | os.PathLike[str],
    gifs_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    tags: str | os.PathLike[str] | None = None,
    settings: str = "gifgif",
    draw_probability: float | None = None,
    strict: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Votes + GIF folder (+ tags) → GIFGIF-style metadata.jsonl at ``out`` (written atomically).

    One row per GIF file in ``gifs_dir`` (ids are the file names without ``.gif``); votes on
    GIFs without a file still count for their opponents but get no row. Returns a summary.
    """
    folder = read_folder(Path(gifs_dir))
    dump = rate_vote_dump(votes_csv, settings=settings, draw_probability=draw_probability,
                          strict=strict, progress=progress, ids=folder.ids())  # fmt: skip
    tag_map = read_tags(tags) if tags is not None else {}
    out = Path(out)
    rows = []
    for r in folder.records:
        s = dump.scores[r.id]
        rows.append({"id": r.id, "file": relative_file(r.path, out), "tags": tag_map.get(r.id, []),
                     "scores": {e: [float(s[i, 0]), float(s[i, 1])] for i, e in enumerate(EMOTIONS)}})  # fmt: skip
    write_jsonl(rows, out)
    on_file = set(folder.ids())
    return {
        "votes": dump.n_votes,
        "draws": dump.draws,
        "gifs": len(folder),
        "gifs_voted": len(dump.voted & on_file),
        "voted_without_file": len(dump.voted - on_file),
        "rows_skipped": dump.skipped.total,
        "skipped": dump.skipped.summary(),
        "settings": settings,
    }
