"""Now: who is in and since when, the sensors' estimate beside the sign-ins, the door
and its alerts; signing out a forgotten visit, or everyone an admin was shown.

Every action is a POST that redirects, in one transaction with its audit row; the audit
log names visits by number, never by name (a name there would outlive its erasure).
Evacuations and the roll-call are roll_call.py's.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

from flask import abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import format_datetime, format_time
from flask_babel import gettext as _
from flask_login import current_user
from sqlite_utils import Database

from kiosk import space, visits
from kiosk.admin import admin_required, audit, bp
from kiosk.admin.health import sensor_name
from spacekiosk import occupancy, sensorstate
from spacekiosk.db import write


def close_visit(db: Database, visit_id: int, admin: str, clock=None) -> visits.Visit:
    """An admin closes a forgotten visit; the audit row is in the same transaction."""
    with write(db):
        visit = visits.sign_out_by_admin(db, visit_id, clock=clock)
        audit(db, "signed out a visit", f"visit {visit_id}", admin=admin)
    return visit


def close_all(db: Database, up_to: int, admin: str, clock=None) -> list[visits.Visit]:
    """An admin closes every visit they were shown (ids up to `up_to`), with one audit row."""
    with write(db):
        closed = visits.sign_out_everyone(db, up_to, clock=clock)
        if closed:
            numbers = ", ".join(str(v.id) for v in closed)
            audit(db, "signed out everyone", f"{len(closed)} visits: {numbers}", admin=admin)
    return closed


# --- what the page says, in words ---


def estimate_words(estimate: occupancy.Estimate) -> tuple[str, str]:
    """Where the sensors' estimate comes from, and how far to trust it, in two sentences."""
    if estimate.source == "counter":
        source = _("Counted at the door by the people counter.")
    elif estimate.source == "motion":
        source = _(
            "Nobody is signed in, but a motion sensor saw someone in the last %(num)d minutes.",
            num=occupancy.QUIET_MINUTES,
        )
    else:
        source = _("There is no people counter, so this is the number signed in.")
    if estimate.confidence == "high":
        trust = _(
            "High confidence: the counter started again from zero when the space last "
            "stood empty, within the last day."
        )
    elif estimate.confidence == "low":
        trust = _("Low confidence: a rough guess.")
    elif estimate.source == "counter":
        trust = _(
            "Medium confidence: the space has not stood empty and quiet in the last day, "
            "so the counter may have drifted."
        )
    else:
        trust = _("Medium confidence: some visitors forget to sign in or out.")
    return source, trust


def alerts(db: Database, config, now: float) -> list[str]:
    """Each thing an admin should go and look at: a door left open, a faulty sensor."""
    found = []
    door = sensorstate.door(db, config, now)
    if door and door["alert"]:
        found.append(
            _("The door has stood open since %(time)s: check it.", time=when(door["since"], now))
        )
    for name, state in sensorstate.health(db, config, now).items():
        if state["ok"]:
            continue
        sensor = sensor_name(name)
        if state["since"] is None:
            found.append(_("%(sensor)s is not working.", sensor=sensor))
        else:
            found.append(
                _(
                    "%(sensor)s has not been working since %(time)s.",
                    sensor=sensor,
                    time=when(state["since"], now),
                )
            )
        if state["reason"]:
            found[-1] += f" ({state['reason']})"
    return found


def door_words(door: dict | None, now: float) -> str:
    if door is None:
        return _("There is no door sensor.")
    if door["since"] is None:
        return _("The door sensor has not reported yet.")
    if door["open"]:
        return _("The door is open (since %(time)s).", time=when(door["since"], now))
    return _("The door is shut (since %(time)s).", time=when(door["since"], now))


def when(ts: float, now: float) -> str:
    """A time in the space's zone and the page's language; with the date if not today."""
    zone = space.config().space.timezone
    at = datetime.fromtimestamp(ts, UTC)
    if at.astimezone(zone).date() == datetime.fromtimestamp(now, zone).date():
        return format_time(at, "short")
    return format_datetime(at, "short")


# --- the pages ---


def writer():
    """The kiosk's one writer: an admin's change commits with the visitors' sign-ins."""
    return current_app.extensions["writer"]


def admin_name() -> str:
    """The logged-in admin, taken in the request: the writer's thread has none."""
    return current_user.name


@bp.get("/")
@admin_required
def now():
    config = space.config()
    at = time.time()
    estimate = occupancy.estimate(g.db, config, at)
    present = visits.present(g.db)
    return render_template(
        "admin/now.html",
        present=present,
        since=[when(v.signed_in_at, at) for v in present],
        estimate=estimate,
        estimate_words=estimate_words(estimate),
        door=door_words(sensorstate.door(g.db, config, at), at),
        alerts=alerts(g.db, config, at),
    )


@bp.post("/sign-out/<handle>")
@admin_required
def sign_out(handle: str):
    visit_id = visits.visit_by_handle(g.db, handle)
    if visit_id is not None:
        # Signed out meanwhile (by the visitor, or another admin): nothing left to do.
        with contextlib.suppress(visits.VisitError):
            writer().run(close_visit, visit_id, admin_name(), current_app.extensions["clock"])
    return redirect(url_for("admin.now"))


@bp.get("/sign-out-all")
@admin_required
def sign_out_all_confirm():
    present = visits.present(g.db)
    if not present:
        return redirect(url_for("admin.now"))
    at = time.time()
    return render_template(
        "admin/sign_out_all.html",
        present=present,
        since=[when(v.signed_in_at, at) for v in present],
        up_to=max(v.id for v in present),
    )


@bp.post("/sign-out-all")
@admin_required
def sign_out_all():
    up_to = request.form.get("up_to", type=int)
    if up_to is not None and not 0 <= up_to < 2**63:  # no visit id SQLite could hold
        abort(400, "That list of visits is not one this page showed.")
    if up_to is not None:
        writer().run(close_all, up_to, admin_name(), current_app.extensions["clock"])
    return redirect(url_for("admin.now"))
