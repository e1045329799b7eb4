"""The space database's schema, as numbered steps that only ever add.

A kiosk holds real sign-ins, so a step never drops or rewrites data. Append new steps
at the end; never edit one that has shipped. Times are UTC seconds since the epoch.

Writers (rule 1 of the design): visitors and visits — kiosk; sensor_events — sensors;
buckets, outbox, day_outbox, link_log and sync_state — sync.
"""

from __future__ import annotations

import secrets

from sqlite_utils import Database


def m001_initial(db: Database) -> None:
    for statement in _INITIAL:
        db.execute(statement)


_INITIAL = [
    """CREATE TABLE visitors (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
        name_key TEXT NOT NULL,
        email TEXT,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX visitors_name_key ON visitors(name_key)",
    """CREATE TABLE visits (
        id INTEGER PRIMARY KEY,
        visitor_id INTEGER NOT NULL REFERENCES visitors(id),
        signed_in_at REAL NOT NULL,
        signed_out_at REAL,
        purpose TEXT,
        closed_by TEXT CHECK (closed_by IN ('visitor', 'closing', 'admin')),
        request_id TEXT UNIQUE
    )""",
    "CREATE INDEX visits_signed_in_at ON visits(signed_in_at)",
    "CREATE INDEX visits_signed_out_at ON visits(signed_out_at)",
    "CREATE INDEX visits_open ON visits(visitor_id) WHERE signed_out_at IS NULL",
    """CREATE TABLE sensor_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        sensor TEXT NOT NULL,
        kind TEXT NOT NULL,
        value INTEGER,
        clock_synced INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX sensor_events_at ON sensor_events(at)",
    """CREATE TABLE buckets (
        hour_start INTEGER PRIMARY KEY,
        version INTEGER NOT NULL,
        counts TEXT NOT NULL,
        computed_at REAL NOT NULL,
        delivered_version INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE outbox (
        hour_start INTEGER PRIMARY KEY REFERENCES buckets(hour_start),
        version INTEGER NOT NULL,
        queued_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE sync_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
]


def m002_returning_visitors(db: Database) -> None:
    """PINs for returning visitors, guideline versions, and how each visit began."""
    for statement in (
        "ALTER TABLE visitors ADD COLUMN pin_salt TEXT",
        "ALTER TABLE visitors ADD COLUMN pin_hash TEXT",
        "ALTER TABLE visitors ADD COLUMN pin_failures INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE visitors ADD COLUMN pin_rest_until REAL",
        "ALTER TABLE visitors ADD COLUMN guidelines_version INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE visits ADD COLUMN event TEXT",
        "ALTER TABLE visits ADD COLUMN via TEXT NOT NULL DEFAULT 'kiosk'",
        "CREATE INDEX visits_via ON visits(via, signed_in_at)",
    ):
        db.execute(statement)


def m003_sensor_health(db: Database) -> None:
    """Why a sensor is faulty (sensor_events.detail, on "fault" rows), and an index for
    a sensor's latest event of a kind: the door's state, each sensor's health."""
    for statement in (
        "ALTER TABLE sensor_events ADD COLUMN detail TEXT",
        "CREATE INDEX sensor_events_sensor_kind ON sensor_events(sensor, kind, at)",
    ):
        db.execute(statement)


def m004_sync_agent(db: Database) -> None:
    """What the sync agent needs beyond hourly buckets:

    - link_log: when the central broker was reachable (sync writes it), for each hour's
      `connected_minutes`;
    - day_outbox: days rolled up from hours when the outbox grows past its limit (sync);
    - clock_synced on visits: whether a sign-in or sign-out time was taken before the
      clock was set (kiosk writes it and corrects those times once the offset is known).
    """
    for statement in (
        """CREATE TABLE link_log (
            id INTEGER PRIMARY KEY,
            start REAL NOT NULL,
            end REAL NOT NULL,
            CHECK (end >= start)
        )""",
        "CREATE INDEX link_log_end ON link_log(end)",
        """CREATE TABLE day_outbox (
            day_start INTEGER PRIMARY KEY,
            version INTEGER NOT NULL,
            counts TEXT NOT NULL,
            queued_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            delivered_version INTEGER NOT NULL DEFAULT 0
        )""",
        "ALTER TABLE visits ADD COLUMN clock_synced INTEGER NOT NULL DEFAULT 1",
    ):
        db.execute(statement)


def m005_visitor_handles(db: Database) -> None:
    """Visitors are reached on the screens by handles no one can count through.

    A visitor's page and a visit's sign-out button carry a random handle (96 bits, as
    hex) instead of a row id, so nobody can walk 1, 2, 3... to read who came or to sign
    people out unseen. Visitors whose personal data was erased get none: they cannot be
    reached at all. Both columns are written by the kiosk.
    """
    db.execute("ALTER TABLE visitors ADD COLUMN handle TEXT")
    db.execute("ALTER TABLE visits ADD COLUMN handle TEXT")
    for select, update in (
        (
            "SELECT id FROM visitors WHERE name_key != 'erased:' || id",
            "UPDATE visitors SET handle = ? WHERE id = ?",
        ),
        ("SELECT id FROM visits", "UPDATE visits SET handle = ? WHERE id = ?"),
    ):
        ids = db.execute(select).fetchall()
        db.conn.executemany(update, [(secrets.token_hex(12), row_id) for (row_id,) in ids])
    db.execute("CREATE UNIQUE INDEX visitors_handle ON visitors(handle)")
    db.execute("CREATE UNIQUE INDEX visits_handle ON visits(handle)")


def m006_link_intervals(db: Database) -> None:
    """Connected time recorded only for connections that really existed.

    link_log.clock_synced: whether a connection's times were taken before the clock was
    set (sync writes it, and moves those times once the offset is known, as the kiosk
    does for visits). Until then the row is not counted as connected time.
    """
    db.execute("ALTER TABLE link_log ADD COLUMN clock_synced INTEGER NOT NULL DEFAULT 1")


def m007_admins(db: Database) -> None:
    """The local admins: their logins, sessions, failed logins and the audit log.

    - admins: a name, a password and a PIN for the kiosk's screen, both as salted scrypt
      hashes (`spacekiosk admin`, kiosk/admins.py writes it);
    - sessions, login_tries: the admin pages' sessions and failed logins, the same
      tables the collector keeps (spacekiosk/sessions.py writes them, in the kiosk);
    - audit_log: what admins did, appended to and never changed (kiosk.admin.audit).
    """
    for statement in (
        """CREATE TABLE admins (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            pin_hash TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE sessions (
            id_sha256 TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX sessions_by_user ON sessions (user_name)",
        """CREATE TABLE login_tries (
            address TEXT PRIMARY KEY,
            since REAL NOT NULL,
            tries INTEGER NOT NULL
        )""",
        """CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            admin TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX audit_log_at ON audit_log (at)",
    ):
        db.execute(statement)


def m008_roll_call(db: Database) -> None:
    """Evacuation mode and its roll-call, in the store so that every server thread, and
    the kiosk after a restart, sees the same evacuation (the kiosk writes both tables).

    - roll_calls: one row per evacuation; the one with ended_at NULL is on (at most one,
      the partial unique index says so);
    - roll_call_people: the visits open when it started, and when an admin ticked each
      one off as safe. Names are not copied: they stay in `visitors`, where erasure finds
      them.
    """
    for statement in (
        """CREATE TABLE roll_calls (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            started_by TEXT NOT NULL,
            ended_at REAL,
            ended_by TEXT
        )""",
        "CREATE UNIQUE INDEX roll_calls_on ON roll_calls((ended_at IS NULL)) "
        "WHERE ended_at IS NULL",
        """CREATE TABLE roll_call_people (
            roll_call_id INTEGER NOT NULL REFERENCES roll_calls(id),
            visit_id INTEGER NOT NULL REFERENCES visits(id),
            safe_at REAL,
            safe_by TEXT,
            PRIMARY KEY (roll_call_id, visit_id)
        )""",
    ):
        db.execute(statement)


def m009_settings(db: Database) -> None:
    """The settings and events local admins change on the admin pages.

    settings: one row per setting an admin changed, keyed by its place in the config file
    ("space.capacity", "events"), its value as JSON shaped the way TOML reads it, and when
    and by whom; a setting without a row keeps the file's value. settings_version: one
    row, moved on with every change (a count, and a random stamp no other database
    shares), so a service learns with one read whether the config it has is current.
    Both are written by the kiosk's admin pages, through spacekiosk/settings.py.
    """
    db.execute(
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL CHECK (json_valid(value)),
            changed_at REAL NOT NULL,
            changed_by TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE settings_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL,
            stamp TEXT NOT NULL
        )"""
    )
    db.execute("INSERT INTO settings_version VALUES (1, 0, ?)", [secrets.token_hex(8)])


def m010_visitor_data(db: Database) -> None:
    """Nothing to add: the step stays so that the numbers after it keep their places.

    The visitor-data pages reach a visitor by the handles' unique index (m005) and their
    visits by m011's index on (visitor, sign-in time); housekeeping finds old sensor
    events by time (m001) and each sensor's latest event by m003's index, and erased
    visitors (no handle) by the handles' index. Erasure needs no column: an erased
    visitor is one with no handle, and PRAGMA secure_delete is a connection's setting,
    not the file's.
    """


def m011_admin_indexes(db: Database) -> None:
    """Indexes for the History page (spacekiosk/usage.py), so that it reads a span's
    visits from one index without visiting their rows, and each person's first visit in
    one seek, not in a pass over every visit there has been."""
    db.execute(
        "CREATE INDEX visits_in_span "
        "ON visits(signed_in_at, clock_synced, visitor_id, purpose, event)"
    )
    db.execute(
        "CREATE INDEX visits_visitor_first ON visits(visitor_id, clock_synced, signed_in_at)"
    )


def m012_notifications(db: Database) -> None:
    """Notifications to the space's chat (docs/notifications.md): where they go, what
    is waiting to go, and the state each watched condition was last seen in.

    - notify_targets: an Apprise URL per target (it may hold a token: never shown back
      whole), the events it wants, its language, and whether an admin allowed personal
      data in its messages (off by default).
    - notify_outbox: one row per message per target, kept until the target took it;
      `key` coalesces repeats of one condition, `attempts`/`due_at` drive the backoff,
      `answer` is the target's last reply.
    - notify_state: each watched condition's last state (door open, a sensor at fault,
      the backlog, the clock, the disk...), when it changed, the state last told and
      when, so a flapping sensor is told at most once per interval.
    """
    db.execute(
        "CREATE TABLE notify_targets ("
        " id INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " url TEXT NOT NULL,"
        " events TEXT NOT NULL DEFAULT '[]',"
        " language TEXT NOT NULL DEFAULT '',"
        " personal INTEGER NOT NULL DEFAULT 0,"
        " enabled INTEGER NOT NULL DEFAULT 1,"
        " created_at REAL NOT NULL,"
        " last_answer TEXT NOT NULL DEFAULT '',"
        " last_answer_at REAL)"
    )
    db.execute(
        "CREATE TABLE notify_outbox ("
        " id INTEGER PRIMARY KEY,"
        " target_id INTEGER NOT NULL REFERENCES notify_targets(id) ON DELETE CASCADE,"
        " kind TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " title TEXT NOT NULL,"
        " body TEXT NOT NULL,"
        " happened_at REAL NOT NULL,"
        " created_at REAL NOT NULL,"
        " due_at REAL NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " repeats INTEGER NOT NULL DEFAULT 0,"
        " sent_at REAL,"
        " answer TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE INDEX notify_outbox_due ON notify_outbox(sent_at, due_at)")
    db.execute(
        "CREATE TABLE notify_state ("
        " key TEXT PRIMARY KEY,"
        " state TEXT NOT NULL,"
        " changed_at REAL NOT NULL,"
        " told TEXT NOT NULL DEFAULT '',"
        " told_at REAL,"
        " flaps INTEGER NOT NULL DEFAULT 0)"
    )


SPACE_MIGRATIONS = [
    m001_initial,
    m002_returning_visitors,
    m003_sensor_health,
    m004_sync_agent,
    m005_visitor_handles,
    m006_link_intervals,
    m007_admins,
    m008_roll_call,
    m009_settings,
    m010_visitor_data,
    m011_admin_indexes,
    m012_notifications,
]
