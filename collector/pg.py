"""The central store in PostgreSQL, for a central deployment that outgrows one file.

`central.database_url = "postgresql://..."` selects it. The store's SQL is written once,
with `?` placeholders and portable statements; `PgDatabase` runs it through psycopg so
that store.py reads the same against either database. The schema is the SQLite one's
current shape (see store.py's migrations), created by numbered steps of its own here,
under an advisory lock so that several collectors can start at once.

For Grafana, Metabase and the like, the view `usage_flat` has one column per count.
Here only the schema is written; the rows are store.py's, accounts.py's, sessions.py's
and alerts.py's.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence

from spacekiosk.db import StoreError
from spacekiosk.protocol import COUNTS, FIRST_IN, OPTIONAL

log = logging.getLogger(__name__)

SCHEMA_LOCK = 0x5EC1_0C0D  # pg_advisory_xact_lock key: one migrating collector at a time

# The counts of the protocol's first release: the view of the first step has these.
FIRST_COUNTS = tuple(c for c in COUNTS if c not in OPTIONAL)


def _flat_view(counts: tuple[str, ...]) -> str:
    """`usage_flat`: a column per count, 0 where a bucket leaves it out. An OPTIONAL
    count is NULL (not known) where a bucket of an agent that did not count it had a
    visitor (first_in_*) or anyone there (open_person_minutes): see protocol.lacks."""

    def column(c: str) -> str:
        value = f"coalesce((counts::jsonb->>'{c}')::int, 0)"
        if c not in OPTIONAL:
            return f"{value} AS {c}"
        whole = "unique_visitors" if c in FIRST_IN else "person_minutes"
        return (
            f"CASE WHEN counts::jsonb->'{c}' IS NOT NULL "
            f"OR coalesce((counts::jsonb->>'{whole}')::int, 0) = 0 THEN {value} END AS {c}"
        )

    return (
        "CREATE VIEW usage_flat AS SELECT space, to_timestamp(hour_start) AS start, hours, "  # noqa: S608
        + "version, "
        + ", ".join(column(c) for c in counts)
        + ", counts::jsonb->'by_purpose' AS by_purpose, counts::jsonb->'by_event' AS by_event"
        + " FROM usage"
    )


# Tables written the same way for SQLite (store.py's m003) and PostgreSQL.
CENTRAL_TEAM_TABLES = [
    """CREATE TABLE space_info (
        space TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        capacity INTEGER,
        added_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE costs (
        space TEXT NOT NULL,
        month TEXT NOT NULL CHECK (length(month) = 7),
        amount DOUBLE PRECISION NOT NULL CHECK (amount >= 0),
        currency TEXT NOT NULL,
        PRIMARY KEY (space, month)
    )""",
    """CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    )""",
]

_M001 = [
    """CREATE TABLE spaces (
        id TEXT PRIMARY KEY,
        first_seen DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE usage (
        space TEXT NOT NULL REFERENCES spaces(id),
        hour_start BIGINT NOT NULL,
        hours INTEGER NOT NULL DEFAULT 1 CHECK (hours IN (1, 24)),
        version INTEGER NOT NULL,
        counts TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (space, hour_start, hours)
    )""",
    """CREATE TABLE rejects (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
    """CREATE TABLE tokens (
        space TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    *CENTRAL_TEAM_TABLES,
    # Column names from the protocol's counts as they were then, not from input.
    _flat_view(FIRST_COUNTS),
]

# Numbered steps, like SQLite's; a step that ships is never edited. A change to the store
# adds a step here and one in store.py's COLLECTOR_MIGRATIONS.
# When the collector itself last heard from each space, and last committed its usage
# (m004_contact in store.py, the same statements). A store that had buckets before
# takes the time it last changed one as both, the best it knows.
CONTACT_STEPS = [
    "ALTER TABLE spaces ADD COLUMN last_contact DOUBLE PRECISION",
    "ALTER TABLE spaces ADD COLUMN last_delivery DOUBLE PRECISION",
    """UPDATE spaces SET last_delivery =
        (SELECT max(received_at) FROM usage WHERE usage.space = spaces.id)""",
    "UPDATE spaces SET last_contact = last_delivery",
]
_M002: list[str] = CONTACT_STEPS
# Page sessions kept on the server, and failed logins counted where every collector
# sees them (m005_sessions in store.py, the same statements; sessions.py writes them).
SESSION_TABLES = [
    """CREATE TABLE sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX sessions_by_user ON sessions (user_name)",
    """CREATE TABLE login_tries (
        address TEXT PRIMARY KEY,
        since DOUBLE PRECISION NOT NULL,
        tries INTEGER NOT NULL
    )""",
]
_M003: list[str] = SESSION_TABLES
# usage_flat with the counts hours carry since: first_in_<period> and open_person_minutes
# (SQLite's store keeps counts as JSON and has no such view: it has no step for this).
_M004: list[str] = ["DROP VIEW usage_flat", _flat_view(COUNTS)]


def alert_tables(identity: str) -> list[str]:
    """The central team's alerts (collector/alerts.py writes them, m006_alerts in store.py
    the same statements): each space's conditions as last judged, their history (fired,
    cleared), and the outbox of messages to each target (by the SHA-256 of its URL: a
    target's URL may hold a secret, the store never does). `identity` is the id column."""
    return [
        """CREATE TABLE alerts (
            space TEXT NOT NULL,
            kind TEXT NOT NULL,
            since DOUBLE PRECISION,
            clear_since DOUBLE PRECISION,
            fired_at DOUBLE PRECISION,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (space, kind)
        )""",
        f"""CREATE TABLE alert_events (
            id {identity},
            space TEXT NOT NULL,
            kind TEXT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('fired', 'cleared')),
            at DOUBLE PRECISION NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX alert_events_by_space ON alert_events (space, at)",
        """CREATE TABLE alert_outbox (
            event_id BIGINT NOT NULL REFERENCES alert_events(id),
            target TEXT NOT NULL,
            tries INTEGER NOT NULL DEFAULT 0,
            next_try DOUBLE PRECISION NOT NULL,
            sent_at DOUBLE PRECISION,
            error TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (event_id, target)
        )""",
        "CREATE INDEX alert_outbox_due ON alert_outbox (next_try) WHERE sent_at IS NULL",
        # The refusals of the last hour, counted every round.
        "CREATE INDEX rejects_by_time ON rejects (at)",
    ]


_M005: list[str] = alert_tables("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
PG_MIGRATIONS: list[list[str]] = [_M001, _M002, _M003, _M004, _M005]


class PgDatabase:
    """A psycopg connection with the small part of sqlite_utils.Database the store uses:
    `execute(sql, params)` with `?` placeholders, `executemany`, `close()`."""

    dialect = "postgresql"

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "central.database_url needs psycopg: pip install 'spacekiosk[central]'"
            ) from None
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            where = re.sub(r"//[^@/]*@", "//", url)  # no password in the log
            raise StoreError(f"cannot open the PostgreSQL store at {where}: {exc}") from None

    def execute(self, sql: str, params: Sequence = (), binary: bool = False):
        """`binary` sends the parameters in PostgreSQL's binary format: arrays of
        thousands of texts then go without a single character escaped."""
        with self._unavailable():
            if not params:
                return self.conn.execute(sql)
            return self.conn.execute(_placeholders(sql, "%b" if binary else "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        with self._unavailable(), self.conn.cursor() as cursor:
            cursor.executemany(_placeholders(sql), rows)

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """A lost server is a StoreError (the page says 503; ingest acks nothing and
        reconnects); a bad statement stays the programming error it is."""
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreError(f"the PostgreSQL store went away: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def close(self) -> None:
        self.conn.close()

    @property
    def alive(self) -> bool:
        """False once the server has gone away: open a new connection then."""
        return not (self.conn.closed or self.conn.broken)


def _placeholders(sql: str, placeholder: str = "%s") -> str:
    return sql.replace("%", "%%").replace("?", placeholder)


def open_pg(url: str) -> PgDatabase:
    """Connect and bring the schema up to date; StoreError if the server cannot be
    reached or holds a schema newer than this code knows."""
    db = PgDatabase(url)
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(?)", [SCHEMA_LOCK])
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > len(PG_MIGRATIONS):
            db.close()
            raise StoreError(
                f"the PostgreSQL store is at schema version {version}, newer than this "
                f"collector knows ({len(PG_MIGRATIONS)}); upgrade spacekiosk"
            )
        for number, statements in enumerate(PG_MIGRATIONS[version:], start=version + 1):
            log.info("migrating the PostgreSQL store to schema version %d", number)
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", [number])
    return db
