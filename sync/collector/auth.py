"""Who may read the collector: a login for the page, a bearer token for the API and CSV.

Nothing is readable anonymously but /healthz (and the login page itself). A login is a
session cookie signed with the collector's secret (HttpOnly, SameSite=Lax, 12 hours);
every form carries the session's CSRF token; failed logins are limited per address.
The spaces' own routes (/api/v1/ingest, /api/v1/digest, POST /api/v1/status) check a
space's token instead, in web.py.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from datetime import timedelta
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

from spacekiosk.config import Central
from sync.collector import accounts

bp = Blueprint("auth", __name__)

SECRET_NAME = "collector-secret"  # noqa: S105 (a file name, not a secret)
# Routes anyone may call: the health check, the login page, the stylesheet, and the
# spaces' own routes (which check a space's token themselves).
PUBLIC = {"healthz", "ingest_api", "digest_api", "status_api", "auth.login", "static"}
SESSION_HOURS = 12


class Throttle:
    """At most `limit` failed logins per address in `window` seconds; then 429 until
    the oldest failure ages out. Kept in memory: a restart forgives, which is fine."""

    def __init__(self, limit: int = 10, window: float = 300):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures.setdefault(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, address: str, now: float | None = None) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        now = time.time() if now is None else now
        with self.lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return 0
            return max(1, int(times[0] + self.window - now + 1))

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            self._recent(address, now).append(now)
            if len(self.failures) > 10_000:  # many addresses: drop those with no failures
                for key in [k for k, v in self.failures.items() if not v]:
                    del self.failures[key]

    def forgive(self, address: str) -> None:
        with self.lock:
            self.failures.pop(address, None)


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


def init_app(app: Flask, central: Central) -> None:
    """Sessions, the login guard on every route, CSRF on every form."""
    app.secret_key = load_secret(central)
    app.config.update(
        SESSION_COOKIE_NAME="spacekiosk_collector",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind a TLS proxy (the public address is https), the cookie travels over TLS only.
        SESSION_COOKIE_SECURE=central.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.extensions["login_throttle"] = Throttle()
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(guard)
    app.register_blueprint(bp)


def csrf_token() -> str:
    """This session's token for forms (made on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _session_user() -> str | None:
    name = session.get("user")
    if not name:
        return None
    # A user removed since logging in is logged out at once.
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
    sent = request.form.get("csrf_token", "")
    if not (session.get("csrf") and hmac.compare_digest(sent, session["csrf"])):
        abort(400, "This form has expired or did not come from this page; reload and try again.")


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.dashboard")
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else url_for("pages.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    throttle: Throttle = current_app.extensions["login_throttle"]
    address = request.remote_addr or "?"
    name = request.form.get("name", "").strip()
    wait = throttle.retry_after(address)
    if wait:
        message = f"Too many failed logins from here. Try again in {wait // 60 + 1} minutes."
        page = render_template("login.html", error=message, name=name, status=429)
        return page, 429, {"Retry-After": str(wait)}
    if not accounts.check_user(g.db, name, request.form.get("password", "")):
        throttle.failed(address)
        page = render_template(
            "login.html", error="Wrong name or password.", name=name, next=request.form.get("next")
        )
        return page, 401
    throttle.forgive(address)
    session.clear()  # a fresh session: nothing from before the login carries over
    session.permanent = True
    session["user"] = name
    csrf_token()
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))
