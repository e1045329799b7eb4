"""The durable outbox: the only writer of buckets, outbox and sync_state.

A bucket changes and its outbox row is queued in one transaction; the row leaves only
when the collector's ack for that version (or a newer one) arrives.
"""

from __future__ import annotations

import json
import random
import time

from sqlite_utils import Database

from spacekiosk.clock import Correction
from spacekiosk.config import SpaceConfig
from spacekiosk.db import write
from spacekiosk.protocol import DAY, Bucket, add_counts
from sync.buckets import compute, earliest_activity, hour_of

MAX_BACKOFF = 3600.0


def refresh(db: Database, config: SpaceConfig, now: float | None = None) -> int:
    """Recompute recent hours; store each changed one as a new version and queue it.

    Returns how many hours were queued. Late data (a sign-out after its hour was sent)
    changes an already delivered hour, which goes out again with a higher version.
    When the outbox holds more than `sync.max_outbox_hours`, old days are rolled up.
    """
    now = time.time() if now is None else now
    until = hour_of(now) + 3600  # compute() leaves out the running hour unless asked
    with write(db):
        (newest,) = db.execute("SELECT max(hour_start) FROM buckets").fetchone()
        horizon = hour_of(now - config.sync.recompute_days * 86400)
        first = earliest_activity(db)
        if first is None:
            return 0  # a new install: nothing has happened yet
        # Recent hours change with late data; and an agent that was stopped for longer
        # than that (while the kiosk and the sensors went on) has every hour since its
        # newest stored one still to count. Hourly.needed_from() keeps their raw rows.
        since = max(min(horizon, newest + 3600), first) if newest is not None else first
        fresh = compute(db, since, until, config, now)
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
            _queue(db, hour, version + 1, now)
            queued += 1
        roll_up(db, config.sync.max_outbox_hours, horizon, now)
    return queued


def _queue(db: Database, hour: int, version: int, now: float) -> None:
    db.execute(
        """INSERT INTO outbox (hour_start, version, queued_at) VALUES (?, ?, ?)
           ON CONFLICT (hour_start) DO UPDATE SET version = excluded.version,
           queued_at = excluded.queued_at, attempts = 0, next_attempt_at = 0""",
        [hour, version, now],
    )


def roll_up(db: Database, max_hours: int, recompute_from: int, now: float) -> int:
    """Fold the oldest whole UTC days of a too-long outbox into one bucket per day.

    Only days that are past recomputing (so no hour of them changes again) and that the
    collector has none of (so nothing is counted twice) are folded. The hourly rows stay
    in `buckets` for the space's own history; the day's sums go out in their place.
    Returns how many days were rolled up.
    """
    pending = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    if pending <= max_hours:
        return 0
    rolled = 0
    days = db.execute(
        """SELECT hour_start / 86400 * 86400 AS day FROM outbox
           WHERE hour_start < ? GROUP BY day ORDER BY day""",
        [recompute_from // DAY * DAY],
    ).fetchall()
    for (day,) in days:
        if pending <= max_hours:
            break
        rows = db.execute(
            "SELECT counts, delivered_version FROM buckets WHERE hour_start >= ? "
            "AND hour_start < ?",
            [day, day + DAY],
        ).fetchall()
        if (
            any(delivered for _counts, delivered in rows)
            or db.execute("SELECT 1 FROM day_outbox WHERE day_start = ?", [day]).fetchone()
        ):
            continue
        total: dict = {}
        for counts, _delivered in rows:
            add_counts(total, json.loads(counts))
        # A day summed from hours of which one was stored before the agent counted the
        # first_in_* or open_person_minutes (None: not known) says nothing of them. The
        # first_in_* of a UTC day's hours sum exactly: the day lies within one UTC day,
        # week, month, quarter and year, each counted once in it.
        total = {name: value for name, value in total.items() if value is not None}
        db.execute(
            "INSERT INTO day_outbox (day_start, version, counts, queued_at) VALUES (?, 1, ?, ?)",
            [day, json.dumps(total, sort_keys=True), now],
        )
        gone = db.execute(
            "DELETE FROM outbox WHERE hour_start >= ? AND hour_start < ?", [day, day + DAY]
        ).rowcount
        pending -= gone
        rolled += 1
    return rolled


def due(db: Database, limit: int, now: float | None = None) -> list[Bucket]:
    """The oldest pending buckets (hours and rolled-up days) whose retry time has come,
    at most `limit` of them."""
    now = time.time() if now is None else now
    rows = db.execute(
        """SELECT b.hour_start, b.version, b.counts, 1 FROM outbox o
                  JOIN buckets b USING (hour_start) WHERE o.next_attempt_at <= ?
           UNION ALL
           SELECT day_start, version, counts, 24 FROM day_outbox
                  WHERE delivered_version < version AND next_attempt_at <= ?
           ORDER BY 1 LIMIT ?""",
        [now, now, limit],
    ).fetchall()
    return [
        Bucket(start, version, json.loads(counts), hours) for start, version, counts, hours in rows
    ]


_ATTEMPTS = {
    1: (
        "SELECT attempts FROM outbox WHERE hour_start = ?",
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE hour_start = ?",
    ),
    24: (
        "SELECT attempts FROM day_outbox WHERE day_start = ?",
        "UPDATE day_outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE day_start = ?",
    ),
}


def sent(db: Database, buckets: list[Bucket], ack_timeout: float, now: float | None = None) -> None:
    """Hold sent rows back until their ack is overdue, then retry with backoff and jitter."""
    now = time.time() if now is None else now
    with write(db):
        for bucket in buckets:
            select, update = _ATTEMPTS[bucket.hours]
            attempts = db.execute(select, [bucket.start]).fetchone()
            if attempts is None:
                continue
            delay = min(ack_timeout * 2 ** attempts[0], MAX_BACKOFF)
            delay *= random.uniform(1.0, 1.5)
            db.execute(update, [now + delay, bucket.start])


def delivered(db: Database, committed: list[tuple[int, int, int]], now: float | None = None) -> int:
    """The collector committed these (start, version, hours): release what they cover."""
    now = time.time() if now is None else now
    released = 0
    with write(db):
        for start, version, hours in committed:
            if hours == 24:
                released += db.execute(
                    "UPDATE day_outbox SET delivered_version = ? WHERE day_start = ? "
                    "AND delivered_version < ? AND version <= ?",
                    [version, start, version, version],
                ).rowcount
                continue
            released += db.execute(
                "DELETE FROM outbox WHERE hour_start = ? AND version <= ?", [start, version]
            ).rowcount
            db.execute(
                "UPDATE buckets SET delivered_version = max(delivered_version, ?) "
                "WHERE hour_start = ?",
                [version, start],
            )
        if committed:
            _set(db, "last_delivery_at", now)
    return released


def retrying(db: Database) -> bool:
    """Whether some row was sent and is waiting for its ack or its next attempt."""
    return (
        db.execute(
            "SELECT 1 FROM outbox WHERE attempts > 0 UNION ALL "
            "SELECT 1 FROM day_outbox WHERE attempts > 0 AND delivered_version < version LIMIT 1"
        ).fetchone()
        is not None
    )


def retry_now(db: Database) -> None:
    """Make every pending row due at once (after a reconnect, waiting helps no one)."""
    with write(db):
        db.execute("UPDATE outbox SET next_attempt_at = 0")
        db.execute("UPDATE day_outbox SET next_attempt_at = 0")


def delivered_units(db: Database, since: int) -> list[tuple[int, int, int]]:
    """(start, hours, version) of everything the collector acknowledged since `since`:
    what a reconciliation digest describes."""
    return db.execute(
        """SELECT hour_start, 1, delivered_version FROM buckets
                  WHERE hour_start >= ? AND delivered_version > 0
                  AND hour_start / 86400 * 86400 NOT IN (SELECT day_start FROM day_outbox)
           UNION ALL
           SELECT day_start, 24, delivered_version FROM day_outbox
                  WHERE day_start >= ? AND delivered_version > 0""",
        [since, since],
    ).fetchall()


def resend(db: Database, days: list[int], now: float | None = None) -> int:
    """The collector lacks something of these days: queue all of each day again.
    Returns how many hours and days were queued."""
    now = time.time() if now is None else now
    queued = 0
    with write(db):
        for day in days:
            queued += db.execute(
                "UPDATE day_outbox SET delivered_version = 0, next_attempt_at = 0 "
                "WHERE day_start = ?",
                [day],
            ).rowcount
            for hour, version in db.execute(
                "SELECT hour_start, version FROM buckets WHERE hour_start >= ? "
                "AND hour_start < ? AND delivered_version > 0 "
                "AND ? NOT IN (SELECT day_start FROM day_outbox)",
                [day, day + DAY, day],
            ).fetchall():
                _queue(db, hour, version, now)
                queued += 1
    return queued


def link_start(db: Database, at: float, trusted: bool) -> int:
    """A connection to the collector began at `at`: a new interval of link_log, for each
    hour's `connected_minutes`; returns its id, the only row its updates touch.
    `trusted`: taken on a clock that can be trusted; else the row waits for
    `link_correct()` and is not counted until then."""
    with write(db):
        return db.execute(
            "INSERT INTO link_log (start, end, clock_synced) VALUES (?, ?, ?)",
            [at, at, int(trusted)],
        ).lastrowid


def link_extend(db: Database, row: int, at: float) -> None:
    """The connection of interval `row` still existed at `at` (on the clock it began on)."""
    with write(db):
        db.execute("UPDATE link_log SET end = max(end, ?) WHERE id = ?", [at, row])


def link_correct(db: Database, fix: Correction, after_id: int) -> int:
    """The clock was set: move the untrusted times of the intervals this process began
    (id > after_id) by the offset, as the kiosk moves visits. Returns how many moved."""
    with write(db):
        return db.execute(
            "UPDATE link_log SET "
            "start = start + CASE WHEN start BETWEEN :start AND :end THEN :offset ELSE 0 END, "
            "end = end + CASE WHEN end BETWEEN :start AND :end THEN :offset ELSE 0 END, "
            "clock_synced = :synced "
            "WHERE clock_synced = 0 AND id > :after_id "
            "AND start BETWEEN :start AND :end AND end BETWEEN :start AND :end",
            fix.params(after_id),
        ).rowcount


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
