"""The central store as the pages read it: every space's status and buckets, held to
the protocol's bounds whatever a space managed to store before its messages were checked.

Read-only. One space's stored data must never break a page that shows every space, so
nothing here trusts a stored row: a field of the wrong type or out of bounds is left out
(a status field reads as unknown, a count as zero), an hour no space can have had (before
2000, or more than a day ahead of the collector's clock) is not read at all, and each
kind of problem is logged once per space and process, not on every page.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, NamedTuple

import msgspec

from spacekiosk import protocol

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
# The first and last instants a page or a query can name (periods.py's years).
FIRST = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
LAST = int(datetime(2101, 1, 1, tzinfo=UTC).timestamp())
AHEAD = DAY  # how far past the collector's clock a stored hour may start and be read
MAX_STATUS_CHARS = 64 * 1024  # a status is a few hundred bytes; past this it is not read
MAX_COUNT = 2**31 - 1
MAX_FAULTS = 64


class Row(NamedTuple):  # a tuple: the page makes hundreds of thousands at once
    """One stored bucket: a space's counts from `start` for `hours` hours."""

    space: str
    start: int
    hours: int
    counts: dict


class Problems:
    """Each (space, problem) logged once per process: a bad row is read on every page."""

    LIMIT = 10_000  # past this many, stay quiet rather than grow

    def __init__(self):
        self.seen: set[tuple[str, str]] = set()
        self.lock = threading.Lock()

    def note(self, space: str, problem: str) -> None:
        key = (space, problem)
        with self.lock:
            if key in self.seen or len(self.seen) >= self.LIMIT:
                return
            self.seen.add(key)
        log.warning("space %s: stored %s; left out of the pages", space, problem)


problems = Problems()


def horizon(now: float | None = None) -> int:
    """The end of what can be real: a stored hour starting later is not read."""
    return min(int(time.time() if now is None else now) + AHEAD, LAST)


# --- buckets ---

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
_Label = Annotated[str, msgspec.Meta(min_length=1, max_length=protocol.MAX_LABEL_CHARS)]
_Breakdown = Annotated[dict[_Label, Count], msgspec.Meta(max_length=protocol.MAX_LABELS)]
# The page reads six months of every space's hours at once: a compiled decoder checks
# the types and bounds as it parses, and only a row it refuses is looked at field by field.
_decode = msgspec.json.Decoder(dict[str, Count | _Breakdown]).decode
_NAMES = frozenset(protocol.COUNTS) | frozenset(protocol.BREAKDOWNS)


def _bucket_sql(space: str | None, versions: bool) -> str:
    # Only whole hours (and days) of integer starts within bounds are read; the rest is
    # not a bucket any page can draw.
    columns = "space, hour_start, hours, counts" + (", version" if versions else "")
    where = "hour_start >= ? AND hour_start < ? AND hours IN (1, 24)"
    where += " AND space = ?" if space is not None else ""
    return f"SELECT {columns} FROM usage WHERE {where}"  # noqa: S608 (no input in it)


def _bounds(since: int | None, until: int | None, now: float | None) -> tuple[int, int]:
    low = FIRST if since is None else max(since, FIRST)
    high = horizon(now) if until is None else min(until, horizon(now))
    return low, high


def rows(
    db,
    since: int | None = None,
    until: int | None = None,
    space: str | None = None,
    now: float | None = None,
) -> list[Row]:
    """The stored buckets starting in [since, until), of one space or of all, oldest first,
    each within the protocol's bounds."""
    low, high = _bounds(since, until, now)
    params: list = [low, high] + ([space] if space is not None else [])
    found = db.execute(
        _bucket_sql(space, False) + " ORDER BY hour_start, hours, space", params
    ).fetchall()
    out = []
    for s, h, n, c in found:
        counts = _counts(s, h, n, c)
        if counts is not None:
            out.append(Row(s, h, n, counts))
    return out


def buckets(
    db, space: str, since: int | None = None, until: int | None = None, now: float | None = None
) -> list[tuple[int, int, int, dict]]:
    """A space's buckets as stored — (start, hours, version, counts) — within bounds."""
    low, high = _bounds(since, until, now)
    found = db.execute(
        _bucket_sql(space, True) + " ORDER BY hour_start, hours", [low, high, space]
    ).fetchall()
    out = []
    for s, h, n, c, version in found:
        counts = _counts(s, h, n, c)
        if counts is None:
            continue
        if not _count(version) or version < 1:
            problems.note(s, "a bucket version that is not a positive integer")
            continue
        out.append((h, n, version, counts))
    return out


def _counts(space: str, start, hours, text) -> dict | None:
    """A bucket's counts within the protocol's bounds, or None for a row that is not a
    bucket at all (a start that is not a whole hour)."""
    if type(start) is not int or start % (DAY if hours == 24 else HOUR):
        problems.note(space, "a bucket that does not start on a whole hour or day")
        return None
    try:
        counts = _decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return _coerced(space, hours, text)
    if counts.keys() <= _NAMES and _minutes_fit(counts, hours):
        return counts
    return _coerced(space, hours, text)


def _minutes_fit(counts: dict, hours: int) -> bool:
    most = 60 * hours
    return all(counts.get(name, 0) <= most for name in protocol.MINUTES)


def _coerced(space: str, hours: int, text) -> dict:
    """What can be kept of counts the fast decoder refused, field by field."""
    problems.note(space, "bucket counts outside the protocol's bounds")
    raw = _json(text)
    if not isinstance(raw, dict):
        return {}
    out: dict = {}
    for name in protocol.COUNTS:
        value = raw.get(name)
        if _count(value):
            out[name] = min(value, 60 * hours) if name in protocol.MINUTES else value
    for name in protocol.BREAKDOWNS:
        labels = raw.get(name)
        if isinstance(labels, dict):
            kept = {
                label: n
                for label, n in labels.items()
                if isinstance(label, str)
                and 0 < len(label) <= protocol.MAX_LABEL_CHARS
                and _count(n)
            }
            out[name] = dict(sorted(kept.items())[: protocol.MAX_LABELS])
    return out


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT


def _json(text) -> object:
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", "replace")
    if not isinstance(text, str) or len(text) > protocol.MAX_JSON_BYTES:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# --- spaces and their statuses ---

# A metered space ([sync] link = "metered") says in its status how often it makes
# contact (`contact_every`, seconds) and sets no last will: its status says online
# between contacts, and only the time since its last contact can say it is not.
MIN_CONTACT_EVERY, MAX_CONTACT_EVERY = 60, 7 * DAY
LATE_MARGIN = HOUR  # beyond two missed contacts: the hour a contact may take


def contact_every(status: dict) -> int | None:
    """The seconds between a metered space's contacts, from its status as `status`
    left it; None for a space that keeps its connection open."""
    every = status.get("contact_every")
    return every if _interval(every) else None


def late_after(every: int) -> int:
    """How long after its last contact a metered space is late: two of its intervals
    (one scheduled contact may fail without alarm) and an hour."""
    return 2 * every + LATE_MARGIN


def spaces(db, now: float | None = None) -> list[dict]:
    """Every space heard from, by id: when the collector first and last heard from it,
    its last status (made safe by `status`), how many buckets it has stored, and the
    start of its oldest one within bounds."""
    found = db.execute("""SELECT s.id, s.first_seen, s.last_seen, s.status
                          FROM spaces s ORDER BY s.id""").fetchall()
    stored = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT space, count(*), min(hour_start), max(hour_start) FROM usage GROUP BY space"
        ).fetchall()
    }
    low, high = FIRST, horizon(now)
    out = []
    for space, first_seen, last_seen, text in found:
        hours, oldest, newest = stored.get(space, (0, None, None))
        if oldest is not None and not (
            type(oldest) is int and type(newest) is int and low <= oldest and newest < high
        ):
            problems.note(space, "hours outside any possible range")
            row = db.execute(
                "SELECT min(hour_start) FROM usage WHERE space = ? AND hour_start >= ?"
                " AND hour_start < ?",
                [space, low, high],
            ).fetchone()
            oldest = row[0] if row else None
        out.append(
            {
                "id": space,
                "first_seen": _moment(first_seen),
                "last_seen": _moment(last_seen),
                "status": status(space, text, now),
                "hours": hours,
                "earliest": oldest,
            }
        )
    return out


def status(space: str, text, now: float | None = None) -> dict:
    """A stored status with only what the pages can show: each field of the right type
    and within bounds, or left out (as if the space had not said it)."""
    if text in (None, "", "{}"):
        return {}
    raw = _json(text) if not isinstance(text, str) or len(text) <= MAX_STATUS_CHARS else None
    if not isinstance(raw, dict):
        problems.note(space, "a status that is not a JSON object of a sensible size")
        return {}
    out: dict = {}
    wrong: list[str] = []

    def keep(name: str, value: object, ok: bool) -> None:
        if ok:
            out[name] = value
        elif name in raw:
            wrong.append(name)

    if "online" in raw:  # present and wrong reads as offline: the page says "offline"
        out["online"] = raw["online"] is True
    backlog = raw.get("backlog")
    keep("backlog", backlog, _count(backlog))
    pending = raw.get("oldest_pending")
    keep("oldest_pending", pending, _hour_text(pending))
    synced = _moment(raw.get("last_sync"), now)
    keep("last_sync", synced, synced is not None)
    agent = raw.get("agent")
    keep("agent", agent, _text(agent, 40))
    clock = raw.get("clock")
    keep("clock", clock, _text(clock, 40))
    store = raw.get("store")
    keep("store", store, store in protocol.STORE_STATES)
    every = raw.get("contact_every")
    keep("contact_every", every, _interval(every))
    if "sensors" in raw:  # what can be kept of them, even if some were wrong
        out["sensors"], bad = _sensors(raw["sensors"])
        if bad:
            wrong.append("sensors")
    if "about" in raw:
        about, bad = _about(raw["about"])
        if about:
            out["about"] = about
        if bad:
            wrong.append("about")
    if wrong:
        problems.note(space, f"status fields out of bounds ({', '.join(sorted(wrong))})")
    return out


def _interval(value: object) -> bool:
    return type(value) is int and MIN_CONTACT_EVERY <= value <= MAX_CONTACT_EVERY


def _moment(value: object, now: float | None = None) -> float | None:
    """A time in seconds since the epoch, within what can be real, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not FIRST <= value < horizon(now):
        return None
    return float(value)


def _hour_text(value: object) -> bool:
    try:
        return isinstance(value, str) and FIRST <= protocol.hour_epoch(value) < LAST
    except protocol.ProtocolError:
        return False


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def _sensors(value: object) -> tuple[dict, bool]:
    """({"faults": {sensor: reason}, "door_alert": bool}, whether anything was wrong)."""
    if not isinstance(value, dict):
        return {}, True
    bad = False
    faults = value.get("faults") or {}
    if not isinstance(faults, dict):
        faults, bad = {}, True
    kept = {
        name: reason
        for name, reason in list(faults.items())[:MAX_FAULTS]
        if _text(name, protocol.MAX_LABEL_CHARS) and _text(reason, 200)
    }
    bad = bad or len(kept) != len(faults)
    alert = value.get("door_alert", False)
    bad = bad or not isinstance(alert, bool)
    return {"faults": kept, "door_alert": alert is True}, bad


def _about(value: object) -> tuple[dict, bool]:
    """What a space says of itself: a name, a time zone, a capacity (each optional)."""
    if not isinstance(value, dict):
        return {}, True
    out, bad = {}, False
    for name, ok in (
        ("name", _text(value.get("name"), protocol.MAX_LABEL_CHARS)),
        ("timezone", _text(value.get("timezone"), 64)),
        ("capacity", _count(value.get("capacity")) and 1 <= value["capacity"] <= 10000),
    ):
        if ok:
            out[name] = value[name]
        elif value.get(name) is not None:
            bad = True
    return out, bad
