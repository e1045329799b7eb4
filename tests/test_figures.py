"""Figures the demo showed that could not be right: each seeded into a real central
store (or read off the kiosk's own opening hours) and held to the figure it must be."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from central import commit_usage
from conftest import LOGINS, write_collector_config

from collector import accounts, periods, reports, store
from collector.web import create_app
from spacekiosk import config
from spacekiosk.protocol import Bucket

PASSWORD = LOGINS["central"]
HOUR = 3600


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.fixture
def central(tmp_path):
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    accounts.add_user(db, "central", PASSWORD)
    yield cfg, db
    db.close()


def logged_in(cfg):
    client = create_app(cfg).test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
    answer = client.post(
        "/login", data={"name": "central", "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 302
    return client


def demo_hours(db, first: int, now: float) -> None:
    """A space open 00:00-24:00, online throughout, as the demo sends it: an hour that is
    over with all its figures, and the hour still running with its crossings so far."""
    commit_usage(
        db,
        "demo",
        [
            Bucket(
                first,
                1,
                {
                    "signins": 1,
                    "entries": 1,
                    "exits": 1,
                    "occupancy_peak": 1,
                    "person_minutes": 20,
                    "occupied_minutes": 20,
                    "open_minutes": 60,
                    "connected_minutes": 60,
                    "by_purpose": {"event": 1},
                },
            ),
            Bucket(first + HOUR, 1, {"signins": 2, "entries": 2, "by_purpose": {"cowork": 2}}),
        ],
        now=now,
    )
    accounts.set_space_info(db, "demo", "Demo space", 30)


def test_running_hour_does_not_count_as_offline(central):
    _cfg, db = central
    first = at("2026-11-10T09:00")
    now = first + HOUR + 30 * 60  # half-way through the hour still running
    demo_hours(db, first, now)
    report = reports.report(db, periods.parse_period("2026-11"), now)
    (row,) = report.rows
    assert row.visits == 3
    # Online for the whole hour that is over; the running hour has no minutes yet.
    assert row.availability == 1.0
    assert row.utilisation == pytest.approx(20 / 60)
    assert row.peak == 1


def test_running_hour_alone_has_no_ratios_and_says_so(central):
    cfg, db = central
    start = int(time.time()) // HOUR * HOUR
    commit_usage(db, "demo", [Bucket(start, 1, {"signins": 2, "entries": 2})], now=start + 60)
    month = periods.recent_periods(time.time(), 1)[0]
    row = reports.report(db, periods.parse_period(month), time.time()).rows[0]
    assert row.availability is None  # nothing over yet: not 0 %
    page = logged_in(cfg).get(f"/reports?period={month}").text
    assert "Provisional:" in page


def test_purposes_show_their_labels(central):
    cfg, db = central
    first = at("2026-11-10T09:00")
    demo_hours(db, first, first + 2 * HOUR)
    page = logged_in(cfg).get("/reports/demo?period=2026-11").text
    assert "An event" in page
    assert "Coworking or a project" in page
    assert not re.search(r">\s*event\s*<", page)


def test_report_opens_on_the_month_with_data(central):
    cfg, db = central
    now = time.time()
    this = periods.recent_periods(now, 1)[0]
    start = int(now) // HOUR * HOUR  # this month's hour, as the demo sends it
    commit_usage(db, "demo", [Bucket(start, 1, {"signins": 4})], now=now)
    client = logged_in(cfg)
    assert f"Report for {this}" in client.get("/reports").text
    page = client.get("/reports/demo").text
    assert f"Progress report · {this}" in page
    assert "Provisional:" in page


def test_report_opens_on_last_month_when_it_has_data(central):
    cfg, db = central
    now = time.time()
    last = periods.last_full_month(now)
    start = periods.parse_period(last).start + 5 * 86400
    commit_usage(db, "demo", [Bucket(start, 1, {"signins": 4})], now=now)
    commit_usage(db, "demo", [Bucket(int(now) // HOUR * HOUR, 1, {"signins": 1})], now=now)
    assert f"Report for {last}" in logged_in(cfg).get("/reports").text


def test_usage_says_which_periods_are_provisional(central):
    cfg, db = central
    now = time.time()
    running = int(now) // HOUR * HOUR
    yesterday = running // 86400 * 86400 - 86400 + 9 * HOUR
    commit_usage(
        db,
        "demo",
        [
            Bucket(yesterday, 1, {"signins": 1, "open_minutes": 60, "connected_minutes": 60}),
            Bucket(running, 1, {"signins": 2, "entries": 2}),
        ],
        now=now,
    )
    headers = {"Authorization": f"Bearer {accounts.add_api_token(db, 'figures')}"}
    client = create_app(cfg).test_client()
    answer = client.get("/api/v1/usage?space=demo&granularity=day", headers=headers).json
    before, today = answer["periods"]
    assert (before["hours"], before["provisional"], before["open_minutes"]) == (24, False, 60)
    # The day's span is 24 hours; its running hour's minutes are still to come.
    assert (today["hours"], today["provisional"], today["signins"]) == (24, True, 2)
    hourly = client.get("/api/v1/usage?space=demo&granularity=hour", headers=headers).json
    assert [p["provisional"] for p in hourly["periods"]] == [False, True]


# --- the kiosk's header: open all day, and a span past midnight ---


def space_with(tmp_path, hours: dict[str, str]):
    from conftest import write_space_config

    table = "".join(f'{day} = "{span}"\n' for day, span in hours.items())
    toml = write_space_config(tmp_path, broker_port=1, extra="[space.opening_hours]\n" + table)
    return config.load(toml)


ALL_DAY = dict.fromkeys(config.WEEKDAYS, "00:00-24:00")


def local(cfg, text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=cfg.space.timezone).timestamp()


def test_open_all_day_is_not_open_until_midnight(tmp_path):
    from spacekiosk import hours

    cfg = space_with(tmp_path, ALL_DAY)
    now = local(cfg, "2026-11-25T23:30")
    state = hours.state(cfg.space, now)
    assert state.is_open and state.all_day

    from kiosk import create_app

    app = create_app(cfg, {"TESTING": True})
    with app.test_client() as client:
        page = client.get("/").text
        assert "Open 24 hours" in page and "Open until" not in page
        client.set_cookie("lang", "el")
        assert "Ανοιχτά όλο το 24ωρο" in client.get("/").text


def test_a_span_past_midnight_closes_when_the_next_day_s_ends(tmp_path):
    from spacekiosk import hours

    # Wednesday 18:00 to midnight, then Thursday from midnight to 02:00.
    week = dict.fromkeys(config.WEEKDAYS, "closed") | {"wed": "18:00-24:00", "thu": "00:00-02:00"}
    cfg = space_with(tmp_path, week)
    state = hours.state(cfg.space, local(cfg, "2026-11-25T23:00"))  # a Wednesday
    assert state.is_open and not state.all_day
    assert state.change_at.isoformat()[:16] == "2026-11-26T02:00"
    after = hours.state(cfg.space, local(cfg, "2026-11-26T01:00"))  # the same night
    assert after.is_open and after.change_at.isoformat()[:16] == "2026-11-26T02:00"
    evening = hours.state(cfg.space, local(cfg, "2026-11-25T12:00"))
    assert not evening.is_open and evening.change_at.isoformat()[:16] == "2026-11-25T18:00"
