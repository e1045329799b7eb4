"""The truth of a scripted week at a space, computed from the script alone.

tests/test_truth.py plays the script through the real kiosk, sensors, sync agent, broker
and collector, and holds every figure they show to what this module computes. So this
module must not share a line of code with them: it imports nothing of spacekiosk, kiosk,
sensors, sync or collector (the test checks), only the standard library, and it counts
from the script's own list of what happened, at the true times it happened.

The definitions are those a funder is given (docs/figures.md), written again here:
hourly counts as a space sends them, then periods summed from those hours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = 3600
DAY = 86400
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PURPOSE_LABELS = {  # what the central pages call the kiosk's built-in purposes
    "cowork": "Coworking or a project",
    "event": "An event",
    "meeting": "A meeting",
    "other": "Something else",
}


@dataclass(frozen=True)
class Act:
    """One thing that happened, at a true UTC time: a sign-in ("new", "returning"), a
    sign-out ("out", or "closed": by the kiosk at closing time), a crossing of the
    counter ("entry", "exit"), the door ("door_open", "door_close") or the PIR ("motion",
    "still")."""

    at: float
    kind: str
    who: str | None = None
    purpose: str | None = None
    event: str | None = None


@dataclass
class Script:
    zone: str
    capacity: int
    first_day: date  # the local day the week begins
    hours: dict[str, list[tuple[time, time]]]  # by weekday; [] = closed
    events: list[tuple[str, date, time, time]]  # (name, local date, from, to)
    pins: dict[str, str]  # each visitor's PIN
    acts: list[Act]
    link: list[tuple[float, float | None]]  # when the link was up; None = still up
    late: tuple[float, float, float]  # (booted, set): the Pi's clock behind by the third
    costs: dict[str, tuple[float, str]]  # by month YYYY-MM: (amount, currency)
    start: float = 0.0  # the week's first moment (the first local midnight), UTC
    live: list[Act] = field(default_factory=list)  # done at the test's real time

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def local(self, day: int, clock: str) -> float:
        """UTC seconds of a local time `day` days after the first day."""
        hh, mm = (int(x) for x in clock.split(":"))
        d = self.first_day + timedelta(days=day)
        return datetime(d.year, d.month, d.day, hh, mm, tzinfo=self.tz).timestamp()

    def all_acts(self) -> list[Act]:
        return sorted(self.acts + self.live, key=lambda a: a.at)


# --- the week ---

PEOPLE = {
    "Ana Papadopoulou": "1111",
    "Bo Chen": "2222",
    "Chidi Okafor": "3333",
    "Dana Levi": "4444",
    "Eleni Georgiou": "5555",
    "Femi Adeyemi": "6666",
    "Gita Rao": "7777",
    "Hugo Silva": "8888",
}
EVENT = "Repair café"

# (day, arrives, leaves, who, purpose, for the event[, out of the door]): a first visit
# and a returning visitor's PIN screen alike give a purpose (or none) and say if it is
# for the day's event. Someone may sign out and stay on a while before going out of the
# door; "missed" is an exit the counter did not count (two people through as one). A
# visitor who leaves without signing out (None) is signed out by the kiosk at closing.
VISITS = [
    (0, "10:15", "12:40", "Ana Papadopoulou", "cowork", False),
    (0, "10:50", "11:30", "Bo Chen", "meeting", False),
    (0, "14:05", "17:20", "Chidi Okafor", "cowork", False, "missed"),
    (0, "18:00", "19:10", "Ana Papadopoulou", "other", False),
    (1, "10:20", "13:00", "Bo Chen", None, False),
    (1, "11:45", "12:15", "Dana Levi", "meeting", False),
    (2, "10:30", "11:00", "Gita Rao", "other", False),
    # the repair café runs past closing: its people stay on after signing out
    (2, "16:50", "19:55", "Eleni Georgiou", "event", True, "20:40"),
    (2, "17:05", "19:56", "Femi Adeyemi", "cowork", True, "20:45"),
    (2, "17:10", "18:30", "Chidi Okafor", "event", True),  # back for the café
    # day 3: closed; day 4: the Pi boots at 08:30 with its clock 3 hours behind, and
    # timesyncd sets it at 11:00
    (4, "10:05", "10:40", "Hugo Silva", "cowork", False),
    (4, "10:20", "12:00", "Ana Papadopoulou", "cowork", False),
    (4, "15:00", "16:00", "Dana Levi", None, False),
    (5, "10:10", "13:50", "Bo Chen", "meeting", False),
    (5, "16:30", None, "Gita Rao", None, False, "19:00"),  # forgets to sign out
    (5, "16:40", "17:00", "Hugo Silva", None, False),
    (6, "11:00", "12:30", "Eleni Georgiou", None, False),
    (6, "11:05", "11:35", "Femi Adeyemi", None, False),
    (6, "19:30", "19:55", "Chidi Okafor", None, False),
]


def week_start(today: date) -> date:
    """The week's first day: three days before the latest first of a month at least five
    days before `today`, so that the week spans two months and ends before yesterday
    (not before the release's first day, 2026-10-01: then simply eight days back)."""
    first = date(today.year, today.month, 1)
    if (today - first).days < 5:
        first = date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)
    day = first - timedelta(days=3)
    return day if day >= date(2026, 10, 2) else today - timedelta(days=8)


def week(first_day: date, zone: str = "Europe/Athens", capacity: int = 20) -> Script:
    """The scripted week from `first_day` (local): open 10:00-20:00, closed on its fourth
    day, a lunch break on its sixth, a repair café on its third evening."""
    ten_to_eight = [(time(10), time(20))]
    hours = {WEEKDAYS[(first_day.weekday() + d) % 7]: ten_to_eight for d in range(7)}
    hours[WEEKDAYS[(first_day.weekday() + 3) % 7]] = []
    hours[WEEKDAYS[(first_day.weekday() + 5) % 7]] = [(time(10), time(14)), (time(16), time(20))]
    script = Script(
        zone=zone,
        capacity=capacity,
        first_day=first_day,
        hours=hours,
        events=[(EVENT, first_day + timedelta(days=2), time(17), time(20))],
        pins=dict(PEOPLE),
        acts=[],
        link=[],
        late=(0.0, 0.0, 0.0),
        costs={},
    )
    script.start = script.local(0, "00:00")
    acts: list[Act] = []
    motion: list[tuple[float, float]] = []
    for day, arrives, leaves, who, purpose, for_event, *door in VISITS:
        t_in = script.local(day, arrives)
        if leaves is None:  # the kiosk signs the visit out when the opening span ends
            t_out = next(e for s, e in open_spans(script, t_in, t_in + DAY) if s <= t_in)
        else:
            t_out = script.local(day, leaves)
        t_door = script.local(day, door[0]) if door and door[0] != "missed" else t_out
        first = not any(a.who == who and a.kind in ("new", "returning") for a in acts)
        acts += [
            Act(t_in - 60, "door_open"),
            Act(t_in - 50, "entry"),
            Act(t_in - 40, "door_close"),
        ]
        if first:
            acts.append(Act(t_in, "new", who, purpose, EVENT if for_event else None))
        else:
            acts.append(Act(t_in, "returning", who, purpose, EVENT if for_event else None))
        acts += [Act(t_out, "out" if leaves else "closed", who), Act(t_door + 20, "door_open")]
        if door != ["missed"]:
            acts.append(Act(t_door + 30, "exit"))
        acts.append(Act(t_door + 40, "door_close"))
        motion.append((t_in + 120, t_door - 120))
    # The closed day: someone comes to clean, through the door, without signing in.
    cleaning = script.local(3, "09:00")
    acts += [
        Act(cleaning, "door_open"),
        Act(cleaning + 10, "entry"),
        Act(cleaning + 15, "door_close"),
        Act(cleaning + 25 * 60, "door_open"),
        Act(cleaning + 25 * 60 + 10, "exit"),
        Act(cleaning + 25 * 60 + 30, "door_close"),
    ]
    motion.append((cleaning + 60, cleaning + 24 * 60))
    # The PIR: one sensor, so the visits' motion merges into periods.
    rng = random.Random(14)
    for start, end in _merge(motion):
        acts += [Act(start, "motion"), Act(end + rng.choice((0, 7, 31)), "still")]
    script.acts = sorted(acts, key=lambda a: a.at)
    # The link: up from the start, down for two days from the second day's noon.
    script.link = [
        (script.start, script.local(1, "12:00")),
        (script.local(3, "12:00"), None),
    ]
    script.late = (script.local(4, "08:30"), script.local(4, "11:00"), 3 * HOUR)
    month = datetime.fromtimestamp(script.start, UTC).strftime("%Y-%m")
    script.costs = {month: (612.5, "EUR")}
    return script


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


# --- the truth, hour by hour ---


def hour_of(t: float) -> int:
    return int(t // HOUR * HOUR)


def over(now: float) -> int:
    """The end of the hours that are over at `now`."""
    return hour_of(now)


def open_spans(script: Script, since: float, until: float) -> list[tuple[float, float]]:
    """When the opening hours say the space was open, in UTC, within [since, until)."""
    tz = script.tz
    spans = []
    day = datetime.fromtimestamp(since, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(until, tz).date() + timedelta(days=1)
    while day <= last:
        for opens, closes in script.hours[WEEKDAYS[day.weekday()]]:
            s = datetime.combine(day, opens, tz).timestamp()
            e = datetime.combine(day, closes, tz).timestamp()
            if e > since and s < until:
                spans.append((max(s, since), min(e, until)))
        day += timedelta(days=1)
    return spans


def _minutes(spans: list[tuple[float, float]]) -> dict[int, int]:
    """Whole minutes of each hour the spans cover (rounded to the nearest minute)."""
    seconds: dict[int, float] = {}
    for s, e in _merge(spans):
        h = hour_of(s)
        while h < e:
            seconds[h] = seconds.get(h, 0) + min(e, h + HOUR) - max(s, h)
            h += HOUR
    return {h: min(60, round(sec / 60)) for h, sec in seconds.items()}


QUIET = 30 * 60  # after closing, this long with the door shut and nothing moving: empty
MOVES = ("door_open", "door_close", "motion", "still", "entry", "exit")


def reset_points(script: Script, until: float) -> list[float]:
    """The moments the space is known to be empty, whatever the counter says: after each
    closing (the end of an opening span, a lunch break's too), the first moment the door
    has been shut and nothing has moved (no door, no crossing, no PIR seeing motion) for
    QUIET, counted from the closing or the last movement after it, before it opens again."""
    spans = open_spans(script, script.start - DAY, until + DAY)
    closed = [(spans[i][1], spans[i + 1][0]) for i in range(len(spans) - 1)]
    closed.append((spans[-1][1], until + 8 * DAY))
    acts = [a for a in script.all_acts() if a.kind in MOVES]
    points = []
    for closes, opens in closed:
        door_open = moving = False
        for a in acts:  # the state at closing time
            if a.at > closes:
                break
            if a.kind in ("door_open", "door_close"):
                door_open = a.kind == "door_open"
            elif a.kind in ("motion", "still"):
                moving = a.kind == "motion"
        quiet_since = closes
        found = None
        for a in (a for a in acts if closes < a.at < opens):
            if not door_open and not moving and a.at - quiet_since >= QUIET:
                found = quiet_since + QUIET
                break
            if a.kind in ("door_open", "door_close"):
                door_open = a.kind == "door_open"
            elif a.kind in ("motion", "still"):
                moving = a.kind == "motion"
            quiet_since = a.at
        if found is None and not door_open and not moving and opens - quiet_since >= QUIET:
            found = quiet_since + QUIET
        if found is not None and found <= until:
            points.append(found)
    return points


def people_steps(script: Script, until: float) -> list[tuple[float, int]]:
    """People present by the counter: entries less exits, never below zero, and zero again
    at each moment the space is known to be empty."""
    changes = [(a.at, a.kind) for a in script.all_acts() if a.kind in ("entry", "exit")]
    changes += [(at, "empty") for at in reset_points(script, until)]
    people, steps = 0, [(script.start, 0)]
    for at, kind in sorted(changes):
        people = 0 if kind == "empty" else people + 1 if kind == "entry" else max(people - 1, 0)
        steps.append((at, people))
    return steps


def _peak_and_person_minutes(steps, start: float, end: float) -> tuple[int, int]:
    """The hour as pieces of constant headcount: the count standing at `start`, then each
    change inside the hour; the peak is the largest piece, person-minutes their area."""
    standing = [people for at, people in steps if at <= start]
    inside = [(at, people) for at, people in steps if start < at < end]
    bounds = [start, *(at for at, _ in inside), end]
    levels = [standing[-1] if standing else 0, *(people for _, people in inside)]
    area = sum(n * (b - a) for n, a, b in zip(levels, bounds[:-1], bounds[1:], strict=True))
    return max(levels), round(area / 60)


def hourly(script: Script, now: float) -> dict[int, dict]:
    """Every hour with something to count, from the week's first moment to the last
    hour over at `now`: the counts a space sends (zeros left out)."""
    end = over(now)
    acts = [a for a in script.all_acts() if a.at < end]
    hours: dict[int, dict] = {}

    def add(h: int, name: str, n: int = 1, label: str | None = None) -> None:
        counts = hours.setdefault(h, {})
        if label is None:
            counts[name] = counts.get(name, 0) + n
        else:
            counts.setdefault(name, {})
            counts[name][label] = counts[name].get(label, 0) + n

    first_visit: dict[str, float] = {}
    for a in script.all_acts():
        if a.kind in ("new", "returning"):
            first_visit.setdefault(a.who, a.at)
    seen: dict[int, set] = {}
    for a in acts:
        h = hour_of(a.at)
        if a.kind in ("new", "returning"):
            add(h, "signins")
            if a.who not in seen.setdefault(h, set()):
                seen[h].add(a.who)
                add(h, "unique_visitors")
                add(h, "new_visitors" if hour_of(first_visit[a.who]) == h else "returning_visitors")
            if a.purpose:
                add(h, "by_purpose", label=a.purpose)
            if a.event:
                add(h, "by_event", label=a.event)
        elif a.kind in ("out", "closed"):
            add(h, "signouts")
        elif a.kind == "door_open":
            add(h, "door_openings")
        elif a.kind == "entry":
            add(h, "entries")
        elif a.kind == "exit":
            add(h, "exits")
        elif a.kind == "motion":
            add(h, "motion_periods")
    moving: list[tuple[float, float]] = []
    began = None
    for a in acts:
        if a.kind == "motion":
            began = a.at
        elif a.kind == "still" and began is not None:
            moving.append((began, a.at))
            began = None
    if began is not None:
        moving.append((began, end))
    links = [(s, end if e is None else min(e, end)) for s, e in script.link]
    for name, spans in (
        ("occupied_minutes", moving),
        ("open_minutes", open_spans(script, script.start, end)),
        ("connected_minutes", links),
    ):
        for h, minutes in _minutes(spans).items():
            if minutes and h < end:
                add(h, name, minutes)
    steps = people_steps(script, end)
    opened = open_spans(script, script.start, end)
    for h in range(int(script.start), end, HOUR):
        peak, person_minutes = _peak_and_person_minutes(steps, h, h + HOUR)
        if peak:
            add(h, "occupancy_peak", peak)
        if person_minutes:
            add(h, "person_minutes", person_minutes)
        # Person-minutes while open: people present over the open part of the hour only.
        seconds = sum(_area(steps, max(s, h), min(e, h + HOUR)) for s, e in opened
                      if s < h + HOUR and e > h)  # fmt: skip
        if round(seconds / 60):
            add(h, "open_person_minutes", round(seconds / 60))
    for h, counts in firsts(sign_ins(script, now)).items():
        for name, n in counts.items():
            add(h, name, n)
    return {h: c for h, c in sorted(hours.items()) if c}


def _area(steps, start: float, end: float) -> float:
    """People present times seconds, from `start` to `end`."""
    current = 0
    for at, people in steps:
        if at > start:
            break
        current = people
    area, last = 0.0, start
    for at, people in steps:
        if start < at < end:
            area += current * (at - last)
            current, last = people, at
    return area + current * (end - last)


PERIODS = ("day", "week", "month", "quarter", "year")


def sign_ins(script: Script, now: float) -> list[tuple[float, str]]:
    """(when, who) of every sign-in in the hours over at `now`."""
    return [(a.at, a.who) for a in script.all_acts()
            if a.kind in ("new", "returning") and a.at < over(now)]  # fmt: skip


def firsts(visits: list[tuple[float, str]]) -> dict[int, dict]:
    """For each hour, first_in_<period>: how many people signed in in it for the first
    time in its UTC day, ISO week, month, quarter and year (zeros left out)."""
    out: dict[int, dict] = {}
    for kind in PERIODS:
        first: dict[tuple[str, int], float] = {}
        for at, who in sorted(visits):
            first.setdefault((who, period_start(int(at), kind)), at)
        for at in first.values():
            counts = out.setdefault(hour_of(at), {})
            counts[f"first_in_{kind}"] = counts.get(f"first_in_{kind}", 0) + 1
    return out


def people(visits: list[tuple[float, str]], start: float, end: float) -> tuple[int, int]:
    """The different people who signed in in [start, end), and of them those who had
    signed in before `start`: counted from who came, as a funder means it."""
    came = {who for at, who in visits if start <= at < end}
    before = {who for at, who in visits if at < start}
    return len(came), len(came & before)


# --- periods, as the collector sums them ---

COUNTS = (
    "signins", "signouts", "unique_visitors", "new_visitors", "returning_visitors",
    "door_openings", "entries", "exits", "motion_periods", "occupancy_peak",
    "person_minutes", "occupied_minutes", "open_minutes", "connected_minutes",
    "sensor_fault_minutes", "first_in_day", "first_in_week", "first_in_month",
    "first_in_quarter", "first_in_year", "open_person_minutes",
)  # fmt: skip


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def period_start(t: int, granularity: str) -> int:
    d = _utc(t)
    if granularity == "hour":
        return int(d.replace(minute=0, second=0).timestamp())
    midnight = datetime(d.year, d.month, d.day, tzinfo=UTC)
    if granularity == "day":
        return int(midnight.timestamp())
    if granularity == "week":
        return int((midnight - timedelta(days=midnight.weekday())).timestamp())
    if granularity == "quarter":
        return int(datetime(d.year, (d.month - 1) // 3 * 3 + 1, 1, tzinfo=UTC).timestamp())
    if granularity == "year":
        return int(datetime(d.year, 1, 1, tzinfo=UTC).timestamp())
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())


def period_end(start: int, granularity: str) -> int:
    d = _utc(start)
    if granularity == "month":
        nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
        return int(nxt.timestamp())
    return start + {"hour": HOUR, "day": DAY, "week": 7 * DAY}[granularity]


def total(hours: dict[int, dict], since: float = 0, until: float = float("inf")) -> dict:
    out: dict = dict.fromkeys(COUNTS, 0) | {"by_purpose": {}, "by_event": {}}
    for h, counts in hours.items():
        if not since <= h < until:
            continue
        for name, value in counts.items():
            if isinstance(value, dict):
                for label, n in value.items():
                    out[name][label] = out[name].get(label, 0) + n
            elif name == "occupancy_peak":
                out[name] = max(out[name], value)
            else:
                out[name] += value
    return out


def periods(
    hours: dict[int, dict],
    granularity: str,
    now: float,
    visits: list[list[tuple[float, str]]] | None = None,
    span: tuple[float, float] | None = None,
) -> list[dict]:
    """/api/v1/usage's periods: each period with data, its length, whether it holds an
    hour not over yet, and its counts; with the sign-ins of each space (`visits`), the
    period's different people and those who had come before, each space's added up,
    or None for a period the `span` asked for cuts."""
    starts = sorted({period_start(h, granularity) for h in hours})
    out = []
    for s in starts:
        e = period_end(s, granularity)
        out.append(
            {"start": _utc(s).strftime("%Y-%m-%dT%H:%M:%SZ"), "hours": (e - s) // HOUR,
             "provisional": e > over(now)} | total(hours, s, e)
        )  # fmt: skip
        if visits is None:
            continue
        if span and (span[0] > s or span[1] < e):
            distinct = returning = None
        else:
            found = [people(v, s, e) for v in visits]
            distinct, returning = sum(d for d, _ in found), sum(r for _, r in found)
        out[-1] |= {"distinct_visitors": distinct, "returning_distinct_visitors": returning}
    return out


@dataclass(frozen=True)
class Figures:
    visits: int
    unique_visitors: int
    new_visitors: int
    returning_visitors: int
    events: int
    event_signins: int
    occupied_minutes: int
    open_minutes: int
    utilisation: float | None
    peak: int
    peak_ratio: float | None
    average_occupancy: float | None
    availability: float | None
    cost: float | None
    currency: str | None
    cost_per_visit: float | None
    by_purpose: dict
    by_event: dict
    peak_space: str | None = None  # several spaces: the busiest, whose peak it is
    peak_capacity: int | None = None  # and its capacity
    hourly_visitors: int = 0  # each hour's distinct visitors added up (the CSV gives it)


def month_bounds(month: str) -> tuple[int, int]:
    y, m = (int(x) for x in month.split("-"))
    s = int(datetime(y, m, 1, tzinfo=UTC).timestamp())
    return s, period_end(s, "month")


def report_period(label: str) -> tuple[int, int, list[str]]:
    """A report's month (2026-11) or quarter (2026-Q4): its start, end and months."""
    year, part = label.split("-")
    if part.startswith("Q"):
        first = 3 * int(part[1]) - 2
        months = [f"{year}-{m:02d}" for m in range(first, first + 3)]
    else:
        months = [label]
    return month_bounds(months[0])[0], month_bounds(months[-1])[1], months


def quarter(month: str) -> str:
    year, m = month.split("-")
    return f"{year}-Q{(int(m) - 1) // 3 + 1}"


@dataclass(frozen=True)
class Reporting:
    """What the collector holds of one space: its hours, capacity and costs entered."""

    hours: dict[int, dict]
    capacity: int | None
    costs: dict[str, tuple[float, str]]
    name: str = ""
    visits: list[tuple[float, str]] = field(default_factory=list)  # (when, who) signed in


def figures(script: Script, hours: dict[int, dict], period: str, now: float) -> Figures:
    """A month's or a quarter's report for the space: the definitions a funder reads."""
    here = Reporting(hours, script.capacity, script.costs, visits=sign_ins(script, now))
    return together([here], period, now)


def together(spaces: list[Reporting], period: str, now: float) -> Figures:
    """The report's row for these spaces together (one space: its own row). Counts add up,
    the peak is the highest, and each ratio divides sums by sums, but for the peak over
    capacity: several spaces' is the busiest space's peak over its own capacity."""
    start, end, months = report_period(period)
    t = total({}, start, end)
    observed = events = peaks = seats = cost_visits = occupied = opened = 0
    # Unique visitors: the different people of the period at each space, added up (who
    # is who across spaces is not known); returning: those of them who had come before.
    came = [people(space.visits, start, end) for space in spaces]
    costs, currencies = 0.0, set()
    busiest: tuple = (-1, 0.0, None, None)  # (peak, peak / capacity, name, capacity)
    for space in spaces:
        own = total(space.hours, start, end)
        ratio_own = own["occupancy_peak"] / space.capacity if space.capacity else None
        if (own["occupancy_peak"], ratio_own or 0) > busiest[:2]:
            busiest = (own["occupancy_peak"], ratio_own or 0, space.name, space.capacity)
        # Utilisation: only a space that has reported motion (it has a motion sensor).
        if any(c.get("motion_periods") or c.get("occupied_minutes") for c in space.hours.values()):
            occupied, opened = occupied + own["occupied_minutes"], opened + own["open_minutes"]
        for name, value in own.items():
            if isinstance(value, dict):
                for label, n in value.items():
                    t[name][label] = t[name].get(label, 0) + n
            elif name == "occupancy_peak":
                t[name] = max(t[name], value)
            else:
                t[name] += value
        events += sum(1 for n in own["by_event"].values() if n)
        if space.capacity:
            peaks, seats = peaks + own["occupancy_peak"], seats + space.capacity
        # Link availability: connected minutes over the minutes since the space was first
        # heard from (its first hour here), up to the end of the hours that are over.
        since = max(start, min(space.hours) if space.hours else end)
        observed += max(0, (min(end, over(now)) - since) // 60)
        # (The collector reads them once it holds every hour that is over: the newest hour
        # sent is the last hour over, so that is where it stops.)
        # Cost per visit: the costs entered for the period's months over their visits, a
        # month still running pro-rated to the hours sent (those over).
        priced = [m for m in months if m in space.costs]
        for m in priced:
            m_start, m_end = month_bounds(m)
            sent = min(m_end, max(m_start, over(now)))
            costs += space.costs[m][0] * (
                1 if m_end <= now else (sent - m_start) / (m_end - m_start)
            )
        currencies |= {space.costs[m][1] for m in priced}
        cost_visits += sum(total(space.hours, *month_bounds(m))["signins"] for m in priced)

    def ratio(a, b):
        return a / b if b else None

    cost = costs if len(currencies) == 1 else None
    return Figures(
        visits=t["signins"],
        unique_visitors=sum(d for d, _ in came),
        new_visitors=t["new_visitors"],
        returning_visitors=sum(r for _, r in came),
        events=events,
        event_signins=sum(t["by_event"].values()),
        occupied_minutes=t["occupied_minutes"],
        open_minutes=t["open_minutes"],
        utilisation=ratio(occupied, opened),
        peak=t["occupancy_peak"],
        peak_ratio=ratio(peaks, seats) if len(spaces) == 1 else ratio(busiest[0], busiest[3]),
        # People on average while open: person-minutes while open over open minutes.
        average_occupancy=ratio(t["open_person_minutes"], t["open_minutes"]),
        availability=ratio(t["connected_minutes"], observed),
        cost=cost,
        currency=currencies.pop() if len(currencies) == 1 else None,
        cost_per_visit=ratio(cost, cost_visits) if cost is not None else None,
        by_purpose={PURPOSE_LABELS.get(k, k): v for k, v in t["by_purpose"].items() if v},
        by_event={k: v for k, v in t["by_event"].items() if v},
        peak_space=busiest[2] if len(spaces) > 1 and busiest[0] > 0 else None,
        peak_capacity=busiest[3] if len(spaces) > 1 else None,
        hourly_visitors=t["unique_visitors"],
    )


# A second space, a small one, as the central store holds it: its hours as it sent them.
OTHER = {"id": "otherspace", "name": "Other Space", "capacity": 50, "zone": "Africa/Nairobi"}


def other_visits(script: Script) -> list[tuple[float, str]]:
    """Who signed in at the other space: at the coding club a regular of the year before
    and two first-timers, one of whom comes back the next morning."""
    club = hour_of(script.local(1, "15:00"))
    return [(club - 400 * DAY + 600, "Xavi"), (club + 600, "Xavi"), (club + 900, "Yara"),
            (club + 1200, "Zane"), (club + DAY - 5 * HOUR + 300, "Yara")]  # fmt: skip


def other_hours(script: Script) -> dict[int, dict]:
    """A coding club's evening and a morning visit at the other space, in the week, with
    first_in_<period> from its sign-ins (the hour of the regular's visit the year before
    is no longer held) and its person-minutes while open (it was open all these hours)."""
    hours = _other_hours(script)
    for h, counts in firsts(other_visits(script)).items():
        if h in hours:
            hours[h] |= dict.fromkeys((f"first_in_{p}" for p in PERIODS), 0) | counts
    for counts in hours.values():
        if counts.get("person_minutes"):
            counts["open_person_minutes"] = counts["person_minutes"]
    return hours


def _other_hours(script: Script) -> dict[int, dict]:
    club = hour_of(script.local(1, "15:00"))
    return {
        club: {"signins": 3, "unique_visitors": 3, "new_visitors": 2, "returning_visitors": 1,
               "by_purpose": {"cowork": 2, "workshop": 1}, "by_event": {"Coding club": 2},
               "entries": 3, "occupancy_peak": 12, "person_minutes": 400,
               "occupied_minutes": 50, "open_minutes": 60, "connected_minutes": 60},
        club + HOUR: {"signouts": 3, "exits": 3, "occupancy_peak": 9, "person_minutes": 300,
                      "occupied_minutes": 40, "open_minutes": 60, "connected_minutes": 45},
        club + DAY - 5 * HOUR: {"signins": 1, "unique_visitors": 1, "returning_visitors": 1,
                                "by_purpose": {"cowork": 1}, "occupancy_peak": 1,
                                "person_minutes": 30, "open_minutes": 60,
                                "connected_minutes": 60},
    }  # fmt: skip


def merged(*spaces: dict[int, dict]) -> dict[int, dict]:
    """Hours of several spaces, summed hour by hour (the peak: the highest)."""
    out: dict[int, dict] = {}
    for hours in spaces:
        for h, counts in hours.items():
            into = out.setdefault(h, {})
            for name, value in counts.items():
                if isinstance(value, dict):
                    for label, n in value.items():
                        into.setdefault(name, {})[label] = into.get(name, {}).get(label, 0) + n
                elif name == "occupancy_peak":
                    into[name] = max(into.get(name, 0), value)
                else:
                    into[name] = into.get(name, 0) + value
    return dict(sorted(out.items()))


def is_open(script: Script, now: float) -> bool:
    return any(s <= now < e for s, e in open_spans(script, now - DAY, now + DAY))


def last_change(script: Script, now: float) -> float:
    """When the space last opened or closed by its hours (SpaceAPI's `lastchange`)."""
    moments = [m for s, e in open_spans(script, now - 8 * DAY, now + DAY) for m in (s, e)]
    # open_spans clips at its window; a clipped edge is not a change
    moments = [m for m in moments if m != now - 8 * DAY and m <= now]
    return max(moments) if moments else now


def hour_of_week(spaces: list[tuple[str, dict[int, dict]]]):
    """7 x 24 sign-ins by the weekday and hour each hour began in, each space's hours in
    its own time zone."""
    grid = [[0] * 24 for _ in range(7)]
    for zone, hours in spaces:
        for h, counts in hours.items():
            if counts.get("signins"):
                local = datetime.fromtimestamp(h, ZoneInfo(zone))
                grid[local.weekday()][local.hour] += counts["signins"]
    return grid
