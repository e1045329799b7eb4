"""The visitor screens: welcome, sign in (new or returning), sign out, confirmation.

Every page is reachable by touch alone. Nothing a visitor typed is kept in the URL or a
cookie; only the language and "this is a phone" are remembered, until the next reset.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_time, get_locale
from flask_babel import gettext as _
from markupsafe import escape

from kiosk import i18n, visits
from spacekiosk import hours
from sync import outbox

bp = Blueprint("visitor", __name__)


def _config():
    return current_app.config["SPACE"]


def _writer():
    """The kiosk's one writer of visits: concurrent sign-ins share a commit."""
    return current_app.extensions["writer"]


def _clock():
    """The kiosk's watch on the wall clock: times taken before it was set get corrected."""
    return current_app.extensions["clock"]


def _via() -> str:
    return "phone" if request.cookies.get("device") == "phone" else "kiosk"


def _when(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC), "short")  # in the space's zone


def _message(exc: visits.VisitError) -> str:
    if exc.code == "already_in":
        return _("You are already signed in (since %(time)s).", time=_when(exc.since))
    if exc.code == "already_out":
        return _("You were already signed out at %(time)s.", time=_when(exc.since))
    return i18n.MESSAGES[exc.code]


def _phone_url() -> str | None:
    base = _config().kiosk.public_url
    return f"{base}/phone" if base else None


def _qr_svg() -> str | None:
    url = _phone_url()
    if not url:
        return None
    cached = current_app.config.get("_QR")
    if cached is None or cached[0] != url:
        svg = segno.make(url, error="m").svg_inline(scale=4, border=2, dark="#1b1b1f")
        current_app.config["_QR"] = cached = (url, svg)
    return cached[1]


@bp.get("/")
def welcome():
    cfg = _config()
    now = time.time()
    return render_template(
        "visitor/welcome.html",
        present=visits.present_count(g.db),
        open_state=hours.state(cfg.space, now),
        event=hours.todays_event(cfg, now),
        languages=[(code, i18n.native_name(code)) for code in cfg.space.languages],
        current=str(get_locale()),
        qr=_qr_svg(),
        sync=outbox.health(g.db),
        greet_since=now,
    )


@bp.get("/lang/<code>")
def language(code: str):
    if code not in _config().space.languages:
        abort(404)
    response = redirect(request.args.get("next") or url_for("visitor.welcome"))
    response.set_cookie(i18n.LANG_COOKIE, code, samesite="Strict", httponly=True)
    return response


@bp.get("/reset")
def reset():
    """Back to a blank Welcome in the space's default language (idle, or after Done)."""
    response = redirect(url_for("visitor.welcome"))
    response.delete_cookie(i18n.LANG_COOKIE)
    return response


@bp.get("/phone")
def phone():
    """Where the QR code leads: the same sign-in, without the on-screen keyboard."""
    response = redirect(url_for("visitor.sign_in"))
    response.set_cookie("device", "phone", samesite="Lax", httponly=True, max_age=3600)
    return response


def _name_step(error: str | None = None, name: str = "", status: int = 200):
    return render_template("visitor/sign_in.html", error=error, name=name, qr=_qr_svg()), status


@bp.get("/sign-in")
def sign_in():
    return _name_step()


@bp.get("/sign-in/matches")
def matches():
    """Returning visitors whose name starts with what was typed, masked."""
    found = visits.matches(g.db, request.args.get("q", "")[: visits.MAX_NAME])
    return jsonify(
        [
            {"label": m.label, "url": url_for("visitor.returning", visitor_id=m.visitor_id)}
            for m in found
        ]
    )


@bp.post("/sign-in")
def name_given():
    """After the name: a known visitor goes to their PIN, a new one to the first-visit form."""
    raw = request.form.get("name", "")
    try:
        name = visits.clean_name(raw)
    except visits.VisitError as exc:
        return _name_step(_message(exc), raw[: visits.MAX_NAME], exc.status)
    known = visits.find(g.db, name)
    if known:
        return _pin_step(known["id"])
    return _new_step(name)


def _new_step(name: str, error: str | None = None, status: int = 200, form=None):
    cfg = _config()
    return render_template(
        "visitor/new.html",
        name=name,
        error=error,
        form=form or {},
        purposes=[(p, i18n.PURPOSE_NAMES.get(p, p)) for p in cfg.kiosk.purposes],
        event=hours.todays_event(cfg, time.time()),
        retention_days=cfg.retention.days,
        request_id=uuid.uuid4().hex,
    ), status


def _pin_step(visitor_id: int, error: str | None = None, status: int = 200):
    info = visits.visitor_info(g.db, visitor_id)
    if info is None:
        abort(404)
    return render_template(
        "visitor/pin.html",
        visitor=info,
        error=error,
        ask_guidelines=info["guidelines_version"] < _config().kiosk.guidelines_version,
        request_id=uuid.uuid4().hex,
    ), status


@bp.get("/sign-in/returning/<int:visitor_id>")
def returning(visitor_id: int):
    return _pin_step(visitor_id)


@bp.post("/sign-in/returning/<int:visitor_id>")
def returning_pin(visitor_id: int):
    cfg = _config()
    try:
        visit = _writer().run(
            visits.sign_in_returning,
            visitor_id,
            request.form.get("pin") or None,
            current_app.config["PIN_KEY"],
            cfg.kiosk.guidelines_version,
            accepted=request.form.get("accept") == "yes",
            via=_via(),
            request_id=request.form.get("request_id") or None,
            clock=_clock(),
        )
    except visits.VisitError as exc:
        if exc.code in ("wrong_pin", "guidelines_changed", "pin_resting"):
            return _pin_step(visitor_id, _message(exc), exc.status)
        return _name_step(_message(exc), status=exc.status)
    return _done("welcome", visit, 201)


@bp.post("/sign-in/new")
def new_visitor():
    cfg = _config()
    form = request.form
    raw_name = form.get("name", "")
    try:
        name = visits.clean_name(raw_name)
    except visits.VisitError as exc:
        return _name_step(_message(exc), raw_name[: visits.MAX_NAME], exc.status)
    try:
        purpose = form.get("purpose") or None
        if purpose is not None and purpose not in cfg.kiosk.purposes:
            raise visits.VisitError("bad_purpose")
        email = visits.clean_email(form.get("email", ""))
        pin = form.get("pin") or None
        if pin is not None:
            visits.clean_pin(pin)
            if form.get("pin2") != pin:
                raise visits.VisitError("pin_mismatch")
        if form.get("accept") != "yes":
            raise visits.VisitError("guidelines")
        event = hours.todays_event(cfg, time.time())
        visit = _writer().run(
            visits.sign_in_new,
            visits.NewVisitor(
                name=name,
                email=email,
                purpose=purpose,
                event=event.name if event and form.get("event") == "yes" else None,
                pin=pin,
                guidelines_version=cfg.kiosk.guidelines_version,
            ),
            current_app.config["PIN_KEY"],
            via=_via(),
            request_id=form.get("request_id") or None,
            clock=_clock(),
        )
    except visits.VisitError as exc:
        if exc.code == "already_in":
            return _name_step(_message(exc), status=exc.status)
        safe = {k: form.get(k, "")[:254] for k in ("email", "purpose", "event", "accept")}
        return _new_step(name, _message(exc), exc.status, safe)
    return _done("welcome", visit, 201)


@bp.get("/sign-out")
def sign_out_list():
    return render_template("visitor/sign_out.html", present=visits.present(g.db))


@bp.post("/sign-out/<int:visit_id>")
def sign_out(visit_id: int):
    try:
        visit = _writer().run(visits.sign_out, visit_id, clock=_clock())
    except visits.VisitError as exc:
        return render_template(
            "visitor/sign_out.html", present=visits.present(g.db), error=_message(exc)
        ), exc.status
    return _done("goodbye", visit, 200)


# The confirmation differs only by the visitor's name, so each (language, kind, device)
# is rendered once with a stand-in and the escaped name is put in its place: rendering
# was the largest part of a sign-in after the commit itself (see bench/signin.py).
_NAME_SLOT = "visitorname" + uuid.uuid4().hex


def _done(kind: str, visit: visits.Visit, status: int):
    key = (str(get_locale()), kind, _via())
    done_pages = current_app.extensions.setdefault("done_pages", {})
    page = done_pages.get(key)
    if page is None:
        page = render_template(
            "visitor/done.html",
            kind=kind,
            first_name=_NAME_SLOT,
            confirm_seconds=_config().kiosk.confirm_seconds,
        )
        done_pages[key] = page
    return make_response(page.replace(_NAME_SLOT, str(escape(visit.first_name))), status)


@bp.get("/api/v1/greetings")
def greetings():
    """Phone sign-ins the kiosk screen should greet. Only for the kiosk's own browser:
    first names are not for everyone on the network."""
    if request.remote_addr not in ("127.0.0.1", "::1"):
        abort(404)
    since = max(request.args.get("since", type=float) or 0, time.time() - 30)
    found = visits.recent_phone_sign_ins(g.db, since)
    return jsonify([{"first_name": v.first_name, "at": v.signed_in_at} for v in found])
