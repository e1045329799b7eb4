"""The durable outbox: the only writer of buckets, outbox and sync_state.

A bucket changes and its outbox row is queued in one transaction; the row leaves only
when the collector's ack for that version (or a newer one) arrives.
"""

from __future__ import annotations

import json
import random
import time

from sqlite_utils import Database

from spacekiosk.config import SpaceConfig
from spacekiosk.db import write
from sync.buckets import HOUR, compute, earliest_activity, hour_of
from sync.protocol import Bucket

MAX_BACKOFF = 3600.0


def refresh(
    db: Database, recompute_days: int, now: float | None = None, config: SpaceConfig | None = None
) -> int:
    """Recompute recent hours; store each changed one as a new version and queue it.

    Returns how many hours were queued. Late data (a sign-out after its hour was sent)
    changes an already delivered hour, which goes out again with a higher version.
    """
    now = time.time() if now is None else now
    until = hour_of(now) + HOUR
    with write(db):
        has_buckets = db.execute("SELECT 1 FROM buckets LIMIT 1").fetchone() is not None
        since = hour_of(now - recompute_days * 86400)
        if not has_buckets:
            since = min(since, earliest_activity(db) or since)
        fresh = compute(db, since, until, config)
        stored = {
            hour: (version, counts)
            for hour, version, counts in db.execute(
                "SELECT hour_start, version, counts FROM buckets WHERE hour_start >= ? "
                "AND hour_start < ?",
                [since, until],
            )
        }
        queued = 0
        for hour in sorted(set(fresh) | set(stored)):
            counts = json.dumps(fresh.get(hour, {}), sort_keys=True)
            version, old = stored.get(hour, (0, None))
            if counts == old:
                continue
            db.execute(
                """INSERT INTO buckets (hour_start, version, counts, computed_at)
                          VALUES (?, ?, ?, ?)
                          ON CONFLICT (hour_start) DO UPDATE SET version = excluded.version,
                          counts = excluded.counts, computed_at = excluded.computed_at""",
                [hour, version + 1, counts, now],
            )
            db.execute(
                """INSERT INTO outbox (hour_start, version, queued_at)
                          VALUES (?, ?, ?)
                          ON CONFLICT (hour_start) DO UPDATE SET version = excluded.version,
                          queued_at = excluded.queued_at, attempts = 0, next_attempt_at = 0""",
                [hour, version + 1, now],
            )
            queued += 1
    return queued


def due(db: Database, limit: int, now: float | None = None) -> list[Bucket]:
    """The oldest pending buckets whose retry time has come, at most `limit` of them."""
    now = time.time() if now is None else now
    rows = db.execute(
        """SELECT b.hour_start, b.version, b.counts FROM outbox o
                         JOIN buckets b USING (hour_start)
                         WHERE o.next_attempt_at <= ? ORDER BY o.hour_start LIMIT ?""",
        [now, limit],
    ).fetchall()
    return [Bucket(hour, version, json.loads(counts)) for hour, version, counts in rows]


def sent(db: Database, buckets: list[Bucket], ack_timeout: float, now: float | None = None) -> None:
    """Hold sent rows back until their ack is overdue, then retry with backoff and jitter."""
    now = time.time() if now is None else now
    with write(db):
        for bucket in buckets:
            attempts = db.execute(
                "SELECT attempts FROM outbox WHERE hour_start = ?", [bucket.start]
            ).fetchone()
            if attempts is None:
                continue
            delay = min(ack_timeout * 2 ** attempts[0], MAX_BACKOFF)
            delay *= random.uniform(1.0, 1.5)
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                "WHERE hour_start = ?",
                [now + delay, bucket.start],
            )


def delivered(db: Database, committed: list[tuple[int, int]], now: float | None = None) -> int:
    """The collector committed these (hour, version) pairs: release what they cover."""
    now = time.time() if now is None else now
    released = 0
    with write(db):
        for hour, version in committed:
            cur = db.execute(
                "DELETE FROM outbox WHERE hour_start = ? AND version <= ?", [hour, version]
            )
            released += cur.rowcount
            db.execute(
                "UPDATE buckets SET delivered_version = max(delivered_version, ?) "
                "WHERE hour_start = ?",
                [version, hour],
            )
        if committed:
            _set(db, "last_delivery_at", now)
    return released


def retry_now(db: Database) -> None:
    """Make every pending row due at once (after a reconnect, waiting helps no one)."""
    with write(db):
        db.execute("UPDATE outbox SET next_attempt_at = 0")


def set_state(db: Database, **values: object) -> None:
    with write(db):
        for key, value in values.items():
            _set(db, key, value)


def _set(db: Database, key: str, value: object) -> None:
    db.execute(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) "
        "DO UPDATE SET value = excluded.value",
        [key, json.dumps(value)],
    )


def state(db: Database) -> dict:
    return {
        key: json.loads(value) for key, value in db.execute("SELECT key, value FROM sync_state")
    }


def health(db: Database) -> dict:
    """What the kiosk and the status message say about sync, read without writing."""
    backlog, oldest = db.execute("SELECT count(*), min(hour_start) FROM outbox").fetchone()
    known = state(db)
    broker = known.get("broker", "not started")
    if backlog == 0:
        summary = "Usage data is up to date."
        status = "idle"
    elif broker == "connected":
        summary = f"Sending usage data ({backlog} hours)."
        status = "sending"
    else:
        summary = f"Usage data is queued ({backlog} hours) until the network is back."
        status = "queued"
    return {
        "state": status,
        "backlog": backlog,
        "oldest_pending": oldest,
        "broker": broker,
        "last_delivery_at": known.get("last_delivery_at"),
        "summary": summary,
    }
