"""Login sessions kept in a store, so that the server can end them, and the count of
failed logins that holds back guessing: the one implementation both web apps use (the
kiosk's admin pages on the Pi's SQLite file, the collector's pages on SQLite or
PostgreSQL). Runs nothing and knows no web framework; webauth.py puts it behind Flask.

Two tables, the same in every store:

- `sessions (id_sha256, user_name, data, created_at, expires_at)`: the cookie holds only
  a random id (256 bits); the store keeps its SHA-256, the user, the session's data (a
  form's CSRF token, flashed messages) as JSON, and when it ends. Logging out deletes
  the row, so a copied cookie stops working at once; `end_all` ends every session of a
  user (a new password, a removed login).
- `login_tries (address, since, tries)`: failed tries per address (or per screen) within
  a window, counted and read back in one statement.

Each store writes through its own transaction (`transaction(db)` is a context manager:
`spacekiosk.db.write` on the Pi, the collector's `store.transaction`); the statements
are plain SQL both SQLite and PostgreSQL run.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

Transaction = Callable[[object], AbstractContextManager]


def session_key(token: str) -> str:
    """What the store keeps of a session's cookie."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """Sessions of `hours` each (or of a sliding idle time, for a shared screen)."""

    def __init__(self, transaction: Transaction, hours: int = 12):
        self.transaction = transaction
        self.hours = hours

    def begin(
        self, db, user: str, data: dict, now: float | None = None, idle: int | None = None
    ) -> tuple[str, float]:
        """A new session for `user` holding `data`: (the cookie's value, when it ends).
        With `idle`, it ends that many seconds after its last use (see `touch`)."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        ends = now + (idle if idle else self.hours * 3600)
        with self.transaction(db):
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", [now])  # the ended ones
            db.execute(
                "INSERT INTO sessions (id_sha256, user_name, data, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [session_key(token), user, json.dumps(data), now, ends],
            )
        return token, ends

    def find(self, db, token: str, now: float | None = None) -> tuple[str, str, dict, float] | None:
        """(key, user, data, when it ends) of the session whose cookie is `token`, if it
        has not ended."""
        if not token or len(token) > 100:
            return None
        key = session_key(token)
        row = db.execute(
            "SELECT user_name, data, expires_at FROM sessions WHERE id_sha256 = ?", [key]
        ).fetchone()
        if row is None or row[2] <= (time.time() if now is None else now):
            return None
        return key, row[0], json.loads(row[1]), row[2]

    def keep(self, db, key: str, data: dict) -> None:
        """Store what a request changed in its session."""
        with self.transaction(db):
            db.execute("UPDATE sessions SET data = ? WHERE id_sha256 = ?", [json.dumps(data), key])

    def touch(self, db, key: str, ends: float) -> None:
        """Move an idle-timed session's end to `ends` (it was just used)."""
        with self.transaction(db):
            db.execute("UPDATE sessions SET expires_at = ? WHERE id_sha256 = ?", [ends, key])

    def end(self, db, key: str) -> None:
        with self.transaction(db):
            db.execute("DELETE FROM sessions WHERE id_sha256 = ?", [key])

    def end_all(self, db, user: str) -> int:
        """End every session of `user` (inside the caller's transaction, if any)."""
        with self.transaction(db):
            return db.execute("DELETE FROM sessions WHERE user_name = ?", [user]).rowcount

    def count(self, db, user: str) -> int:
        return db.execute("SELECT count(*) FROM sessions WHERE user_name = ?", [user]).fetchone()[0]


# One statement counts the try and says how many there were: however many requests
# arrive at once, no more than `tries` of them get a password checked.
_TRY = """INSERT INTO login_tries (address, since, tries) VALUES (?, ?, 1)
    ON CONFLICT (address) DO UPDATE SET
        tries = CASE WHEN login_tries.since <= ? THEN 1 ELSE login_tries.tries + 1 END,
        since = CASE WHEN login_tries.since <= ? THEN excluded.since ELSE login_tries.since END
    RETURNING tries, since"""

TRIES_WINDOW = 300  # seconds; one window for every throttle on a table, so each sweeps alike


class Throttle:
    """At most `tries` failed tries per address within TRIES_WINDOW seconds; then none
    is checked until the window ends."""

    def __init__(self, transaction: Transaction, tries: int = 10, window: int = TRIES_WINDOW):
        self.transaction = transaction
        self.tries = tries
        self.window = window

    def take(self, db, address: str, now: float | None = None) -> int:
        """Count a try from `address` before its secret is checked: 0 when it may be
        checked, else the seconds until the address may try again. A right secret
        forgives the tries (`forgive`); a wrong one stays counted."""
        now = time.time() if now is None else now
        old = now - self.window
        with self.transaction(db):
            tries, since = db.execute(_TRY, [address[:64], now, old, old]).fetchone()
            if tries == 1:  # a new window: forget the addresses whose window has passed
                db.execute("DELETE FROM login_tries WHERE since <= ?", [old])
        if tries <= self.tries:
            return 0
        return max(1, int(since + self.window - now + 1))

    def forgive(self, db, address: str) -> None:
        with self.transaction(db):
            db.execute("DELETE FROM login_tries WHERE address = ?", [address[:64]])
