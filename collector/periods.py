"""Usage summed over periods: hours, UTC days, ISO weeks (from Monday) and calendar months.

All times are UTC seconds since the epoch. A rolled-up day (a bucket of 24 hours) counts
wholly in the day, week and month it starts in; summed by hour it stays one 24-hour entry.
Counts add up, `occupancy_peak` takes the maximum, breakdowns add up label by label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from collector import reading
from spacekiosk import protocol

HOUR = 3600
DAY = 86400
GRANULARITIES = ("hour", "day", "week", "month")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")


# The stored buckets are read within bounds by reading.py; these are its names here.
Row = reading.Row
rows = reading.rows


@dataclass(frozen=True)
class Period:
    """A report's span: a calendar month or a quarter, [start, end)."""

    label: str
    start: int
    end: int
    months: tuple[str, ...]


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def period_start(ts: int, granularity: str) -> int:
    """The start of the hour, day, ISO week (Monday 00:00) or month holding `ts`."""
    if granularity == "hour":
        return ts - ts % HOUR
    day = ts - ts % DAY
    if granularity == "day":
        return day
    if granularity == "week":
        return day - _utc(day).weekday() * DAY
    when = _utc(day)
    return int(datetime(when.year, when.month, 1, tzinfo=UTC).timestamp())


def next_start(start: int, granularity: str) -> int:
    """The start of the period after the one starting at `start`."""
    if granularity == "month":
        when = _utc(start)
        year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp())
    return start + {"hour": HOUR, "day": DAY, "week": 7 * DAY}[granularity]


def starts(since: int, until: int, granularity: str) -> list[int]:
    """Every period start from the one holding `since` up to (not including) `until`."""
    out, at = [], period_start(since, granularity)
    while at < until:
        out.append(at)
        at = next_start(at, granularity)
    return out


def zero() -> dict:
    """Counts with every field present, for sums that start from nothing."""
    return dict.fromkeys(protocol.COUNTS, 0) | {name: {} for name in protocol.BREAKDOWNS}


def total(found: list[Row]) -> dict:
    """Everything in `found`, added up."""
    out = zero()
    for row in found:
        protocol.add_counts(out, row.counts)
    return out


# The calendar periods whose distinct visitors the hours' first_in_<period> give exactly.
EXACT = {"day": "day", "week": "week", "month": "month"}


def kind(period: Period) -> str:
    """A report's period as the hours' first_in_<kind> name it: month or quarter."""
    return "month" if len(period.months) == 1 else "quarter"


def people(counts: dict, period_kind: str) -> dict:
    """The people of one whole calendar period (`period_kind`: day, week, month, quarter
    or year) from its hours summed: distinct visitors, the sum of the hours'
    first_in_<period_kind>, and of them those who had come before (distinct less new).
    Both None when an hour came from an agent that did not count first_in_*."""
    distinct = counts.get(f"first_in_{period_kind}")
    return {
        "distinct_visitors": distinct,
        "returning_distinct_visitors": None
        if distinct is None
        else max(0, distinct - counts.get("new_visitors", 0)),
    }


def average_while_open(counts: dict) -> float | None:
    """People present on average while open: person-minutes while open over open
    minutes. None without open minutes, or when an hour came from an agent that did not
    count open_person_minutes."""
    part, whole = counts.get("open_person_minutes"), counts.get("open_minutes")
    return part / whole if part is not None and whole else None


def summed(found: list[Row], granularity: str) -> list[tuple[int, int, dict]]:
    """(start, hours, counts) per period with data, oldest first. By hour, a rolled-up
    day stays its own 24-hour entry; otherwise `hours` is the period's length."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    groups: dict[tuple[int, int], dict] = {}
    for row in found:
        if granularity == "hour":
            key = (row.start, row.hours)
        else:
            start = period_start(row.start, granularity)
            key = (start, (next_start(start, granularity) - start) // HOUR)
        protocol.add_counts(groups.setdefault(key, zero()), row.counts)
    return [(start, hours, counts) for (start, hours), counts in sorted(groups.items())]


def parse_time(text: str, name: str) -> int:
    """Seconds since the epoch of an ISO date or time (UTC unless it says otherwise)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        moment = int(when.timestamp())
    except (ValueError, OverflowError):
        raise ValueError(
            f"'{name}' must be an ISO-8601 date or time such as 2026-11-01 or "
            f"2026-11-25T16:00:00Z, not {text[:40]!r}"
        ) from None
    if not reading.FIRST <= moment <= reading.LAST:
        raise ValueError(f"'{name}' must be a time from 2000 to 2100, not {text[:40]!r}")
    return moment


def parse_period(text: str) -> Period:
    """A month (2026-11) or a quarter (2026-Q4), or ValueError saying how to write one."""
    text = (text or "").strip()
    if m := _MONTH.match(text):
        year, first, count = int(m[1]), int(m[2]), 1
    elif m := _QUARTER.match(text):
        year, first, count = int(m[1]), 3 * int(m[2]) - 2, 3
        text = f"{year}-Q{m[2]}"
    else:
        raise ValueError(
            f"a period is a month like 2026-11 or a quarter like 2026-Q4, not {text[:40]!r}"
        )
    if not 2000 <= year <= 2100:
        raise ValueError("a period's year is between 2000 and 2100")
    months = tuple(f"{year}-{month:02d}" for month in range(first, first + count))
    start = int(datetime(year, first, 1, tzinfo=UTC).timestamp())
    end = start
    for _ in months:
        end = next_start(end, "month")
    return Period(text, start, end, months)


def last_full_month(now: float) -> str:
    """The month before the one holding `now`, as YYYY-MM: a report's default."""
    first = _utc(period_start(int(now), "month"))
    before = first - timedelta(days=1)
    return f"{before.year}-{before.month:02d}"


def recent_periods(now: float, months: int = 6) -> list[str]:
    """The last `months` months and the last four quarters, newest first, for a picker."""
    out, at = [], period_start(int(now), "month")
    for _ in range(months):
        when = _utc(at)
        out.append(f"{when.year}-{when.month:02d}")
        at = period_start(at - DAY, "month")
    when = _utc(int(now))
    year, quarter = when.year, (when.month - 1) // 3 + 1
    for _ in range(4):
        out.append(f"{year}-Q{quarter}")
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
    return out


def iso(ts: float | None) -> str | None:
    """2026-11-25T16:03:12Z, or None."""
    if ts is None:
        return None
    return _utc(int(ts)).strftime("%Y-%m-%dT%H:%M:%SZ")
