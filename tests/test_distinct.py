"""Different people per period and people on average while open, from hourly counts.

The Pi sends, for each hour, first_in_<period>: the people whose first sign-in of the
UTC day, ISO week, month, quarter and year fell in it. Summed over a period's hours they
are the period's different people; these tests hold that to a brute-force count over
random visit histories, through the agent's own counting on a real store, through the
roll-up of a day into one bucket, the wire and the collector's sums.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from central import commit_usage
from conftest import write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import api, periods, reports
from spacekiosk import config, protocol
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.protocol import Bucket, ProtocolError
from sync.buckets import compute, period_start

HOUR, DAY = 3600, 86400
# Late December to early January: days, ISO weeks, months, quarters and years all turn.
BASE = int(datetime(2026, 12, 20, tzinfo=UTC).timestamp())
SPAN = 24 * DAY
KINDS = ("day", "week", "month", "quarter", "year")


def _store(folder: Path, extra: str = ""):
    cfg = config.load(write_space_config(folder, broker_port=1, extra=extra))
    return cfg, open_store(cfg.database.path, SPACE_MIGRATIONS)


def _sign_ins(db, visits: list[tuple[int, float]], people: int) -> None:
    """Visitors 1..people, and their sign-ins (visitor, at), straight into the tables the
    kiosk writes (the counting, not the kiosk's forms, is under test here)."""
    with write(db):
        db.conn.executemany(
            "INSERT INTO visitors (id, name, name_key, created_at) VALUES (?, ?, ?, ?)",
            [(i, f"Person {i}", f"person {i}", BASE) for i in range(1, people + 1)],
        )
        db.conn.executemany(
            "INSERT INTO visits (visitor_id, signed_in_at, signed_out_at, closed_by) "
            "VALUES (?, ?, ?, 'visitor')",
            [(who, at, at + 60) for who, at in visits],
        )


def _brute(visits: list[tuple[int, float]], start: float, end: float) -> int:
    return len({who for who, at in visits if start <= at < end})


def _periods(kind: str) -> list[tuple[int, int]]:
    """Every `kind` period that overlaps the random histories' span."""
    out, at = [], period_start(BASE, kind)
    while at < BASE + SPAN:
        nxt = at + DAY
        while period_start(nxt, kind) == at:
            nxt += DAY
        out.append((at, nxt))
        at = nxt
    return out


histories = st.lists(
    st.tuples(st.integers(1, 6), st.integers(0, SPAN - 1)), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.integers(0, SPAN // HOUR))
def test_first_in_a_period_summed_over_its_hours_is_its_different_people(history, cut):
    """For random visit histories, the hours the agent counts, in whatever windows it
    counts them, give each period's different people exactly; and a day rolled up from
    its hours keeps them."""
    visits = [(who, BASE + at) for who, at in history]
    with tempfile.TemporaryDirectory() as folder:
        cfg, db = _store(Path(folder))
        _sign_ins(db, visits, 6)
        now = BASE + SPAN + DAY
        # The agent counts a window at a time; the second one starts at an arbitrary hour.
        split = BASE + cut * HOUR
        hours = compute(db, BASE, split, cfg, now=now) | compute(
            db, split, BASE + SPAN, cfg, now=now
        )
        db.conn.close()
    for kind in KINDS:
        for start, end in _periods(kind):
            summed = sum(c.get(f"first_in_{kind}", 0) for h, c in hours.items() if start <= h < end)
            assert summed == _brute(visits, start, end), (kind, start)
    for h, counts in hours.items():
        assert counts.get("unique_visitors", 0) == _brute(visits, h, h + HOUR)
        if counts.get("unique_visitors"):
            assert all(f"first_in_{k}" in counts for k in KINDS), "sent even when 0"
    # Rolled up by UTC day, as the agent sends old days: the days' sums stay exact.
    days: dict[int, dict] = {}
    for h, counts in hours.items():
        protocol.add_counts(days.setdefault(h // DAY * DAY, {}), counts)
    for kind in KINDS:
        for start, end in _periods(kind):
            summed = sum(c.get(f"first_in_{kind}", 0) for d, c in days.items() if start <= d < end)
            assert summed == _brute(visits, start, end), (kind, start)


def test_period_starts_are_the_collectors():
    for at in range(BASE, BASE + SPAN, 5 * HOUR + 17):
        for kind in ("day", "week", "month"):
            assert period_start(at, kind) == periods.period_start(at, kind)
    q4 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
    assert period_start(int(datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp()), "quarter") == q4
    assert period_start(BASE + 20 * DAY, "year") == int(
        datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )


def test_person_minutes_while_open_leave_out_the_closed_part_of_an_hour(tmp_path):
    """Open 10:30-12:00 (UTC): one person 10:00-11:00 is 60 person-minutes, 30 of them
    while open; after closing nobody counts while open."""
    week = '[space]\ntimezone = "UTC"\n[space.opening_hours]\n' + "".join(
        f'{d} = "10:30-12:00"\n' for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    cfg, db = _store(tmp_path, week)
    day = BASE
    _sign_ins(db, [], 2)
    with write(db):
        db.conn.executemany(
            "INSERT INTO visits (visitor_id, signed_in_at, signed_out_at, closed_by) "
            "VALUES (?, ?, ?, 'visitor')",
            [(1, day + 10 * HOUR, day + 11 * HOUR), (2, day + 12 * HOUR, day + 12 * HOUR + 1800)],
        )
    hours = compute(db, day, day + DAY, cfg, now=day + 2 * DAY)
    assert hours[day + 10 * HOUR]["person_minutes"] == 60
    assert hours[day + 10 * HOUR]["open_person_minutes"] == 30
    assert hours[day + 10 * HOUR]["open_minutes"] == 30
    assert hours[day + 12 * HOUR]["person_minutes"] == 30
    assert hours[day + 12 * HOUR]["open_person_minutes"] == 0, "sent as 0: counted, not unknown"


# --- the wire ---


def _wire(counts: dict) -> bytes:
    return protocol.usage_message("abc", [Bucket(BASE, 1, counts)])


def test_an_older_agents_bucket_without_the_new_counts_is_taken():
    ((_start, hour),) = protocol.read_hours(
        _wire({"signins": 2, "unique_visitors": 2}), "abc", now=BASE + DAY
    )
    assert hour.first_in_day is msgspec.UNSET and hour.counts() == {
        "signins": 2,
        "unique_visitors": 2,
    }


@pytest.mark.parametrize(
    "counts",
    [
        {"unique_visitors": 1, "first_in_day": 2},
        {"unique_visitors": 3, "first_in_year": 4},
        {"person_minutes": 10, "open_person_minutes": 11},
        {"first_in_week": 1},
        {"open_person_minutes": 1},
    ],
)
def test_a_part_over_its_whole_is_refused(counts):
    with pytest.raises(ProtocolError, match="over its"):
        protocol.read_hours(_wire(counts), "abc", now=BASE + DAY)


@given(
    st.integers(0, 50),
    st.dictionaries(st.sampled_from(protocol.OPTIONAL), st.integers(0, 60), max_size=6),
)
def test_the_optional_counts_are_taken_exactly_when_within_their_whole(whole, parts):
    counts = {"unique_visitors": whole, "person_minutes": whole} | parts
    fits = all(n <= whole for n in parts.values())
    try:
        ((_, hour),) = protocol.read_hours(_wire(counts), "abc", now=BASE + DAY)
    except ProtocolError:
        assert not fits
    else:
        assert fits and {k: v for k, v in hour.counts().items() if k in parts} == parts


def test_a_sum_with_an_older_agents_hour_is_not_known():
    new = {"unique_visitors": 2, "person_minutes": 30, "open_person_minutes": 20}
    new |= {f"first_in_{k}": 1 for k in KINDS}
    total = protocol.add_counts(protocol.add_counts({}, new), new)
    assert total["first_in_month"] == 2 and total["open_person_minutes"] == 40
    old = {"unique_visitors": 1, "person_minutes": 5}
    total = protocol.add_counts(total, old)
    assert total["first_in_month"] is None and total["open_person_minutes"] is None
    assert protocol.add_counts(total, new)["first_in_month"] is None, "stays unknown"
    # An older agent's empty hour says nothing wrong: nobody came, nobody was there.
    quiet = protocol.add_counts(protocol.add_counts({}, new), {"open_minutes": 60})
    assert quiet["first_in_month"] == 1 and quiet["open_person_minutes"] == 20


# --- the collector ---


def _hour(at: int, distinct: int, new: int, firsts: dict, person=60, opened=60, open_pm=30):
    return Bucket(
        at,
        1,
        {
            "signins": distinct,
            "unique_visitors": distinct,
            "new_visitors": new,
            "returning_visitors": distinct - new,
            "person_minutes": person,
            "open_minutes": opened,
            "open_person_minutes": open_pm,
        }
        | {f"first_in_{k}": firsts.get(k, 0) for k in KINDS},
    )


def test_reports_and_api_give_the_different_people_and_the_average_while_open(central_db):
    """Two people on two days of March 2025 (one new), and a closed night: the month's
    unique visitors are 2, not the 4 hourly visitors; returning 1; on average while open
    (20 + 40 + 30 + 30 person-minutes while open) over 240 open minutes."""
    db = central_db
    d1 = int(datetime(2025, 3, 11, 10, tzinfo=UTC).timestamp())
    d2 = d1 + DAY
    every = {k: 2 for k in KINDS}
    commit_usage(db, "athens", [
        _hour(d1, 2, 1, every, open_pm=20),
        _hour(d1 + HOUR, 2, 0, {}, open_pm=40),
        _hour(d2, 2, 0, {"day": 2}),
        _hour(d2 + HOUR, 2, 0, {}),
        Bucket(d2 + 12 * HOUR, 1, {"person_minutes": 120, "open_person_minutes": 0}),  # closed
    ])  # fmt: skip
    march = periods.parse_period("2025-03")
    row = next(r for r in reports.report(db, march, d1 + 40 * DAY).rows if r.id == "athens")
    assert (row.unique_visitors, row.returning_visitors, row.new_visitors) == (2, 1, 1)
    assert row.hourly_visitors == 8
    assert row.average_occupancy == pytest.approx((20 + 40 + 30 + 30) / 240)
    found = periods.summed(periods.rows(db, None, None, "athens"), "day")
    people = [api._people(s, h, c, "day", None, None) for s, h, c in found]
    assert [p["distinct_visitors"] for p in people] == [2, 2]
    assert [p["returning_distinct_visitors"] for p in people] == [1, 2]
    week = periods.summed(periods.rows(db, None, None, "athens"), "week")
    assert [api._people(s, h, c, "week", None, None)["distinct_visitors"] for s, h, c in week] == [
        2
    ]
    # A span that cuts the week: its people are not known from hourly counts.
    s, h, c = week[0]
    assert api._people(s, h, c, "week", s + DAY, None)["distinct_visitors"] is None
    # An older agent's hour in the month: not known, rather than a wrong figure.
    old = {"signins": 1, "unique_visitors": 1, "person_minutes": 60, "open_minutes": 60}
    commit_usage(db, "athens", [Bucket(d2 + 5 * HOUR, 1, old)])
    row = next(r for r in reports.report(db, march, d1 + 40 * DAY).rows if r.id == "athens")
    assert row.unique_visitors is None and row.returning_visitors is None
    assert row.average_occupancy is None


@pytest.fixture
def central_db(tmp_path):
    from collector.store import COLLECTOR_MIGRATIONS

    db = open_store(tmp_path / "central.db", COLLECTOR_MIGRATIONS)
    yield db
    db.conn.close()


def test_postgresqls_flat_view_has_the_new_counts_after_the_step(pg_url):
    """A store at the step before gets usage_flat's new columns; an older agent's hour
    with visitors has them NULL (not known), an empty hour 0."""
    import psycopg

    from collector import pg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for number, statements in enumerate(pg.PG_MIGRATIONS[:3], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (%s)", [number])
        conn.execute("INSERT INTO spaces (id, first_seen, last_seen) VALUES ('a', 0, 0)")
        conn.execute(
            "INSERT INTO usage (space, hour_start, hours, version, counts, received_at) VALUES "
            "('a', 1, 1, 1, '{\"unique_visitors\":2}', 0), ('a', 2, 1, 1, '{\"signins\":0}', 0),"
            " ('a', 3, 1, 1, '{\"unique_visitors\":2,\"first_in_day\":0}', 0)"
        )
    db = pg.open_pg(pg_url)
    got = db.execute(
        "SELECT first_in_day, open_person_minutes FROM usage_flat ORDER BY start"
    ).fetchall()
    db.close()
    assert got == [(None, 0), (0, 0), (0, 0)]


def test_new_year_turns_every_period_but_the_week(tmp_path):
    """Someone who comes on 31 December and 1 January is new in the year and quarter of
    each: summed over 2026, one; over 2027, one; over the ISO week holding both, one."""
    cfg, db = _store(tmp_path)
    eve = int(datetime(2026, 12, 31, 18, tzinfo=UTC).timestamp())
    _sign_ins(db, [(1, eve), (1, eve + 9 * HOUR)], 1)
    hours = compute(db, eve - DAY, eve + 2 * DAY, cfg, now=eve + 3 * DAY)
    first, second = hours[eve], hours[eve + 9 * HOUR]
    assert [first[f"first_in_{k}"] for k in KINDS] == [1, 1, 1, 1, 1]
    assert [second[f"first_in_{k}"] for k in KINDS] == [1, 0, 1, 1, 1]
    assert (
        datetime.fromtimestamp(eve, UTC).isocalendar()[1]
        == (datetime.fromtimestamp(eve, UTC) + timedelta(hours=9)).isocalendar()[1]
    )
