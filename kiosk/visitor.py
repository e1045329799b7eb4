"""The visitor screens: welcome, sign in (new or returning), sign out, confirmation.

Every page is reachable by touch alone. Nothing a visitor typed is kept in the URL or a
cookie; only the language and "this is a phone" are remembered, until the next reset.

Nobody is listed who did not first type part of their name, visitors and visits are
reached by random handles (not ids anyone could count through), and no input, however
hostile, gets a 500: every refusal is a page in the visitor's language with a 4xx.
"""

from __future__ import annotations

import math
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

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
from flask_babel import format_date, format_datetime, format_time, get_locale
from flask_babel import gettext as _
from markupsafe import escape
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from kiosk import i18n, space, visits
from kiosk.lookups import Lookups
from spacekiosk import hours, syncstate

bp = Blueprint("visitor", __name__)


def _config():
    """The space's config in effect: the file's, with the settings the admins saved."""
    return space.config()


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
    if exc.code == "bad_event":
        return _("There is no event today to sign in for. Please try again.")
    return i18n.MESSAGES[exc.code]


@bp.before_app_request
def refuse_undecodable_query():
    """A query string of raw bytes that are not UTF-8 (not percent-encoded ones, which
    decode to U+FFFD) would make Werkzeug raise on the first look at `request.args`."""
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        abort(400)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """Any refusal the app has no page of its own for (a 414, 415, 431...): a plain page
    in the visitor's language, with the refusal's own status."""
    code = exc.code or 400
    message = i18n.HTTP_MESSAGES.get(code) or i18n.HTTP_MESSAGES[500 if code >= 500 else 400]
    return render_template("visitor/error.html", status=code, message=message), code


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
        sync=syncstate.health(g.db),
        greet_since=now,
    )


@bp.get("/lang/<code>")
def language(code: str):
    if code not in _config().space.languages:
        abort(404)
    response = redirect(_local(request.args.get("next")) or url_for("visitor.welcome"))
    response.set_cookie(i18n.LANG_COOKIE, code, samesite="Strict", httponly=True)
    return response


MAX_NEXT = 512


def _local(target: str | None) -> str | None:
    """`target` if it is a page of this kiosk that answers GET, else None: a link on the
    space's Wi-Fi must not send the kiosk's browser anywhere else, nor split a header."""
    if not target or len(target) > MAX_NEXT or not target.startswith("/"):
        return None
    if not all("!" <= ch <= "~" for ch in target) or target.startswith("//") or "\\" in target:
        return None  # only printable ASCII: no CR/LF, no space, no "//host", no "\\host"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.fragment:
        return None
    try:
        current_app.url_map.bind("kiosk").match(parts.path, method="GET")
    except (NotFound, MethodNotAllowed, RequestRedirect):
        return None
    return target


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


def _labels(found: list[visits.Match]) -> list[str]:
    """Each match's masked name; people whose masks are the same are told apart by when
    they first came: the month, else the day, else the day and time."""
    masks = [m.label for m in found]
    clash = {mask for mask in masks if masks.count(mask) > 1}
    if not clash:
        return masks
    firsts = [datetime.fromtimestamp(m.first_seen, UTC) for m in found]
    for when in (
        lambda at: format_date(at, "MMM y"),
        lambda at: format_date(at, "medium"),
        lambda at: format_datetime(at, "short"),
    ):
        labels = [
            f"{mask} · {when(at)}" if mask in clash else mask
            for mask, at in zip(masks, firsts, strict=True)
        ]
        if len(set(labels)) == len(labels):
            break
    return labels


@bp.get("/sign-in/matches")
def matches():
    """Returning visitors with a PIN whose name starts with what was typed (two letters
    at least), masked, a few at most; a few dozen lookups a minute from any one address
    on the network (see lookups.py)."""
    lookups = current_app.extensions.get("lookups")
    if lookups is None:
        lookups = current_app.extensions.setdefault("lookups", Lookups())
    if not lookups.allow(request.remote_addr):
        return jsonify([]), 429
    q = request.args.get("q", "")
    found = [] if len(q) > visits.MAX_NAME else visits.matches(g.db, q)
    return jsonify(
        [
            {"label": label, "url": url_for("visitor.returning", handle=m.handle)}
            for m, label in zip(found, _labels(found), strict=True)
        ]
    )


@bp.post("/sign-in")
def name_given():
    """After the name: the first-visit form, unless someone of that name came before;
    then the visitor says whether that was them (and proves it) or they are new here."""
    raw = request.form.get("name", "")
    try:
        name = visits.clean_name(raw)
    except visits.VisitError as exc:
        return _name_step(_message(exc), _echo(raw), exc.status)
    if request.form.get("new") != "yes" and (known := visits.known(g.db, name)):
        entries = [
            (label, url_for("visitor.returning", handle=m.handle))
            for m, label in zip(known, _labels(known), strict=True)
        ]
        return render_template("visitor/known.html", name=name, entries=entries)
    return _new_step(name)


def _echo(raw: str) -> str:
    """What a visitor typed, to show back in the field: bounded, and without the
    characters that were refused (they could not fix what they cannot see)."""
    return "".join(ch for ch in raw[: visits.MAX_NAME] if unicodedata.category(ch)[0] != "C")


# The first visit's step that holds the field each refusal is about: kiosk.js opens it.
# Any other refusal (the guidelines, a busy database) stays on the last step, Sign in's.
_ERROR_STEPS = {
    "bad_purpose": "why",
    "bad_event": "why",
    "bad_email": "details",
    "bad_pin": "details",
    "pin_mismatch": "details",
}


def _new_step(
    name: str, error: str | None = None, status: int = 200, form=None, code: str | None = None
):
    cfg = _config()
    return render_template(
        "visitor/new.html",
        name=name,
        error=error,
        error_step=_ERROR_STEPS.get(code or "", "guidelines"),
        form=form or {},
        purposes=[(p, i18n.PURPOSE_NAMES.get(p, p)) for p in cfg.kiosk.purposes],
        event=hours.todays_event(cfg, time.time()),
        retention_days=cfg.retention.days,
        guidelines=_guidelines(cfg),
        request_id=uuid.uuid4().hex,
    ), status


def _guidelines(cfg) -> str | None:
    """The guidelines as the space's admins wrote them, in the visitor's language, else
    in the space's first language; None: the kiosk's own text, in the visitor's language."""
    texts = cfg.kiosk.guidelines
    return texts.get(str(get_locale())) or texts.get(cfg.space.languages[0])


def _visitor(handle: str) -> dict:
    info = visits.visitor_by_handle(g.db, handle)
    if info is None:
        abort(404)
    return info


def _purpose_chosen(cfg, form) -> str | None:
    """The purpose a form says, None for none; one the space does not offer is refused."""
    purpose = form.get("purpose") or None
    if purpose is not None and purpose not in cfg.kiosk.purposes:
        raise visits.VisitError("bad_purpose")
    return purpose


def _event_chosen(cfg, form) -> str | None:
    """Today's event's name when the form's box was ticked, None when it was not; a
    ticked box on a day without an event, or any value but the box's own, is refused."""
    flag = form.get("event") or None
    if flag is None:
        return None
    event = hours.todays_event(cfg, time.time())
    if flag != "yes" or event is None:
        raise visits.VisitError("bad_event")
    return event.name


def _pin_step(info: dict, error: str | None = None, status: int = 200, form=None):
    """The returning visitor's page: why they came (their last purpose already chosen),
    today's event when there is one, and their PIN. A refused form keeps its choices."""
    cfg = _config()
    purposes = [(p, i18n.PURPOSE_NAMES.get(p, p)) for p in cfg.kiosk.purposes]
    if form is None:
        chosen, for_event = info["last_purpose"], False
    else:
        chosen, for_event = form.get("purpose"), form.get("event") == "yes"
    return render_template(
        "visitor/pin.html",
        visitor=info,
        error=error,
        purposes=purposes,
        chosen=chosen if chosen in cfg.kiosk.purposes else None,
        event=hours.todays_event(cfg, time.time()),
        for_event=for_event,
        ask_guidelines=info["guidelines_version"] < cfg.kiosk.guidelines_version,
        guidelines=_guidelines(cfg),
        request_id=uuid.uuid4().hex,
    ), status


@bp.get("/sign-in/returning/<handle>")
def returning(handle: str):
    return _pin_step(_visitor(handle))


@bp.post("/sign-in/returning/<handle>")
def returning_pin(handle: str):
    cfg = _config()
    info = _visitor(handle)
    form = request.form
    try:
        purpose = _purpose_chosen(cfg, form)
        event = _event_chosen(cfg, form)
        visit = _writer().run(
            visits.sign_in_returning,
            info["id"],
            form.get("pin") or None,
            current_app.config["PIN_KEY"],
            cfg.kiosk.guidelines_version,
            accepted=form.get("accept") == "yes",
            via=_via(),
            request_id=visits.clean_request_id(form.get("request_id")),
            clock=_clock(),
            purpose=purpose,
            event=event,
        )
    except visits.VisitError as exc:
        if exc.code in (
            "wrong_pin",
            "guidelines_changed",
            "pin_resting",
            "bad_form",
            "bad_purpose",
            "bad_event",
        ):
            return _pin_step(info, _message(exc), exc.status, form)
        if exc.code == "already_in" and exc.handle:
            return _already_in(exc)
        return _name_step(_message(exc), status=exc.status)
    return _done("welcome", visit, 201)


def _already_in(exc: visits.VisitError):
    """A visitor who proved who they are while their visit is still open is most likely
    leaving: one tap signs them out, through the sign-out list's own route. Only the
    visit's handle goes on the page, as on that list, and no name."""
    return render_template(
        "visitor/already_in.html", message=_message(exc), handle=exc.handle
    ), exc.status


@bp.post("/sign-in/new")
def new_visitor():
    cfg = _config()
    form = request.form
    raw_name = form.get("name", "")
    try:
        name = visits.clean_name(raw_name)
    except visits.VisitError as exc:
        return _name_step(_message(exc), _echo(raw_name), exc.status)
    try:
        purpose = _purpose_chosen(cfg, form)
        email = visits.clean_email(form.get("email", ""))
        pin = form.get("pin") or None
        if pin is not None:
            visits.clean_pin(pin)
            if form.get("pin2") != pin:
                raise visits.VisitError("pin_mismatch")
        if form.get("accept") != "yes":
            raise visits.VisitError("guidelines")
        event = _event_chosen(cfg, form)
        visit = _writer().run(
            visits.sign_in_new,
            visits.NewVisitor(
                name=name,
                email=email,
                purpose=purpose,
                event=event,
                pin=pin,
                guidelines_version=cfg.kiosk.guidelines_version,
            ),
            current_app.config["PIN_KEY"],
            via=_via(),
            request_id=visits.clean_request_id(form.get("request_id")),
            clock=_clock(),
        )
    except visits.VisitError as exc:
        safe = {k: _echo(form.get(k, "")) for k in ("purpose", "event", "accept")}
        safe["email"] = _echo(form.get("email", "")[: visits.MAX_EMAIL])
        return _new_step(name, _message(exc), exc.status, safe, exc.code)
    return _done("welcome", visit, 201)


def _sign_out_page(error: str | None = None, status: int = 200):
    """Who is in, as first name and initial; two people who would look the same are
    told apart by when they signed in."""
    present = visits.present(g.db)
    shorts = [v.short_name for v in present]
    people = [
        (v.handle, f"{short} · {_when(v.signed_in_at)}" if shorts.count(short) > 1 else short)
        for v, short in zip(present, shorts, strict=True)
    ]
    return render_template("visitor/sign_out.html", people=people, error=error), status


@bp.get("/sign-out")
def sign_out_list():
    return _sign_out_page()


@bp.post("/sign-out/<handle>")
def sign_out(handle: str):
    """One tap on a name on the list. The button carries the visit's random handle: the
    list shows everyone present to whoever stands at the screen (one-tap sign-out is the
    point), but nobody can sign people out blindly, or read past visits, by counting."""
    visit_id = visits.visit_by_handle(g.db, handle)
    try:
        if visit_id is None:
            raise visits.VisitError("unknown_visit", status=404)
        visit = _writer().run(visits.sign_out, visit_id, clock=_clock())
    except visits.VisitError as exc:
        return _sign_out_page(_message(exc), exc.status)
    return _done("goodbye", visit, 200)


# The confirmation differs only by the visitor's name, so each (language, kind, device)
# is rendered once with a stand-in and the escaped name is put in its place: rendering
# was the largest part of a sign-in after the commit itself (see bench/signin.py).
_NAME_SLOT = "visitorname" + uuid.uuid4().hex


def _done(kind: str, visit: visits.Visit, status: int):
    cfg = _config()
    # With what the page shows that an admin may change: a change makes a page of its own.
    key = (str(get_locale()), kind, _via(), cfg.kiosk.confirm_seconds, cfg.kiosk.idle_seconds)
    done_pages = current_app.extensions.setdefault("done_pages", {})
    page = done_pages.get(key)
    if page is None:
        page = render_template(
            "visitor/done.html",
            kind=kind,
            first_name=_NAME_SLOT,
            confirm_seconds=cfg.kiosk.confirm_seconds,
        )
        if len(done_pages) >= 256:  # settings changed many times: start again
            done_pages.clear()
        done_pages[key] = page
    return make_response(page.replace(_NAME_SLOT, str(escape(visit.first_name))), status)


@bp.get("/api/v1/greetings")
def greetings():
    """Phone sign-ins the kiosk screen should greet. Only for the kiosk's own browser:
    first names are not for everyone on the network."""
    if request.remote_addr not in ("127.0.0.1", "::1"):
        abort(404)
    since = request.args.get("since", type=float) or 0.0
    since = max(since if math.isfinite(since) else 0.0, time.time() - 30)
    found = visits.recent_phone_sign_ins(g.db, since)
    return jsonify([{"first_name": v.first_name, "at": v.signed_in_at} for v in found])
