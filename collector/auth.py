"""Who may read the collector: a login for the page, a bearer token for the API and CSV.

Nothing is readable anonymously but /healthz (and the login page itself). A login is a
session kept in the store, on the login both web apps share (spacekiosk/webauth.py:
Flask-Login, Flask-WTF's CSRF protection, the session's row in the store): the cookie
holds a random id, HttpOnly, SameSite=Lax, 12 hours, ended by logging out; every form
carries a CSRF token checked on each POST (the session's, or before logging in one bound
to a signed cookie of the login form's own); failed logins are counted per address in
the store before a password is checked. Sessions and failed logins are written through
sessions.py; the key that signs cookies and tokens is written here, once, on the first
start (`collector-secret`). The spaces' own routes (/api/v1/ingest, /api/v1/digest,
POST /api/v1/status) check a space's token instead, in spaces.py.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for
from flask_login import current_user

from collector import accounts, sessions, spaces
from spacekiosk import webauth
from spacekiosk.config import Central

bp = Blueprint("auth", __name__)

SECRET_NAME = "collector-secret"  # noqa: S105 (a file name, not a secret)
FORM_COOKIE = "spacekiosk_login_form"
# Routes anyone may call: the health check, the login page, the stylesheet, and the
# spaces' own routes (which check a space's token themselves).
PUBLIC = {
    "health.healthz",
    "health.favicon",
    "spaces.ingest",
    "spaces.digest",
    "spaces.status",
    "auth.login",
    "static",
}


def load_secret(central: Central) -> bytes:
    """The key that signs login cookies: `central.secret_file`, else `collector-secret`
    beside the SQLite file, created (mode 0600) on the first start."""
    if central.secret_file:
        try:
            text = Path(central.secret_file).read_text().strip()
        except OSError as exc:
            raise RuntimeError(
                f"central.secret_file {str(central.secret_file)!r} cannot be read "
                f"({exc.strerror}); put 64 random characters in it, readable by the "
                "collector alone (e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`)"
            ) from None
        if len(text) < 32:
            raise RuntimeError(f"central.secret_file {str(central.secret_file)!r} is too short")
        return text.encode()
    path = Path(central.database).parent / SECRET_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def init_app(app: Flask, central: Central, connection: Callable[[], object]) -> None:
    """Sessions in the store, the login guard on every route, CSRF on every form."""
    app.secret_key = load_secret(central)
    app.config.update(
        SESSION_COOKIE_NAME="spacekiosk_collector",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind a TLS proxy (the public address is https), the cookie travels over TLS only.
        SESSION_COOKIE_SECURE=central.public_url.startswith("https://"),
    )
    app.before_request(guard)  # before the CSRF check: a stranger is sent to log in
    csrf = webauth.init_app(
        app,
        sessions=sessions.SESSIONS,
        connection=connection,
        known=accounts.user_exists,
        login_view="auth.login",
        form_cookie=FORM_COOKIE,
    )
    csrf.exempt(spaces.bp)  # a space's token, not a browser's cookie, admits it
    app.register_blueprint(bp)


def _token_user() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    name = accounts.api_token_user(g.db, token.strip())
    return f"token:{name}" if name else None


def wants_json() -> bool:
    """API and CSV callers get JSON errors; people get pages."""
    return request.path.startswith("/api/") or request.path.endswith(".csv")


def guard():
    """Let a request through only with a login (or, for reading, an API token)."""
    if request.endpoint in PUBLIC:
        return None
    # A user removed since logging in is nobody at once (their sessions are gone too).
    g.user = current_user.name if current_user.is_authenticated else None
    if g.user is None and request.method in ("GET", "HEAD"):
        g.user = _token_user()
    if g.user is None:
        if wants_json():
            abort(401, "log in, or send an API token as 'Authorization: Bearer <token>'")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else. A browser
    reads a backslash as a slash, and a control character is never in a real path."""
    home = url_for("pages.dashboard")
    if not target or not target.startswith("/") or target.startswith("//"):
        return home
    if "\\" in target or not target.isprintable():
        return home
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else home


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method in ("GET", "HEAD"):  # HEAD is a GET without the body, not a try
        return render_template("login.html", next=request.args.get("next", "")[:500])
    address = request.remote_addr or "?"
    name = request.form.get("name", "").strip()[:64]
    wait = sessions.take_try(g.db, address)  # counted before the password is checked
    if wait:
        message = f"Too many failed logins from here. Try again in {wait // 60 + 1} minutes."
        page = render_template("login.html", error=message, name=name, status=429)
        return page, 429, {"Retry-After": str(wait)}
    if not accounts.check_user(g.db, name, request.form.get("password", "")):
        page = render_template(
            "login.html",
            error="Wrong name or password.",
            name=name,
            next=request.form.get("next", "")[:500],
        )
        return page, 401
    sessions.forgive(g.db, address)
    webauth.log_in(name)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    webauth.log_out()
    return redirect(url_for("auth.login"))
