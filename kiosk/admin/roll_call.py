"""The roll-call: a sheet to print, and evacuation mode, in which the kiosk's screen shows
who is still missing while admins tick people off as safe from their phones.

Its state is in the store (roll_calls and roll_call_people, migration m008), written
here alone through the kiosk's writer, so every server thread and a restarted kiosk
agree on whether an evacuation is on. While one is, every visitor screen the kiosk
serves is the roll-call (`evacuation_screen`), which refreshes itself without a script.
Starting and ending one go into the audit log; each tick says who gave it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import abort, g, jsonify, redirect, render_template, request, url_for
from flask_babel import force_locale, format_datetime, format_time
from flask_babel import gettext as _
from sqlite_utils import Database

from kiosk import space, visits
from kiosk.admin import admin_required, audit, bp
from kiosk.admin.now import admin_name, when, writer
from spacekiosk.db import write

REFRESH_SECONDS = 5  # how often the kiosk's roll-call screen reloads itself
# How often an admin's phone reloads the roll-call, to see other admins' ticks: seldom
# enough that a reload does not land in the middle of a tap.
PHONE_REFRESH_SECONDS = 15

# The largest id SQLite holds: a larger one in a URL names no roll-call (404, not a 500).
MAX_ID = 2**63 - 1


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


def load(db: Database, roll_call_id: int) -> RollCall | None:
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


@bp.context_processor
def _evacuation() -> dict:
    """Whether an evacuation is on, for the admin pages to say so."""
    return {"evacuation": evacuation_on(g.db)}


# --- the pages ---


@bp.get("/roll-call")
@admin_required
def roll_call_print():
    """The roll-call to print: the evacuation's, ticks and all, if one is on; else
    everyone signed in now, with empty boxes."""
    at = time.time()
    current = evacuation_on(g.db)
    if current is not None:
        people = load(g.db, current).people
    else:
        people = [
            Person(v.handle, v.name, v.signed_in_at, None, None) for v in visits.present(g.db)
        ]
    return render_template(
        "admin/roll_call.html",
        people=people,
        since=[when(p.signed_in_at, at) for p in people],
        printed_at=format_datetime(datetime.fromtimestamp(at, UTC), "long"),
    )


@bp.get("/evacuation")
@admin_required
def evacuation():
    at = time.time()
    current = evacuation_on(g.db)
    call = load(g.db, current) if current is not None else None
    return render_template(
        "admin/evacuation.html",
        call=call,
        present=visits.present_count(g.db),
        when=lambda ts: when(ts, at),
        refresh_seconds=PHONE_REFRESH_SECONDS,
        live=request.args.get("live") == "1",
    )


@bp.post("/evacuation/start")
@admin_required
def evacuation_start():
    writer().run(start_evacuation, admin_name(), time.time())
    return redirect(url_for("admin.evacuation"))


@bp.post("/evacuation/<int:roll_call_id>/safe/<handle>")
@admin_required
def evacuation_mark(roll_call_id: int, handle: str):
    if roll_call_id > MAX_ID:
        abort(404)
    safe = request.form.get("safe", "yes") == "yes"
    if visits.is_handle(handle):
        writer().run(mark, roll_call_id, handle, safe, admin_name(), time.time())
    live = "1" if request.form.get("live") == "1" else None  # still updating by itself
    return redirect(url_for("admin.evacuation", live=live, _anchor=f"p-{handle}"))


@bp.post("/evacuation/<int:roll_call_id>/end")
@admin_required
def evacuation_end(roll_call_id: int):
    if roll_call_id > MAX_ID:
        abort(404)
    call = load(g.db, roll_call_id)
    if call is None:
        return redirect(url_for("admin.evacuation"))
    if call.missing and request.form.get("confirm") != "yes":
        return render_template("admin/evacuation_end.html", call=call)
    writer().run(end_evacuation, roll_call_id, admin_name(), time.time())
    return redirect(url_for("admin.now"))


# --- the kiosk's own screen during an evacuation ---

# Visitor endpoints that are not screens: they redirect to one (which then shows the
# roll-call) or answer the kiosk's script with JSON.
_NOT_SCREENS = {
    "visitor.language",
    "visitor.reset",
    "visitor.phone",
    "visitor.matches",
}
# Welcome asks this every 3 seconds on the kiosk's screen: while an evacuation is on it
# is told to reload, so a screen nobody touches turns into the roll-call at once.
_POLLED = "visitor.greetings"


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
    if request.endpoint == _POLLED:
        return jsonify({"reload": True})
    call = load(g.db, current)
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
