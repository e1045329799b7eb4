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
