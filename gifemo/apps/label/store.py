"""The labelling project's SQLite store: candidates, users and an append-only log of decisions.

``PROJECT/label.sqlite`` (WAL, ``synchronous=FULL``: a decision acknowledged to the page
survives a killed process and a power loss):

``gifs``        one row per GIF: id, absolute file path, title, tags (JSON), the dataset row
                (JSON, provenance kept for assembly)
``candidates``  (emotion, position, gif_id, score): the ranked list of each emotion
``users``       name, role (``labeller`` | ``admin``), sha256 of the token (never the token)
``events``      the decision log, append-only (triggers refuse UPDATE and DELETE):
                seq, ts, user, kind (``label`` | ``skip`` | ``undo`` | ``adjudicate``), emotion,
                gif_id, answer (1/0), others (JSON list of emotions), cartoon, multi_scene,
                target (the seq an ``undo`` cancels), strategy and ranking_version the item was
                served from, request_id (client key: a retried POST is not stored twice)
``rankings``    (emotion, version, order): the queue orders the active strategy produced, so a
                restarted server serves the latest one
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "label.sqlite"
ROLES = ("labeller", "admin")
EVENT_KINDS = ("label", "skip", "undo", "adjudicate")

SCHEMA = """
CREATE TABLE IF NOT EXISTS gifs (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]', row TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS candidates (
    emotion TEXT NOT NULL, position INTEGER NOT NULL, gif_id TEXT NOT NULL REFERENCES gifs(id),
    score REAL, PRIMARY KEY (emotion, gif_id));
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, user TEXT NOT NULL,
    kind TEXT NOT NULL, emotion TEXT, gif_id TEXT, answer INTEGER, others TEXT,
    cartoon INTEGER, multi_scene INTEGER, target INTEGER, strategy TEXT,
    ranking_version INTEGER, request_id TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS rankings (
    emotion TEXT NOT NULL, version INTEGER NOT NULL, ts REAL NOT NULL, gif_ids TEXT NOT NULL,
    PRIMARY KEY (emotion, version));
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Event:
    """One row of the decision log."""

    seq: int
    ts: float
    user: str
    kind: str
    emotion: str | None = None
    gif_id: str | None = None
    answer: bool | None = None
    others: tuple[str, ...] = ()
    cartoon: bool | None = None
    multi_scene: bool | None = None
    target: int | None = None
    strategy: str | None = None
    ranking_version: int | None = None
    request_id: str | None = None

    def public(self) -> dict[str, Any]:
        """The JSON form the API returns (to the event's own user or the admin)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "emotion": self.emotion,
            "gif_id": self.gif_id,
            "answer": self.answer,
            "others": list(self.others),
            "cartoon": self.cartoon,
            "multi_scene": self.multi_scene,
            "target": self.target,
            "strategy": self.strategy,
            "ranking_version": self.ranking_version,
        }


def _bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


def _int(v: bool | None) -> int | None:
    return None if v is None else int(v)


class Store:
    """A connection to ``PROJECT/label.sqlite``; every write is its own committed transaction.

    Not thread-safe by itself: :class:`gifemo.apps.label.state.LabelState` serialises access.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.commit()
        self.db.close()

    def commit(self) -> None:
        """Commit the open transaction (the events appended with ``commit=False``)."""
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    # -- candidates ---------------------------------------------------------------------------

    def add_gifs(self, rows: Iterable[tuple[str, str, str, list[str], dict[str, Any]]]) -> None:
        """(id, file, title, tags, row) tuples; one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO gifs(id, file, title, tags, row) VALUES (?,?,?,?,?)",
                [(i, f, t, json.dumps(tags), json.dumps(row)) for i, f, t, tags, row in rows],
            )

    def add_candidates(self, rows: Iterable[tuple[str, int, str, float | None]]) -> None:
        """(emotion, position, gif_id, score) tuples; one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO candidates(emotion, position, gif_id, score) VALUES (?,?,?,?)",
                list(rows),
            )

    def gifs(self) -> dict[str, dict[str, Any]]:
        out = {}
        for gid, file, title, tags, row in self.db.execute(
            "SELECT id, file, title, tags, row FROM gifs"
        ):
            out[gid] = {
                "id": gid,
                "file": file,
                "title": title,
                "tags": json.loads(tags),
                "row": json.loads(row),
            }
        return out

    def candidates(self) -> dict[str, list[tuple[str, float | None]]]:
        """emotion -> [(gif_id, score)] in ranked order."""
        out: dict[str, list[tuple[str, float | None]]] = {}
        for e, gid, score in self.db.execute(
            "SELECT emotion, gif_id, score FROM candidates ORDER BY emotion, position"
        ):
            out.setdefault(e, []).append((gid, score))
        return out

    # -- users --------------------------------------------------------------------------------

    def add_user(self, name: str, role: str = "labeller", *, reissue: bool = False) -> str:
        """Create a user (or give an existing one a new token with ``reissue``); returns the
        token. Only its sha256 is stored, so the token is shown once."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"user name must be letters, digits, '-', '_' or '.', got {name!r}")
        token = secrets.token_urlsafe(32)
        old = self.db.execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        if old is not None and not reissue:
            raise ValueError(f"user {name!r} exists (pass --reissue for a new token)")
        if old is not None and old[0] != role:
            raise ValueError(f"user {name!r} is a {old[0]}, not a {role}")
        self.db.execute(
            "INSERT OR REPLACE INTO users(name, role, token_sha256, created) VALUES (?,?,?,?)",
            (name, role, hash_token(token), time.time()),
        )
        return token

    def users(self) -> dict[str, str]:
        """name -> role."""
        return dict(self.db.execute("SELECT name, role FROM users").fetchall())

    def user_of(self, token_sha256: str) -> tuple[str, str] | None:
        """(name, role) of the user holding the token with this hash, or None."""
        row = self.db.execute(
            "SELECT name, role FROM users WHERE token_sha256 = ?", (token_sha256,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # -- the log ------------------------------------------------------------------------------

    def append(
        self,
        *,
        user: str,
        kind: str,
        emotion: str | None = None,
        gif_id: str | None = None,
        answer: bool | None = None,
        others: Sequence[str] = (),
        cartoon: bool | None = None,
        multi_scene: bool | None = None,
        target: int | None = None,
        strategy: str | None = None,
        ranking_version: int | None = None,
        request_id: str | None = None,
        commit: bool = True,
    ) -> Event:
        """Append one event; with ``commit`` it is committed (fsync'd) before this returns,
        else it joins the open transaction until :meth:`commit` (group commit: one fsync for
        the answers of many labellers)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {kind!r}")
        ts = time.time()
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
        cur = self.db.execute(
            "INSERT INTO events(ts, user, kind, emotion, gif_id, answer, others, cartoon,"
            " multi_scene, target, strategy, ranking_version, request_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ts,
                user,
                kind,
                emotion,
                gif_id,
                _int(answer),
                json.dumps(list(others)),
                _int(cartoon),
                _int(multi_scene),
                target,
                strategy,
                ranking_version,
                request_id,
            ),
        )
        seq = cur.lastrowid
        assert seq is not None
        if commit:
            self.commit()
        return Event(
            seq,
            ts,
            user,
            kind,
            emotion,
            gif_id,
            answer,
            tuple(others),
            cartoon,
            multi_scene,
            target,
            strategy,
            ranking_version,
            request_id,
        )

    def events(self) -> list[Event]:
        rows = self.db.execute(
            "SELECT seq, ts, user, kind, emotion, gif_id, answer, others, cartoon, multi_scene,"
            " target, strategy, ranking_version, request_id FROM events ORDER BY seq"
        ).fetchall()
        return [
            Event(
                s,
                ts,
                u,
                k,
                e,
                g,
                _bool(a),
                tuple(json.loads(o or "[]")),
                _bool(c),
                _bool(m),
                t,
                st,
                v,
                r,
            )
            for s, ts, u, k, e, g, a, o, c, m, t, st, v, r in rows
        ]

    def add_ranking(self, emotion: str, version: int, gif_ids: Sequence[str]) -> None:
        """Store a new queue order (committed with any pending events)."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT INTO rankings(emotion, version, ts, gif_ids) VALUES (?,?,?,?)",
            (emotion, version, time.time(), json.dumps(list(gif_ids))),
        )
        self.commit()

    def latest_rankings(self) -> dict[str, tuple[int, list[str]]]:
        """emotion -> (version, order) of the newest stored ranking."""
        out: dict[str, tuple[int, list[str]]] = {}
        for e, v, ids in self.db.execute(
            "SELECT emotion, version, gif_ids FROM rankings ORDER BY emotion, version"
        ):
            out[e] = (int(v), json.loads(ids))
        return out
