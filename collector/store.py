"""The central store: its schema, and the writes of what the spaces send — each space's
hourly buckets (highest version wins), its status, when the collector last heard from it
and had its usage, the messages refused — and of the spaces' HTTPS tokens.

Two processes write through `commit`: the committer (what arrives over MQTT, ingest.py)
and the web process (the spaces' HTTPS routes, spaces.py). `set_token` is the
`spacekiosk space` commands'. The other tables have writers of their own, each through
`transaction`: accounts.py the central team's (it also forgets a removed space's token),
sessions.py the page's sessions and failed logins, alerts.py the alerts (its evaluator
alone). In PostgreSQL, pg.py makes the schema.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable

from sqlite_utils import Database

from collector.pg import CENTRAL_TEAM_TABLES, CONTACT_STEPS, PgDatabase, open_pg
from spacekiosk.config import Central
from spacekiosk.db import open_store, write
from spacekiosk.protocol import DAY, Bucket, Hour, day_epoch, digest


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


def m002_days_and_tokens(db: Database) -> None:
    """Rolled-up days beside hours (a bucket is now keyed by its span too), and the
    spaces' tokens for the HTTPS route (stored as SHA-256: a token is 256 random bits)."""
    for statement in (
        """CREATE TABLE usage_new (
            space TEXT NOT NULL REFERENCES spaces(id),
            hour_start INTEGER NOT NULL,
            hours INTEGER NOT NULL DEFAULT 1 CHECK (hours IN (1, 24)),
            version INTEGER NOT NULL,
            counts TEXT NOT NULL,
            received_at REAL NOT NULL,
            PRIMARY KEY (space, hour_start, hours)
        ) WITHOUT ROWID""",
        """INSERT INTO usage_new (space, hour_start, hours, version, counts, received_at)
           SELECT space, hour_start, 1, version, counts, received_at FROM usage""",
        "DROP TABLE usage",
        "ALTER TABLE usage_new RENAME TO usage",
        """CREATE TABLE tokens (
            space TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )""",
    ):
        db.execute(statement)


def m003_central_team(db: Database) -> None:
    """What the central team enters and who may read: each space's name and capacity,
    its monthly cost, the page's logins and the API's tokens (secrets as hashes)."""
    for statement in CENTRAL_TEAM_TABLES:  # the same statements in both databases
        db.execute(statement)


def m004_contact(db: Database) -> None:
    """When the collector itself last heard from each space, and last committed its usage."""
    for statement in CONTACT_STEPS:  # the same statements in both databases
        db.execute(statement)


def m005_sessions(db: Database) -> None:
    """Page sessions kept on the server, so that logging out ends them everywhere, and
    failed logins counted in the store, so that counting and checking are one step."""
    from collector.pg import SESSION_TABLES  # the same statements in both databases

    for statement in SESSION_TABLES:
        db.execute(statement)


def m006_alerts(db: Database) -> None:
    """The central team's alerts: their state, history and outbox (alerts.py writes them)."""
    from collector.pg import alert_tables  # the same statements in both databases

    for statement in alert_tables("INTEGER PRIMARY KEY"):
        db.execute(statement)


COLLECTOR_MIGRATIONS = [
    m001_initial,
    m002_days_and_tokens,
    m003_central_team,
    m004_contact,
    m005_sessions,
    m006_alerts,
]


# A bucket to store: (space, start, hours, version, its counts as JSON).
Row = tuple[str, int, int, int, str]


def connect(central: Central, role: str = "web") -> Database | PgDatabase:
    """The central store the config names (the SQLite file, or PostgreSQL when
    `central.database_url` is set), migrated. `role` "ingest" commits with
    synchronous=FULL: an ack is sent only for what is on disk."""
    if central.database_url:
        return open_pg(central.database_url)
    synchronous = "FULL" if role == "ingest" else "NORMAL"
    # SQLite's own page size: a server's disk is not an SD card, and `usage` rows (index
    # b-tree rows, WITHOUT ROWID) would spill into overflow pages in the Pi's small ones.
    return open_store(
        central.database, COLLECTOR_MIGRATIONS, synchronous=synchronous, page_size=None
    )


def alive(db) -> bool:
    """Whether the connection can still be used (a PostgreSQL server can go away)."""
    return db.alive if isinstance(db, PgDatabase) else True


def transaction(db: Database | PgDatabase):
    """A write transaction on the central store, whichever database holds it."""
    return db.transaction() if isinstance(db, PgDatabase) else write(db)


def _executemany(db: Database | PgDatabase, sql: str, rows: list) -> None:
    if isinstance(db, PgDatabase):
        db.executemany(sql, rows)
    else:
        db.conn.executemany(sql, rows)


def wire_rows(space: str, hours: list[tuple[int, Hour]]) -> list[Row]:
    """Rows of buckets as the collector reads them off the wire, with no dict between."""
    return [(space, start, h.hours, h.version, h.counts_json()) for start, h in hours]


def commit_status(db, space: str, status: dict, now: float | None = None) -> None:
    commit(db, statuses=[(space, status)], now=now)


def reject(db, topic: str, reason: str, now: float | None = None) -> None:
    commit(db, rejects=[(topic, reason)], now=now)


# Upsert a bucket, keeping the highest version: duplicates and reordering change nothing.
_UPSERT_USAGE = """INSERT INTO usage (space, hour_start, hours, version, counts, received_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (space, hour_start, hours) DO UPDATE SET
        version = excluded.version, counts = excluded.counts, received_at = excluded.received_at
    WHERE excluded.version > usage.version"""
# The same for PostgreSQL, a whole batch in one statement from arrays, one per column.
_UPSERT_USAGE_ARRAYS = """INSERT INTO usage (space, hour_start, hours, version, counts, received_at)
    SELECT *, ? FROM unnest(?::text[], ?::bigint[], ?::int[], ?::int[], ?::text[])
    ON CONFLICT (space, hour_start, hours) DO UPDATE SET
        version = excluded.version, counts = excluded.counts, received_at = excluded.received_at
    WHERE excluded.version > usage.version"""


def commit(
    db,
    usage: list[Row] = (),
    statuses: list[tuple[str, dict]] = (),
    rejects: list[tuple[str, str]] = (),
    now: float | None = None,
    contacts: Iterable[str] | None = None,
) -> None:
    """Everything that arrived together, in one transaction: one commit (one fsync) for
    many messages is what lets a collector keep up with thousands of spaces.

    Each space of `contacts` was heard from now, and each space with usage here has
    delivered now. Without `contacts`, those are the spaces with usage or a status that
    says it is online (a last will is the broker speaking, not the space)."""
    now = time.time() if now is None else now
    delivered = {row[0] for row in usage}
    if contacts is None:
        contacts = delivered | {space for space, status in statuses if status.get("online")}
    heard = set(contacts)
    seen = sorted(delivered | heard | {space for space, _ in statuses})
    pg = isinstance(db, PgDatabase)
    with transaction(db):
        # In a fixed order, so two collectors never wait on each other in a circle.
        if seen:
            contact = [now if space in heard else None for space in seen]
            delivery = [now if space in delivered else None for space in seen]
        if seen and pg:  # one statement for the batch, not a round trip per row
            db.execute(_UPSERT_SPACES_ARRAYS, [now, now, seen, contact, delivery], binary=True)
        elif seen:
            db.conn.executemany(
                _UPSERT_SPACES,
                [(*row, now, now) for row in zip(seen, contact, delivery, strict=True)],
            )
        if usage and pg:
            # A statement may not upsert one row twice: keep each bucket's newest version.
            newest = {row[:3]: row for row in sorted(usage)}.values()
            columns = map(list, zip(*newest, strict=True))
            db.execute(_UPSERT_USAGE_ARRAYS, [now, *columns], binary=True)
        elif usage:
            db.conn.executemany(_UPSERT_USAGE, [(*row, now) for row in sorted(usage)])
        for space, status in statuses:
            if "about" not in status:  # the last will is short: keep what the space said
                row = db.execute("SELECT status FROM spaces WHERE id = ?", [space]).fetchone()
                about = _stored_about(row[0] if row else None)
                status = {**status, "about": about} if about else status
            db.execute("UPDATE spaces SET status = ? WHERE id = ?", [json.dumps(status), space])
        if rejects:
            _executemany(
                db,
                "INSERT INTO rejects (at, topic, reason) VALUES (?, ?, ?)",
                [(now, _plain(topic, 200), _plain(reason, 500)) for topic, reason in rejects],
            )


# Every space heard from or stored for in a batch: last_seen is when the collector last
# stored anything of it; last_contact and last_delivery change only when given.
_UPSERT_SPACES = """INSERT INTO spaces (id, last_contact, last_delivery, first_seen, last_seen)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen,
        last_contact = coalesce(excluded.last_contact, spaces.last_contact),
        last_delivery = coalesce(excluded.last_delivery, spaces.last_delivery)"""
_UPSERT_SPACES_ARRAYS = """INSERT INTO spaces
        (id, last_contact, last_delivery, first_seen, last_seen)
    SELECT id, contact, delivery, ?, ?
    FROM unnest(?::text[], ?::float8[], ?::float8[]) AS batch(id, contact, delivery)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen,
        last_contact = coalesce(excluded.last_contact, spaces.last_contact),
        last_delivery = coalesce(excluded.last_delivery, spaces.last_delivery)"""


def _stored_about(text) -> dict | None:
    """The `about` of a stored status, if it is one: a status stored before statuses
    were checked may be anything, and must not stop a commit."""
    try:
        about = json.loads(text).get("about") if isinstance(text, str) else None
    except (ValueError, AttributeError, RecursionError):
        return None
    return about if isinstance(about, dict) else None


def _plain(text: str, limit: int) -> str:
    """`text` with no control character, formatting character or lone surrogate (each
    written as its escape), at most `limit` characters: a reason may quote a payload."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit * 2])
    return text[:limit]


def contacts(db) -> dict[str, tuple[float | None, float | None]]:
    """{space: (last contact, last delivery)}: when the collector itself last heard from
    each space (any valid message), and last committed usage from it."""
    rows = db.execute("SELECT id, last_contact, last_delivery FROM spaces").fetchall()
    return {space: (_moment(contact), _moment(delivery)) for space, contact, delivery in rows}


def _moment(value) -> float | None:
    """A time the collector wrote (with its own clock), if it is one a page can show."""
    ok = isinstance(value, int | float) and math.isfinite(value) and 0 < value < _YEAR_2100
    return float(value) if ok else None


_YEAR_2100 = 4102444800


def spaces(db: Database) -> list[dict]:
    rows = db.execute("""SELECT s.id, s.first_seen, s.last_seen, s.status,
                                (SELECT count(*) FROM usage u WHERE u.space = s.id),
                                s.last_contact, s.last_delivery
                         FROM spaces s ORDER BY s.id""").fetchall()
    return [
        {
            "id": r[0],
            "first_seen": r[1],
            "last_seen": r[2],
            "status": json.loads(r[3]),
            "hours": r[4],
            "last_contact": r[5],
            "last_delivery": r[6],
        }
        for r in rows
    ]


def usage(
    db: Database, space: str, since: int | None = None, until: int | None = None
) -> list[Bucket]:
    rows = db.execute(
        """SELECT hour_start, version, counts, hours FROM usage WHERE space = ?
                         AND hour_start >= ? AND hour_start < ? ORDER BY hour_start, hours""",
        [space, since or 0, until or 2**62],
    ).fetchall()
    return [Bucket(h, v, json.loads(c), n) for h, v, c, n in rows]


def lacking(db: Database, space: str, claimed: dict[int, tuple[int, int]]) -> list[int]:
    """The days of a space's digest whose buckets here differ from what it delivered."""
    if not claimed:
        return []
    units = db.execute(
        "SELECT hour_start, hours, version FROM usage WHERE space = ? AND hour_start >= ? "
        "AND hour_start < ?",
        [space, min(claimed), max(claimed) + DAY],
    ).fetchall()
    held = {day_epoch(day): (n, crc) for day, n, crc in digest(units)}
    return sorted(day for day, entry in claimed.items() if held.get(day) != entry)


def set_token(db, space: str, token: str, now: float | None = None) -> None:
    """Give a space its token for the HTTPS route (replacing any earlier one)."""
    with transaction(db):
        db.execute(
            """INSERT INTO tokens (space, token_sha256, created_at) VALUES (?, ?, ?)
               ON CONFLICT (space) DO UPDATE SET token_sha256 = excluded.token_sha256,
               created_at = excluded.created_at""",
            [space, _sha256(token), time.time() if now is None else now],
        )


def token_space(db: Database, token: str) -> str | None:
    """Which space a bearer token belongs to, if any."""
    row = db.execute("SELECT space FROM tokens WHERE token_sha256 = ?", [_sha256(token)]).fetchone()
    return row[0] if row else None


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def known(db: Database, space: str) -> bool:
    return db.execute("SELECT 1 FROM spaces WHERE id = ?", [space]).fetchone() is not None


def reject_count(db: Database) -> int:
    return db.execute("SELECT count(*) FROM rejects").fetchone()[0]
