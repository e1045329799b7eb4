"""Hourly counts from the space's own tables. Read-only: outbox.py stores what it returns.

Only counts come out of here — no names, e-mails, visitor ids or per-visit times.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlite_utils import Database

from spacekiosk import EARLIEST, occupancy
from spacekiosk.config import SpaceConfig
from spacekiosk.hours import open_intervals
from spacekiosk.protocol import MAX_LABEL_CHARS, PERIODS

HOUR, DAY = 3600, 86400


def hour_of(ts: float) -> int:
    return int(ts // HOUR * HOUR)


def compute(
    db: Database, since: int, until: int, config: SpaceConfig, now: float | None = None
) -> dict[int, dict]:
    """Counts for every hour in [since, until) that is over and had anything to count.

    The hour still running is left for later (unless `sync.send_running_hour`): it would
    change with every sync and cost a resend each time on a metered link. Occupancy
    and the minute counts are always for hours that are over. Times before the build date
    cannot be real (a Pi booted without its clock) and are left out rather than
    published as 1970; so are times taken before the clock was set and not yet
    corrected (clock_synced = 0).
    """
    now = time.time() if now is None else now
    since = max(since, EARLIEST)
    over = min(until, hour_of(now))  # hours that have ended
    until = min(until, hour_of(now) + HOUR) if config.sync.send_running_hour else over
    hours: dict[int, dict] = defaultdict(dict)
    if until <= since:
        return {}

    def add(sql: str, names: tuple[str, ...]) -> None:
        for hour, *values in db.execute(sql, (since, until)):
            for name, value in zip(names, values, strict=True):
                if value:
                    hours[hour][name] = value

    add(
        """SELECT CAST(signed_in_at / 3600 AS INTEGER) * 3600 AS h, count(*),
                   count(DISTINCT visitor_id)
            FROM visits WHERE signed_in_at >= ? AND signed_in_at < ? AND clock_synced = 1
            GROUP BY h""",
        ("signins", "unique_visitors"),
    )
    add(
        """SELECT CAST(signed_out_at / 3600 AS INTEGER) * 3600 AS h, count(*)
            FROM visits WHERE signed_out_at >= ? AND signed_out_at < ? AND clock_synced = 1
            GROUP BY h""",
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
                   count(DISTINCT CASE WHEN f.first < CAST(v.signed_in_at / 3600 AS INTEGER) * 3600
                                       THEN v.visitor_id END)
            FROM visits v JOIN firsts f USING (visitor_id)
            WHERE v.signed_in_at >= ? AND v.signed_in_at < ? AND v.clock_synced = 1
            GROUP BY h""",
        ("new_visitors", "returning_visitors"),
    )
    _firsts(db, since, until, hours)
    for name, sql in _BREAKDOWNS.items():
        for hour, label, count in db.execute(sql, (since, until)):
            hours[hour].setdefault(name, {})[label[:MAX_LABEL_CHARS]] = count
    add(
        """SELECT CAST(at / 3600 AS INTEGER) * 3600 AS h,
                   sum(sensor = 'door' AND kind = 'open'),
                   sum(sensor = 'counter' AND kind = 'entry'),
                   sum(sensor = 'counter' AND kind = 'exit'),
                   sum(sensor LIKE 'motion%' AND kind = 'motion')
            FROM sensor_events WHERE at >= ? AND at < ? AND clock_synced = 1 GROUP BY h""",
        ("door_openings", "entries", "exits", "motion_periods"),
    )
    if over <= since:
        return dict(hours)
    opened = open_intervals(config.space, since, over)
    _occupancy(db, config, since, over, hours, opened)
    for name, intervals in (
        ("occupied_minutes", _intervals(db, "motion%", "motion", "still", since, over, now)),
        ("sensor_fault_minutes", _intervals(db, "%", "fault", "ok", since, over, now)),
        ("open_minutes", opened),
        ("connected_minutes", _link_intervals(db, since, over)),
    ):
        for hour, minutes in _minutes_by_hour(intervals):
            if minutes:
                hours[hour][name] = minutes
    return dict(hours)


_BREAKDOWNS = {
    name: f"""SELECT CAST(signed_in_at / 3600 AS INTEGER) * 3600 AS h, {column}, count(*)
              FROM visits WHERE signed_in_at >= ? AND signed_in_at < ? AND clock_synced = 1
              AND {column} IS NOT NULL AND {column} != '' GROUP BY h, {column}"""  # noqa: S608
    for name, column in (("by_purpose", "purpose"), ("by_event", "event"))
}


def _occupancy(db, config: SpaceConfig, since: int, until: int, hours: dict, opened: list) -> None:
    """Peak people and person-minutes per hour, and the person-minutes while the space
    was open (`opened`: its open intervals): from the counter if there is one, else from
    sign-ins. Where anyone was there, open_person_minutes is sent even when 0, so that
    the collector can tell it from a bucket of an agent that did not count it."""
    if config.sensors.counter:
        steps = occupancy.counter_series(db, config, since, until)
    else:
        steps = occupancy.signed_in_series(db, since, until)
    for hour in range(since, until, HOUR):
        peak, person_minutes = occupancy.hourly(steps, hour)
        for name, value in (("occupancy_peak", peak), ("person_minutes", person_minutes)):
            if value:
                hours[hour][name] = value
        if person_minutes:
            within = [(max(s, hour), min(e, hour + HOUR)) for s, e in opened]
            area = sum(occupancy.area(steps, s, e) for s, e in within if e > s)
            hours[hour]["open_person_minutes"] = min(person_minutes, round(area / 60))


def _firsts(db, since: int, until: int, hours: dict) -> None:
    """first_in_<period> of each hour with sign-ins in [since, until): the people whose
    first sign-in of the UTC day, ISO week, month, quarter and year (the periods the
    collector sums) fell in it. Summed over a period's hours, the distinct visitors of
    the period, and never a name or an id: only the counts leave. Every hour with a
    sign-in carries all five, zeros too, so the collector can tell them from a bucket of
    an agent that did not count them."""
    earliest = min(period_start(since, period) for period in PERIODS)
    seen: dict[tuple[object, str], int] = {}  # (visitor, period) -> its start
    for visitor, at in db.execute(
        """SELECT v.visitor_id, v.signed_in_at
           FROM (SELECT DISTINCT visitor_id FROM visits WHERE signed_in_at >= ?
                 AND signed_in_at < ? AND clock_synced = 1) AS w
           JOIN visits v ON v.visitor_id = w.visitor_id AND v.signed_in_at >= ?
                AND v.signed_in_at < ? AND v.clock_synced = 1
           ORDER BY v.signed_in_at""",
        [since, until, max(earliest, EARLIEST), until],
    ):
        hour = hour_of(at)
        counting = since <= at
        if counting:
            for period in PERIODS:
                hours[hour].setdefault(f"first_in_{period}", 0)
        for period in PERIODS:
            start = period_start(at, period)
            if seen.get((visitor, period)) != start:
                seen[visitor, period] = start
                if counting:
                    hours[hour][f"first_in_{period}"] += 1


def period_start(at: float, period: str) -> int:
    """The start of the UTC day, ISO week (Monday), month, quarter or year holding `at`."""
    day = int(at // DAY * DAY)
    if period == "day":
        return day
    if period == "week":
        return day - (day // DAY + 3) % 7 * DAY  # 1 January 1970 was a Thursday
    when = datetime.fromtimestamp(day, UTC)
    month = {"month": when.month, "quarter": (when.month - 1) // 3 * 3 + 1, "year": 1}[period]
    return int(datetime(when.year, month, 1, tzinfo=UTC).timestamp())


def _intervals(
    db, sensors: str, on: str, off: str, since: int, until: int, now: float
) -> list[tuple[float, float]]:
    """When any sensor whose name is LIKE `sensors` was between an `on` and an `off`
    event (a PIR seeing motion, a sensor at fault), as merged intervals within the
    window. State carried in from before the window is looked up a week back."""
    open_at: dict[str, float] = {}
    intervals = []
    for at, sensor, kind in db.execute(
        "SELECT at, sensor, kind FROM sensor_events WHERE sensor LIKE ? AND kind IN (?, ?) "
        "AND at >= ? AND at < ? AND clock_synced = 1 ORDER BY at",
        [sensors, on, off, since - 7 * 86400, until],
    ):
        if kind == on:
            open_at.setdefault(sensor, at)
        elif sensor in open_at:
            intervals.append((open_at.pop(sensor), at))
    intervals += [(start, min(until, now)) for start in open_at.values()]
    return _merge([(max(s, since), min(e, until)) for s, e in intervals if e > since])


def _link_intervals(db, since: int, until: int) -> list[tuple[float, float]]:
    """When the agent had a connection to the central broker: each interval is one
    connection, on the clock it began on; one taken before the clock was set counts
    once it has been corrected (clock_synced = 1)."""
    return _merge(
        [
            (max(start, since), min(end, until))
            for start, end in db.execute(
                "SELECT start, end FROM link_log WHERE end > ? AND start < ? AND clock_synced = 1",
                [since, until],
            )
        ]
    )


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        elif end > start:
            merged.append((start, end))
    return merged


def _minutes_by_hour(intervals: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """(hour, whole minutes of the hour covered) for every hour the intervals touch."""
    seconds: dict[int, float] = defaultdict(float)
    for start, end in intervals:
        hour = hour_of(start)
        while hour < end:
            seconds[hour] += min(end, hour + HOUR) - max(start, hour)
            hour += HOUR
    return [(hour, min(60, round(s / 60))) for hour, s in sorted(seconds.items())]


def earliest_activity(db: Database) -> int | None:
    """The first hour with anything in it: hours before it predate the installation, so
    they have nothing to report (not even opening hours)."""
    row = db.execute(
        """SELECT min(t) FROM (
        SELECT min(signed_in_at) AS t FROM visits WHERE signed_in_at >= ?
        UNION ALL SELECT min(at) FROM sensor_events WHERE at >= ?
        UNION ALL SELECT min(start) FROM link_log WHERE start >= ?)""",
        [EARLIEST, EARLIEST, EARLIEST],
    ).fetchone()
    return hour_of(row[0]) if row and row[0] is not None else None
