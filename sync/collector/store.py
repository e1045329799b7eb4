"""The central store: every space's hourly buckets, highest version wins. Sole writer."""

from __future__ import annotations

import json
import time

from sqlite_utils import Database

from spacekiosk.db import write
from sync.protocol import Bucket


def m001_initial(db: Database) -> None:
    db.execute("""CREATE TABLE spaces (
        id TEXT PRIMARY KEY,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        status TEXT NOT NULL DEFAULT '{}'
    )""")
    db.execute("""CREATE TABLE usage (
        space TEXT NOT NULL REFERENCES spaces(id),
        hour_start INTEGER NOT NULL,
        version INTEGER NOT NULL,
        counts TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (space, hour_start)
    ) WITHOUT ROWID""")
    db.execute("""CREATE TABLE rejects (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL
    )""")


COLLECTOR_MIGRATIONS = [m001_initial]


def _seen(db: Database, space: str, now: float) -> None:
    db.execute(
        """INSERT INTO spaces (id, first_seen, last_seen) VALUES (?, ?, ?)
                  ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen""",
        [space, now, now],
    )


def commit_usage(db: Database, space: str, buckets: list[Bucket], now: float | None = None) -> None:
    """Upsert each (space, hour), keeping the highest version: duplicates and reordering
    change nothing. Returns after the commit, so an ack sent afterwards is true."""
    now = time.time() if now is None else now
    with write(db):
        _seen(db, space, now)
        db.conn.executemany(
            """INSERT INTO usage (space, hour_start, version, counts, received_at)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (space, hour_start) DO UPDATE SET version = excluded.version,
                   counts = excluded.counts, received_at = excluded.received_at
               WHERE excluded.version > usage.version""",
            [
                (space, b.start, b.version, json.dumps(b.counts, sort_keys=True), now)
                for b in buckets
            ],
        )


def commit_status(db: Database, space: str, status: dict, now: float | None = None) -> None:
    now = time.time() if now is None else now
    with write(db):
        _seen(db, space, now)
        db.execute("UPDATE spaces SET status = ? WHERE id = ?", [json.dumps(status), space])


def reject(db: Database, topic: str, reason: str, now: float | None = None) -> None:
    with write(db):
        db.execute(
            "INSERT INTO rejects (at, topic, reason) VALUES (?, ?, ?)",
            [time.time() if now is None else now, topic[:200], reason[:500]],
        )


def spaces(db: Database) -> list[dict]:
    rows = db.execute("""SELECT s.id, s.first_seen, s.last_seen, s.status,
                                (SELECT count(*) FROM usage u WHERE u.space = s.id)
                         FROM spaces s ORDER BY s.id""").fetchall()
    return [
        {
            "id": r[0],
            "first_seen": r[1],
            "last_seen": r[2],
            "status": json.loads(r[3]),
            "hours": r[4],
        }
        for r in rows
    ]


def usage(
    db: Database, space: str, since: int | None = None, until: int | None = None
) -> list[Bucket]:
    rows = db.execute(
        """SELECT hour_start, version, counts FROM usage WHERE space = ?
                         AND hour_start >= ? AND hour_start < ? ORDER BY hour_start""",
        [space, since or 0, until or 2**62],
    ).fetchall()
    return [Bucket(h, v, json.loads(c)) for h, v, c in rows]


def known(db: Database, space: str) -> bool:
    return db.execute("SELECT 1 FROM spaces WHERE id = ?", [space]).fetchone() is not None


def reject_count(db: Database) -> int:
    return db.execute("SELECT count(*) FROM rejects").fetchone()[0]
