"""The local admins' pages, under /admin: blueprint `admin`.

Each page lives in a module of this package that adds its routes to `bp` (access.py: the
login, the kiosk screen's PIN, the audit log; now.py, history.py, ... the pages); every
module here is loaded with the package. Who may call:

- only the kiosk's own screen (loopback) and the networks in ADMIN_NETWORKS (the
  space's private ones) reach /admin at all; anyone else gets 404, as if it were not
  there;
- every route but the login's needs a logged-in admin (`admin_required`, and the guard
  here refuses anyone else before a view or the CSRF check runs);
- every POST carries its form's CSRF token (Flask-WTF, on for the whole kiosk app).

`audit(db, action, detail)` appends to the audit log; nothing changes or deletes it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import ipaddress
import pkgutil
import time

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    has_request_context,
    redirect,
    request,
    url_for,
)
from flask_login import current_user

from kiosk import admins
from spacekiosk import webauth
from spacekiosk.config import PRIVATE_NETWORKS
from spacekiosk.db import write

bp = Blueprint("admin", __name__, url_prefix="/admin")

COOKIE = "spacekiosk_admin"
FORM_COOKIE = "spacekiosk_admin_form"
# The kiosk's own screen reaches the admin pages always; other addresses only from the
# networks in `kiosk.admin_networks` (the private ranges unless the config says less).
# The visitor pages answer whoever reaches the kiosk; the admin pages never answer more.
LOOPBACK = ("127.0.0.0/8", "::1/128")
# What answers a caller not logged in: the ways to log in, and the way out.
PUBLIC = {"admin.login", "admin.screen", "admin.screen_pin", "admin.leave"}


def init_app(app: Flask) -> None:
    """Sessions for /admin only, Flask-Login, CSRF on the whole app, and the pages."""
    # Its own key, derived from the install's secret: cookies and forms are signed with
    # it, never with the key behind the visitors' PINs.
    key = b"spacekiosk admin sessions\0" + app.config["PIN_KEY"].encode()
    app.secret_key = hashlib.sha256(key).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    app.extensions["admin_networks"] = [
        ipaddress.ip_network(n, strict=False)
        for n in (*LOOPBACK, *app.config.get("ADMIN_NETWORKS", PRIVATE_NETWORKS))
    ]
    app.before_request(guard)  # before the CSRF check: strangers get 404, not 400
    csrf = webauth.init_app(
        app,
        sessions=admins.SESSIONS,
        connection=app.extensions["store"],
        known=admins.exists,
        login_view="admin.login",
        form_cookie=FORM_COOKIE,
        scope="/admin",
    )
    app.extensions["csrf"] = csrf
    app.register_blueprint(bp)


def from_admin_network() -> bool:
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    return any(address in network for network in current_app.extensions["admin_networks"])


def from_screen() -> bool:
    """Whether the request comes from the kiosk's own browser."""
    return request.remote_addr in ("127.0.0.1", "::1")


def guard():
    """Before anything else on /admin: strangers get 404, anyone not logged in the login."""
    if request.blueprint != bp.name:
        return None
    if not from_admin_network():
        abort(404)
    # OPTIONS says which methods a route takes, and nothing else (Flask answers it).
    if request.endpoint in PUBLIC or request.method == "OPTIONS":
        return None
    return None if current_user.is_authenticated else to_login()


def to_login():
    return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))


def admin_required(view):
    """Only for a logged-in local admin (from the kiosk's screen or an admin network)."""

    @functools.wraps(view)
    def checked(*args, **kwargs):
        if not from_admin_network():
            abort(404)
        if not current_user.is_authenticated:
            return to_login()
        return view(*args, **kwargs)

    return checked


def audit(db, action: str, detail: str = "", admin: str | None = None) -> None:
    """Append to the audit log: who (the logged-in admin, unless `admin` says), what,
    when. Inside a write it is part of it; a job on the kiosk's writer thread has no
    request, so it passes `admin=current_user.name` taken before."""
    if admin is None:
        logged_in = has_request_context() and current_user.is_authenticated
        admin = current_user.name if logged_in else "(command line)"
    with write(db):
        db.execute(
            "INSERT INTO audit_log (at, admin, action, detail) VALUES (?, ?, ?, ?)",
            [time.time(), admin, action[:200], detail[:2000]],
        )


def _load_pages() -> None:
    """Every module of this package adds its pages to `bp`; the Now page has a stand-in
    until now.py is there."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__))
    for name in found:
        importlib.import_module(f"{__name__}.{name}")
    if "now" not in found:
        from kiosk.admin import access

        bp.add_url_rule("/", "now", admin_required(access.placeholder))


_load_pages()
