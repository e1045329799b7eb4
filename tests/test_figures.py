"""Figures the demo showed that could not be right: each seeded into a real central
store (or read off the kiosk's own opening hours) and held to the figure it must be."""

from __future__ import annotations

import csv
import io
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


# --- what a funder reads: hours not sent yet, a month still running, no motion sensor,
# the all-spaces peak ---


def api_client(cfg, db):
    headers = {"Authorization": f"Bearer {accounts.add_api_token(db, 'figures')}"}
    return create_app(cfg).test_client(), headers


def csv_rows(client, period: str) -> dict[str, dict]:
    text = client.get(f"/reports.csv?period={period}").text
    return {row["space"]: row for row in csv.DictReader(io.StringIO(text))}


def online_status(db, space: str, now: float, online: bool = True) -> None:
    store.commit_status(db, space, {"v": 1, "online": online}, now=now)


def test_link_availability_leaves_out_the_hours_not_sent_yet(central):
    cfg, db = central
    now = time.time()
    # Online all along; its Pi last sent three hours up to five hours ago, and holds the
    # hours since until its next send (every 6 h by default).
    sent = reports.over(now) - 5 * HOUR
    first = sent - 3 * HOUR
    hours = [Bucket(first + i * HOUR, 1, {"connected_minutes": 60}) for i in range(3)]
    commit_usage(db, "demo", hours, now=sent + 60)
    online_status(db, "demo", now=sent + 60)
    month = periods.iso(first)[:7]
    client = logged_in(cfg)
    row = csv_rows(client, month)["demo"]
    assert row["link_availability"] == "1.0000"  # not 3 of 8 hours: 0.3750
    page = client.get(f"/reports?period={month}").text
    assert "Provisional:" in page and "link availability the hours each space has sent" in page
    # Offline by its last will: the hours since are its outage, and count.
    online_status(db, "demo", now=sent + 120, online=False)
    (row,) = reports.report(db, periods.parse_period(month), now).rows
    assert row.availability == pytest.approx(
        180 / ((min(reports.over(now), periods.parse_period(month).end) - first) // 60)
    )


def test_a_past_month_whose_last_hours_are_not_sent_says_so(central):
    cfg, db = central
    now = time.time()
    this = periods.parse_period(periods.recent_periods(now, 1)[0])
    last = periods.last_full_month(now)
    end = periods.parse_period(last).end
    commit_usage(db, "demo", [Bucket(end - 3 * HOUR, 1, {"connected_minutes": 60})], now=end)
    online_status(db, "demo", now=end - 2 * HOUR)  # the Pi last heard two hours before
    row = reports.report(db, periods.parse_period(last), now).rows[0]
    assert row.availability == 1.0 and row.link_until == end - 2 * HOUR
    page = logged_in(cfg).get(f"/reports?period={last}").text
    assert this.start <= now and "has not sent" in page and "Provisional:" in page


def test_cost_per_visit_of_a_running_month_takes_the_cost_so_far(central):
    _cfg, db = central
    month = periods.parse_period("2026-11")  # 30 days
    now = month.start + 10 * 86400 + 30 * 60  # a third of the month over
    hours = [Bucket(month.start + d * 86400 + 9 * HOUR, 1, {"signins": 5}) for d in range(10)]
    hours.append(Bucket(month.start + 10 * 86400 - HOUR, 1, {"connected_minutes": 60}))
    commit_usage(db, "demo", hours, now=now)
    accounts.set_cost(db, "demo", "2026-11", 900, "EUR")
    report = reports.report(db, month, now)
    (row,) = report.rows
    # 50 visits in the first ten days: 300 EUR of the month's 900 so far, 6.00 a visit
    # (not 900 / 50 = 18.00, which the rest of the month's visits would bring down).
    assert row.cost == 900 and row.cost_per_visit == pytest.approx(6.0) and row.cost_prorated
    assert report.total.cost_per_visit == pytest.approx(6.0)
    # The month over: the whole cost, over all its visits.
    over = reports.report(db, month, month.end + 60).rows[0]
    assert over.cost_per_visit == pytest.approx(18.0) and not over.cost_prorated


def test_utilisation_is_not_known_without_a_motion_sensor(central):
    cfg, db = central
    now = time.time()
    first = reports.over(now) - 4 * HOUR
    open_hour = {"open_minutes": 60, "connected_minutes": 60, "signins": 2, "entries": 2}
    # A space with a counter but no motion sensor, and one whose PIR saw motion.
    commit_usage(db, "nopir", [Bucket(first, 1, open_hour)], now=now)
    commit_usage(db, "pir", [Bucket(first, 1, open_hour | {"occupied_minutes": 30})], now=now)
    month = periods.iso(first)[:7]
    client = logged_in(cfg)
    rows = csv_rows(client, month)
    assert (rows["nopir"]["utilisation"], rows["nopir"]["occupied_hours"]) == ("", "")
    assert rows["pir"]["utilisation"] == "0.5000"
    assert rows["all"]["utilisation"] == "0.5000"  # not 30 of 120 open minutes: 0.2500
    page = client.get(f"/reports?period={month}").text
    assert "(no motion sensor)" in page
    printable = client.get(f"/reports/nopir?period={month}").text
    assert "no motion sensor has reported" in printable
    # The central page's comparison draws no bar of 0 % for it.
    dashboard = client.get("/").text
    use = dashboard[dashboard.index('id="compare-use"') :]
    assert "nopir" not in use[: use.index("</figure>")]
    api, headers = api_client(cfg, db)
    answer = api.get("/api/v1/usage?space=nopir&granularity=day", headers=headers).json
    assert answer["periods"][0]["occupied_minutes"] is None
    answer = api.get("/api/v1/usage?space=pir&granularity=day", headers=headers).json
    assert answer["periods"][0]["occupied_minutes"] == 30


def test_the_all_spaces_peak_is_the_busiest_space_s_against_its_own_capacity(central):
    cfg, db = central
    first = at("2026-11-10T09:00")
    commit_usage(db, "big", [Bucket(first, 1, {"occupancy_peak": 12})], now=first + HOUR)
    commit_usage(db, "small", [Bucket(first, 1, {"occupancy_peak": 3})], now=first + HOUR)
    accounts.set_space_info(db, "big", "Big space", 50)
    accounts.set_space_info(db, "small", "Small space", 20)
    client = logged_in(cfg)
    total = csv_rows(client, "2026-11")["all"]
    # 12 people at the big space: 24 % of its 50, not (12 + 3) / 70 = 21 % beside "12".
    assert (total["occupancy_peak"], total["peak_space"]) == ("12", "Big space")
    assert total["peak_per_capacity"] == "0.2400"
    page = client.get("/reports?period=2026-11").text
    foot = page[page.index("<tfoot>") : page.index("</tfoot>")]
    assert "at Big space" in foot and "24%" in foot and "of 50" in foot and "of 70" not in foot
    # The size bands, which show no peak, still add peaks and capacities up.
    (small, big) = reports.report(db, periods.parse_period("2026-11")).sizes
    assert small.figures.peak_ratio == pytest.approx(3 / 20)
    assert big.figures.peak_ratio == pytest.approx(12 / 50)
