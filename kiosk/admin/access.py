"""Getting in and out of the admin pages, and the audit log.

Two ways in: a name and password from a laptop or phone on an admin network
(/admin/login), and on the kiosk's own screen a long press on the space's name on
Welcome, then one's name and PIN (/admin/screen; loopback only). A screen session ends
after `kiosk.idle_seconds` left alone, on the server, and the screen goes back to
Welcome (/admin/leave). Failed passwords are counted per address and PINs per screen,
before the secret is checked (spacekiosk/sessions.py's Throttle).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user

from kiosk import admins
from kiosk.admin import admin_required, audit, bp, from_screen
from spacekiosk import webauth

AUDIT_PAGE = 200
# The admin pages, in the order the navigation shows them; a page shows once its
# module has registered the endpoint.
PAGES = [
    ("admin.now", _l("Now")),
    ("admin.history", _l("History")),
    ("admin.health", _l("Health")),
    ("admin.events", _l("Events")),
    ("admin.settings", _l("Settings")),
    ("admin.visitors", _l("Visitors")),
    ("admin.audit", _l("Audit log")),
]


@bp.context_processor
def _admin_context() -> dict:
    pages = [(e, label) for e, label in PAGES if e in current_app.view_functions]
    return {"admin_pages": pages, "on_screen": on_screen()}


def on_screen() -> bool:
    """Whether this page is on the kiosk's own screen (its session, or the PIN pages)."""
    if request.endpoint in ("admin.screen", "admin.screen_pin"):
        return True
    return current_user.is_authenticated and session.get("via") == "screen"


def _safe_next(target: str | None) -> str:
    """Only an admin page of this kiosk: never a redirect elsewhere."""
    home = url_for("admin.now")
    if not target or not target.startswith("/admin") or "\\" in target:
        return home
    if not target.isprintable():
        return home
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else home


def _login_page(error: str | None = None, status: int = 200, name: str = "", wait: int = 0):
    page = render_template(
        "admin/login.html",
        error=error,
        name=name,
        next=request.values.get("next", "")[:500],
    )
    headers = {"Retry-After": str(wait)} if wait else {}
    return page, status, headers


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method != "POST":
        return _login_page()
    address = request.remote_addr or "?"
    name = request.form.get("name", "").strip()[:64]
    wait = admins.PASSWORD_TRIES.take(g.db, address)  # counted before the password is checked
    if wait:
        message = ngettext(
            "Too many failed logins from here. Try again in %(num)d minute.",
            "Too many failed logins from here. Try again in %(num)d minutes.",
            wait // 60 + 1,
        )
        return _login_page(message, 429, name, wait)
    if not admins.check_password(g.db, name, request.form.get("password", "")):
        return _login_page(_("Wrong name or password."), 401, name)
    admins.PASSWORD_TRIES.forgive(g.db, address)
    webauth.log_in(name, via="password")
    audit(g.db, "logged in", "with a password", admin=name)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
@admin_required
def logout():
    screen = on_screen()
    webauth.log_out()
    return redirect(url_for("visitor.reset" if screen else "admin.login"))


@bp.get("/leave")
def leave():
    """Where the kiosk's screen goes when an admin leaves it alone: out, and back to
    Welcome. A GET, so that the idle timer can go there; the cookie is SameSite=Strict
    and kept to /admin, so no other site can send anyone here logged in."""
    if current_user.is_authenticated:
        webauth.log_out()
    return redirect(url_for("visitor.reset"))


@bp.get("/screen")
def screen():
    """On the kiosk's screen, after the long press: which admin is here."""
    if not from_screen():
        abort(404)
    return render_template("admin/screen.html", names=admins.names(g.db))


@bp.route("/screen/<name>", methods=["GET", "POST"])
def screen_pin(name: str):
    """The chosen admin's PIN, on the kiosk's screen only."""
    if not from_screen() or not admins.exists(g.db, name):
        abort(404)
    if request.method != "POST":
        return render_template("admin/pin.html", name=name)
    screen_key = f"pin {request.remote_addr}"
    wait = admins.PIN_TRIES.take(g.db, screen_key)
    if wait:
        message = ngettext(
            "Too many wrong PINs. Try again in %(num)d minute.",
            "Too many wrong PINs. Try again in %(num)d minutes.",
            wait // 60 + 1,
        )
        return render_template("admin/pin.html", name=name, error=message), 429
    if not admins.check_pin_of(g.db, name, request.form.get("pin", "")):
        return render_template("admin/pin.html", name=name, error=_("Wrong PIN.")), 401
    admins.PIN_TRIES.forgive(g.db, screen_key)
    idle = current_app.config["SPACE"].kiosk.idle_seconds
    webauth.log_in(name, idle=idle, via="screen")
    audit(g.db, "logged in", "on the kiosk's screen", admin=name)
    return redirect(url_for("admin.now"))


@bp.get("/audit", endpoint="audit")
@admin_required
def audit_log():
    """What admins did, newest first; read only (no route changes or deletes it)."""
    before = request.args.get("before", type=int)
    rows = g.db.execute(
        "SELECT id, at, admin, action, detail FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
        [before if before and before > 0 else 1 << 62, AUDIT_PAGE + 1],
    ).fetchall()
    older = rows[AUDIT_PAGE - 1][0] if len(rows) > AUDIT_PAGE else None
    entries = [
        {"at": datetime.fromtimestamp(at, UTC), "admin": who, "action": what, "detail": detail}
        for _id, at, who, what, detail in rows[:AUDIT_PAGE]
    ]
    return render_template("admin/audit.html", entries=entries, older=older)


def placeholder():
    """The Now page's stand-in, until kiosk/admin/now.py brings the page."""
    return render_template("admin/placeholder.html")
