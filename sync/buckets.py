"""Hourly counts from the space's own tables. Read-only: outbox.py stores what it returns.

Only counts come out of here — no names, e-mails, visitor ids or per-visit times.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlite_utils import Database

from sensors import occupancy
from spacekiosk import BUILD_DATE
from spacekiosk.config import SpaceConfig

HOUR = 3600
EARLIEST = int(datetime.fromisoformat(BUILD_DATE).replace(tzinfo=UTC).timestamp())


def hour_of(ts: float) -> int:
    return int(ts // HOUR * HOUR)


def compute(
    db: Database, since: int, until: int, config: SpaceConfig | None = None
) -> dict[int, dict[str, int]]:
    """Counts for every hour in [since, until) that had any activity.

    Times before the build date cannot be real (a Pi booted without its clock) and are
    left out rather than published as 1970.
    """
    since = max(since, EARLIEST)
    hours: dict[int, dict[str, int]] = defaultdict(dict)

    def add(sql: str, names: tuple[str, ...], params=(since, until)) -> None:
        for hour, *values in db.execute(sql, params):
            for name, value in zip(names, values, strict=True):
                if value:
                    hours[hour][name] = value

    add(
        """SELECT CAST(signed_in_at / 3600 AS INTEGER) * 3600 AS h,
                   count(*), count(DISTINCT visitor_id)
            FROM visits WHERE signed_in_at >= ? AND signed_in_at < ? GROUP BY h""",
        ("signins", "unique_visitors"),
    )
    add(
        """SELECT CAST(signed_out_at / 3600 AS INTEGER) * 3600 AS h, count(*)
            FROM visits WHERE signed_out_at >= ? AND signed_out_at < ? GROUP BY h""",
        ("signouts",),
    )
    # A visitor is new in the hour of their first visit, returning in any later one.
    add(
        """WITH firsts AS (SELECT visitor_id, min(signed_in_at) AS first FROM visits
                            GROUP BY visitor_id)
            SELECT CAST(v.signed_in_at / 3600 AS INTEGER) * 3600 AS h,
                   count(DISTINCT CASE WHEN CAST(f.first / 3600 AS INTEGER) * 3600
                                            = CAST(v.signed_in_at / 3600 AS INTEGER) * 3600
                                       THEN v.visitor_id END),
                   count(DISTINCT CASE WHEN f.first < CAST(v.signed_in_at / 3600 AS INTEGER)
                                                      * 3600
                                       THEN v.visitor_id END)
            FROM visits v JOIN firsts f USING (visitor_id)
            WHERE v.signed_in_at >= ? AND v.signed_in_at < ? GROUP BY h""",
        ("new_visitors", "returning_visitors"),
    )
    add(
        """SELECT CAST(at / 3600 AS INTEGER) * 3600 AS h,
                   sum(sensor = 'door' AND kind = 'open'),
                   sum(sensor = 'counter' AND kind = 'entry'),
                   sum(sensor = 'counter' AND kind = 'exit'),
                   sum(sensor LIKE 'motion%' AND kind = 'motion')
            FROM sensor_events WHERE at >= ? AND at < ? AND clock_synced = 1 GROUP BY h""",
        ("door_openings", "entries", "exits", "motion_periods"),
    )
    if config is not None:
        _occupancy(db, config, since, until, hours)
    return dict(hours)


def _occupancy(db, config: SpaceConfig, since: int, until: int, hours: dict) -> None:
    """Peak people and person-minutes per hour (from the counter if there is one, else
    from sign-ins), and the minutes any PIR saw motion — for hours that are over: an
    hour still running would change with every sync and cost a resend each time."""
    until = min(until, hour_of(time.time()))
    if config.sensors.counter:
        steps = occupancy.counter_series(db, config, since, until)
    else:
        steps = occupancy.signed_in_series(db, since, until)
    motion = _motion_intervals(db, since, until)
    if until <= since:
        return
    for hour in range(since, until, HOUR):
        peak, person_minutes = occupancy.hourly(steps, hour)
        busy = sum(
            min(end, hour + HOUR) - max(start, hour)
            for start, end in motion
            if start < hour + HOUR and end > hour
        )
        for name, value in (
            ("occupancy_peak", peak),
            ("person_minutes", person_minutes),
            ("occupied_minutes", round(busy / 60)),
        ):
            if value:
                hours[hour][name] = value


def _motion_intervals(db, since: int, until: int) -> list[tuple[float, float]]:
    """When any PIR saw motion, as merged (start, end) intervals."""
    open_at: dict[str, float] = {}
    intervals = []
    for at, sensor, kind in db.execute(
        "SELECT at, sensor, kind FROM sensor_events WHERE sensor LIKE 'motion%' "
        "AND kind IN ('motion', 'still') AND at >= ? AND at < ? AND clock_synced = 1 "
        "ORDER BY at",
        [since, until],
    ):
        if kind == "motion":
            open_at.setdefault(sensor, at)
        elif sensor in open_at:
            intervals.append((open_at.pop(sensor), at))
    intervals += [(start, min(until, time.time())) for start in open_at.values()]
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def earliest_activity(db: Database) -> int | None:
    """The first hour with anything in it, for a store that has never been aggregated."""
    row = db.execute(
        """SELECT min(t) FROM (
        SELECT min(signed_in_at) AS t FROM visits WHERE signed_in_at >= ?
        UNION ALL SELECT min(at) FROM sensor_events WHERE at >= ?)""",
        [EARLIEST, EARLIEST],
    ).fetchone()
    return hour_of(row[0]) if row and row[0] is not None else None
