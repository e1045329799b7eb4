"""The History page's read model (spacekiosk/usage.py) against counts the tests make
themselves from the rows they inserted: days in the space's time zone (a clock change
included), the period before, new and returning people, erased visitors, untrusted
times, and people present from the counter."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import SENSORS, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk import people
from spacekiosk import config, usage
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import outbox

ZONE = ZoneInfo("Europe/Athens")
# 50 days around the end of summer time (Sunday 25 October 2026, 04:00 EEST -> 03:00 EET).
FIRST, LAST = date(2026, 10, 1), date(2026, 11, 19)
PURPOSES = ("cowork", "event", "meeting", "other")
EVERY_DAY = "".join(
    f'{day} = "09:00-21:00"\n' for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
)


def local(day: date, hour: int, minute: int = 0, second: int = 0, fold: int = 0) -> float:
    return datetime(
        day.year, day.month, day.day, hour, minute, second, tzinfo=ZONE, fold=fold
    ).timestamp()


def open_space(folder, sensors: str = ""):
    toml = write_space_config(folder, broker_port=1, extra=sensors)
    toml.write_text(
        toml.read_text().replace(
            "capacity = 20\n", "capacity = 20\n\n[space.opening_hours]\n" + EVERY_DAY, 1
        )
    )
    cfg = config.load(toml)
    assert cfg.space.timezone == ZONE
    return cfg, open_store(cfg.database.path, SPACE_MIGRATIONS)


def add_visitor(db, name: str, at: float) -> int:
    with write(db):
        return db.execute(
            "INSERT INTO visitors (name, name_key, created_at, handle) VALUES (?, ?, ?, ?)",
            [name, name.lower(), at, f"{random.getrandbits(96):024x}"],
        ).lastrowid


def add_visits(db, rows) -> None:
    """(visitor, signed in, purpose, event, clock_synced) as the kiosk stores them."""
    with write(db):
        db.conn.executemany(
            "INSERT INTO visits (visitor_id, signed_in_at, signed_out_at, purpose, event, "
            "clock_synced) VALUES (?, ?, ? + 3600, ?, ?, ?)",
            [(v, at, at, purpose, event, synced) for v, at, purpose, event, synced in rows],
        )


class History:
    """A space with 50 days of visits and the rows the test inserted, to count from."""

    def __init__(self, folder):
        self.config, self.db = open_space(folder)
        rng = random.Random(2026)
        self.rows = []  # (visitor, signed_in_at, purpose, event, clock_synced)
        visitors = []
        for i in range(30):
            first = local(FIRST, 9) - rng.randint(0, 30) * 86400
            visitors.append(add_visitor(self.db, f"Person {i}", first))
        # Ten of them came before the history starts: they are returning from day one.
        self.rows += [(v, local(FIRST, 12) - 40 * 86400, "cowork", None, 1) for v in visitors[:10]]
        day = FIRST
        while day <= LAST:
            for _ in range(rng.randint(0, 6)):
                hour = rng.randint(9, 20)
                event = "Repair café" if day.weekday() == 3 and rng.random() < 0.5 else None
                self.rows.append(
                    (rng.choice(visitors), local(day, hour, rng.randint(0, 59)),
                     "event" if event else rng.choice(PURPOSES), event, 1)
                )  # fmt: skip
            day += timedelta(days=1)
        # The edges of days, in local time: the last second of a day, the first of the next.
        self.rows += [
            (visitors[11], local(date(2026, 10, 9), 23, 59, 59), "other", None, 1),
            (visitors[12], local(date(2026, 10, 10), 0, 0, 0), "other", None, 1),
            # The hour that happens twice when summer time ends: 03:30 EEST, then 03:30 EET.
            (visitors[13], local(date(2026, 10, 25), 3, 30, fold=0), "meeting", None, 1),
            (visitors[14], local(date(2026, 10, 25), 3, 30, fold=1), "meeting", None, 1),
            # Taken before the clock was set: not counted anywhere.
            (visitors[15], local(date(2026, 10, 14), 12), "cowork", None, 0),
            (visitors[29], local(date(2026, 10, 14), 13), "cowork", None, 0),
        ]
        add_visits(self.db, self.rows)
        # Two people are erased: their visits stay, nameless, and still count.
        self.erased = visitors[:2]
        for person in self.erased:
            people.erase(self.db, person)

    def counted(self, first: date, last: date, until: float | None = None) -> dict:
        """What the page must show for local days first..last (until `until`), counted
        here from the rows, by Python's own time-zone arithmetic."""
        start = datetime(first.year, first.month, first.day, tzinfo=ZONE).timestamp()
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), ZONE).timestamp()
        end = min(end, until) if until is not None else end
        trusted = [r for r in self.rows if r[4] == 1]
        firsts: dict[int, float] = {}
        for visitor, at, *_ in trusted:
            firsts[visitor] = min(at, firsts.get(visitor, at))
        inside = [r for r in trusted if start <= r[1] < end]
        came = {r[0] for r in inside}
        new = {v for v in came if firsts[v] >= start}
        per_day = Counter(datetime.fromtimestamp(r[1], ZONE).date() for r in inside)
        grid = Counter()
        for r in inside:
            when = datetime.fromtimestamp(r[1], ZONE)
            grid[when.weekday(), when.hour] += 1
        return {
            "visits": len(inside),
            "people": len(came),
            "new": len(new),
            "returning": len(came - new),
            "per_day": per_day,
            "grid": grid,
            "purposes": Counter(r[2] for r in inside),
            "events": Counter(r[3] for r in inside if r[3]),
            "new_per_day": Counter(datetime.fromtimestamp(firsts[v], ZONE).date() for v in new),
        }


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    found = History(tmp_path_factory.mktemp("history"))
    yield found
    found.db.close()


def check(found: usage.Usage, expected: dict) -> None:
    assert found.visits == expected["visits"]
    assert (found.visitors, found.new, found.returning) == (
        expected["people"],
        expected["new"],
        expected["returning"],
    )
    assert {d: n for d, n in found.visits_by_day() if n} == dict(expected["per_day"])
    grid = found.hour_of_week()
    assert {(d, h): grid[d][h] for d in range(7) for h in range(24) if grid[d][h]} == dict(
        expected["grid"]
    )
    assert found.by_purpose == expected["purposes"]
    assert found.by_event == expected["events"]
    new_days = {usage.EPOCH + timedelta(days=d): n for d, n in found.new_by_day.items()}
    assert new_days == dict(expected["new_per_day"])


def test_a_month_counts_what_was_inserted(history):
    span = usage.Span(date(2026, 10, 1), date(2026, 10, 31), ZONE)
    found = usage.read(history.db, history.config, span, until=span.end + 86400)
    expected = history.counted(span.first, span.last)
    check(found, expected)
    assert found.visits > 50 and 0 < found.new < found.visitors  # the data says something
    assert len(found.visits_by_day()) == 31
    assert sum(n for _, n in found.visits_by_week()) == found.visits
    assert [monday.weekday() for monday, _ in found.visits_by_week()] == [0] * 5


def test_days_end_at_local_midnight(history):
    """23:59:59 belongs to its day, 00:00:00 to the next: Athens is three hours ahead of
    UTC in October, so UTC days would put both on 9 October."""
    for day, hour in ((date(2026, 10, 9), 23), (date(2026, 10, 10), 0)):
        found = usage.read(history.db, history.config, usage.Span(day, day, ZONE), 2e9)
        check(found, history.counted(day, day))
        assert found.visits_by_hour_of_day()[hour] >= 1


def test_the_day_summer_time_ends_has_25_hours(history):
    day = date(2026, 10, 25)
    span = usage.Span(day, day, ZONE)
    assert span.end - span.start == 25 * 3600
    found = usage.read(history.db, history.config, span, 2e9)
    check(found, history.counted(day, day))
    assert found.visits_by_hour_of_day()[3] >= 2  # 03:30 twice, both in the hour 03


def test_untrusted_times_count_nowhere(history):
    day = date(2026, 10, 14)
    found = usage.read(history.db, history.config, usage.Span(day, day, ZONE), 2e9)
    assert found.visits == history.counted(day, day)["visits"]
    assert found.visits_by_hour_of_day()[12] + found.visits_by_hour_of_day()[13] == sum(
        1 for r in history.rows if r[4] and local(day, 12) <= r[1] < local(day, 14)
    )


def test_erased_visitors_still_count(history):
    erased = set(history.erased)
    for person in erased:
        name = history.db.execute("SELECT name FROM visitors WHERE id = ?", [person]).fetchone()
        assert name == (people.ERASED,)
    theirs = [r for r in history.rows if r[0] in erased and r[4] and r[1] >= local(FIRST, 0)]
    assert theirs
    span = usage.Span(FIRST, LAST, ZONE)
    found = usage.read(history.db, history.config, span, 2e9)
    check(found, history.counted(FIRST, LAST))


def test_the_period_before_is_as_long_and_cut_where_the_span_is(history):
    span = usage.Span(date(2026, 11, 2), date(2026, 11, 8), ZONE)  # a Monday to Sunday
    assert span.before() == usage.Span(date(2026, 10, 26), date(2026, 11, 1), ZONE)
    # The whole week is over: the week before is compared whole.
    current, before = usage.compare(history.db, history.config, span, now=2e9)
    check(current, history.counted(span.first, span.last))
    expected = history.counted(date(2026, 10, 26), date(2026, 11, 1))
    assert (before.visits, before.visitors, before.new, before.returning) == (
        expected["visits"], expected["people"], expected["new"], expected["returning"],
    )  # fmt: skip
    assert before.by_purpose == expected["purposes"]
    # Wednesday 15:00 of the week: held against the week before until Wednesday 15:00.
    now = local(date(2026, 11, 4), 15)
    current, before = usage.compare(history.db, history.config, span, now=now)
    check(current, history.counted(span.first, span.last, until=now))
    assert [d for d, _ in current.visits_by_day()] == [date(2026, 11, d) for d in (2, 3, 4)]
    cut = history.counted(
        date(2026, 10, 26), date(2026, 11, 1), until=local(date(2026, 10, 28), 15)
    )
    assert (before.visits, before.visitors, before.new) == (
        cut["visits"],
        cut["people"],
        cut["new"],
    )


def test_a_span_in_the_future_is_empty(history):
    span = usage.Span(date(2027, 1, 1), date(2027, 1, 31), ZONE)
    current, before = usage.compare(history.db, history.config, span, now=local(LAST, 12))
    assert (current.visits, before.visits, current.visits_by_day()) == (0, 0, [])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.dates(FIRST - timedelta(days=45), LAST + timedelta(days=5)),
    days=st.integers(1, 70),
)
def test_any_span_matches_the_rows(history, first, days):
    last = first + timedelta(days=days - 1)
    found = usage.read(history.db, history.config, usage.Span(first, last, ZONE), 2e9)
    check(found, history.counted(first, last))


def test_people_present_come_from_the_buckets_and_the_hours_after(tmp_path):
    """The counter's people present: the sync agent's buckets for the hours it stored,
    worked out from the events for the hours after; peak and average per day."""
    cfg, db = open_space(tmp_path, SENSORS)
    monday, tuesday = date(2026, 11, 16), date(2026, 11, 17)
    moves = {
        monday: [(10, 0, +1), (10, 10, +1), (10, 20, +1), (11, 0, -1), (12, 0, +1),
                 (15, 0, -1), (15, 30, -1), (16, 0, -1)],
        tuesday: [(9, 30, +1), (10, 0, +1), (13, 0, -1), (14, 0, -1)],
    }  # fmt: skip
    with write(db):
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, 'counter', ?)",
            [(local(day, h, m), "entry" if step > 0 else "exit")
             for day, steps in moves.items() for h, m, step in steps],
        )  # fmt: skip
        # The sensors were installed the day before: the agent counts from then on.
        db.execute(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, 'door', 'close')",
            [local(monday, 12) - 86400],
        )
    # The agent has stored Monday's hours; Tuesday's are not stored yet.
    outbox.refresh(db, cfg, now=local(tuesday, 8))
    assert db.execute("SELECT max(hour_start) FROM buckets").fetchone()[0] < local(tuesday, 0)

    def expected(day: date) -> tuple[int, float]:
        people, peak, area, last = 0, 0, 0.0, None
        for h, m, step in moves[day]:
            at = local(day, h, m)
            if last is not None:
                area += people * (at - last)
            people += step
            peak, last = max(peak, people), at
        return peak, area / 60 / 720  # open 09:00-21:00: 720 minutes

    span = usage.Span(monday, tuesday, ZONE)
    found = usage.read(db, cfg, span, until=local(tuesday, 22))
    assert found.presence_source == "counter"
    by_day = dict(found.presence_by_day())
    for day in (monday, tuesday):
        peak, average = expected(day)
        assert by_day[day].peak == peak
        assert by_day[day].average == pytest.approx(average, abs=0.01)
    # A single day is read by the hour.
    one = usage.read(db, cfg, usage.Span(tuesday, tuesday, ZONE), until=local(tuesday, 22))
    hours = one.presence_by_hour_of_day()
    assert [hours[h].peak for h in (8, 9, 10, 12, 13, 14)] == [0, 1, 2, 2, 1, 0]
    # The totals of the period before are summed in SQLite: the same figures.
    _current, before = usage.compare(
        db, cfg, usage.Span(tuesday, tuesday, ZONE), local(tuesday, 22)
    )
    assert before.presence_total().peak == expected(monday)[0]
    assert before.presence_total().average == pytest.approx(expected(monday)[1], abs=0.01)
    db.close()


def test_a_half_hour_zone_counts_by_its_own_midnight(tmp_path):
    """India is 5:30 ahead of UTC: a visit at 00:10 local is on its own day, though it
    is still the day before in UTC."""
    cfg, db = open_space(tmp_path)
    zone = ZoneInfo("Asia/Kolkata")
    visitor = add_visitor(db, "Asha", 0)
    at = datetime(2026, 11, 10, 0, 10, tzinfo=zone).timestamp()
    add_visits(db, [(visitor, at, "cowork", None, 1), (visitor, at - 20 * 60, "cowork", None, 1)])
    found = usage.read(db, cfg, usage.Span(date(2026, 11, 10), date(2026, 11, 10), zone), 2e9)
    assert (found.visits, found.new, found.visits_by_hour_of_day()[0]) == (1, 0, 1)
    db.close()
