"""The collector's resumable state: one SQLite database (stdlib ``sqlite3``, WAL) per out_dir.

Tables (``DIR/collect.sqlite``):

=============  ===============================================================================
``queries``    ``qid`` (order of first registration), ``q``, ``emotions`` (JSON list: the
               emotions whose tags the query is)
``pages``      one row per recorded search reply: ``(qid, offset)``, ``lim``, ``count``,
               ``total_count`` (NULL when Giphy left it out), ``response_id``
``candidates`` one row per Giphy id, from the reply that first found it: ``qid``, ``rank``
               (offset + position), title, slug, rating, URLs, declared size/width/height/frames
``hits``       ``(gid, qid)``: every query that found each id
``downloads``  ``gid``, ``status`` (pending | ok | failed), ``sha256``, ``bytes``, ``reason``,
               ``attempts``
``calls``      times of API calls of the last day (the rate limit holds across restarts)
=============  ===============================================================================

A page is recorded with its candidates, hits and pending downloads in ONE transaction, so a
``kill -9`` leaves either all of it or none; a recorded page is never requested again. WAL
commits survive a killed process (DESIGN §9). Only one collector may use a folder at a time
(an ``flock`` on ``DIR/.collect.lock``, released by the kernel when the process dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gifemo.apps.collect.giphy import Hit, SearchPage

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries(
    qid INTEGER PRIMARY KEY, q TEXT UNIQUE NOT NULL, emotions TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS pages(
    qid INTEGER NOT NULL, offset INTEGER NOT NULL, lim INTEGER NOT NULL, count INTEGER NOT NULL,
    total_count INTEGER, response_id TEXT, fetched_at REAL, PRIMARY KEY(qid, offset));
CREATE TABLE IF NOT EXISTS candidates(
    gid TEXT PRIMARY KEY, qid INTEGER NOT NULL, rank INTEGER NOT NULL, title TEXT, slug TEXT,
    rating TEXT, page_url TEXT, media_url TEXT NOT NULL, size INTEGER, width INTEGER,
    height INTEGER, frames INTEGER, username TEXT, source TEXT, import_datetime TEXT);
CREATE TABLE IF NOT EXISTS hits(
    gid TEXT NOT NULL, qid INTEGER NOT NULL, rank INTEGER NOT NULL, PRIMARY KEY(gid, qid));
CREATE TABLE IF NOT EXISTS downloads(
    gid TEXT PRIMARY KEY, status TEXT NOT NULL, sha256 TEXT, bytes INTEGER, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, updated_at REAL);
CREATE TABLE IF NOT EXISTS calls(t REAL NOT NULL);
"""


class FolderBusy(RuntimeError):
    """Another collector holds the folder's lock."""


class State:
    """The state database of one collection folder (single-threaded use)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / ".collect.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise FolderBusy(f"{self.dir}: another collector is running on this folder") from None
        self.path = self.dir / "collect.sqlite"
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()
        os.close(self._lock_fd)

    def _tx(self, stmts: Iterable[tuple[str, Sequence[Any]]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in stmts:
                self.db.execute(sql, args)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- queries and pages -----------------------------------------------------------------

    def add_queries(self, queries: dict[str, list[str]]) -> list[tuple[int, str]]:
        """Register ``{q: emotions}`` (emotions merged with earlier runs'); [(qid, q)] in order."""
        stmts: list[tuple[str, Sequence[Any]]] = []
        old = {q: json.loads(e) for q, e in self.db.execute("SELECT q, emotions FROM queries")}
        for q, emos in queries.items():
            merged = sorted(set(old.get(q, [])) | set(emos))
            if q not in old:
                stmts.append(
                    ("INSERT INTO queries(q, emotions) VALUES (?, ?)", (q, json.dumps(merged)))
                )
            elif merged != sorted(old[q]):
                stmts.append(("UPDATE queries SET emotions=? WHERE q=?", (json.dumps(merged), q)))
        self._tx(stmts)
        qid = dict(self.db.execute("SELECT q, qid FROM queries").fetchall())
        return [(qid[q], q) for q in queries]

    def progress(self, qid: int) -> tuple[int, bool, int | None]:
        """(next offset, exhausted, last known total_count) of a query from its recorded pages.

        Exhausted: a page came back empty, or reached ``total_count``, or (total unknown)
        had fewer results than asked for."""
        rows = self.db.execute(
            "SELECT offset, lim, count, total_count FROM pages WHERE qid=? ORDER BY offset", (qid,)
        ).fetchall()
        nxt, done, total = 0, False, None
        for offset, lim, count, tot in rows:
            nxt = max(nxt, offset + count)
            total = tot if tot is not None else total
            if (
                count == 0
                or (tot is not None and offset + count >= tot)
                or (tot is None and count < lim)
            ):
                done = True
        return nxt, done, total

    def record_page(
        self, qid: int, offset: int, lim: int, page: SearchPage, now: float
    ) -> list[Hit]:
        """Store a reply and everything it found, atomically; the hits new to the folder."""
        known = {
            r[0]
            for r in self.db.execute(
                f"SELECT gid FROM candidates WHERE gid IN ({','.join('?' * len(page.hits))})",
                [h.id for h in page.hits],
            )
        }
        stmts: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?)",
                (qid, offset, lim, page.count, page.total_count, page.response_id, now),
            )
        ]
        new: list[Hit] = []
        for pos, h in enumerate(page.hits):
            rank = offset + pos
            stmts.append(("INSERT OR IGNORE INTO hits VALUES (?, ?, ?)", (h.id, qid, rank)))
            if h.id in known or any(n.id == h.id for n in new):
                continue
            new.append(h)
            stmts.append(
                (
                    "INSERT INTO candidates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (h.id, qid, rank, h.title, h.slug, h.rating, h.page_url, h.media_url, h.size,
                     h.width, h.height, h.frames, h.username, h.source, h.import_datetime),
                )
            )  # fmt: skip
            stmts.append(
                ("INSERT OR IGNORE INTO downloads(gid, status) VALUES (?, 'pending')", (h.id,))
            )
        self._tx(stmts)
        return new

    # -- downloads -------------------------------------------------------------------------

    def to_download(self) -> list[tuple[str, str, int | None]]:
        """(gid, media_url, declared size) of every candidate not downloaded yet, search order."""
        return self.db.execute(
            "SELECT c.gid, c.media_url, c.size FROM candidates c JOIN downloads d USING(gid) "
            "WHERE d.status != 'ok' ORDER BY c.qid, c.rank"
        ).fetchall()

    def record_download(self, gid: str, *, ok: bool, sha256: str | None, size: int | None,
                        reason: str | None) -> None:  # fmt: skip
        self.db.execute(
            "UPDATE downloads SET status=?, sha256=?, bytes=?, reason=?, attempts=attempts+1, "
            "updated_at=? WHERE gid=?",
            ("ok" if ok else "failed", sha256, size, reason, time.time(), gid),
        )

    # -- rate limit ------------------------------------------------------------------------

    def call_times(self, since: float) -> list[float]:
        return [t for (t,) in self.db.execute("SELECT t FROM calls WHERE t > ?", (since,))]

    def record_call(self, t: float) -> None:
        self._tx(
            [
                ("DELETE FROM calls WHERE t < ?", (t - 24 * 3600,)),
                ("INSERT INTO calls VALUES (?)", (t,)),
            ]
        )

    # -- reading everything back -----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        one = lambda sql: int(self.db.execute(sql).fetchone()[0])  # noqa: E731
        return {
            "queries": one("SELECT COUNT(*) FROM queries"),
            "pages": one("SELECT COUNT(*) FROM pages"),
            "candidates": one("SELECT COUNT(*) FROM candidates"),
            "downloaded": one("SELECT COUNT(*) FROM downloads WHERE status='ok'"),
            "failed": one("SELECT COUNT(*) FROM downloads WHERE status='failed'"),
        }

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self.db.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, args).fetchall()
