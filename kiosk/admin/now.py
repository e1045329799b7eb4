"""Now: who is in, the sensors' estimate beside the sign-ins, the door and its alerts;
signing out forgotten visits; the roll-call and evacuation mode.

The roll-call's state is in the store (roll_calls and roll_call_people, migration m008),
written here alone, through the kiosk's writer, so every server thread and a restarted
kiosk agree on whether an evacuation is on. While one is, every visitor screen the kiosk
serves is the roll-call (`evacuation_screen`), which refreshes itself without a script.
Every admin action here is a POST that redirects, and sign-outs and evacuations go into
the audit log by visit number (a name in the log would outlive the visitor's erasure).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import force_locale, format_datetime, format_time
from flask_babel import gettext as _
from flask_login import current_user
from sqlite_utils import Database

from kiosk import space, visits
from kiosk.admin import admin_required, audit, bp
from spacekiosk import occupancy, sensorstate
from spacekiosk.db import write

REFRESH_SECONDS = 5  # how often the kiosk's roll-call screen reloads itself


# --- the roll-call's state ---


@dataclass(frozen=True)
class Person:
    """Someone on a roll-call: a visit open when the evacuation started."""

    handle: str  # the visit's: what an admin's tick carries
    name: str
    signed_in_at: float
    safe_at: float | None
    safe_by: str | None

    @property
    def short_name(self) -> str:
        return visits.short_name(self.name)


@dataclass(frozen=True)
class RollCall:
    id: int
    started_at: float
    started_by: str
    people: list[Person]

    @property
    def missing(self) -> list[Person]:
        return [p for p in self.people if p.safe_at is None]

    @property
    def safe(self) -> list[Person]:
        return [p for p in self.people if p.safe_at is not None]


def evacuation_on(db: Database) -> int | None:
    """The id of the evacuation that is on, if one is: one index seek."""
    row = db.conn.execute("SELECT id FROM roll_calls WHERE ended_at IS NULL").fetchone()
    return row[0] if row else None


def roll_call(db: Database, roll_call_id: int) -> RollCall | None:
    """An evacuation's roll-call, everyone in the order they signed in."""
    head = db.conn.execute(
        "SELECT id, started_at, started_by FROM roll_calls WHERE id = ?", [roll_call_id]
    ).fetchone()
    if head is None:
        return None
    rows = db.conn.execute(
        "SELECT v.handle, coalesce(p.name, '?'), v.signed_in_at, r.safe_at, r.safe_by "
        "FROM roll_call_people r JOIN visits v ON v.id = r.visit_id "
        "JOIN visitors p ON p.id = v.visitor_id WHERE r.roll_call_id = ? "
        "ORDER BY v.signed_in_at, v.id",
        [roll_call_id],
    ).fetchall()
    return RollCall(*head, [Person(*row) for row in rows])


def start_evacuation(db: Database, admin: str, now: float) -> tuple[int, bool]:
    """Start an evacuation whose roll-call is everyone signed in now, with its audit
    row, in one transaction; returns its id and whether it is new (a second start, from
    another phone, joins the one that is on)."""
    with write(db):
        if (current := evacuation_on(db)) is not None:
            return current, False
        roll_id = db.conn.execute(
            "INSERT INTO roll_calls (started_at, started_by) VALUES (?, ?)", [now, admin]
        ).lastrowid
        people = db.conn.execute(
            "INSERT INTO roll_call_people (roll_call_id, visit_id) "
            "SELECT ?, id FROM visits WHERE signed_out_at IS NULL",
            [roll_id],
        ).rowcount
        audit(db, "evacuation started", f"roll-call {roll_id}: {people} signed in", admin=admin)
    return roll_id, True


def mark(db: Database, roll_call_id: int, handle: str, safe: bool, admin: str, now: float) -> bool:
    """Tick someone off as safe (or take a mistaken tick back) on the roll-call of the
    evacuation that is on; False if it has ended or they are not on it."""
    with write(db):
        if evacuation_on(db) != roll_call_id:
            return False
        changed = db.conn.execute(
            "UPDATE roll_call_people SET safe_at = ?, safe_by = ? WHERE roll_call_id = ? "
            "AND visit_id = (SELECT id FROM visits WHERE handle = ?)",
            [now if safe else None, admin if safe else None, roll_call_id, handle],
        ).rowcount
    return bool(changed)


def end_evacuation(db: Database, roll_call_id: int, admin: str, now: float) -> bool:
    """End the evacuation (the kiosk's screen goes back to Welcome), with its audit row;
    False if that one is no longer on."""
    with write(db):
        ended = db.conn.execute(
            "UPDATE roll_calls SET ended_at = ?, ended_by = ? WHERE id = ? AND ended_at IS NULL",
            [now, admin, roll_call_id],
        ).rowcount
        if ended:
            missing = db.conn.execute(
                "SELECT count(*) FROM roll_call_people WHERE roll_call_id = ? AND safe_at IS NULL",
                [roll_call_id],
            ).fetchone()[0]
            detail = f"roll-call {roll_call_id}: {missing} not ticked off"
            audit(db, "evacuation ended", detail, admin=admin)
    return bool(ended)


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


def _sensor_name(name: str) -> str:
    if name == "door":
        return _("The door sensor")
    if name.startswith("motion:"):
        return _("The motion sensor in %(place)s", place=name.removeprefix("motion:"))
    if name == "beam_a":
        return _("The people counter's first beam")
    if name == "beam_b":
        return _("The people counter's second beam")
    return name


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
        sensor = _sensor_name(name)
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


def labels(people) -> list[str]:
    """First name and initial, as the visitor screens show them; people whose labels
    would be the same are told apart by when they signed in."""
    shorts = [p.short_name for p in people]
    return [
        f"{short} · {format_time(datetime.fromtimestamp(p.signed_in_at, UTC), 'short')}"
        if shorts.count(short) > 1
        else short
        for p, short in zip(people, shorts, strict=True)
    ]


# --- the pages ---


def _writer():
    return current_app.extensions["writer"]


def _admin() -> str:
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
        evacuation=evacuation_on(g.db),
    )


@bp.post("/sign-out/<handle>")
@admin_required
def sign_out(handle: str):
    visit_id = visits.visit_by_handle(g.db, handle)
    if visit_id is not None:
        # Signed out meanwhile (by the visitor, or another admin): nothing left to do.
        with contextlib.suppress(visits.VisitError):
            _writer().run(close_visit, visit_id, _admin(), current_app.extensions["clock"])
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
    if up_to is not None:
        _writer().run(close_all, up_to, _admin(), current_app.extensions["clock"])
    return redirect(url_for("admin.now"))


@bp.get("/roll-call")
@admin_required
def roll_call_print():
    """The roll-call to print: the evacuation's, ticks and all, if one is on; else
    everyone signed in now, with empty boxes."""
    at = time.time()
    current = evacuation_on(g.db)
    if current is not None:
        people = roll_call(g.db, current).people
    else:
        people = [
            Person(v.handle, v.name, v.signed_in_at, None, None) for v in visits.present(g.db)
        ]
    return render_template(
        "admin/roll_call.html",
        people=people,
        since=[when(p.signed_in_at, at) for p in people],
        printed_at=format_datetime(datetime.fromtimestamp(at, UTC), "long"),
        evacuation=current,
    )


@bp.get("/evacuation")
@admin_required
def evacuation():
    at = time.time()
    current = evacuation_on(g.db)
    call = roll_call(g.db, current) if current is not None else None
    return render_template(
        "admin/evacuation.html",
        call=call,
        present=visits.present_count(g.db),
        when=lambda ts: when(ts, at),
        refresh_seconds=REFRESH_SECONDS * 3,
    )


@bp.post("/evacuation/start")
@admin_required
def evacuation_start():
    _writer().run(start_evacuation, _admin(), time.time())
    return redirect(url_for("admin.evacuation"))


@bp.post("/evacuation/<int:roll_call_id>/safe/<handle>")
@admin_required
def evacuation_mark(roll_call_id: int, handle: str):
    safe = request.form.get("safe", "yes") == "yes"
    if visits.is_handle(handle):
        _writer().run(mark, roll_call_id, handle, safe, _admin(), time.time())
    return redirect(url_for("admin.evacuation", _anchor=f"p-{handle}"))


@bp.post("/evacuation/<int:roll_call_id>/end")
@admin_required
def evacuation_end(roll_call_id: int):
    call = roll_call(g.db, roll_call_id)
    if call is None:
        return redirect(url_for("admin.evacuation"))
    if call.missing and request.form.get("confirm") != "yes":
        return render_template("admin/evacuation_end.html", call=call)
    _writer().run(end_evacuation, roll_call_id, _admin(), time.time())
    return redirect(url_for("admin.now"))


# --- the kiosk's own screen during an evacuation ---

# Visitor endpoints that are not screens: they redirect to one (which then shows the
# roll-call) or answer the kiosk's script with JSON.
_NOT_SCREENS = {
    "visitor.language",
    "visitor.reset",
    "visitor.phone",
    "visitor.matches",
    "visitor.greetings",
}


@bp.before_app_request
def evacuation_screen():
    """While an evacuation is on, every visitor screen is the roll-call: who is still
    missing and who is safe. Status, health, static files and admin pages are left alone."""
    if request.method not in ("GET", "HEAD") or request.blueprint != "visitor":
        return None
    if request.endpoint in _NOT_SCREENS:
        return None
    current = evacuation_on(g.db)
    if current is None:
        return None
    call = roll_call(g.db, current)
    return render_template(
        "visitor/evacuation.html",
        call=call,
        missing=labels(call.missing),
        safe=labels(call.safe),
        others=_in_other_languages(),
        refresh_seconds=REFRESH_SECONDS,
    )


def _in_other_languages() -> list[tuple[str, str]]:
    """The evacuation's heading in each of the space's other languages: whoever reads
    the screen in a hurry may not read the one it was left in."""
    here = _("Evacuation: leave the building now.")
    found = []
    for code in space.config().space.languages:
        with force_locale(code):
            text = _("Evacuation: leave the building now.")
        if text != here and (code, text) not in found:
            found.append((code, text))
    return found
