"""Logins for both web apps, on the ecosystem's pieces: Flask-Login for who is logged
in, Flask-WTF's CSRFProtect for the token every form carries, and Flask's session kept
in the app's own store (sessions.py), so that the server can end it.

What the browser holds:

- logged in: one cookie with a random session id (the store keeps its hash and the
  session's data, the CSRF token among it);
- not logged in, on a login form: a signed cookie of the form's own holding nothing
  but its CSRF token, so that a page elsewhere can neither read nor set it, and an
  anonymous client writes nothing to the store but its failed logins;
- outside `scope` (the kiosk's visitor pages): no session and no cookie at all; a form
  there is given a token signed with the app's key (see `StoreSessions.outside`).

Users are loaded from the session's row, never from what its data says: a session the
server ended, or a user removed since, is nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

import flask_login
from flask import Flask, Request, Response, current_app, session
from flask.sessions import SessionInterface, SessionMixin
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.datastructures import CallbackDict

from spacekiosk.db import StoreError
from spacekiosk.sessions import Sessions, session_key

CSRF_FIELD = "csrf_token"
REFUSED = "This form has expired or did not come from this page; reload and try again."


class Account(flask_login.UserMixin):
    """A logged-in user: `current_user.name`."""

    def __init__(self, name: str):
        self.name = name

    def get_id(self) -> str:
        return self.name


class StoredSession(CallbackDict, SessionMixin):
    """`flask.session`: a dict whose changes are written back where it is kept. `key`
    is None for someone not logged in."""

    def __init__(self, data=None, key: str | None = None, user: str | None = None):
        def changed(_self):
            self.modified = True

        super().__init__(data or {}, changed)
        self.key, self.user = key, user
        self.token: str | None = None  # a new session's cookie, to send once
        self.expires: float | None = None
        self.ended = False
        self.kept = True  # False outside the scope: never saved anywhere
        self.modified = False


class StoreSessions(SessionInterface):
    """Sessions in the store; `connection()` gives this thread's connection to it.
    `form_cookie` names the login form's cookie; with `scope` (a path), requests
    elsewhere get no session at all."""

    def __init__(
        self,
        sessions: Sessions,
        connection: Callable[[], object],
        form_cookie: str,
        scope: str | None = None,
    ):
        self.sessions = sessions
        self.connection = connection
        self.form_cookie = form_cookie
        self.scope = scope

    def in_scope(self, request: Request) -> bool:
        return self.scope is None or (request.path + "/").startswith(self.scope + "/")

    def open_session(self, app: Flask, request: Request) -> StoredSession:
        if not self.in_scope(request):
            return self.outside(app)
        found = self._stored(app, request)
        if found is not None:
            return found
        # Not logged in: the login form's cookie, if it is one this app signed.
        try:
            data = self._form_serializer(app).loads(request.cookies.get(self.form_cookie, ""))
        except BadSignature:
            data = {}
        token = data.get(CSRF_FIELD) if isinstance(data, dict) else None
        return StoredSession({CSRF_FIELD: token} if isinstance(token, str) else {})

    def _stored(self, app: Flask, request: Request) -> StoredSession | None:
        token = request.cookies.get(self.get_cookie_name(app), "")
        if not token:
            return None
        try:
            db = self.connection()
            found = self.sessions.find(db, token)
            if found is None:
                return None
            key, user, data, expires = found
            if data.get("_idle"):  # a shared screen's session: it ends when left alone
                expires = time.time() + data["_idle"]
                self.sessions.touch(db, key, expires)
        except (StoreError, sqlite3.Error):  # the store cannot answer: the page says 503
            return None
        opened = StoredSession(data, key, user)
        opened.expires = expires
        return opened

    def outside(self, app: Flask) -> StoredSession:
        """A session that is never saved, for pages outside the scope. Its CSRF token is
        the app's own (an HMAC of its key), so a form there carries a token signed and
        time-stamped by this app without any cookie."""
        raw = hmac.new(_key(app), b"forms outside the login's scope", hashlib.sha256)
        outside = StoredSession({CSRF_FIELD: raw.hexdigest()})
        outside.kept = False
        return outside

    def save_session(self, app: Flask, session: StoredSession, response: Response) -> None:
        if not session.kept:
            return
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
                httponly=True,
                secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app),
                domain=domain,
                path=path,
            )
            response.vary.add("Cookie")
            if session.modified:
                self.sessions.keep(self.connection(), session.key, dict(session))
        elif session.key is not None:
            if session.modified:
                self.sessions.keep(self.connection(), session.key, dict(session))
        elif session.modified and session.get(CSRF_FIELD):
            # A login form's first token: kept in its own cookie, never in the store.
            value = self._form_serializer(app).dumps({CSRF_FIELD: session[CSRF_FIELD]})
            response.set_cookie(
                self.form_cookie,
                value,
                httponly=True,
                secure=self.get_cookie_secure(app),
                samesite="Strict",
                domain=domain,
                path=path,
            )

    @staticmethod
    def _form_serializer(app: Flask) -> URLSafeSerializer:
        return URLSafeSerializer(_key(app), salt="spacekiosk-login-form")


def _key(app: Flask) -> bytes:
    key = app.secret_key
    return key if isinstance(key, bytes) else str(key).encode()


def init_app(
    app: Flask,
    *,
    sessions: Sessions,
    connection: Callable[[], object],
    known: Callable[[object, str], bool],
    login_view: str,
    form_cookie: str,
    scope: str | None = None,
) -> CSRFProtect:
    """Sessions in the store, Flask-Login on top, CSRF on every form. `known(db, name)`
    says whether a user still exists; a refused form gets the app's 400 page.
    `app.secret_key` and the SESSION_COOKIE_* settings are the caller's. Call it after
    the before_request functions that must run before the CSRF check (a login guard)."""
    app.session_interface = StoreSessions(sessions, connection, form_cookie, scope)
    app.extensions["sessions"] = sessions
    app.config.update(
        # A token is good as long as its session (or its form's cookie): no clock of its own.
        WTF_CSRF_TIME_LIMIT=None,
        # The pages send no Referer (Referrer-Policy: no-referrer); the token and the
        # SameSite cookie are the check.
        WTF_CSRF_SSL_STRICT=False,
        WTF_CSRF_FIELD_NAME=CSRF_FIELD,
        WTF_CSRF_HEADERS=[],  # forms only: no script sends a token in a header
    )
    manager = flask_login.LoginManager(app)
    manager.login_view = login_view
    manager.login_message = None  # nothing is flashed into a session nobody has yet
    manager.session_protection = None  # the session's id is random and server-side already

    def load(name: str | None = None) -> Account | None:
        user = getattr(session, "user", None)
        if not user or (name is not None and name != user):
            return None
        return Account(user) if known(connection(), user) else None

    manager.user_loader(load)
    manager.request_loader(lambda _request: load())
    return _CSRFProtect(app)


class _CSRFProtect(CSRFProtect):
    """Flask-WTF's check, refusing with words a person can act on; the app's own 400
    page shows them (Flask-WTF has logged the technical reason)."""

    def _error_response(self, reason):
        raise CSRFError(REFUSED)


def log_in(name: str, idle: int | None = None, **data) -> None:
    """Log `name` in with a new session in place of this request's: a new id, so nothing
    from before the login carries over. With `idle`, it ends after that many seconds
    left alone (a shared screen)."""
    stored = _current()
    stored.clear()
    flask_login.login_user(Account(name))
    stored.update(data)
    if idle:
        stored["_idle"] = idle
    sessions: Sessions = current_app.extensions["sessions"]
    db = current_app.session_interface.connection()
    stored.token, stored.expires = sessions.begin(db, name, dict(stored), idle=idle)
    stored.key, stored.user = session_key(stored.token), name
    stored.modified = False


def log_out() -> None:
    """End this request's session on the server, and its cookie in the browser."""
    stored = _current()
    flask_login.logout_user()
    if stored.key is not None:
        current_app.extensions["sessions"].end(
            current_app.session_interface.connection(), stored.key
        )
    stored.clear()
    stored.key = stored.user = None
    stored.ended = True
    stored.modified = False


def _current() -> StoredSession:
    return session._get_current_object()  # type: ignore[attr-defined]
