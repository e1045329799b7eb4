"""Settings: opening hours and days closed, the sign-in's languages, purposes, capacity
and times, the participation guidelines, retention, and the SpaceAPI contact and location.

One form per group. What a form posts is turned into settings as the config file would
write them and saved through spacekiosk/settings.py, which checks the whole config with
the file's own checker: a refusal comes back next to its field, in the checker's words,
and nothing of that form is saved. Every change goes into the audit log, old and new, in
the same transaction. The store is the source of truth for these settings (the file gives
their starting values and is never written here); every service reads them at its next
page, hour or status, without a restart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from kiosk import i18n
from kiosk import space as space_config
from kiosk.admin import admin_required, audit, bp
from spacekiosk import settings
from spacekiosk.config import LANGUAGES, WEEKDAYS, Retention, SpaceApi, SpaceConfig
from spacekiosk.db import write

GROUPS = {
    "hours": _l("Opening hours"),
    "signin": _l("Signing in"),
    "guidelines": _l("Participation guidelines"),
    "retention": _l("Keeping data"),
    "spaceapi": _l("Contact and location"),
}
DAY_NAMES = {
    "mon": _l("Monday"),
    "tue": _l("Tuesday"),
    "wed": _l("Wednesday"),
    "thu": _l("Thursday"),
    "fri": _l("Friday"),
    "sat": _l("Saturday"),
    "sun": _l("Sunday"),
}
RETENTION = {
    "days": _l("Visitors' names and e-mail addresses, after their last visit (days)"),
    "sensor_events_days": _l("Raw sensor events (days)"),
    "visits_days": _l("Visits of visitors whose names were erased (days)"),
}
SPACEAPI = {
    "email": _l("E-mail"),
    "phone": _l("Phone (with the country code, e.g. +254 …)"),
    "matrix": _l("Matrix room"),
    "mastodon": _l("Mastodon account"),
    "address": _l("Postal address"),
    "lat": _l("Latitude (decimal degrees)"),
    "lon": _l("Longitude (decimal degrees)"),
}


@dataclass
class Posted:
    """A group's form as posted: the settings it makes, and what could not be read."""

    changes: dict = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


# --- from the config in effect to a form's fields, and back ---


def fields_of(group: str, cfg: SpaceConfig) -> dict[str, str]:
    """The group's fields as the form shows them, from the config in effect."""
    if group == "hours":
        shown = {
            f"hours-{day}": settings.hours_text(cfg.space.hours_on(i))
            for i, day in enumerate(WEEKDAYS)
        }
        return shown | {"closed_dates": "\n".join(cfg.space.closed_dates)}
    if group == "signin":
        return {
            "default_language": cfg.space.languages[0],
            "purposes": "\n".join(cfg.kiosk.purposes),
            "capacity": str(cfg.space.capacity),
            "idle_seconds": str(cfg.kiosk.idle_seconds),
            "confirm_seconds": str(cfg.kiosk.confirm_seconds),
        }
    if group == "guidelines":
        texts = {f"guidelines-{code}": text for code, text in cfg.kiosk.guidelines.items()}
        return texts | {"version": str(cfg.kiosk.guidelines_version)}
    if group == "retention":
        return {
            f"retention-{f.name}": str(getattr(cfg.retention, f.name)) for f in fields(Retention)
        }
    shown = {}
    for f in fields(SpaceApi):
        value = getattr(cfg.spaceapi, f.name)
        shown[f"spaceapi-{f.name}"] = "" if value is None else str(value)
    return shown


def _lines(text: str) -> list[str]:
    """A list typed one a line (or with commas): each item trimmed, empty ones dropped."""
    return [item.strip() for item in re.split(r"[\n,]", text) if item.strip()]


def _whole(posted: Posted, form, name: str) -> int | None:
    text = form.get(name, "").strip()
    try:
        return int(text)
    except ValueError:
        posted.refuse(name, _("Write a whole number."))
        return None


def parse(group: str, form, cfg: SpaceConfig) -> Posted:
    """The settings a group's form makes, as the config file would write them."""
    posted = Posted()
    if group == "hours":
        week = {day: form.get(f"hours-{day}", "").strip() or "closed" for day in WEEKDAYS}
        if cfg.space.opening_hours or any(text != "closed" for text in week.values()):
            posted.changes["space.opening_hours"] = week
        # else: a space without opening hours at all stays so (not "closed every day")
        posted.changes["space.closed_dates"] = list(
            dict.fromkeys(_lines(form.get("closed_dates", "")))
        )
    elif group == "signin":
        default = form.get("default_language", "")
        chosen = [code for code in LANGUAGES if code in form.getlist("languages")]
        posted.changes["space.languages"] = [default] + [c for c in chosen if c != default]
        posted.changes["kiosk.purposes"] = list(dict.fromkeys(_lines(form.get("purposes", ""))))
        for key, name in (
            ("space.capacity", "capacity"),
            ("kiosk.idle_seconds", "idle_seconds"),
            ("kiosk.confirm_seconds", "confirm_seconds"),
        ):
            if (number := _whole(posted, form, name)) is not None:
                posted.changes[key] = number
    elif group == "guidelines":
        texts = dict(cfg.kiosk.guidelines)  # a language not shown keeps its text
        for code in cfg.space.languages:
            text = form.get(f"guidelines-{code}", "").strip()
            if text:
                texts[code] = text
            else:
                texts.pop(code, None)  # none: the kiosk's own text
        posted.changes["kiosk.guidelines"] = texts
        if form.get("accept_again") == "yes":
            posted.changes["kiosk.guidelines_version"] = cfg.kiosk.guidelines_version + 1
    elif group == "retention":
        for f in fields(Retention):
            if (number := _whole(posted, form, f"retention-{f.name}")) is not None:
                posted.changes[f"retention.{f.name}"] = number
    elif group == "spaceapi":
        for f in fields(SpaceApi):
            name = f"spaceapi-{f.name}"
            text = form.get(name, "").strip()
            if f.name not in ("lat", "lon"):
                posted.changes[f"spaceapi.{f.name}"] = text
            elif not text:
                posted.changes[f"spaceapi.{f.name}"] = None  # left out
            else:
                try:
                    posted.changes[f"spaceapi.{f.name}"] = float(text.replace(",", "."))
                except ValueError:
                    posted.refuse(name, _("Write a number, e.g. -1.2921."))
    return posted


# Where each setting's problems are shown: the field, by the key the checker names.
PLACES = {
    **{f"space.opening_hours.{day}": f"hours-{day}" for day in WEEKDAYS},
    "space.opening_hours": "hours-mon",
    "space.closed_dates": "closed_dates",
    "space.languages": "languages",
    "kiosk.purposes": "purposes",
    "space.capacity": "capacity",
    "kiosk.idle_seconds": "idle_seconds",
    "kiosk.confirm_seconds": "confirm_seconds",
    **{f"kiosk.guidelines.{code}": f"guidelines-{code}" for code in LANGUAGES},
    "kiosk.guidelines": "guidelines",
    "kiosk.guidelines_version": "version",
    **{f"retention.{f.name}": f"retention-{f.name}" for f in fields(Retention)},
    **{f"spaceapi.{f.name}": f"spaceapi-{f.name}" for f in fields(SpaceApi)},
    "spaceapi": "spaceapi-lat",
}


def place(path: str) -> str:
    """The form field a problem at `path` belongs to ("" for the form as a whole)."""
    found = [key for key in PLACES if settings.owns(key, path) and path]
    return PLACES[max(found, key=len)] if found else ""


# --- the page ---


def _base() -> SpaceConfig:
    return current_app.config["SPACE"]


def _changed_notes(layered: settings.Layered) -> dict[str, str]:
    """For each field whose setting was changed here: when and by whom."""
    notes = {}
    for key, stored in layered.stored.items():
        if key in layered.ignored:
            continue
        at = format_datetime(datetime.fromtimestamp(stored.changed_at, UTC), "short")
        note = _("Changed by %(admin)s, %(time)s.", admin=stored.changed_by, time=at)
        notes["week" if key == "space.opening_hours" else PLACES.get(key, key)] = note
    return notes


def _page(group: str | None = None, posted: dict | None = None, problems=None, status=200):
    layered = settings.read(g.db, _base())
    cfg = layered.config
    forms = {name: fields_of(name, cfg) for name in GROUPS}
    if group and posted is not None:
        forms[group] = posted
    return render_template(
        "admin/settings.html",
        groups=GROUPS,
        forms=forms,
        failed=group if problems else None,
        problems=problems or {},
        focus=next((name for name in problems or {} if name), None),  # the first to fix
        cfg=cfg,
        languages=[(code, i18n.native_name(code)) for code in LANGUAGES],
        chosen=set(request.form.getlist("languages")) if problems else set(cfg.space.languages),
        day_names=DAY_NAMES,
        retention=[
            (f"retention-{f.name}", RETENTION.get(f.name, f.name)) for f in fields(Retention)
        ],
        spaceapi=[(f"spaceapi-{f.name}", SPACEAPI[f.name]) for f in fields(SpaceApi)],
        notes=_changed_notes(layered),
        saved=request.args.get("saved") if request.method == "GET" else None,
        changed=request.args.get("changed", type=int),
        version=layered.version,
    ), status


@bp.get("/settings", endpoint="settings")
@admin_required
def settings_page():
    return _page()


@bp.post("/settings/<group>")
@admin_required
def settings_save(group: str):
    if group not in GROUPS:
        return redirect(url_for("admin.settings"))
    cfg = space_config.config()
    posted = parse(group, request.form, cfg)
    shown = {k: v for k, v in request.form.items() if k != "csrf_token"}
    if posted.errors:
        return _page(group, shown, posted.errors, 400)
    admin = current_user.name
    try:
        with write(g.db):
            changed = settings.save(g.db, _base(), posted.changes, admin)
            for change in changed:
                audit(g.db, "setting changed", describe(change))
    except settings.SettingsError as exc:
        problems: dict[str, list[str]] = {}
        for problem in exc.problems:
            problems.setdefault(place(problem.path), []).append(problem.message)
        return _page(group, shown, problems, 400)
    target = url_for("admin.settings", saved=group, changed=len(changed))
    return redirect(f"{target}#{group}")


def describe(change: settings.Changed) -> str:
    """A change for the audit log: the setting, its value before and after."""

    def shown(value) -> str:
        if value is None:
            return "(not set)"
        return json.dumps(value, ensure_ascii=False)

    return f"{change.key}: {shown(change.old)} → {shown(change.new)}"
