"""The SQLite store that makes long generation runs safe to kill and resume.

One file (``<output>/generate.sqlite``) in WAL mode. Every item -- (query, level, index) under
the fingerprint of backend + model + prompts + parameters -- is a row whose primary key makes
a second commit of the same item impossible. Each model answer is committed in one
transaction together with the items it finished and a row in ``requests`` (tokens, time, raw
answer), so killing the process at any moment loses at most the answers in flight. Items that
exhausted their attempts are stored as ``failed`` with the reason, and are skipped on the next
run unless retrying failures is asked for.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

STORE_NAME = "generate.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    fingerprint TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    fingerprint TEXT NOT NULL,
    qid         TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (fingerprint, qid)
);
CREATE TABLE IF NOT EXISTS items (
    fingerprint TEXT NOT NULL,
    qid         TEXT NOT NULL,
    level       INTEGER NOT NULL,
    k           INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    text        TEXT,
    reason      TEXT,
    attempts    INTEGER NOT NULL,
    request_id  TEXT,
    session_id  TEXT,
    created     REAL NOT NULL,
    PRIMARY KEY (fingerprint, qid, level, k)
);
CREATE TABLE IF NOT EXISTS requests (
    request_id  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    session_id  TEXT,
    qid         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    items       TEXT NOT NULL,
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    seconds     REAL NOT NULL DEFAULT 0,
    error       TEXT,
    raw         TEXT,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    shard       TEXT,
    host        TEXT,
    pid         INTEGER,
    started     REAL NOT NULL,
    last_commit REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_fp ON requests (fingerprint);
"""

ItemKey = tuple[str, int, int]
"""(query id, level grade, index within the level)."""


@dataclass
class StoredItem:
    qid: str
    level: int
    k: int
    status: str
    text: str | None
    reason: str | None
    attempts: int
    request_id: str | None
    session_id: str | None


@dataclass
class RequestRecord:
    """One model answer, logged with the items it finished."""

    qid: str
    kind: str
    items: list[ItemKey]
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    error: str | None = None
    raw: str | None = None


class Store:
    """A generation store. One writer per file; shards write separate files and merge."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_SCHEMA)
        self.session_id: str | None = None

    @classmethod
    def in_dir(cls, folder: str | Path) -> "Store":
        return cls(Path(folder) / STORE_NAME)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------------
    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.conn.execute("BEGIN IMMEDIATE")
                return store.conn

            def __exit__(self, exc_type, exc, tb):
                store.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                return False

        return _Tx()

    # -- runs and queries ------------------------------------------------------------------
    def register_run(self, fingerprint: str, config: dict, queries: dict[str, str], shard: str | None = None) -> str:
        """Record the run's configuration and queries; starts a session and returns its id."""
        now = time.time()
        self.session_id = uuid.uuid4().hex
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?)",
                      (fingerprint, json.dumps(config, sort_keys=True, ensure_ascii=False), now))
            c.executemany("INSERT OR IGNORE INTO queries VALUES (?, ?, ?)",
                          [(fingerprint, qid, text) for qid, text in queries.items()])
            c.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (self.session_id, fingerprint, shard, socket.gethostname(), os.getpid(), now, now))
        return self.session_id

    def fingerprints(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT fingerprint FROM runs ORDER BY created")]

    def config(self, fingerprint: str) -> dict:
        row = self.conn.execute("SELECT config FROM runs WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no run with fingerprint {fingerprint}")
        return json.loads(row[0])

    def queries(self, fingerprint: str) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT qid, text FROM queries WHERE fingerprint = ? ORDER BY rowid", (fingerprint,)))

    # -- items -----------------------------------------------------------------------------
    def items(self, fingerprint: str, status: str | None = None) -> Iterator[StoredItem]:
        sql = ("SELECT qid, level, k, status, text, reason, attempts, request_id, session_id "
               "FROM items WHERE fingerprint = ?")
        args: list = [fingerprint]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        for row in self.conn.execute(sql + " ORDER BY rowid", args):
            yield StoredItem(*row)

    def finished_keys(self, fingerprint: str) -> dict[ItemKey, str]:
        """Items already done or failed, with their status."""
        return {(q, lv, k): s for q, lv, k, s in self.conn.execute(
            "SELECT qid, level, k, status FROM items WHERE fingerprint = ?", (fingerprint,))}

    def done_texts(self, fingerprint: str, qids: Iterable[str]) -> dict[str, list[str]]:
        wanted = set(qids)
        out: dict[str, list[str]] = {}
        for qid, text in self.conn.execute(
                "SELECT qid, text FROM items WHERE fingerprint = ? AND status = 'done'", (fingerprint,)):
            if qid in wanted:
                out.setdefault(qid, []).append(text)
        return out

    def forget_failures(self, fingerprint: str) -> int:
        """Delete failed items so that they are generated again; returns how many."""
        with self._tx() as c:
            return c.execute("DELETE FROM items WHERE fingerprint = ? AND status = 'failed'", (fingerprint,)).rowcount

    def commit(self, fingerprint: str, request: RequestRecord,
               done: dict[ItemKey, tuple[str, int]], failed: dict[ItemKey, tuple[str, int]]) -> int:
        """Commit one answer atomically: its request row, the items it finished
        (``key -> (text, attempts)``) and the items that ran out of attempts
        (``key -> (reason, attempts)``). Returns the number of item rows written; an item
        already in the store is never written twice."""
        now = time.time()
        request_id = uuid.uuid4().hex
        written = 0
        with self._tx() as c:
            c.execute(
                "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request_id, fingerprint, self.session_id, request.qid, request.kind,
                 json.dumps([list(k) for k in request.items]), request.tokens_in, request.tokens_out,
                 request.seconds, request.error, request.raw, now),
            )
            for (qid, level, k), (text, attempts) in done.items():
                written += c.execute(
                    "INSERT INTO items VALUES (?, ?, ?, ?, 'done', ?, NULL, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (fingerprint, qid, level, k, text, attempts, request_id, self.session_id, now),
                ).rowcount
            for (qid, level, k), (reason, attempts) in failed.items():
                written += c.execute(
                    "INSERT INTO items VALUES (?, ?, ?, ?, 'failed', NULL, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (fingerprint, qid, level, k, reason, attempts, request_id, self.session_id, now),
                ).rowcount
            if self.session_id is not None:
                c.execute("UPDATE sessions SET last_commit = ? WHERE session_id = ?", (now, self.session_id))
        return written

    # -- accounting ------------------------------------------------------------------------
    def totals(self, fingerprint: str) -> dict:
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), COALESCE(SUM(seconds), 0), "
            "COALESCE(SUM(error IS NOT NULL), 0) FROM requests WHERE fingerprint = ?", (fingerprint,)).fetchone()
        wall = self.conn.execute(
            "SELECT COALESCE(SUM(last_commit - started), 0), COUNT(*) FROM sessions WHERE fingerprint = ?",
            (fingerprint,)).fetchone()
        return {"requests": row[0], "tokens_in": row[1], "tokens_out": row[2], "request_seconds": round(row[3], 3),
                "request_errors": row[4], "wall_seconds": round(wall[0], 3), "sessions": wall[1]}

    # -- merging shards --------------------------------------------------------------------
    def merge_from(self, other: str | Path) -> dict[str, int]:
        """Copy runs, queries, items, requests and sessions of another store into this one.
        Primary keys make the merge idempotent; a done item replaces a failed one."""
        other = Path(other)
        if other.is_dir():
            other = other / STORE_NAME
        if not other.is_file():
            raise FileNotFoundError(f"{other}: no generation store to merge")
        if other.resolve() == self.path.resolve():
            raise ValueError(f"{other}: cannot merge a store into itself")
        self.conn.execute("ATTACH DATABASE ? AS src", (str(other),))
        try:
            with self._tx() as c:
                c.execute("INSERT OR IGNORE INTO runs SELECT * FROM src.runs")
                c.execute("INSERT OR IGNORE INTO queries SELECT * FROM src.queries")
                before = c.execute("SELECT COUNT(*) FROM items WHERE status='done'").fetchone()[0]
                c.execute(
                    "INSERT INTO items SELECT * FROM src.items WHERE true "
                    "ON CONFLICT (fingerprint, qid, level, k) DO UPDATE SET "
                    "status = excluded.status, text = excluded.text, reason = excluded.reason, "
                    "attempts = excluded.attempts, request_id = excluded.request_id, "
                    "session_id = excluded.session_id, created = excluded.created "
                    "WHERE items.status = 'failed' AND excluded.status = 'done'")
                after = c.execute("SELECT COUNT(*) FROM items WHERE status='done'").fetchone()[0]
                c.execute("INSERT OR IGNORE INTO requests SELECT * FROM src.requests")
                c.execute("INSERT OR IGNORE INTO sessions SELECT * FROM src.sessions")
        finally:
            self.conn.execute("DETACH DATABASE src")
        return {"done_added": after - before}
