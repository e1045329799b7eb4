"""The central team's JSON API and CSV: every space's state, and usage summed by period.

`GET /api/v1/usage?space=ID` alone lists the buckets as stored, with their versions.
With `granularity=hour|day|week|month` it sums them per period instead, for one space
or (without `space`) for all. `format=csv`, or `/api/v1/usage.csv`, gives the same as CSV.
Read-only.
"""

from __future__ import annotations

import csv
import io
import time

from flask import Blueprint, Response, abort, g, jsonify, request

from collector import alerts, periods, reading, reports, store
from collector.periods import GRANULARITIES, HOUR, iso
from spacekiosk import protocol
from spacekiosk.config import SPACE_ID
from spacekiosk.protocol import Bucket

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# A spreadsheet runs a cell that starts like a formula; labels and names come from
# outside the central team, so such a cell is written with a leading apostrophe.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@bp.get("/spaces")
def spaces():
    heard, raised, now = store.contacts(g.db), alerts.current(g.db), time.time()
    return jsonify(
        {
            "spaces": [
                space_json(s, heard.get(s.id), raised.get(s.id, []), now)
                for s in reports.spaces(g.db, now)
            ]
        }
    )


def space_json(
    space: reports.Space,
    heard: tuple | None = None,
    raised: list | None = None,
    now: float | None = None,
) -> dict:
    """What the API says about a space: names, times in UTC ISO-8601, its last status.
    `heard`: when the collector itself last heard from it and last committed its usage
    (`last_sync` is the space's own word, from its status); `raised`: its alerts.
    `online` as the page counts it: a metered space (`contact_every`, the seconds
    between its contacts; null for one always connected) is not online once `late`."""
    now = time.time() if now is None else now
    status = space.status
    sensors = status.get("sensors") or {}
    last_contact, last_delivery = heard or (None, None)
    return {
        "id": space.id,
        "name": space.name,
        "capacity": space.capacity,
        "first_seen": iso(space.first_seen),
        "last_seen": iso(space.last_seen),
        "last_contact": iso(last_contact),
        "last_delivery": iso(last_delivery),
        "online": space.online(now),
        "contact_every": space.contact_every,
        "late": space.late(now),
        "backlog": status.get("backlog"),
        "oldest_pending": status.get("oldest_pending"),
        "last_sync": iso(status.get("last_sync")),
        "agent": status.get("agent"),
        "clock": status.get("clock"),
        "store": status.get("store", "ok" if status else None),
        "sensors": {
            "faults": sensors.get("faults") or {},
            "door_alert": bool(sensors.get("door_alert")),
        },
        "hours": space.hours,
        "alerts": [
            {"kind": a.kind, "state": a.state, "since": iso(a.since), "detail": a.detail}
            for a in raised or []
        ],
    }


@bp.get("/usage")
def usage():
    return _usage(request.args.get("format", "json"))


@bp.get("/usage.csv")
def usage_csv():
    return _usage("csv")


def _usage(fmt: str):
    if fmt not in ("json", "csv"):
        abort(400, "'format' is json or csv")
    space = request.args.get("space") or None
    granularity = request.args.get("granularity") or None
    if granularity is not None and granularity not in GRANULARITIES:
        abort(400, f"'granularity' is one of {', '.join(GRANULARITIES)}, not {granularity[:20]!r}")
    if space is None and granularity is None:
        abort(400, "give ?space=<id> for its stored buckets, or a ?granularity= to sum them")
    if space is not None and not _known(space):
        abort(404, f"no data from a space called {space[:40]!r}")
    since, until = _span()
    if granularity is None:
        stored = reading.buckets(g.db, space, since, until)
        if fmt == "csv":
            return _csv(space, stored, space)
        wire = [Bucket(start, v, counts, hours).to_wire() for start, hours, v, counts in stored]
        return jsonify({"space": space, "buckets": wire})
    found = periods.summed(periods.rows(g.db, since, until, space), granularity)
    over = reports.over(time.time())
    moved = reports.sensed(g.db)
    if not (space in moved if space else moved):
        # No motion sensor has ever reported: occupied minutes are not known, not zero.
        found = [(s, h, c | {"occupied_minutes": None}) for s, h, c in found]
    found = [(s, h, c | _people(s, h, c, granularity, since, until)) for s, h, c in found]
    if fmt == "csv":
        name = f"{space or 'all'}-{granularity}"
        return _csv(space or "all", [(s, h, None, c) for s, h, c in found], name)
    return jsonify(
        {
            "space": space,
            "granularity": granularity,
            "from": iso(since),
            "to": iso(until),
            # `hours`: the period's length, not the hours of data in it; `provisional`:
            # it holds hours not over yet, whose minute counts and peak are still to come.
            "distinct_visitors": DISTINCT_NOTE if space else DISTINCT_NOTE + ALL_SPACES_NOTE,
            "periods": [
                {"start": iso(s), "hours": h, "provisional": s + h * HOUR > over} | c
                for s, h, c in found
            ],
        }
    )


DISTINCT_NOTE = (
    "distinct_visitors: the different people who signed in in the period (the sum of its "
    "hours' first_in_<period>), and returning_distinct_visitors those of them who had come "
    "before it; exact for a whole hour, day, week or month, null for a period cut by "
    "'from' or 'to' (not known from hourly counts) or holding hours of an agent that did "
    "not count them. unique_visitors is each hour's distinct visitors added up."
)
ALL_SPACES_NOTE = (
    " All spaces: each space's distinct visitors added up (someone who came to two "
    "spaces counts at each: a name is not an identity across spaces)."
)


def _people(
    start: int, hours: int, counts: dict, granularity: str, since: int | None, until: int | None
) -> dict:
    """The period's distinct visitors and those returning, where the hours say them
    exactly: a whole period (not cut by `since` or `until`); an hour's are its own."""
    if (since is not None and since > start) or (
        until is not None and until < start + hours * HOUR
    ):
        return {"distinct_visitors": None, "returning_distinct_visitors": None}
    if granularity == "hour" and hours == 1:
        return {
            "distinct_visitors": counts.get("unique_visitors", 0),
            "returning_distinct_visitors": counts.get("returning_visitors", 0),
        }
    return periods.people(counts, "day" if granularity == "hour" else granularity)


def _known(space: str) -> bool:
    if not SPACE_ID.match(space):  # not a space id: no query needed to know it is unknown
        return False
    if store.known(g.db, space):
        return True
    return bool(g.db.execute("SELECT 1 FROM space_info WHERE space = ?", [space]).fetchone())


def _span() -> tuple[int | None, int | None]:
    """`from` (inclusive) and `to` (exclusive), or 400 saying what is wrong."""
    try:
        since, until = (
            periods.parse_time(request.args[name], name) if request.args.get(name) else None
            for name in ("from", "to")
        )
    except ValueError as exc:
        abort(400, str(exc))
    if since is not None and until is not None and since >= until:
        abort(400, "'from' must be before 'to' ('to' is not included)")
    return since, until


def _labels(rows: list[tuple], name: str) -> list[str]:
    return sorted({label for *_, counts in rows for label in counts.get(name) or {}})


PEOPLE = ("distinct_visitors", "returning_distinct_visitors")


def safe_cell(value) -> object:
    """A CSV cell a spreadsheet will show, not run."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _csv(space: str, rows: list[tuple], filename: str) -> Response:
    """One row per bucket or period: a column per count, `purpose:<label>` and
    `event:<label>` for the breakdowns. Versions only for stored buckets."""
    versions = any(version is not None for _s, _h, version, _c in rows)
    purposes, events = _labels(rows, "by_purpose"), _labels(rows, "by_event")
    people = [n for n in PEOPLE if any(n in c for *_, c in rows)]  # periods, not buckets
    header = ["space", "start", "hours", *(["version"] if versions else []), *protocol.COUNTS]
    header += people
    header += [f"purpose:{p}" for p in purposes] + [f"event:{e}" for e in events]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for start, hours, version, counts in rows:
        line = [safe_cell(space), iso(start), hours, *([version] if versions else [])]
        line += [counts.get(name, 0) for name in protocol.COUNTS]
        line += [counts.get(name) for name in people]
        line += [(counts.get("by_purpose") or {}).get(p, 0) for p in purposes]
        line += [(counts.get("by_event") or {}).get(e, 0) for e in events]
        writer.writerow(line)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="usage-{filename}.csv"'},
    )
