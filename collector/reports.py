"""Figures for the people who fund and run the programme, read from the central store.

For a month or a quarter, per space and across all spaces: visits, visitors, events,
how much of the opening hours a space was in use, how full it got, how well connected
it was, and what a visit cost. Also the series the charts draw. Nothing here writes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector import periods, reading, store
from collector.periods import DAY, Period, Row
from spacekiosk.config import PURPOSE_LABELS

WEEKS_SHOWN = 26  # the charts' window: about six months


@dataclass(frozen=True)
class Space:
    """A space as the central team sees it: what it reported and what was entered."""

    id: str
    name: str
    capacity: int | None
    first_seen: float | None
    last_seen: float | None
    status: dict
    hours: int  # buckets stored (a rolled-up day is one)
    earliest: int | None  # the start of its oldest bucket
    timezone: str = "UTC"  # as the space says in its status; UTC until it does
    newest: int | None = None  # the end of its newest stored bucket
    last_contact: float | None = None  # when the collector itself last heard from it
    motion: bool = False  # it has reported motion in a stored hour: it has a motion sensor

    @property
    def contact_every(self) -> int | None:
        """Seconds between a metered space's scheduled contacts; None: always connected."""
        return reading.contact_every(self.status)

    def next_contact(self, now: float) -> float | None:
        """A metered space: when its next scheduled contact is due, the first of its
        intervals from its last contact that is not past at `now` (None: always on)."""
        contact = self.last_contact or self.first_seen
        every = self.contact_every
        if not (every and contact):
            return None
        return contact + every * max(1, -int((contact - now) // every))

    def late_since(self) -> float | None:
        """A metered space: when it is (or will be) late, its last contact two intervals
        and an hour old. None for a space that keeps its connection open."""
        contact = self.last_contact or self.first_seen
        every = self.contact_every
        return contact + reading.late_after(every) if every and contact else None

    def late(self, now: float) -> bool:
        """A metered space that has not made contact for two intervals and an hour: its
        status, with no last will, still says online, and is not believed."""
        since = self.late_since()
        return since is not None and now > since

    def online(self, now: float) -> bool:
        """Online as the pages count it: its status says so, and, for a metered space,
        it is not late."""
        return bool(self.status.get("online")) and not self.late(now)


@dataclass(frozen=True)
class Figures:
    """One row of a report: a space's figures for the period, or all spaces' (id None)."""

    id: str | None
    name: str
    capacity: int | None
    visits: int
    unique_visitors: int | None  # different people in the period; None: not known
    new_visitors: int
    returning_visitors: int | None  # of them, those who had come before; None: not known
    events: int  # community events with sign-ins (distinct names, per space)
    event_signins: int
    occupied_minutes: int
    open_minutes: int
    utilisation: float | None  # occupied minutes / open minutes; None: no motion sensor
    peak: int
    peak_ratio: float | None  # peak / capacity
    average_occupancy: float | None  # person-minutes while open / open minutes
    availability: float | None  # connected minutes / minutes since first seen
    cost: float | None
    currency: str | None  # None: no cost entered; "mixed": more than one currency
    cost_months: int
    cost_visits: int  # visits in the months with a cost
    cost_per_visit: float | None  # cost, a month still running pro-rated, / cost_visits
    occupied_known: bool = True  # False: a space that has never reported motion
    link_until: int | None = None  # the end of the minutes link availability counts
    cost_prorated: bool = False  # a month still running took its cost pro-rated
    cost_counted: float | None = None  # the cost cost_per_visit divides: pro-rated
    peak_space: str | None = None  # all spaces: the busiest space, whose peak it is
    peak_capacity: int | None = None  # all spaces: that space's capacity
    hourly_visitors: int = 0  # each hour's distinct visitors added up (the old figure)


def spaces(db, now: float | None = None) -> list[Space]:
    """Every space that has reported or been entered, by id. A name or capacity the
    central team entered wins over what the space's own status says. What a space
    stored is read within bounds (reading.py): no one space's data can break a page."""
    info = {
        r[0]: (r[1], r[2])
        for r in db.execute("SELECT space, name, capacity FROM space_info").fetchall()
    }
    heard = {s["id"]: s for s in reading.spaces(db, now)}
    contacts = store.contacts(db)
    newest, moved = _newest_and_motion(db, now)
    out = []
    for space in sorted(set(info) | set(heard)):
        name, capacity = info.get(space, (None, None))
        seen = heard.get(space, {})
        about = (seen.get("status") or {}).get("about") or {}  # what the space says of itself
        out.append(
            Space(
                id=space,
                name=name or about.get("name") or space,
                capacity=capacity or about.get("capacity"),
                first_seen=seen.get("first_seen"),
                last_seen=seen.get("last_seen"),
                status=seen.get("status") or {},
                hours=seen.get("hours", 0),
                earliest=seen.get("earliest"),
                timezone=about.get("timezone") if _zone(about.get("timezone")) else "UTC",
                newest=newest.get(space),
                last_contact=(contacts.get(space) or (None, None))[0],
                motion=space in moved,
            )
        )
    return out


def _newest_and_motion(db, now: float | None) -> tuple[dict[str, int], set[str]]:
    """Each space's newest stored bucket's end, and the spaces that have reported motion
    (motion periods or occupied minutes above zero) in any stored hour: only a space with
    a motion sensor does, so at one that never has, occupied minutes are not known."""
    low, high = reading.FIRST, reading.horizon(now)
    newest = {
        space: end
        for space, end in db.execute(
            "SELECT space, max(hour_start + hours * 3600) FROM usage"
            " WHERE hour_start >= ? AND hour_start < ? AND hours IN (1, 24) GROUP BY space",
            [low, high],
        ).fetchall()
        if isinstance(end, int)
    }
    some = " OR ".join(
        f"""(counts LIKE '%"{name}":%' AND counts NOT LIKE '%"{name}":0,%'
            AND counts NOT LIKE '%"{name}":0}}%')"""
        for name in ("motion_periods", "occupied_minutes")
    )  # counts are stored as compact JSON (protocol.counts_json)
    moved = {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT space FROM usage"  # noqa: S608 (no input in it)
            f" WHERE hour_start >= ? AND hour_start < ? AND ({some})",
            [low, high],
        ).fetchall()
    }
    return newest, moved


def sensed(db, now: float | None = None) -> set[str]:
    """The spaces whose occupied minutes can be known: those that have reported motion."""
    return _newest_and_motion(db, now)[1]


def costs(db, months: tuple[str, ...], space: str | None = None) -> list[tuple]:
    """(space, month, amount, currency) entered for `months`."""
    sql = "SELECT space, month, amount, currency FROM costs WHERE month >= ? AND month <= ?"
    params: list = [min(months), max(months)]
    if space is not None:
        sql += " AND space = ?"
        params.append(space)
    return db.execute(sql + " ORDER BY space, month", params).fetchall()


def _since(space: Space) -> float | None:
    """When a space was first seen: its first message, or its oldest hour if earlier."""
    known = [t for t in (space.first_seen, space.earliest) if t is not None]
    return min(known) if known else None


def over(now: float) -> int:
    """The end of the hours that are over: a space's minute counts (connected, open,
    occupied, person-minutes) and its peak are for those alone, even when it sends the
    hour still running (that hour carries its sign-ins and crossings so far)."""
    return int(now) - int(now) % periods.HOUR


def link_until(space: Space, now: float) -> int:
    """Where link availability stops counting: the end of the hours that are over, but,
    while the space's agent is online, no later than its newest delivered hour (or the
    hour of the collector's last contact): hours over but not yet sent wait on the Pi
    (sync.send_every_minutes, or a metered link's next contact) with their connected
    minutes, and counted now they would read as an outage. A space whose last will says
    offline, or a metered space that is late (it sets no last will), counts on to the
    last hour over: from the collector's side its link is down."""
    end = over(now)
    if not space.online(now):
        return end
    told = [t for t in (space.newest, space.last_contact and over(space.last_contact)) if t]
    return min(end, int(max(told))) if told else end


def _observed_minutes(space: Space, period: Period, now: float) -> int:
    since = _since(space)
    if since is None:
        return 0
    until = min(period.end, link_until(space, now))
    return max(0, int(until - max(period.start, since)) // 60)


def _cost_share(month: str, space: Space, now: float) -> float:
    """How much of a month's cost its visits so far stand against: all of a month that
    is over; of a month still running, the part up to the newest hour the space has sent
    (the visits counted are those up to there), as running costs accrue day by day."""
    start, end = _month_bounds(month)
    if end <= now:
        return 1.0
    sent = min(space.newest or start, int(now), end)
    return max(0, sent - start) / (end - start)


def _month_bounds(month: str) -> tuple[int, int]:
    period = periods.parse_period(month)
    return period.start, period.end


def _sum_known(values: list[int | None]) -> int | None:
    """The sum, or None if any is not known."""
    return None if None in values else sum(values)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def figures(
    space: Space, found: list[Row], entered: list[tuple], period: Period, now: float
) -> Figures:
    """A space's row of the report, from its buckets and costs in the period."""
    counts = periods.total(found)
    by_event = counts["by_event"]
    currencies = {currency for _s, _m, _a, currency in entered}
    cost_months = {month for _s, month, _a, _c in entered}
    cost = sum(amount for _s, _m, amount, _c in entered) if len(currencies) == 1 else None
    cost_visits = sum(r.counts.get("signins", 0) for r in found if _month(r.start) in cost_months)
    shares = {month: _cost_share(month, space, now) for month in cost_months}
    counted = sum(amount * shares[m] for _s, m, amount, _c in entered) if cost is not None else None
    occupied_known = space.motion
    people = periods.people(counts, periods.kind(period))
    return Figures(
        id=space.id,
        name=space.name,
        capacity=space.capacity,
        visits=counts["signins"],
        unique_visitors=people["distinct_visitors"],
        new_visitors=counts["new_visitors"],
        returning_visitors=people["returning_distinct_visitors"],
        hourly_visitors=counts["unique_visitors"],
        events=sum(1 for n in by_event.values() if n > 0),
        event_signins=sum(by_event.values()),
        occupied_minutes=counts["occupied_minutes"],
        open_minutes=counts["open_minutes"],
        utilisation=(
            _ratio(counts["occupied_minutes"], counts["open_minutes"]) if occupied_known else None
        ),
        peak=counts["occupancy_peak"],
        peak_ratio=_ratio(counts["occupancy_peak"], space.capacity or 0),
        average_occupancy=periods.average_while_open(counts),
        availability=_ratio(counts["connected_minutes"], _observed_minutes(space, period, now)),
        cost=cost,
        currency=currencies.pop() if len(currencies) == 1 else ("mixed" if currencies else None),
        cost_months=len(cost_months),
        cost_visits=cost_visits,
        cost_per_visit=_ratio(counted, cost_visits) if counted is not None else None,
        occupied_known=occupied_known,
        link_until=min(period.end, link_until(space, now)),
        cost_prorated=cost is not None and any(share < 1 for share in shares.values()),
        cost_counted=counted,
    )


def _month(ts: int) -> str:
    return periods.iso(ts)[:7]


def combined(
    rows: list[Figures],
    found: list[Row],
    spaces_: list[Space],
    period: Period,
    now: float,
    *,
    band: bool = False,
) -> Figures:
    """The all-spaces row (or a size band's): sums, and ratios of sums (not averages of
    ratios). Its peak is the busiest space's, so beside it the all-spaces row puts that
    space's peak over that space's capacity, naming it; a size band, which shows no
    peak, its spaces' peaks added up over their capacities added up."""
    counts = periods.total(found)
    with_capacity = [r for r in rows if r.capacity]
    currencies = {r.currency for r in rows if r.currency}
    priced = [r for r in rows if r.cost is not None]
    alike = len(currencies) == 1 and "mixed" not in currencies
    cost = sum(r.cost for r in priced) if alike else None
    counted = sum(r.cost_counted or 0 for r in priced) if alike else None
    cost_visits = sum(r.cost_visits for r in priced)
    observed = sum(_observed_minutes(s, period, now) for s in spaces_)
    known = [r for r in rows if r.occupied_known]  # spaces with a motion sensor
    busiest = max(rows, key=lambda r: (r.peak, r.peak_ratio or 0), default=None)
    return Figures(
        id=None,
        name="All spaces",
        capacity=sum(r.capacity for r in with_capacity) or None,
        visits=counts["signins"],
        # Each space's different people added up: across spaces, who is who is not known.
        unique_visitors=_sum_known([r.unique_visitors for r in rows]),
        new_visitors=counts["new_visitors"],
        returning_visitors=_sum_known([r.returning_visitors for r in rows]),
        hourly_visitors=counts["unique_visitors"],
        events=sum(r.events for r in rows),
        event_signins=sum(r.event_signins for r in rows),
        occupied_minutes=counts["occupied_minutes"],
        open_minutes=counts["open_minutes"],
        utilisation=_ratio(
            sum(r.occupied_minutes for r in known), sum(r.open_minutes for r in known)
        ),
        peak=busiest.peak if busiest else 0,
        peak_ratio=(
            # A band: how full its spaces got at their busiest, together.
            _ratio(sum(r.peak for r in with_capacity), sum(r.capacity for r in with_capacity))
            if band
            else busiest.peak_ratio
            if busiest
            else None
        ),
        average_occupancy=periods.average_while_open(counts),
        availability=_ratio(counts["connected_minutes"], observed),
        cost=cost,
        currency=currencies.pop() if len(currencies) == 1 else ("mixed" if currencies else None),
        cost_months=max((r.cost_months for r in rows), default=0),
        cost_visits=cost_visits,
        cost_per_visit=_ratio(counted, cost_visits) if counted is not None else None,
        occupied_known=bool(known),
        link_until=max((r.link_until or 0 for r in rows), default=None) or None,
        cost_prorated=any(r.cost_prorated for r in priced),
        cost_counted=counted,
        peak_space=None if band or not busiest or not busiest.peak else busiest.name,
        peak_capacity=None if band or not busiest else busiest.capacity,
    )


@dataclass(frozen=True)
class SizeBand:
    """Spaces of one size, together: which sizes of space work."""

    label: str
    spaces: int
    figures: Figures  # as in the all-spaces row: sums, and ratios of sums

    @property
    def visits_per_space(self) -> float:
        return self.figures.visits / self.spaces


# Sizes by capacity (people). A space whose capacity nobody gave is counted apart.
SIZES = ((1, 20, "up to 20 people"), (21, 50, "21 to 50 people"), (51, None, "over 50 people"))


@dataclass(frozen=True)
class Report:
    period: Period
    rows: list[Figures]
    total: Figures
    sizes: list[SizeBand]


def report(db, period: Period, now: float | None = None) -> Report:
    """Every space's figures for the period (those seen by its end), and all together."""
    now = time.time() if now is None else now
    found = periods.rows(db, period.start, period.end)
    by_space: dict[str, list[Row]] = {}
    for row in found:
        by_space.setdefault(row.space, []).append(row)
    entered: dict[str, list[tuple]] = {}
    for cost in costs(db, period.months):
        entered.setdefault(cost[0], []).append(cost)
    included = [
        s
        for s in spaces(db)
        if s.id in by_space or (_since(s) is not None and _since(s) < period.end)
    ]
    rows = [
        figures(s, by_space.get(s.id, []), entered.get(s.id, []), period, now) for s in included
    ]
    mine = {s.id for s in included}
    total = combined(rows, [r for r in found if r.space in mine], included, period, now)
    return Report(period, rows, total, size_bands(rows, found, included, period, now))


def size_bands(
    rows: list[Figures], found: list[Row], included: list[Space], period: Period, now: float
) -> list[SizeBand]:
    """The report's spaces grouped by capacity, each group summed like the total row."""
    groups = [
        (label, [s for s in included if s.capacity and low <= s.capacity <= (high or s.capacity)])
        for low, high, label in SIZES
    ]
    groups.append(("size not given", [s for s in included if not s.capacity]))
    bands = []
    for label, members in groups:
        if not members:
            continue
        ids = {s.id for s in members}
        together = combined(
            [r for r in rows if r.id in ids], [r for r in found if r.space in ids], members,
            period, now, band=True,
        )  # fmt: skip
        bands.append(SizeBand(label, len(members), together))
    return bands


# --- what the charts draw ---


def weekly_visits(found: list[Row], until: int, weeks: int = WEEKS_SHOWN):
    """(week starts, {space: visits per week}) for the `weeks` ISO weeks up to `until`."""
    last = periods.period_start(until - 1, "week")
    starts = [last - 7 * DAY * back for back in range(weeks - 1, -1, -1)]
    series: dict[str, list[int]] = {}
    for row in found:
        i = (row.start - starts[0]) // (7 * DAY)  # UTC weeks are all 7 days long
        if 0 <= i < weeks:
            series.setdefault(row.space, [0] * weeks)[i] += row.counts.get("signins", 0)
    return starts, series


def hour_of_week(
    found: list[Row], zones: dict[str, str] | None = None, count: str = "signins"
) -> tuple[list[list[int]], int]:
    """A 7-by-24 grid (Monday first) of `count`, each space's hours in its own time zone
    (`zones`, by space; UTC for one not there), and how many rolled-up days were left
    out (their hours are not known). Where a zone is off UTC by a part of an hour, as in
    India, an hour is counted at the local hour it began."""
    zones = zones or {}
    grid = [[0] * 24 for _ in range(7)]
    skipped = 0
    for row in found:
        if row.hours != 1:
            skipped += 1
            continue
        weekday, hour = _local_slot(zones.get(row.space, "UTC"), row.start)
        grid[weekday][hour] += row.counts.get(count, 0)
    return grid, skipped


@functools.lru_cache(maxsize=65536)  # spaces in one zone share their hours
def _local_slot(zone: str, start: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(start, _zone(zone) or UTC)
    return moment.weekday(), moment.hour


@functools.lru_cache(maxsize=256)  # names come from the spaces: keep the cache bounded
def _zone(name: object) -> tzinfo | None:
    """The zone a space named, or None for a name that is not one (its status is the
    space's own word, checked only for its length)."""
    if not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# What the kiosk's purposes are called (a space sends the key; the kiosk shows visitors
# these words, translated). A purpose a space added itself is shown as it named it.
def breakdown(found: list[Row], name: str = "by_purpose") -> list[tuple[str, int]]:
    """Sign-ins by purpose (by its label) or by event, most first."""
    totals = periods.total(found)[name]
    names = PURPOSE_LABELS if name == "by_purpose" else {}
    return sorted(
        ((names.get(label, label), n) for label, n in totals.items() if n),
        key=lambda x: (-x[1], x[0]),
    )
