"""The admins' Now page, the roll-call to print and evacuation mode: in a real Chromium on
a running kiosk (its 800x480 screen, an admin's phone, a laptop), and over HTTP for who
may do what. Visits are stored as the kiosk stores them and sensor events as the sensors
daemon does; everything else goes through the pages."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from admin import csrf_token, log_in, make_admin
from babel.dates import format_datetime, format_time
from conftest import SENSORS, http_ready, screenshot, write_space_config
from playwright.sync_api import expect

from kiosk import create_app, visits
from spacekiosk import config
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

ZONE = ZoneInfo("Europe/Athens")  # the test space's
# Who is in, and how many minutes ago each came.
PEOPLE = {"Ana Perez": 130, "Bo Li": 65, "Chen Wei": 10}
SHORT = {"Ana Perez": "Ana P.", "Bo Li": "Bo L.", "Chen Wei": "Chen W."}
WELCOME = "Welcome to Test Space"
EVACUATE = "Evacuation: leave the building now."
KIOSK_SCREEN, PHONE, LAPTOP = (800, 480), (390, 844), (1280, 800)


def since(ts: float, now: float) -> str:
    """A time as the admin pages show it: in the space's zone, with the date if not today."""
    at = datetime.fromtimestamp(ts, UTC)
    if at.astimezone(ZONE).date() == datetime.fromtimestamp(now, ZONE).date():
        return format_time(at, "short", tzinfo=ZONE, locale="en")
    return format_datetime(at, "short", tzinfo=ZONE, locale="en")


def seed(path, now: float) -> dict[str, float]:
    """The visitors in PEOPLE signed in (as the kiosk stores them), a local admin, and
    what the sensors daemon would have recorded: four people through the counter, the
    door left open past its alert, and a faulty beam. Returns each sign-in's time."""
    db = open_store(path, SPACE_MIGRATIONS)
    try:
        times = {}
        for name, minutes in PEOPLE.items():
            times[name] = now - minutes * 60
            visits.sign_in_new(db, visits.NewVisitor(name), "key", now=times[name])
        make_admin(db)
        events = [(now - 300 + i, "counter", "entry", None) for i in range(4)]
        events += [(now - 1200, "door", "open", None), (now - 300, "door", "alert", None)]
        events += [(now - 600, "beam_b", "fault", "blocked for 10 minutes")]
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind, detail) VALUES (?, ?, ?, ?)", events
        )
    finally:
        db.close()
    return times


def space_toml(tmp_path):
    # A door, a PIR and a counter; the screen goes back to Welcome after 10 s alone.
    return write_space_config(
        tmp_path, broker_port=1, extra=SENSORS + "\n[kiosk]\nidle_seconds = 10\n"
    )


class Kiosk:
    """A running kiosk: its URL, and its store as the test reads it."""

    def __init__(self, url: str, path, times: dict[str, float], now: float):
        self.url, self.path, self.times, self.now = url, path, times, now

    def rows(self, sql: str, *args) -> list[tuple]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def open_visits(self) -> list[str]:
        return [
            name
            for (name,) in self.rows(
                "SELECT p.name FROM visits v JOIN visitors p ON p.id = v.visitor_id "
                "WHERE v.signed_out_at IS NULL ORDER BY v.signed_in_at"
            )
        ]

    def audit(self) -> list[tuple[str, str, str]]:
        return self.rows("SELECT admin, action, detail FROM audit_log ORDER BY id")


@pytest.fixture
def kiosk(tmp_path, services):
    toml = space_toml(tmp_path)
    cfg = config.load(toml)
    now = time.time()
    times = seed(cfg.database.path, now)
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return Kiosk(url, cfg.database.path, times, now)


def page_of(browser, size, scripts: bool = True):
    """A fresh page of `size`; a phone's is a touch page without the kiosk's script."""
    width, height = size
    context = browser.new_context(
        viewport={"width": width, "height": height},
        has_touch=True,
        is_mobile=size == PHONE,
        locale="en-GB",
        java_script_enabled=scripts,
    )
    return context.new_page()


def test_now_lists_who_is_in_beside_the_estimate_the_door_and_alerts(
    kiosk, touch_page, screenshots
):
    page = touch_page  # an admin on the kiosk's own 800x480 screen, with a password
    log_in(page, kiosk.url)
    expect(page).to_have_url(kiosk.url + "admin/")
    rows = page.locator("#present tbody tr")
    expect(rows).to_have_count(3)
    for row, name in zip(rows.all(), PEOPLE, strict=True):
        cells = row.locator("td")
        assert cells.nth(0).inner_text() == name  # the full name
        assert cells.nth(1).inner_text() == since(kiosk.times[name], time.time())
    expect(page.locator("#signed-in .number")).to_have_text("3")
    estimate = page.locator("#estimate")
    expect(estimate.locator(".number")).to_have_text("4")  # the counter's four entries
    expect(estimate).to_contain_text("Counted at the door by the people counter.")
    expect(estimate).to_contain_text("confidence")
    door_since = since(kiosk.now - 1200, time.time())
    expect(page.locator("#door")).to_have_text(f"The door is open (since {door_since}).")
    alerts = page.locator("#alerts li")
    expect(alerts).to_have_count(2)
    expect(alerts.nth(0)).to_have_text(f"The door has stood open since {door_since}: check it.")
    expect(alerts.nth(1)).to_contain_text("The people counter's second beam has not been working")
    expect(alerts.nth(1)).to_contain_text("blocked for 10 minutes")
    screenshot(page, screenshots / "admin-now.png")


def test_an_admin_signs_out_one_forgotten_visit_then_everyone(kiosk, browser):
    page = page_of(browser, LAPTOP, scripts=False)  # the forms need no script
    log_in(page, kiosk.url)
    page.get_by_role("button", name="Sign out Bo Li").click()
    expect(page).to_have_url(kiosk.url + "admin/")  # a redirect after the post
    expect(page.locator("#present tbody tr")).to_have_count(2)
    assert kiosk.open_visits() == ["Ana Perez", "Chen Wei"]
    bo = kiosk.rows(
        "SELECT v.id, v.closed_by FROM visits v JOIN visitors p ON p.id = v.visitor_id "
        "WHERE p.name = 'Bo Li'"
    )
    assert bo == [(2, "admin")]
    assert kiosk.audit()[-1] == ("ada", "signed out a visit", "visit 2")

    # Everyone: a confirmation first, which names whom it signs out.
    page.get_by_role("link", name="Sign everyone out…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign everyone out?")
    expect(page.locator(".confirm-names li")).to_have_count(2)
    page.get_by_role("link", name="Cancel").click()
    assert kiosk.open_visits() == ["Ana Perez", "Chen Wei"]  # cancelling changes nothing
    page.get_by_role("link", name="Sign everyone out…").click()
    page.get_by_role("button", name="Sign them all out").click()
    expect(page).to_have_url(kiosk.url + "admin/")
    expect(page.get_by_text("Nobody is signed in.")).to_be_visible()
    expect(page.locator("#signed-in .number")).to_have_text("0")
    assert kiosk.open_visits() == []
    assert kiosk.rows("SELECT DISTINCT closed_by FROM visits") == [("admin",)]
    assert kiosk.audit()[-1] == ("ada", "signed out everyone", "2 visits: 1, 3")
    page.context.close()


def test_the_roll_call_prints_everyone_and_no_navigation(kiosk, touch_page, screenshots):
    page = touch_page
    log_in(page, kiosk.url)
    page.goto(kiosk.url + "admin/roll-call")
    expect(page.locator(".admin-nav")).to_be_visible()  # on screen, the pages are a tap away
    page.emulate_media(media="print")
    expect(page.get_by_role("heading", level=1)).to_have_text("Roll-call: Test Space")
    expect(page.locator("#roll-total")).to_have_text("3 people signed in")
    rows = page.locator("#roll-call tbody tr")
    expect(rows).to_have_count(3)
    for row, name in zip(rows.all(), PEOPLE, strict=True):
        expect(row.locator("td").nth(1)).to_have_text(name)
        expect(row.locator(".box")).to_be_visible()  # a box to tick, empty
        expect(row.locator(".box")).to_have_text("")
    for hidden in ("nav", "header.bar", "form", "button", ".screen-only"):
        for element in page.locator(hidden).all():
            expect(element).to_be_hidden()
    assert page.locator("a:visible").count() == 0
    printed = page.locator("#printed-at").inner_text()
    assert str(datetime.now(ZONE).year) in printed  # the date and time it was printed
    screenshot(page, screenshots / "admin-roll-call.png", full_page=True)
    pdf = page.pdf()  # and Chromium really prints it
    assert pdf.startswith(b"%PDF")


def test_evacuation_the_kiosk_screen_shows_the_roll_call_and_a_phone_ticks_people_off(
    kiosk, browser, touch_page, screenshots
):
    screen = touch_page  # the kiosk's own 800x480 screen, nobody logged in
    screen.goto(kiosk.url)
    expect(screen.get_by_role("heading", level=1)).to_have_text(WELCOME)
    phone = page_of(browser, PHONE, scripts=False)  # an admin's phone, no script needed
    log_in(phone, kiosk.url)
    phone.goto(kiosk.url + "admin/evacuation")
    expect(phone.get_by_text("No evacuation is on.")).to_be_visible()
    phone.get_by_role("button", name="Start an evacuation").tap()
    expect(phone.locator("#roll-count")).to_have_text("Still missing: 3 · Safe: 0")
    assert kiosk.audit()[-1][:2] == ("ada", "evacuation started")

    # The screen, left on Welcome, turns into the roll-call by itself: Welcome's 3-second
    # poll is told to reload, well before the 10 s idle reset would have brought it.
    expect(screen.get_by_role("heading", level=1)).to_have_text(EVACUATE, timeout=8_000)
    missing = screen.locator("#missing li")
    expect(missing).to_have_text([SHORT[name] for name in PEOPLE])
    screenshot(screen, screenshots / "admin-evacuation-kiosk.png")

    phone.get_by_role("button", name="Bo Li is safe").tap()
    expect(phone).to_have_url(kiosk.url + "admin/evacuation#p-" + _handle(kiosk, "Bo Li"))
    expect(phone.locator("#roll-count")).to_have_text("Still missing: 2 · Safe: 1")
    expect(phone.locator("#roll-ticks li.safe .name")).to_have_text(["Bo Li"])
    screenshot(phone, screenshots / "admin-evacuation-phone.png", full_page=True)

    # The screen, refreshing itself, shows Bo as safe and the others still missing.
    expect(screen.locator("#safe li")).to_have_text(["✓ Bo L."], timeout=15_000)
    expect(missing).to_have_text(["Ana P.", "Chen W."])
    expect(screen.locator("#roll-count")).to_have_text("Still missing: 2 · Safe: 1")
    assert kiosk.rows("SELECT count(*) FROM roll_call_people WHERE safe_by = 'ada'") == [(1,)]

    # Ending it, with two not ticked off, asks first; then the screen is Welcome again.
    phone.get_by_role("button", name="End the evacuation").tap()
    expect(phone.get_by_role("heading", level=1)).to_have_text("End the evacuation?")
    expect(phone.locator(".confirm-names li")).to_have_text(["Ana Perez", "Chen Wei"])
    phone.get_by_role("button", name="End it anyway").tap()
    expect(phone).to_have_url(kiosk.url + "admin/")
    assert kiosk.audit()[-1] == ("ada", "evacuation ended", "roll-call 1: 2 not ticked off")
    expect(screen.get_by_role("heading", level=1)).to_have_text(WELCOME, timeout=15_000)
    assert kiosk.open_visits() == list(PEOPLE)  # an evacuation signs nobody out
    phone.context.close()


def _handle(kiosk: Kiosk, name: str) -> str:
    return kiosk.rows(
        "SELECT v.handle FROM visits v JOIN visitors p ON p.id = v.visitor_id WHERE p.name = ?",
        name,
    )[0][0]


@pytest.mark.parametrize("size", [KIOSK_SCREEN, PHONE, LAPTOP], ids=lambda s: "x".join(map(str, s)))
def test_the_pages_fit_the_kiosk_a_phone_and_a_laptop(kiosk, browser, size):
    page = page_of(browser, size, scripts=False)
    log_in(page, kiosk.url)
    pages = ["admin/", "admin/sign-out-all", "admin/roll-call", "admin/evacuation"]
    for path in pages:
        page.goto(kiosk.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways at {size}"
    page.get_by_role("button", name="Start an evacuation").click()
    expect(page).to_have_url(kiosk.url + "admin/evacuation")
    for path in ("admin/evacuation", "", "sign-in"):
        page.goto(kiosk.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{path or 'welcome'} scrolls sideways at {size}"
    page.context.close()


def test_the_pages_fetch_nothing_from_outside(kiosk, touch_page):
    seen: list[str] = []
    touch_page.on("request", lambda r: seen.append(r.url))
    log_in(touch_page, kiosk.url)
    touch_page.get_by_role("button", name="Start an evacuation").tap()
    expect(touch_page).to_have_url(kiosk.url + "admin/evacuation")
    for path in ("admin/", "admin/roll-call", "admin/evacuation", ""):
        touch_page.goto(kiosk.url + path)
    assert [url for url in seen if not url.startswith(kiosk.url)] == []


# --- over HTTP: who may do what, and what the kiosk's screen answers ---


@pytest.fixture
def app(tmp_path):
    toml = space_toml(tmp_path)
    cfg = config.load(toml)
    seed(cfg.database.path, time.time())
    return create_app(cfg, {"TESTING": True})


def rows(app, sql: str, *args):
    conn = sqlite3.connect(app.config["SPACE"].database.path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def handle_of(app, visit_id: int) -> str:
    return rows(app, "SELECT handle FROM visits WHERE id = ?", visit_id)[0][0]


def test_nobody_logged_out_can_start_tick_end_or_sign_out(app):
    admin = log_in(app.test_client())
    token = csrf_token(admin, "/admin/")
    admin.post("/admin/evacuation/start", data={"csrf_token": token})
    (roll,) = rows(app, "SELECT id FROM roll_calls")[0]
    before = (rows(app, "SELECT * FROM roll_calls"), rows(app, "SELECT * FROM roll_call_people"))
    stranger = app.test_client()
    bo = handle_of(app, 2)
    for path in (
        "/admin/evacuation/start",
        f"/admin/evacuation/{roll}/safe/{bo}",
        f"/admin/evacuation/{roll}/end",
        f"/admin/sign-out/{bo}",
        "/admin/sign-out-all",
    ):
        answer = stranger.post(path, data={"safe": "yes", "confirm": "yes", "up_to": "9"})
        assert answer.status_code in (302, 403), path
        if answer.status_code == 302:
            assert answer.headers["Location"].startswith("/admin/login"), path
    for path in ("/admin/", "/admin/evacuation", "/admin/roll-call", "/admin/sign-out-all"):
        answer = stranger.get(path)
        assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]
    # Logged in, but without the form's token: refused too.
    for path in (f"/admin/evacuation/{roll}/safe/{bo}", f"/admin/evacuation/{roll}/end"):
        assert admin.post(path, data={"safe": "yes", "confirm": "yes"}).status_code == 400
    after = (rows(app, "SELECT * FROM roll_calls"), rows(app, "SELECT * FROM roll_call_people"))
    assert after == before
    assert rows(app, "SELECT count(*) FROM visits WHERE signed_out_at IS NULL") == [(3,)]


def test_during_an_evacuation_every_visitor_screen_is_the_roll_call(app):
    admin = log_in(app.test_client())
    admin.post("/admin/evacuation/start", data={"csrf_token": csrf_token(admin, "/admin/")})
    screen = app.test_client()
    visitor = rows(app, "SELECT handle FROM visitors WHERE id = 1")[0][0]
    values = {"handle": visitor, "code": "el"}
    screens = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("visitor.") or "GET" not in rule.methods:
            continue
        path = rule.build(values, append_unknown=False)[1]
        answer = screen.get(path, follow_redirects=True)
        if answer.mimetype == "application/json":
            continue  # the kiosk's script asking for data, not a screen
        screens.append(rule.endpoint)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 200 and EVACUATE in page, rule.endpoint
        assert 'data-refresh-seconds="5"' in page  # kiosk.js keeps it up to date
    assert {"visitor.welcome", "visitor.sign_in", "visitor.sign_out_list"} <= set(screens)
    # What is not a visitor screen answers as ever.
    for path in ("/healthz", "/api/v1/status", "/spaceapi.json", "/static/kiosk.css"):
        answer = screen.get(path)
        assert answer.status_code == 200 and EVACUATE not in answer.get_data(as_text=True)
    assert "Log in" in screen.get("/admin/login").get_data(as_text=True)
    assert EVACUATE not in admin.get("/admin/").get_data(as_text=True)


def test_the_evacuation_outlives_a_restart_and_a_second_start_joins_it(app, tmp_path):
    admin = log_in(app.test_client())
    token = csrf_token(admin, "/admin/")
    admin.post("/admin/evacuation/start", data={"csrf_token": token})
    admin.post("/admin/evacuation/start", data={"csrf_token": token})  # from a second phone
    assert rows(app, "SELECT count(*) FROM roll_calls") == [(1,)]
    started = rows(app, "SELECT count(*) FROM audit_log WHERE action = 'evacuation started'")
    assert started == [(1,)]
    (roll,) = rows(app, "SELECT id FROM roll_calls")[0]
    admin.post(
        f"/admin/evacuation/{roll}/safe/{handle_of(app, 1)}",
        data={"csrf_token": token, "safe": "yes"},
    )
    # The kiosk restarts: the same evacuation, the same tick.
    again = create_app(config.load(tmp_path / "space.toml"), {"TESTING": True})
    page = again.test_client().get("/").get_data(as_text=True)
    assert EVACUATE in page and "Still missing: 2 · Safe: 1" in page
    # A tick taken back, then the end; a tick on a roll-call that has ended changes nothing.
    admin.post(
        f"/admin/evacuation/{roll}/safe/{handle_of(app, 1)}",
        data={"csrf_token": token, "safe": "no"},
    )
    assert rows(app, "SELECT safe_at FROM roll_call_people WHERE visit_id = 1") == [(None,)]
    admin.post(f"/admin/evacuation/{roll}/end", data={"csrf_token": token, "confirm": "yes"})
    admin.post(
        f"/admin/evacuation/{roll}/safe/{handle_of(app, 1)}",
        data={"csrf_token": token, "safe": "yes"},
    )
    assert rows(app, "SELECT count(*) FROM roll_call_people WHERE safe_at IS NOT NULL") == [(0,)]
    assert WELCOME in again.test_client().get("/").get_data(as_text=True)


def test_signing_everyone_out_spares_who_signed_in_after_the_confirmation(app):
    admin = log_in(app.test_client())
    confirmation = admin.get("/admin/sign-out-all").get_data(as_text=True)
    token = csrf_token(admin, "/admin/")
    assert 'name="up_to" value="3"' in confirmation
    app.test_client().post("/sign-in/new", data={"name": "Dana Late", "accept": "yes"})
    admin.post("/admin/sign-out-all", data={"csrf_token": token, "up_to": "3"})
    names = rows(
        app,
        "SELECT p.name FROM visits v JOIN visitors p ON p.id = v.visitor_id "
        "WHERE v.signed_out_at IS NULL",
    )
    assert names == [("Dana Late",)]
