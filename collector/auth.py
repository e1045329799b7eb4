"""Who may read the collector: a login for the page, a bearer token for the API and CSV.

Nothing is readable anonymously but /healthz (and the login page itself). A login is a
session kept in the store (sessions.py: the cookie holds a random id, HttpOnly,
SameSite=Lax, 12 hours, ended by logging out); every form carries a CSRF token checked on
each POST (the session's, or before logging in one bound to a cookie of the login form's
own); failed logins are counted per address in the store before a password is checked.
Sessions and failed logins are written through sessions.py; the key that signs cookies
is written here, once, on the first start (`collector-secret`).
The spaces' own routes (/api/v1/ingest, /api/v1/digest, POST /api/v1/status) check a
space's token instead, in spaces.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from collector import accounts, sessions
from spacekiosk.config import Central

bp = Blueprint("auth", __name__)

SECRET_NAME = "collector-secret"  # noqa: S105 (a file name, not a secret)
FORM_COOKIE = "spacekiosk_login_form"
# Routes anyone may call: the health check, the login page, the stylesheet, and the
# spaces' own routes (which check a space's token themselves).
PUBLIC = {
    "health.healthz",
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
    app.session_interface = sessions.StoreSessions(connection)
    app.config.update(
        SESSION_COOKIE_NAME="spacekiosk_collector",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind a TLS proxy (the public address is https), the cookie travels over TLS only.
        SESSION_COOKIE_SECURE=central.public_url.startswith("https://"),
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(guard)
    app.after_request(_form_cookie)
    app.register_blueprint(bp)


def csrf_token() -> str:
    """The token a form carries: the session's, or the login form's before a login."""
    if session.get("csrf"):
        return session["csrf"]
    return _form_token(_form_id())


def _form_id() -> str:
    """The random id in the login form's cookie (made, and sent back, when missing)."""
    if "form_id" not in g:
        sent = request.cookies.get(FORM_COOKIE, "")
        g.form_id = sent if 20 <= len(sent) <= 64 and sent.isascii() else None
        if g.form_id is None:
            g.form_id = g.new_form_id = secrets.token_urlsafe(32)
    return g.form_id


def _form_token(form_id: str) -> str:
    """The login form's CSRF token: the form cookie's id, signed. A page elsewhere can
    neither read nor set that cookie, so it cannot post a login the browser accepts."""
    digest = hmac.new(current_app.secret_key, b"login-form:" + form_id.encode(), hashlib.sha256)
    return digest.hexdigest()


def _form_cookie(response):
    if g.get("new_form_id"):
        response.set_cookie(
            FORM_COOKIE,
            g.new_form_id,
            httponly=True,
            samesite="Strict",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
        )
    return response


def _session_user() -> str | None:
    name = getattr(session, "user", None)
    if not name:
        return None
    # A user removed since logging in is logged out at once (their sessions are gone too).
    found = g.db.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone()
    return name if found else None


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
        if request.method == "POST" and request.endpoint == "auth.login":
            check_csrf()
        return None
    g.user = _session_user()
    if g.user is None and request.method in ("GET", "HEAD"):
        g.user = _token_user()
    if g.user is None:
        if wants_json():
            abort(401, "log in, or send an API token as 'Authorization: Bearer <token>'")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        check_csrf()
    return None


def check_csrf() -> None:
    """Every POST carries its form's token: the session's, or the login form's."""
    sent = request.form.get("csrf_token", "")
    if session.get("csrf"):
        expected = session["csrf"]
    else:
        cookie = request.cookies.get(FORM_COOKIE, "")
        expected = _form_token(cookie) if 20 <= len(cookie) <= 64 and cookie.isascii() else ""
    if not (expected and sent.isascii() and hmac.compare_digest(sent, expected)):
        abort(400, "This form has expired or did not come from this page; reload and try again.")


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
    sessions.log_in(g.db, session, name, {"csrf": secrets.token_urlsafe(32)})
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    sessions.log_out(g.db, session)
    return redirect(url_for("auth.login"))
