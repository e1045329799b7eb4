"""Events: today's and upcoming community events, which sign-ins can be tagged with.

The events are a setting like the others (spacekiosk/settings.py, key "events"): the
file's `[[events]]` are the starting list, and once an admin adds, changes or deletes one
here the whole list lives in the store. Each is checked by the file's own checker; every
change goes into the audit log. An event is reached by a key made from what it is (name,
day and hours), so a form left open while someone else changed that event finds it gone
instead of changing another.
"""

from __future__ import annotations

import hashlib
import time
from datetime import date
from datetime import time as dtime

from babel import dates
from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_login import current_user

from kiosk import space as space_config
from kiosk.admin import admin_required, audit, bp
from spacekiosk import hours, settings
from spacekiosk.config import Event, SpaceConfig
from spacekiosk.db import write

KEEP_PAST_DAYS = 365  # past events older than this are dropped when the list is saved


def key_of(event: Event | dict) -> str:
    """A short key for an event, from what it is."""
    raw = event if isinstance(event, dict) else settings.as_toml(event)
    text = "\0".join(str(raw.get(k, "")) for k in ("name", "date", "hours"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _form_event(form) -> dict:
    """The event a form describes, as the config file would write it."""
    start, end = form.get("start", "").strip(), form.get("end", "").strip()
    return {
        "name": form.get("name", "").strip(),
        "date": form.get("date", "").strip(),
        "hours": f"{start}-{end}" if start or end else "",
    }


def _shown(event: dict) -> dict:
    """An event's form fields."""
    start, _sep, end = event.get("hours", "").partition(",")[0].partition("-")
    return {
        "name": event["name"],
        "date": event["date"],
        "start": start.strip(),
        "end": end.strip(),
    }


def _kept(cfg: SpaceConfig, now: float) -> list[dict]:
    """The list as the file would write it, without events past for a year."""
    cutoff = time.strftime("%Y-%m-%d", time.gmtime(now - KEEP_PAST_DAYS * 86400))
    return [e for e in settings.as_toml(cfg).get("events", []) if e["date"] >= cutoff]


# --- the page ---


def _page(form=None, problems=None, editing: str | None = None, status: int = 200):
    cfg = space_config.config()
    now = time.time()
    events = hours.upcoming(cfg, now)
    today = hours.todays_event(cfg, now)
    return render_template(
        "admin/events.html",
        events=[(key_of(e), e) for e in events],
        today=today.date if today else None,
        todays=today,
        form=form or {},
        problems=problems or {},
        focus=next((name for name in problems or {} if name), "name" if problems else None),
        editing=editing,
        past=len(cfg.events) - len(events),
        done=request.args.get("done") if request.method == "GET" else None,
        format_date=format_day,
        format_clock=format_clock,
    ), status


def format_day(iso: str) -> str:
    """A day as the admin's language writes it, with its weekday: "Tue, 1 Dec 2026"."""
    return dates.format_skeleton("yMMMEd", date.fromisoformat(iso), locale=get_locale())


def format_clock(at: dtime) -> str:
    """A time of day as the admin's language writes it (24:00 is the day's end)."""
    if at == dtime(23, 59, 59):
        return "24:00"
    return dates.format_time(at, "short", locale=get_locale())


@bp.get("/events")
@admin_required
def events():
    return _page()


@bp.get("/events/<key>")
@admin_required
def event_edit(key: str):
    found = _find(space_config.config(), key)
    if found is None:
        return redirect(url_for("admin.events", done="gone"))
    return _page(_shown(settings.as_toml(found)), editing=key)


def _find(cfg: SpaceConfig, key: str) -> Event | None:
    return next((e for e in cfg.events if key_of(e) == key), None)


@bp.post("/events")
@admin_required
def event_add():
    event = _form_event(request.form)
    return _save(lambda listed: [*listed, event], "event added", event)


@bp.post("/events/<key>")
@admin_required
def event_change(key: str):
    event = _form_event(request.form)

    def change(listed: list[dict]) -> list[dict] | None:
        if not any(key_of(e) == key for e in listed):
            return None
        return [event if key_of(e) == key else e for e in listed]

    return _save(change, "event changed", event, editing=key)


@bp.post("/events/<key>/delete")
@admin_required
def event_delete(key: str):
    def drop(listed: list[dict]) -> list[dict] | None:
        kept = [e for e in listed if key_of(e) != key]
        return kept if len(kept) < len(listed) else None

    gone = _find(space_config.config(), key)
    if gone is None:
        return redirect(url_for("admin.events", done="gone"))
    return _save(drop, "event deleted", settings.as_toml(gone))


def _save(change, action: str, event: dict, editing: str | None = None):
    base = current_app.config["SPACE"]
    admin = current_user.name
    try:
        with write(g.db):
            # The list as stored now, inside the transaction: another admin's change
            # made meanwhile is kept, not overwritten.
            listed = _kept(settings.effective(g.db, base), time.time())
            new = change(listed)
            if new is None:
                return redirect(url_for("admin.events", done="gone"))
            if settings.save(g.db, base, {"events": sorted(new, key=_order)}, admin):
                audit(g.db, action, f"{event['name']} · {event['date']} {event['hours']}"[:300])
    except settings.SettingsError as exc:
        problems: dict[str, list[str]] = {}
        for problem in exc.problems:
            problems.setdefault(_place(problem.path), []).append(problem.message)
        return _page(_shown(event), problems, editing, 400)
    return redirect(url_for("admin.events", done=action.split()[-1]))


def _order(event: dict) -> tuple:
    return (event.get("date", ""), event.get("hours", ""), event.get("name", ""))


def _place(path: str) -> str:
    """The field a problem at `path` ("events[3].date", "events") is shown under."""
    for name in ("name", "date", "hours"):
        if path.endswith(f".{name}"):
            return "time" if name == "hours" else name
    return ""
