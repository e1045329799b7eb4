"""Visitors and their data: find a visitor, see their visits, export what is stored about
them, reset a forgotten PIN, merge two records of one person, erase them; and the
spreadsheets of visits (with names) and of hourly counts.

Every change runs on the kiosk's writer with its audit row in the same transaction, and
the audit names visitors by number only: a name in the log would outlive its erasure.
After an erasure or a merge the write-ahead log is scrubbed (`spacekiosk.db.scrub`), so
the erased name is gone from the files, not only from the rows; should readers hold that
back, the housekeeping scrubs it within the hour. A visitor is reached by their handle;
anything else in its place, or any text that no name holds, is a 4xx.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

from flask import (
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_date, format_datetime, ngettext
from flask_babel import gettext as _
from flask_login import current_user

from kiosk import i18n, people, space, visits
from kiosk.admin import admin_required, audit, bp
from kiosk.people import Person
from spacekiosk import hourly, protocol
from spacekiosk.db import scrub, write

SHOWN_VISITS = 100  # a visitor's latest visits on their page; the export holds them all
MAX_EXPORT_DAYS = 3 * 366 + 1
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _writer():
    return current_app.extensions["writer"]


def _admin() -> str:
    return current_user.name


def _person(handle: str) -> Person:
    person = people.by_handle(g.db, handle)
    if person is None:
        abort(404)
    return person


def _when(ts: float | None) -> str:
    return "" if ts is None else format_datetime(datetime.fromtimestamp(ts, UTC), "short")


def _day(ts: float) -> str:
    return format_date(datetime.fromtimestamp(ts, UTC), "medium")


def _month(ts: float) -> str:
    return format_date(datetime.fromtimestamp(ts, UTC), "MMMM y")


def _facts(person: Person) -> str:
    """What tells two people of one name apart, in one line."""
    parts = [_("first came in %(month)s", month=_month(person.first_seen))]
    if person.email_domain:
        parts.append(person.email_domain)
    parts.append(ngettext("%(num)d visit", "%(num)d visits", person.visits))
    if person.last_visit is not None:
        parts.append(_("last %(day)s", day=_day(person.last_visit)))
    return " · ".join(parts)


def _scrub() -> None:
    for _try in range(3):
        if scrub(g.db):
            return
    current_app.logger.warning("the log still holds an erasure's old pages; housekeeping clears it")


def _refusal(exc: visits.VisitError) -> str:
    return {
        "bad_query": _("That search holds characters no name or e-mail address has."),
        "both_present": _("Both are signed in now: sign one of them out first."),
        "same_visitor": _("That is the same record."),
        "bad_pin": _("A PIN is 4 digits."),
    }.get(exc.code, _("That visitor is no longer here (erased or merged meanwhile)."))


# --- finding ---


def _export_range() -> tuple[str, str]:
    today = datetime.now(space.config().space.timezone).date()
    return (today - timedelta(days=30)).isoformat(), today.isoformat()


@bp.get("/visitors")
@admin_required
def visitors():
    query = request.args.get("q", "")
    found, more, error, status = [], False, None, 200
    try:
        found, more = people.find(g.db, query)
    except visits.VisitError as exc:
        error, status = _refusal(exc), 400
    start, end = _export_range()
    page = render_template(
        "admin/visitors.html",
        q=query[: people.MAX_QUERY] if error is None else "",
        found=found,
        facts=[_facts(p) for p in found],
        more=more,
        error=error,
        short=bool(query.strip()) and len(query.strip()) < people.MIN_QUERY,
        done=request.args.get("done"),
        start=start,
        end=end,
    )
    return page, status


@bp.get("/visitors/<handle>")
@admin_required
def visitor(handle: str):
    person = _person(handle)
    return _person_page(person)


def _person_page(person: Person, pin_error: str | None = None, status: int = 200):
    past = people.visits_of(g.db, person.id)
    others = people.same_name(g.db, person)
    page = render_template(
        "admin/visitors_person.html",
        person=person,
        facts=_facts(person),
        first_seen=_day(person.first_seen),
        past=past[:SHOWN_VISITS],
        more_visits=max(len(past) - SHOWN_VISITS, 0),
        when=_when,
        purposes=i18n.PURPOSE_NAMES,
        others=others,
        others_facts=[_facts(p) for p in others],
        pin_error=pin_error,
        done=request.args.get("done"),
    )
    return page, status


# --- their data ---


@bp.post("/visitors/<handle>/export")
@admin_required
def visitor_export(handle: str):
    person = _person(handle)
    config = space.config()
    data = people.export(g.db, person.id, config.space.id)
    _writer().run(audit, "exported a visitor's data", f"visitor {person.id}", admin=_admin())
    today = datetime.now(config.space.timezone).date()
    name = f"visitor-data-{today.isoformat()}.json"
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _reset_pin(db, person_id: int, secret: str, pin: str | None, admin: str) -> None:
    with write(db):
        people.reset_pin(db, person_id, secret, pin)
        what = "new PIN" if pin else "PIN removed"
        audit(db, "reset a visitor's PIN", f"visitor {person_id}: {what}", admin=admin)


@bp.post("/visitors/<handle>/pin")
@admin_required
def visitor_pin(handle: str):
    person = _person(handle)
    remove = request.form.get("remove") == "yes"
    pin, again = request.form.get("pin", ""), request.form.get("pin2", "")
    if not remove:
        if not re.fullmatch(r"[0-9]{4}", pin):
            return _person_page(person, _("A PIN is 4 digits."), 400)
        if pin != again:
            return _person_page(person, _("The two PINs are not the same."), 400)
    secret = current_app.config["PIN_KEY"]
    try:
        _writer().run(_reset_pin, person.id, secret, None if remove else pin, _admin())
    except visits.VisitError:
        abort(404)
    return redirect(url_for("admin.visitor", handle=handle, done="pin"))


def _erase(db, person_id: int, admin: str, clock) -> None:
    with write(db):
        closed = people.erase(db, person_id, clock=clock)
        detail = f"visitor {person_id}" + (f", {closed} open visit signed out" if closed else "")
        audit(db, "erased a visitor", detail, admin=admin)


@bp.route("/visitors/<handle>/erase", methods=["GET", "POST"])
@admin_required
def visitor_erase(handle: str):
    person = _person(handle)
    if request.method != "POST":
        return render_template("admin/visitors_erase.html", person=person, facts=_facts(person))
    try:
        _writer().run(_erase, person.id, _admin(), current_app.extensions["clock"])
    except visits.VisitError:
        abort(404)
    _scrub()
    return redirect(url_for("admin.visitors", done="erased"))


def _merge(db, keep_id: int, other_id: int, admin: str) -> None:
    with write(db):
        moved = people.merge(db, keep_id, other_id)
        detail = f"visitor {other_id} into visitor {keep_id}: {moved} visits moved"
        audit(db, "merged two visitors", detail, admin=admin)


@bp.get("/visitors/<handle>/merge")
@admin_required
def visitor_merge_choose(handle: str):
    person = _person(handle)
    query = request.args.get("q", "")
    error, status = None, 200
    try:
        found, _more = people.find(g.db, query) if query.strip() else (None, False)
    except visits.VisitError as exc:
        found, error, status = None, _refusal(exc), 400
    if found is None:
        found = people.same_name(g.db, person)
    found = [p for p in found if p.id != person.id]
    page = render_template(
        "admin/visitors_merge.html",
        person=person,
        facts=_facts(person),
        q=query[: people.MAX_QUERY] if error is None else "",
        found=found,
        found_facts=[_facts(p) for p in found],
        other=None,
        error=error,
    )
    return page, status


@bp.route("/visitors/<handle>/merge/<other>", methods=["GET", "POST"])
@admin_required
def visitor_merge(handle: str, other: str):
    person, duplicate = _person(handle), _person(other)
    error = None
    if request.method == "POST":
        try:
            _writer().run(_merge, person.id, duplicate.id, _admin())
        except visits.VisitError as exc:
            if exc.code == "unknown_visitor":
                abort(404)
            error = _refusal(exc)
        else:
            _scrub()
            return redirect(url_for("admin.visitor", handle=handle, done="merged"))
    elif person.id == duplicate.id:
        error = _refusal(visits.VisitError("same_visitor"))
    page = render_template(
        "admin/visitors_merge.html",
        person=person,
        facts=_facts(person),
        other=duplicate,
        other_facts=_facts(duplicate),
        error=error,
    )
    return page, 409 if error else 200


# --- spreadsheets ---


def _span() -> tuple[date, date, float, float]:
    """The days a spreadsheet covers, from its form ("from", "to", both included), and
    their start and end as times; a 400 for anything but two dates in order."""
    texts = request.values.get("from", ""), request.values.get("to", "")
    if not all(_DATE.fullmatch(t) for t in texts):
        abort(400)
    try:
        start, end = (date.fromisoformat(t) for t in texts)
        zone = space.config().space.timezone
        since = datetime.combine(start, datetime.min.time(), zone).timestamp()
        until = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone).timestamp()
    except (ValueError, OverflowError):
        abort(400)
    if not start <= end or (end - start).days >= MAX_EXPORT_DAYS:
        abort(400)
    return start, end, since, until


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@bp.post("/visitors/visits.csv")
@admin_required
def visits_csv():
    start, end, since, until = _span()
    zone = space.config().space.timezone
    rows = list(people.visit_rows(g.db, since, until, zone))
    detail = f"{start} to {end}: {len(rows)} visits"
    _writer().run(audit, "exported the visits with names", detail, admin=_admin())
    return _csv(people.csv_text(people.VISITS_HEADER, rows), f"visits-{start}-to-{end}")


@bp.get("/visitors/hourly.csv")
@admin_required
def hourly_csv():
    """The hourly counts as stored for the centre, one row per hour with anything in it:
    a column per count, `purpose:<label>` and `event:<label>` for the breakdowns."""
    start, end, since, until = _span()
    zone = space.config().space.timezone
    stored = list(hourly.rows(g.db, since, until))
    purposes = sorted({p for _h, c in stored for p in c.get("by_purpose") or {}})
    events = sorted({e for _h, c in stored for e in c.get("by_event") or {}})
    header = ["hour", "hour_utc", *protocol.COUNTS]
    header += [f"purpose:{p}" for p in purposes] + [f"event:{e}" for e in events]

    def row(hour: int, counts: dict) -> list:
        at = datetime.fromtimestamp(hour, UTC)
        line = [at.astimezone(zone).strftime("%Y-%m-%d %H:%M"), at.strftime("%Y-%m-%dT%H:%MZ")]
        line += [counts.get(name, 0) for name in protocol.COUNTS]
        line += [(counts.get("by_purpose") or {}).get(p, 0) for p in purposes]
        line += [(counts.get("by_event") or {}).get(e, 0) for e in events]
        return line

    text = people.csv_text(header, (row(hour, counts) for hour, counts in stored))
    return _csv(text, f"hourly-counts-{start}-to-{end}")
