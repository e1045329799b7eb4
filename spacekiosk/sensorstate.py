"""What the sensors say at a moment, read from sensor_events: the door, and whether each
sensor can be trusted, as the sensors daemon recorded it.

A read model: the sensors daemon writes these events, and the kiosk's status API, the
sync agent's status message and the daemon itself (at start) read them through here. Every answer
is a few lookups of a sensor's latest event of a kind, each one index seek
(sensor_events_sensor_kind, from migration m003) however long the log has grown.
"""

from __future__ import annotations

from sqlite_utils import Database

from spacekiosk import config as configuration
from spacekiosk.config import SpaceConfig

OPEN, CLOSE = "open", "close"
MOTION, STILL = "motion", "still"
FAULT, OK, ALERT = "fault", "ok", "alert"  # a sensor's health as the daemon judged it
BEAMS = ("beam_a", "beam_b")


def motion_name(motion: configuration.Motion) -> str:
    """The name a PIR's events are stored under."""
    return f"motion:{motion.location}"


def sensor_names(sensors: configuration.Sensors) -> list[str]:
    """The name of each sensor the config names, as its events are stored."""
    names = ["door"] if sensors.door else []
    names += [motion_name(m) for m in sensors.motion]
    names += list(BEAMS) if sensors.counter else []
    return names


def latest(db: Database, sensor: str, kinds: tuple[str, ...], now: float) -> tuple | None:
    """The sensor's last event of one of `kinds` at or before `now`: (kind, at, detail)."""
    best = None
    for kind in kinds:
        row = db.execute(
            "SELECT at, id, kind, detail FROM sensor_events WHERE sensor = ? AND kind = ? "
            "AND at <= ? ORDER BY at DESC, id DESC LIMIT 1",
            [sensor, kind, now],
        ).fetchone()
        if row and (best is None or row[:2] > best[:2]):  # latest by time, then by id
            best = row
    if best is None:
        return None
    at, _, kind, detail = best
    return kind, at, detail


def door(db: Database, config: SpaceConfig, now: float) -> dict | None:
    """{"open", "since", "alert"} of the door at `now`; None without a door sensor.

    `since` is when it last opened or shut (None before anything was recorded); `alert`
    says it has stood open past `sensors.door.open_alert_minutes` (the daemon's "alert"
    event after the last opening).
    """
    if config.sensors.door is None:
        return None
    last = latest(db, "door", (OPEN, CLOSE), now)
    if last is None:
        return {"open": False, "since": None, "alert": False}
    kind, since, _ = last
    is_open = kind == OPEN
    alert = latest(db, "door", (ALERT,), now) if is_open else None
    return {"open": is_open, "since": since, "alert": alert is not None and alert[1] >= since}


def health(db: Database, config: SpaceConfig, now: float) -> dict[str, dict]:
    """{"ok", "reason", "since"} for each configured sensor ("door", "motion:<location>",
    "beam_a", "beam_b"): its last "fault" or "ok" event; ok with since None if neither."""
    found = {}
    for name in sensor_names(config.sensors):
        last = latest(db, name, (FAULT, OK), now)
        if last is None:
            found[name] = {"ok": True, "reason": None, "since": None}
        else:
            kind, at, detail = last
            found[name] = {"ok": kind == OK, "reason": detail, "since": at}
    return found


def recorded(db: Database, config: SpaceConfig, now: float) -> dict[str, str]:
    """The last state stored for the door and each PIR ("open"/"close",
    "motion"/"still"), for the sensors the store has seen."""
    names = [("door", (OPEN, CLOSE))] if config.sensors.door else []
    names += [(motion_name(m), (MOTION, STILL)) for m in config.sensors.motion]
    found = {}
    for name, kinds in names:
        last = latest(db, name, kinds, now)
        if last is not None:
            found[name] = last[0]
    return found
