"""How the space was used over a span of days, for the admins' Today and History pages:
visits, people new and returning, purposes, events, hours of the week, and the people
present beside the sign-ins.

A read model: it reads what the kiosk (`visits`), the sensors daemon (`sensor_events`,
through `occupancy`) and the sync agent (`buckets`) wrote, and writes nothing.

- **Days are the space's.** A span runs from local midnight to local midnight; times are
  turned into local hours inside SQLite, by the UTC offset in force at each moment, so a
  day with a clock change has its 23 or 25 hours and a zone half an hour off UTC is exact.
- **Only a span's rows are read.** Visits by the index on their sign-in time, a visitor's
  first visit by the index on (visitor, sign-in time) from migration m011, people present
  by the sync agent's hourly buckets (its primary key): a page costs what its span holds,
  however long the history. Only the hours the agent has not stored yet (the last few)
  are worked out from the sensor events, through `occupancy`'s series.
- **Erased visitors still count.** Their visits stay, nameless, and nothing here reads a
  name.
- **Only trusted times count** (`clock_synced = 1`), as in the hourly buckets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from spacekiosk import hours, occupancy
from spacekiosk.config import SpaceConfig

HOUR, DAY = 3600, 86400
EPOCH = date(1970, 1, 1)
TAIL_DAYS = 7  # hours without a bucket this far back are worked out from the events
MAX_DAYS = 3 * 366 + 1  # the longest span a page asks for


@dataclass(frozen=True)
class Span:
    """The local days `first` to `last`, both included, in the space's time zone."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self):
        if self.last < self.first:
            raise ValueError("a span ends on or after the day it starts")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def start(self) -> float:
        return midnight(self.first, self.zone)

    @property
    def end(self) -> float:
        return midnight(self.last + timedelta(days=1), self.zone)

    def before(self) -> Span:
        """The span of as many days that ends the day before this one starts."""
        last = self.first - timedelta(days=1)
        return Span(last - timedelta(days=self.days - 1), last, self.zone)

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]


def midnight(day: date, zone: ZoneInfo) -> float:
    """When `day` begins in `zone`, in UTC seconds."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def local_date(at: float, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(at, zone).date()


@dataclass
class Presence:
    """People present over some hours: the most at once, and the person-minutes spent
    there over the minutes the average is taken on (the hours it was open; for a space
    without opening hours, the hours anyone was there)."""

    peak: int = 0
    person_minutes: int = 0
    open_minutes: int = 0
    open_person_minutes: int = 0  # person-minutes within hours the space was open
    busy_hours: int = 0  # hours with anyone there

    def add(self, other: Presence) -> None:
        self.peak = max(self.peak, other.peak)
        self.person_minutes += other.person_minutes
        self.open_minutes += other.open_minutes
        self.open_person_minutes += other.open_person_minutes
        self.busy_hours += other.busy_hours

    @property
    def average(self) -> float | None:
        """People present on average while open (or while anyone was there)."""
        if self.open_minutes:
            return self.open_person_minutes / self.open_minutes
        if self.busy_hours:
            return self.person_minutes / (60 * self.busy_hours)
        return None


@dataclass
class Usage:
    """What happened from a span's start until `until` (its end, or now while it runs)."""

    span: Span
    until: float
    visits: int = 0
    visitors: int = 0  # different people
    new: int = 0  # whose first visit ever was in the span
    by_hour: Counter = field(default_factory=Counter)  # local hour index -> visits
    new_by_day: Counter = field(default_factory=Counter)  # local day index -> new people
    by_purpose: Counter = field(default_factory=Counter)
    by_event: Counter = field(default_factory=Counter)
    presence: dict[int, Presence] = field(default_factory=dict)  # by local hour index
    presence_source: str = "signins"  # "counter": the people counter; else sign-ins

    @property
    def returning(self) -> int:
        """People who had come before the span began."""
        return self.visitors - self.new

    @property
    def shown_days(self) -> list[date]:
        """The span's days up to `until`: the days a chart has something to say about."""
        if self.until <= self.span.start:
            return []
        last = min(self.span.last, local_date(self.until - 1, self.span.zone))
        return [d for d in self.span.dates() if d <= last]

    def visits_by_day(self) -> list[tuple[date, int]]:
        per_day = Counter()
        for hour, n in self.by_hour.items():
            per_day[hour // 24] += n
        return [(d, per_day[day_index(d)]) for d in self.shown_days]

    def visits_by_week(self) -> list[tuple[date, int]]:
        """(Monday, visits) for each week the shown days touch, counting only those days."""
        weeks: dict[date, int] = {}
        for d, n in self.visits_by_day():
            monday = d - timedelta(days=d.weekday())
            weeks[monday] = weeks.get(monday, 0) + n
        return list(weeks.items())

    def visits_by_hour_of_day(self) -> list[int]:
        """Visits per local hour 0-23, summed over the span."""
        counts = [0] * 24
        for hour, n in self.by_hour.items():
            counts[hour % 24] += n
        return counts

    def hour_of_week(self) -> list[list[int]]:
        """Visits per local weekday (rows Monday to Sunday) and hour (columns 0-23)."""
        grid = [[0] * 24 for _ in range(7)]
        for hour, n in self.by_hour.items():
            grid[(hour // 24 + 3) % 7][hour % 24] += n  # 1 January 1970 was a Thursday
        return grid

    def presence_by_day(self) -> list[tuple[date, Presence]]:
        days: dict[int, Presence] = {}
        for hour, seen in self.presence.items():
            days.setdefault(hour // 24, Presence()).add(seen)
        return [(d, days.get(day_index(d), Presence())) for d in self.shown_days]

    def presence_by_week(self) -> list[tuple[date, Presence]]:
        weeks: dict[date, Presence] = {}
        for d, seen in self.presence_by_day():
            weeks.setdefault(d - timedelta(days=d.weekday()), Presence()).add(seen)
        return list(weeks.items())

    def presence_by_hour_of_day(self) -> list[Presence]:
        hours_ = [Presence() for _ in range(24)]
        for hour, seen in self.presence.items():
            hours_[hour % 24].add(seen)
        return hours_

    def presence_total(self) -> Presence:
        total = Presence()
        for seen in self.presence.values():
            total.add(seen)
        return total


def day_index(d: date) -> int:
    """Days since 1 January 1970: a local hour index // 24."""
    return (d - EPOCH).days


def read(db: Database, config: SpaceConfig, span: Span, until: float, detail: bool = True) -> Usage:
    """The usage of `span` from its start until `until` (cut to the span's end).
    Without `detail`, only the totals: no visits or people present by the hour."""
    until = min(until, span.end)
    usage = Usage(span, until, presence_source="counter" if config.sensors.counter else "signins")
    if until <= span.start:
        return usage
    local = _LocalHour(span.zone, span.start, until)
    if detail:
        _read_hours(db, usage, local)
    _read_purposes(db, usage, local)
    _read_people(db, usage, local)
    _read_presence(db, config, usage, local, detail)
    return usage


def compare(db: Database, config: SpaceConfig, span: Span, now: float) -> tuple[Usage, Usage]:
    """The span's usage until now, and its period before's totals over the same stretch:
    as many days before, cut at the same point when the span is still running, so that a
    week so far is held against the same part of the week before."""
    current = read(db, config, span, now)
    before = span.before()
    cut = before.start + (current.until - span.start)
    return current, read(db, config, before, cut, detail=False)


class _LocalHour:
    """Turns a UTC time column into the local hour index (hours since 1970-01-01 00:00
    local) in SQL, by the offsets in force over [start, end)."""

    def __init__(self, zone: ZoneInfo, start: float, end: float):
        self.start, self.end = start, end
        self.offsets = offsets(zone, start, end)

    def sql(self, column: str, unit: int = HOUR) -> tuple[str, list]:
        """An SQL expression for `column`'s local hour index (or, with `unit=DAY`, local
        day index), and its parameters."""
        if len(self.offsets) == 1:
            return f"CAST(({column} + ?) / {unit} AS INTEGER)", [self.offsets[0][1]]
        cases, params = [], []
        for (change, _), (_, offset) in zip(self.offsets[1:], self.offsets, strict=False):
            cases.append(f"WHEN {column} < ? THEN ?")
            params += [change, offset]
        params.append(self.offsets[-1][1])
        return f"CAST(({column} + CASE {' '.join(cases)} ELSE ? END) / {unit} AS INTEGER)", params

    def index(self, at: float) -> int:
        offset = next(o for change, o in reversed(self.offsets) if at >= change)
        return int((at + offset) // HOUR)


def offsets(zone: ZoneInfo, start: float, end: float) -> list[tuple[float, int]]:
    """(from, UTC offset in seconds) for each stretch of [start, end) with one offset;
    the first `from` is 0. Found by checking each day and narrowing down on a change."""

    def offset(at: float) -> int:
        return int(datetime.fromtimestamp(at, zone).utcoffset().total_seconds())

    found = [(0.0, offset(start))]
    at = start
    while at < end:
        step = min(at + DAY, end)
        if offset(step) != found[-1][1]:
            low, high = at, step  # the change is in (low, high]
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == found[-1][1] else (low, mid)
            found.append((high, offset(high)))
        at = step
    return found


_WINDOW = "signed_in_at >= ? AND signed_in_at < ? AND clock_synced = 1"
_FIRST_VISITS = (  # each person's first visit, for the people who came in the window
    "SELECT (SELECT min(p.signed_in_at) FROM visits p WHERE p.visitor_id = v.visitor_id "
    "AND p.clock_synced = 1) AS first FROM (SELECT DISTINCT visitor_id FROM visits "
    "WHERE signed_in_at >= ? AND signed_in_at < ? AND clock_synced = 1) AS v"
)


def _read_hours(db: Database, usage: Usage, local: _LocalHour) -> None:
    hour, params = local.sql("signed_in_at")
    for index, n in db.execute(
        f"SELECT {hour} AS h, count(*) FROM visits WHERE {_WINDOW} GROUP BY h",  # noqa: S608
        [*params, local.start, local.end],
    ):
        usage.by_hour[index] = n


def _read_purposes(db: Database, usage: Usage, local: _LocalHour) -> None:
    for purpose, event, n in db.execute(
        f"SELECT purpose, event, count(*) FROM visits WHERE {_WINDOW} "  # noqa: S608
        "GROUP BY purpose, event",
        [local.start, local.end],
    ):
        usage.visits += n
        if purpose:
            usage.by_purpose[purpose] += n
        if event:
            usage.by_event[event] += n


def _read_people(db: Database, usage: Usage, local: _LocalHour) -> None:
    """Who came in the span, and of them who came for the first time, by the local day
    of their first visit (one index seek each, on visits_visitor_first)."""
    day, params = local.sql("first", DAY)
    for new_on, n in db.execute(
        f"WITH firsts AS MATERIALIZED ({_FIRST_VISITS}) "  # noqa: S608
        f"SELECT CASE WHEN first >= ? THEN {day} END AS d, count(*) FROM firsts GROUP BY d",
        [local.start, local.end, local.start, *params],
    ):
        usage.visitors += n
        if new_on is not None:
            usage.new += n
            usage.new_by_day[new_on] = n


def _read_presence(
    db: Database, config: SpaceConfig, usage: Usage, local: _LocalHour, detail: bool
) -> None:
    """People present per local hour: the sync agent's buckets, then the hours it has
    not stored yet, worked out from the events the way it would. Without `detail`, the
    buckets' part is summed in SQLite, as one hour."""
    # A bucket's hour is a UTC hour: where the offset is not a whole hour, it counts in
    # the local hour (and day) it starts in.
    # By the hour for a day, by the day (keyed by its first hour) for longer, and as one
    # for the totals alone.
    if not detail:
        hour, params = "0", []
    elif local.end - local.start > DAY + HOUR:
        day, params = local.sql("hour_start", DAY)
        hour = f"{day} * 24"
    else:
        hour, params = local.sql("hour_start")
    for index, peak, minutes, open_minutes, open_person_minutes, busy in db.execute(
        f"""SELECT {hour} AS h, max(peak), sum(minutes), sum(opened),
                   sum(CASE WHEN opened > 0 THEN coalesce(open_pm, minutes) END),
                   sum(minutes > 0)
            FROM (SELECT hour_start, json_extract(counts, '$.occupancy_peak') AS peak,
                         json_extract(counts, '$.person_minutes') AS minutes,
                         json_extract(counts, '$.open_minutes') AS opened,
                         -- person-minutes while open; an hour stored before the agent
                         -- counted them takes all of its person-minutes, as it did
                         json_extract(counts, '$.open_person_minutes') AS open_pm
                  FROM buckets WHERE hour_start >= ? AND hour_start < ?)
            GROUP BY h""",  # noqa: S608
        [*params, local.start, local.end],
    ):
        seen = Presence(peak or 0, minutes or 0, open_minutes or 0, open_person_minutes or 0)
        seen.busy_hours = busy or 0
        usage.presence.setdefault(index, Presence()).add(seen)
    stored = db.execute("SELECT max(hour_start) FROM buckets").fetchone()[0]
    since = max(local.start, local.end - TAIL_DAYS * DAY, (stored or 0) + HOUR)
    since = -(-since // HOUR) * HOUR  # the first UTC hour from then, as buckets start
    if since < local.end:
        _live(db, config, usage, local, since, local.end)


def _hour(peak, minutes, open_minutes) -> Presence:
    peak, minutes, open_minutes = peak or 0, minutes or 0, open_minutes or 0
    return Presence(
        peak=peak,
        person_minutes=minutes,
        open_minutes=open_minutes,
        open_person_minutes=minutes if open_minutes else 0,
        busy_hours=1 if minutes else 0,
    )


def _live(
    db: Database, config: SpaceConfig, usage: Usage, local: _LocalHour, since: float, until: float
) -> None:
    if config.sensors.counter:
        steps = occupancy.counter_series(db, config, since, until)
    else:
        steps = occupancy.signed_in_series(db, since, until)
    opened = Counter()
    for opens, closes in hours.open_intervals(config.space, since, until):
        at = opens
        while at < closes:
            edge = min((at // HOUR + 1) * HOUR, closes)
            opened[at // HOUR * HOUR] += edge - at
            at = edge
    at = since
    while at < until:
        end = min(at + HOUR, until)
        peak, minutes = occupancy.between(steps, at, end)
        seen = _hour(peak, minutes, round(opened[at] / 60))
        if seen.peak or seen.person_minutes or seen.open_minutes:
            usage.presence.setdefault(local.index(at), Presence()).add(seen)
        at += HOUR
