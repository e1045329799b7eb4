"""The admins' History and Health pages: in a real Chromium on a running kiosk (its 800x480
screen and a phone), and over HTTP for every query string.

The space's time zone is chosen so that it is midday there while the test runs: the
visits seeded "this morning" are always in the past, and today is still today. Visits
are stored as the kiosk stores them, sensor events as the sensors daemon does, and the
sync agent's buckets, deliveries and state through its own outbox module."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from admin import log_in, make_admin
from conftest import SENSORS, http_ready, screenshot, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect

from kiosk import create_app, people, visits
from spacekiosk import config
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import outbox

KIOSK_SCREEN, PHONE = (800, 480), (390, 844)
DAY = 86400
# Who came when: (name, days ago, local hour, minute, purpose, event).
VISITS = [
    ("Ana", 40, 10, 0, "cowork", None),
    ("Bo", 40, 10, 30, "meeting", None),
    ("Chen", 10, 14, 0, "cowork", None),
    ("Bo", 10, 15, 0, "cowork", None),
    ("Femi", 5, 16, 0, "event", "Repair café"),  # erased afterwards: still counted
    ("Ana", 1, 10, 0, "cowork", None),
    ("Bo", 1, 10, 30, "other", None),
    ("Chen", 1, 11, 0, "cowork", None),
    ("Ana", 0, 9, 15, "cowork", None),
    ("Dara", 0, 9, 40, "event", "Repair café"),
    ("Eli", 0, 10, 5, "meeting", None),
    ("Bo", 0, 11, 20, "cowork", None),
]
# What the pages must say, counted by hand from VISITS.
LAST_30_DAYS = {"visits": "10", "people": "6", "new": "4", "returning": "2"}
THE_30_BEFORE = {"visits": "2", "people": "2", "new": "2", "returning": "0"}
TODAY = {"visits": "4", "people": "4", "new": "2", "returning": "2"}
YESTERDAY_SO_FAR = {"visits": "3", "people": "3", "new": "0", "returning": "3"}
CAME_IN_TODAY = [(9, 14), (9, 39), (10, 4), (11, 19)]
STUCK = (
    "motion without a break for over 4 hours; stuck on, or aimed at a heater, a fan or a curtain"
)


def midday_zone(now: float) -> ZoneInfo:
    """A fixed-offset zone in which it is 12:xx now."""
    utc_hour = datetime.fromtimestamp(now, ZoneInfo("UTC")).hour
    ahead = (12 - utc_hour) % 24
    ahead = ahead - 24 if ahead > 14 else ahead
    # POSIX signs: Etc/GMT-3 is three hours ahead of UTC.
    return ZoneInfo("Etc/UTC" if ahead == 0 else f"Etc/GMT{-ahead:+d}")


def space_toml(folder, zone: ZoneInfo):
    toml = write_space_config(folder, broker_port=1, extra=SENSORS)
    hours = "".join(
        f'{d} = "08:00-22:00"\n' for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    text = toml.read_text().replace('"Europe/Athens"', f'"{zone.key}"')
    text = text.replace("capacity = 20\n", "capacity = 20\n\n[space.opening_hours]\n" + hours, 1)
    toml.write_text(text)
    return toml


class Seeded:
    def __init__(self, cfg, now: float):
        self.cfg, self.now = cfg, now
        self.zone = cfg.space.timezone
        self.today = datetime.fromtimestamp(now, self.zone).date()

    def at(self, days_ago: int, hour: int, minute: int = 0) -> float:
        day = self.today - timedelta(days=days_ago)
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone).timestamp()


def seed(cfg, now: float) -> Seeded:
    """The visits, a local admin, the sensors' events, and sync three days behind."""
    seeded = Seeded(cfg, now)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        ids: dict[str, int] = {}
        with write(db):
            for name, days_ago, hour, minute, purpose, event in VISITS:
                at = seeded.at(days_ago, hour, minute)
                if name not in ids:
                    ids[name] = db.execute(
                        "INSERT INTO visitors (name, name_key, created_at, handle) "
                        "VALUES (?, ?, ?, ?)",
                        [name, name.lower(), at, visits.new_handle()],
                    ).lastrowid
                left = at + 1800 if days_ago or hour < 11 else None  # Bo is still in
                db.execute(
                    "INSERT INTO visits (visitor_id, signed_in_at, signed_out_at, purpose, "
                    "event, handle) VALUES (?, ?, ?, ?, ?, ?)",
                    [ids[name], at, left, purpose, event, visits.new_handle()],
                )
        people.erase(db, ids["Femi"], now=seeded.at(5, 17))
        make_admin(db)
        # Four people through the counter, as they signed in.
        events = [(seeded.at(0, h, m), "counter", "entry", None) for h, m in CAME_IN_TODAY]
        events += [
            (seeded.at(0, 9, 10), "door", "open", None),
            (seeded.at(0, 9, 11), "door", "close", None),
        ]
        events += [(now - 2 * 3600, "motion:main room", "fault", STUCK)]
        with write(db):
            db.conn.executemany(
                "INSERT INTO sensor_events (at, sensor, kind, detail) VALUES (?, ?, ?, ?)", events
            )
        # The agent last delivered three days ago; what came since waits.
        then = now - 3 * DAY
        outbox.refresh(db, cfg, now=then)
        sent = outbox.due(db, 100_000, now=then)
        outbox.delivered(db, [(b.start, b.version, b.hours) for b in sent], now=then)
        outbox.refresh(db, cfg, now=now)
        outbox.set_state(db, broker="unreachable")
    finally:
        db.close()
    return seeded


@pytest.fixture
def kiosk(tmp_path, services):
    now = time.time()
    toml = space_toml(tmp_path, midday_zone(now))
    cfg = config.load(toml)
    seeded = seed(cfg, now)
    seeded.url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(seeded.url + "healthz", services("kiosk", "--config", str(toml)))
    return seeded


def page_of(browser, size):
    """A page of `size` with no script at all: the pages must not need one."""
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]},
        has_touch=True,
        is_mobile=size == PHONE,
        locale="en-GB",
        java_script_enabled=False,
    )
    return context.new_page()


def figures(page) -> dict[str, tuple[str, str]]:
    """Each figure's number and what it was before, as the page shows them."""
    found = {}
    for key in ("visits", "people", "new", "returning"):
        figure = page.locator(f"#figure-{key}")
        before = re.search(r"Before: ([\d,]+)", figure.locator(".how").inner_text())[1]
        found[key] = (figure.locator(".number").inner_text(), before)
    return found


def cells(page, chart: str, row: str) -> list[str]:
    """The numbers in a chart's table row, as text (the table is folded away)."""
    found = page.locator(f"{chart} table tbody tr", has=page.locator("th", has_text=row))
    return [cell.text_content() for cell in found.locator("td").all()]


def shown(now: dict, before: dict) -> dict[str, tuple[str, str]]:
    return {key: (now[key], before[key]) for key in now}


def test_history_shows_the_seeded_numbers_as_figures_charts_and_tables(kiosk, browser, screenshots):
    page = page_of(browser, KIOSK_SCREEN)
    log_in(page, kiosk.url)
    response = page.goto(kiosk.url + "admin/history?preset=30days")
    assert response.status == 200
    assert figures(page) == shown(LAST_30_DAYS, THE_30_BEFORE)
    expect(page.locator("#span")).to_contain_text("(so far)")
    screenshot(page, screenshots / "admin-history.png")
    # Every chart is an SVG image with a title, and carries its numbers as a table.
    charts = page.locator("figure.chart")
    assert charts.count() >= 5
    for i in range(charts.count()):
        chart = charts.nth(i)
        if chart.locator("p.empty").count() == 0:
            assert chart.locator("svg[role=img] > title").count() == 1
        assert chart.locator("table").count() == 1
    # The time chart's table (folded away until opened, so read as text): one row a
    # day, today's last, with its four sign-ins.
    rows = page.locator("#signins table tbody tr")
    assert rows.count() == 30
    assert rows.nth(29).locator("td").first.text_content() == "4"
    assert rows.nth(28).locator("td").first.text_content() == "3"
    # Why people came, and by event, beside the period before: the erased visitor's
    # visit is still counted.
    assert cells(page, "#purposes", "Coworking or a project") == ["6", "1"]
    assert cells(page, "#events", "Repair café") == ["2", "0"]
    assert cells(page, "#people", "New people") == ["4", "2"]
    # The hour of the week: today's 09:xx has two sign-ins.
    weekday = kiosk.today.weekday()
    row = page.locator("#hours table tbody tr").nth(weekday)
    assert row.locator("td").nth(9).text_content() == "2"
    page.context.close()


def test_the_range_picker_and_the_presets(kiosk, browser):
    page = page_of(browser, KIOSK_SCREEN)
    log_in(page, kiosk.url)
    page.goto(kiosk.url + "admin/history")
    page.get_by_role("link", name="Today", exact=True).click()
    expect(page.get_by_role("link", name="Today", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    assert figures(page) == shown(TODAY, YESTERDAY_SO_FAR)
    # From yesterday to today, through the form.
    yesterday = kiosk.today - timedelta(days=1)
    page.fill("#start", yesterday.isoformat())
    page.fill("#end", kiosk.today.isoformat())
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"start={yesterday}&end={kiosk.today}"))
    assert figures(page)["visits"][0] == "7"
    assert figures(page)["people"][0] == "5"  # Ana, Bo, Chen, Dara, Eli
    # A range that ends before it starts: said plainly, the picker still there.
    response = page.goto(kiosk.url + f"admin/history?start={kiosk.today}&end={yesterday}")
    assert response.status == 400
    expect(page.locator("#range-error")).to_contain_text("The end date is before the start date.")
    expect(page.locator("#start")).to_be_visible()
    page.context.close()


def test_health_says_what_to_do_when_sync_is_behind_and_a_sensor_is_faulty(
    kiosk, browser, screenshots
):
    page = page_of(browser, KIOSK_SCREEN)
    log_in(page, kiosk.url)
    page.goto(kiosk.url + "admin/health")
    screenshot(page, screenshots / "admin-health.png")
    sync = page.locator("#check-sync")
    expect(sync).to_have_attribute("data-state", "problem")
    expect(sync).to_contain_text("The Pi has not reached the central server for 3 days.")
    expect(sync.locator(".todo")).to_contain_text(
        "Check the network cable or Wi-Fi; counts are kept and will be sent when it is back."
    )
    motion = page.locator("#check-motion-main-room")
    expect(motion).to_have_attribute("data-state", "problem")
    expect(motion).to_contain_text("Not working since")
    expect(motion.locator(".todo")).to_contain_text("heater, fan or curtain")
    door = page.locator("#check-door")
    expect(door).to_have_attribute("data-state", "ok")
    expect(door).to_contain_text("The door is shut (since 9:11")
    expect(page.locator("#check-storage")).to_contain_text("free of")
    expect(page.locator("#check-software")).to_contain_text("spacekiosk ")
    expect(page.locator("#health-summary")).to_contain_text("2 things need attention.")
    page.context.close()


@pytest.mark.parametrize("size", [KIOSK_SCREEN, PHONE], ids=lambda s: "x".join(map(str, s)))
def test_the_pages_fit_the_screen_and_fetch_nothing_from_outside(kiosk, browser, size):
    page = page_of(browser, size)
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    log_in(page, kiosk.url)
    for path in ("admin/history?preset=today", "admin/history", "admin/health"):
        page.goto(kiosk.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways at {size}"
    assert [url for url in seen if not url.startswith(kiosk.url)] == []
    page.context.close()


# --- over HTTP: any query string gets the page or a plain 400, never an error ---


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("history-http")
    now = time.time()
    cfg = config.load(space_toml(folder, midday_zone(now)))
    seed(cfg, now)
    app = create_app(cfg, {"TESTING": True})
    client = app.test_client()
    log_in(client)
    yield client
    app.extensions["writer"].close()


def test_only_an_admin_sees_history_and_health(tmp_path):
    cfg = config.load(space_toml(tmp_path, ZoneInfo("Europe/Athens")))
    app = create_app(cfg, {"TESTING": True})
    try:
        for path in ("/admin/history", "/admin/health"):
            answer = app.test_client().get(path)
            assert answer.status_code == 302 and "/admin/login" in answer.location
            outside = app.test_client().get(path, environ_base={"REMOTE_ADDR": "203.0.113.7"})
            assert outside.status_code == 404
    finally:
        app.extensions["writer"].close()


QUERY_KEYS = st.sampled_from(["start", "end", "preset", "other"])
QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["today", "week", "month", "30days", "", "2026-02-30", "0000-01-01"]),
    st.dates(date(1990, 1, 1), date(2110, 12, 31)).map(date.isoformat),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4))
def test_any_query_string_gets_the_page_or_a_plain_400(client, query):
    answer = client.get("/admin/history?" + urlencode(query))
    assert answer.status_code in (200, 400), answer.status_code
    text = answer.get_data(as_text=True)
    if answer.status_code == 400:
        assert 'id="range-error"' in text and 'name="start"' in text
    else:
        assert 'id="figure-visits"' in text


def test_a_query_string_of_raw_bytes_is_a_400_too(client):
    for raw in ("start=%00&end=%ff", "start=2026-13-01", "preset=%e2%80%ae", "end=%F0%9F%98%80"):
        answer = client.get("/admin/history?" + raw)
        assert answer.status_code == 400, raw
        assert 'id="range-error"' in answer.get_data(as_text=True)
