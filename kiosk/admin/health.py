"""Health: is everything working — sending counts to the centre, the clock, each sensor,
the storage, the software — in words a volunteer understands, and for anything that is
wrong, what to do about it.

Read-only: sync's state through `spacekiosk.syncstate`, the sensors' through
`spacekiosk.sensorstate`, the clock through `spacekiosk.clock`, the store's size through
`spacekiosk.db.size`; the disk's free space from the file system.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel.dates import format_timedelta
from babel.numbers import format_decimal
from flask import current_app, g, render_template
from flask_babel import format_datetime, format_time, get_locale, ngettext
from flask_babel import gettext as _

from kiosk import space
from kiosk.admin import admin_required, bp
from spacekiosk import __version__, clock, db, sensorstate, syncstate

HOUR, DAY = 3600, 86400
LOW_DISK_BYTES = 200 * 1000 * 1000  # below this free, or LOW_DISK_SHARE of the card
LOW_DISK_SHARE = 0.05
OK, PROBLEM, UNKNOWN = "ok", "problem", "unknown"


@dataclass(frozen=True)
class Check:
    """One thing that can go wrong: how it stands, in words, and what to do if wrong."""

    id: str
    title: str
    state: str  # OK, PROBLEM or UNKNOWN
    words: str
    todo: str = ""


@bp.get("/health")
@admin_required
def health():
    config = space.config()
    now = time.time()
    checks = [
        sync_check(syncstate.health(g.db), config, now),
        clock_check(clock.state(now), now),
        *sensor_checks(g.db, config, now),
        storage_check(g.db, config, current_app.extensions["writer"].health.state),
        Check("software", _("Software"), OK, _("spacekiosk %(version)s.", version=__version__)),
    ]
    # What needs attention first, then what cannot be known, then what works.
    checks.sort(key=lambda c: (c.state != PROBLEM, c.state != UNKNOWN))
    problems = [c for c in checks if c.state == PROBLEM]
    return render_template("admin/health.html", checks=checks, problems=problems)


# --- words ---


def ago(seconds: float) -> str:
    """A span of time as people say it: "3 days", "5 hours", "20 minutes"."""
    return format_timedelta(max(seconds, 60), threshold=1.5, locale=get_locale())


def when(at: float, now: float) -> str:
    """A moment in the space's time: the time alone if today, else the date too."""
    moment = datetime.fromtimestamp(at, UTC)
    zone = space.config().space.timezone
    if moment.astimezone(zone).date() == datetime.fromtimestamp(now, zone).date():
        return format_time(moment, "short")
    return format_datetime(moment, "short")


def size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{format_decimal(n / scale, '#,##0.#', locale=get_locale())} {unit}"
    return f"{format_decimal(n, '#,##0', locale=get_locale())} B"


# --- the checks ---


def sync_check(state: dict, config, now: float) -> Check:
    """Whether counts reach the central server, and if not for how long."""
    title = _("Sending counts to the central server")
    broker, last = state["broker"], state["last_delivery_at"]
    backlog, oldest = state["backlog"] or 0, state["oldest_pending"]
    waiting = (
        ngettext(
            "%(num)d hour of counts is waiting to be sent.",
            "%(num)d hours of counts are waiting to be sent.",
            backlog,
        )
        if backlog
        else _("Nothing is waiting to be sent.")
    )
    # Counts go out every send_every_minutes (a metered link's every contact_every_minutes);
    # only a wait well past that is a problem.
    patience = max(DAY, 2 * config.sync.every_seconds + HOUR)
    behind_since = None
    if backlog and oldest is not None and now - (oldest + HOUR) > patience:
        behind_since = last if last is not None else oldest
    if broker.startswith("refused"):
        return Check(
            "sync",
            title,
            PROBLEM,
            _("The central server refuses this space's counts.") + " " + waiting,
            _(
                "Ask the central team to check this space's login and password. The counts "
                "are kept here meanwhile."
            ),
        )
    if broker in ("not started", "stopped") and (behind_since or last is None):
        return Check(
            "sync",
            title,
            PROBLEM,
            _("The service that sends the counts is not running.") + " " + waiting,
            _(
                "Restart the Pi. If this stays, ask the central team for help; the counts are "
                "kept here meanwhile."
            ),
        )
    if behind_since is not None:
        return Check(
            "sync",
            title,
            PROBLEM,
            _(
                "The Pi has not reached the central server for %(span)s.",
                span=ago(now - behind_since),
            )
            + " "
            + waiting,
            _(
                "Check the network cable or Wi-Fi; counts are kept and will be sent when it "
                "is back."
            ),
        )
    link = {
        "connected": _("Connected to the central server."),
        "connecting": _("Connecting to the central server."),
        "unreachable": _("The central server cannot be reached just now."),
    }.get(broker, "")
    if broker == "between contacts" and state.get("next_contact_at"):
        link = _(
            "The link is metered: the Pi calls the central server every %(span)s, and "
            "next at %(time)s.",
            span=ago(config.sync.every_seconds),
            time=when(max(state["next_contact_at"], now), now),
        )
    sent = (
        _("Counts last reached it at %(time)s.", time=when(last, now))
        if last is not None
        else _("No counts have been sent yet.")
    )
    return Check("sync", title, OK, " ".join(w for w in (link, sent, waiting) if w))


def clock_check(state: str, now: float) -> Check:
    title = _("The clock")
    reads = _(
        "It reads %(time)s.", time=format_datetime(datetime.fromtimestamp(now, UTC), "medium")
    )
    if state == "synchronized":
        return Check("clock", title, OK, _("The clock is set from the internet.") + " " + reads)
    if state == "unsynchronized":
        return Check(
            "clock",
            title,
            PROBLEM,
            _("The clock has not been set from the internet yet.") + " " + reads,
            _(
                "The Pi has no clock of its own: it needs the network to set it. Check the "
                "network cable or Wi-Fi. Sign-ins are kept, and their times are corrected once "
                "the clock is set."
            ),
        )
    return Check(
        "clock",
        title,
        UNKNOWN,
        _("This computer does not say whether its clock is set from the internet.") + " " + reads,
        _("If that time is wrong, tell the central team."),
    )


def sensor_name(name: str) -> str:
    if name == "door":
        return _("The door sensor")
    if name.startswith("motion:"):
        return _("The motion sensor in %(place)s", place=name.removeprefix("motion:"))
    if name == "beam_a":
        return _("The people counter's first beam")
    if name == "beam_b":
        return _("The people counter's second beam")
    return name


def sensor_fix(name: str, reason: str | None) -> str:
    """What to do about a faulty sensor, by what the sensors service saw."""
    reason = reason or ""
    if reason.startswith("flickering"):
        return _(
            "It switches on and off faster than anything real: a loose wire or a bad "
            "contact. Check its wires at both ends. It counts again by itself once it is calm."
        )
    if name == "door":
        return _(
            "It has read “open” for too long. If the door is shut, the magnet may have come "
            "off or a wire may be cut: check them. It reports working again by itself."
        )
    if name.startswith("motion:"):
        return _(
            "It has seen movement without a break for too long. Check that no heater, fan or "
            "curtain moves in front of it, and that it is not covered."
        )
    if name in sensorstate.BEAMS:
        return _(
            "The beam has been broken for too long. Check that nothing stands in it and that "
            "both parts of the counter still face each other."
        )
    return _("Check the sensor and its wires.")


def sensor_checks(store, config, now: float) -> list[Check]:
    found = []
    health = sensorstate.health(store, config, now)
    for name, state in health.items():
        title = sensor_name(name)
        activity = _activity(store, name, now)
        if not state["ok"]:
            since = (
                _("Not working since %(time)s.", time=when(state["since"], now))
                if state["since"] is not None
                else _("Not working.")
            )
            words = since + (f" ({state['reason']})" if state["reason"] else "")
            found.append(Check(name, title, PROBLEM, words, sensor_fix(name, state["reason"])))
        elif activity is None:
            found.append(
                Check(
                    name,
                    title,
                    UNKNOWN,
                    _("It has not reported anything yet."),
                    _(
                        "If people have come and gone since the Pi was started, check that the "
                        "sensor is plugged in and its wires are connected."
                    ),
                )
            )
        else:
            working = (
                _("Working again since %(time)s.", time=when(state["since"], now))
                if state["since"] is not None
                else _("Working.")
            )
            found.append(Check(name, title, OK, f"{working} {activity}"))
    return found


def _activity(store, name: str, now: float) -> str | None:
    """What the sensor last said, and since when; None if it never said anything."""
    if name == "door":
        last = sensorstate.latest(store, "door", (sensorstate.OPEN, sensorstate.CLOSE), now)
        if last is None:
            return None
        kind, at, _detail = last
        if kind == sensorstate.OPEN:
            return _("The door is open (since %(time)s).", time=when(at, now))
        return _("The door is shut (since %(time)s).", time=when(at, now))
    if name.startswith("motion:"):
        last = sensorstate.latest(store, name, (sensorstate.MOTION, sensorstate.STILL), now)
        if last is None:
            return None
        kind, at, _detail = last
        if kind == sensorstate.MOTION:
            return _("It sees movement (since %(time)s).", time=when(at, now))
        return _("Nothing has moved since %(time)s.", time=when(at, now))
    last = sensorstate.latest(store, "counter", ("entry", "exit"), now)
    if last is None:
        return None
    return _("The people counter last counted someone at %(time)s.", time=when(last[1], now))


def storage_check(store, config, writer_state: str) -> Check:
    title = _("Storage")
    path = Path(config.database.path)
    used = db.size(store)
    try:
        disk = os.statvfs(path.parent)
        free, total = disk.f_bavail * disk.f_frsize, disk.f_blocks * disk.f_frsize
    except OSError:
        free = total = None
    words = _(
        "The database takes %(size)s (%(file)s in its file, %(wal)s waiting in its journal).",
        size=size(used.file_bytes + used.wal_bytes),
        file=size(used.file_bytes),
        wal=size(used.wal_bytes),
    )
    if free is not None:
        words = (
            _("%(free)s free of %(total)s on the SD card.", free=size(free), total=size(total))
            + " "
            + words
        )
    todo = _(
        "Raw sensor events are deleted by themselves after %(days)d days. If the card stays "
        "this full, ask the central team for help (a bigger card, or a shorter keeping "
        "period on the Settings page).",
        days=config.retention.sensor_events_days,
    )
    if writer_state != "ok":
        why = (
            _("The SD card is full: sign-ins cannot be saved.")
            if writer_state == "full"
            else _("Sign-ins cannot be saved just now.")
        )
        return Check("storage", title, PROBLEM, f"{why} {words}", todo)
    if free is not None and (free < LOW_DISK_BYTES or free < LOW_DISK_SHARE * total):
        return Check(
            "storage", title, PROBLEM, _("The SD card is nearly full.") + " " + words, todo
        )
    return Check("storage", title, OK, words)
