"""Page sessions kept in the central store, so that the server can end them, and the
failed-login count that holds back password guessing. Sole writer of `sessions` and
`login_tries`.

The cookie holds only a random session id (256 bits); the store keeps its SHA-256, the
user, when the session ends, and the session's data (its CSRF token, flashed messages).
Logging out deletes the session, so a copied cookie stops working at once; a new password
or `spacekiosk user remove` deletes all of that user's; each ends SESSION_HOURS after it
began. Nobody who is not logged in has a row: an anonymous client writes nothing here
but its failed logins.

It is a Flask SessionInterface, so `flask.session` (flash, a form's CSRF token, and a
login library on top) works unchanged. Nothing in it knows the collector's pages.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from collector import store
from spacekiosk.db import StoreError

SESSION_HOURS = 12
TRIES = 10  # failed logins per address ...
TRIES_WINDOW = 300  # ... within this many seconds; then none is checked until it ends


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


# --- sessions in the store ---


def begin(db, user: str, data: dict, now: float | None = None) -> tuple[str, float]:
    """A new session for `user` holding `data`: (the cookie's value, when it ends)."""
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    ends = now + SESSION_HOURS * 3600
    with store.transaction(db):
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", [now])  # the ended ones
        db.execute(
            "INSERT INTO sessions (id_sha256, user_name, data, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [_key(token), user, json.dumps(data), now, ends],
        )
    return token, ends


def find(db, token: str, now: float | None = None) -> tuple[str, str, dict, float] | None:
    """(key, user, data, when it ends) of the session whose cookie is `token`, if it
    has not ended."""
    if not token or len(token) > 100:
        return None
    key = _key(token)
    row = db.execute(
        "SELECT user_name, data, expires_at FROM sessions WHERE id_sha256 = ?", [key]
    ).fetchone()
    if row is None or row[2] <= (time.time() if now is None else now):
        return None
    return key, row[0], json.loads(row[1]), row[2]


def keep(db, key: str, data: dict) -> None:
    """Store what the request changed in its session."""
    with store.transaction(db):
        db.execute("UPDATE sessions SET data = ? WHERE id_sha256 = ?", [json.dumps(data), key])


def end(db, key: str) -> None:
    with store.transaction(db):
        db.execute("DELETE FROM sessions WHERE id_sha256 = ?", [key])


def end_all(db, user: str) -> int:
    """End every session of `user` (inside the caller's transaction, if any)."""
    with store.transaction(db):
        return db.execute("DELETE FROM sessions WHERE user_name = ?", [user]).rowcount


def count(db, user: str) -> int:
    return db.execute("SELECT count(*) FROM sessions WHERE user_name = ?", [user]).fetchone()[0]


# --- failed logins ---

# One statement counts the try and says how many there were: however many requests
# arrive at once, no more than TRIES of them get a password checked.
_TRY = """INSERT INTO login_tries (address, since, tries) VALUES (?, ?, 1)
    ON CONFLICT (address) DO UPDATE SET
        tries = CASE WHEN login_tries.since <= ? THEN 1 ELSE login_tries.tries + 1 END,
        since = CASE WHEN login_tries.since <= ? THEN excluded.since ELSE login_tries.since END
    RETURNING tries, since"""


def take_try(db, address: str, now: float | None = None) -> int:
    """Count a login try from `address` before its password is checked: 0 when it may
    be checked, else the seconds until the address may try again. A right password
    forgives the tries (`forgive`); a wrong one stays counted."""
    now = time.time() if now is None else now
    old = now - TRIES_WINDOW
    with store.transaction(db):
        tries, since = db.execute(_TRY, [address[:64], now, old, old]).fetchone()
        if tries == 1:  # a new window: forget the addresses whose window has passed
            db.execute("DELETE FROM login_tries WHERE since <= ?", [old])
    if tries <= TRIES:
        return 0
    return max(1, int(since + TRIES_WINDOW - now + 1))


def forgive(db, address: str) -> None:
    with store.transaction(db):
        db.execute("DELETE FROM login_tries WHERE address = ?", [address[:64]])


# --- as Flask's session ---


class StoredSession(CallbackDict, SessionMixin):
    """`flask.session`: a dict whose changes are written back to the store. `key` is
    None for someone not logged in (nothing of theirs is kept)."""

    def __init__(self, data=None, key: str | None = None, user: str | None = None):
        def changed(_self):
            self.modified = True

        super().__init__(data or {}, changed)
        self.key, self.user = key, user
        self.token: str | None = None  # a new session's cookie, to send once
        self.expires: float | None = None
        self.ended = False
        self.modified = False


class StoreSessions(SessionInterface):
    """Sessions in the central store; `connection()` gives this thread's connection."""

    def __init__(self, connection: Callable[[], object]):
        self.connection = connection

    def open_session(self, app: Flask, request: Request) -> StoredSession:
        token = request.cookies.get(self.get_cookie_name(app), "")
        if not token:
            return StoredSession()
        try:
            found = find(self.connection(), token)
        except (StoreError, sqlite3.Error):  # the store cannot answer: the page says 503
            return StoredSession()
        if found is None:
            return StoredSession()
        key, user, data, expires = found
        opened = StoredSession(data, key, user)
        opened.expires = expires
        return opened

    def save_session(self, app: Flask, session: StoredSession, response: Response) -> None:
        name, domain, path = (
            self.get_cookie_name(app),
            self.get_cookie_domain(app),
            self.get_cookie_path(app),
        )
        if session.ended:
            response.delete_cookie(name, domain=domain, path=path)
            return
        if session.token is not None:  # a login: the one time the cookie is sent
            response.set_cookie(
                name,
                session.token,
                expires=datetime.fromtimestamp(session.expires, UTC),
                httponly=self.get_cookie_httponly(app),
                secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app),
                domain=domain,
                path=path,
            )
            response.vary.add("Cookie")
        elif session.key is not None and session.modified:
            keep(self.connection(), session.key, dict(session))


def log_in(db, session: StoredSession, user: str, data: dict) -> None:
    """Start a new session for `user` in place of this request's: a new id, so nothing
    from before the login carries over."""
    session.clear()
    session.update(data)
    session.token, session.expires = begin(db, user, data)
    session.key, session.user = _key(session.token), user
    session.modified = False


def log_out(db, session: StoredSession) -> None:
    if session.key is not None:
        end(db, session.key)
    session.clear()
    session.key = session.user = None
    session.ended = True
