"""A returning visitor says why they came and whether it is for today's event, as a first
visitor does: on their PIN page, their last purpose already chosen (a regular's taps stay
the same), everything in sight beside the on-screen digits at 800x480 and 480x800; the
visit stores both, and the hourly counts by purpose and by event count them."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import http_ready, screenshot, visitor_form, write_space_config
from playwright.sync_api import expect

from kiosk import create_app, visits
from spacekiosk import config
from spacekiosk.db import connect, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import buckets

EVENT = "Repair café"
SECRET = "cd" * 32  # the kiosk's PIN key, written before it starts
HOUR = 3600


def event_today() -> str:
    today = datetime.now(ZoneInfo("Europe/Athens")).date().isoformat()  # the space's day
    return f'[[events]]\nname = "{EVENT}"\ndate = "{today}"\nhours = "18:00-21:00"\n'


def make_app(tmp_path, extra: str = ""):
    return create_app(
        config.load(write_space_config(tmp_path, broker_port=1, extra=extra)), {"TESTING": True}
    )


def rows(app, sql: str, *args) -> list[tuple]:
    return sqlite3.connect(app.config["SPACE"].database.path).execute(sql, args).fetchall()


def handle_of(app, name: str) -> str:
    return rows(app, "SELECT handle FROM visitors WHERE name = ?", name)[0][0]


def returning(client, handle: str, pin: str, **fields):
    return client.post(f"/sign-in/returning/{handle}", data={"pin": pin} | fields)


def out(app, client) -> None:
    for (handle,) in rows(app, "SELECT handle FROM visits WHERE signed_out_at IS NULL"):
        assert client.post(f"/sign-out/{handle}").status_code == 200


def checked_purpose(page_html: str) -> list[str]:
    return re.findall(r'name="purpose" value="([^"]+)" checked', page_html)


# Over HTTP, on a real SQLite store


def test_a_regular_back_for_the_event_is_counted_by_purpose_and_event(tmp_path):
    app = make_app(tmp_path, event_today())
    client = app.test_client()
    first = client.post("/sign-in/new", data=visitor_form("Eleni Georgiou", "2580"))
    assert first.status_code == 201
    out(app, client)
    handle = handle_of(app, "Eleni Georgiou")
    page = client.get(f"/sign-in/returning/{handle}").text
    assert checked_purpose(page) == ["cowork"]  # last time's, already chosen
    assert f"here for today's event: {EVENT}" in page
    assert 'name="event" value="yes" >' in page  # offered, never ticked for them
    assert returning(client, handle, "2580", purpose="event", event="yes").status_code == 201
    assert rows(app, "SELECT purpose, event FROM visits ORDER BY id") == [
        ("cowork", None),
        ("event", EVENT),
    ]
    # The hour's counts hold the returning visit as they hold a first one.
    now = time.time()
    hour = buckets.hour_of(now)
    counted = buckets.compute(
        sqlite_store(app), hour - HOUR, hour + 2 * HOUR, app.config["SPACE"], now + 2 * HOUR
    )
    totals: dict = {"by_purpose": {}, "by_event": {}}
    for counts in counted.values():
        for kind in totals:
            for label, n in counts.get(kind, {}).items():
                totals[kind][label] = totals[kind].get(label, 0) + n
    assert totals == {"by_purpose": {"cowork": 1, "event": 1}, "by_event": {EVENT: 1}}


def sqlite_store(app):
    return connect(app.config["SPACE"].database.path)


def test_the_last_purpose_given_is_chosen_again(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    client.post("/sign-in/new", data=visitor_form("Nikos Pappas", "1357", purpose="meeting"))
    out(app, client)
    handle = handle_of(app, "Nikos Pappas")
    # Posting what the page had chosen (as the browser does) keeps the purpose.
    assert checked_purpose(client.get(f"/sign-in/returning/{handle}").text) == ["meeting"]
    assert returning(client, handle, "1357", purpose="meeting").status_code == 201
    out(app, client)
    # A visit without a purpose leaves the one said before chosen; no event: no box.
    assert returning(client, handle, "1357").status_code == 201
    out(app, client)
    page = client.get(f"/sign-in/returning/{handle}").text
    assert checked_purpose(page) == ["meeting"] and 'name="event"' not in page
    assert rows(app, "SELECT purpose FROM visits ORDER BY id") == [
        ("meeting",),
        ("meeting",),
        (None,),
    ]
    # A purpose the space no longer offers is chosen for nobody.
    fewer = make_app(tmp_path / "fewer")
    fewer_client = fewer.test_client()
    fewer_client.post("/sign-in/new", data=visitor_form("Lin Mei", None, purpose="other"))
    out(fewer, fewer_client)
    with sqlite3.connect(fewer.config["SPACE"].database.path) as db:
        db.execute("UPDATE visits SET purpose = 'sauna'")
    page = fewer_client.get(f"/sign-in/returning/{handle_of(fewer, 'Lin Mei')}").text
    assert checked_purpose(page) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"purpose": "sauna"}, "Please choose why you are here."),
        ({"purpose": "cowork\x00"}, "Please choose why you are here."),
        ({"event": "yes"}, "There is no event today to sign in for."),  # no event today
    ],
)
def test_an_unknown_purpose_or_a_forged_event_is_a_400(tmp_path, fields, message):
    app = make_app(tmp_path)
    client = app.test_client()
    client.post("/sign-in/new", data=visitor_form("Amara Diallo", "4321"))
    out(app, client)
    handle = handle_of(app, "Amara Diallo")
    refused = returning(client, handle, "4321", **fields)
    assert refused.status_code == 400 and message in refused.text
    assert 'role="alert"' in refused.text and 'name="pin"' in refused.text  # the PIN page
    assert rows(app, "SELECT count(*), count(signed_out_at) FROM visits") == [(1, 1)]
    assert rows(app, "SELECT pin_failures FROM visitors") == [(0,)]  # no PIN was tried
    # The first visit refuses a forged event the same way (it used to drop it quietly).
    if "event" in fields:
        first = client.post("/sign-in/new", data=visitor_form("Bo Li", **fields))
        assert first.status_code == 400 and message in first.text


def test_an_event_box_with_another_value_is_refused_on_the_event_s_day(tmp_path):
    app = make_app(tmp_path, event_today())
    client = app.test_client()
    client.post("/sign-in/new", data=visitor_form("Juan Carlos", "9999"))
    out(app, client)
    handle = handle_of(app, "Juan Carlos")
    for forged in (EVENT, "no", "YES", "yes\n"):
        refused = returning(client, handle, "9999", event=forged, purpose="meeting")
        assert refused.status_code == 400, forged
        assert checked_purpose(refused.text) == ["meeting"]  # the choice is kept
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


# In the browser, at the official display's two ways up


@pytest.fixture
def kiosk(tmp_path, services):
    """A kiosk with a repair café today and Ana, a regular with a PIN, signed out."""
    toml = write_space_config(tmp_path, broker_port=1, extra=event_today())
    cfg = config.load(toml)
    (cfg.database.path.parent / "kiosk-secret").write_text(SECRET)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        now = time.time()
        ana = visits.NewVisitor("Ana Perez", purpose="cowork", pin="2580")
        visit = visits.sign_in_new(db, ana, SECRET, now=now - 2 * 86400)
        visits.sign_out(db, visit.id, now=now - 2 * 86400 + HOUR)
    finally:
        db.close()
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return url, cfg.database.path


class Person:
    """Taps, counted."""

    def __init__(self, page):
        self.page, self.taps = page, 0

    def tap(self, locator) -> None:
        locator.tap()
        self.taps += 1

    def key(self, name: str) -> None:
        self.tap(self.page.locator("#keyboard").get_by_role("button", name=name, exact=True))


def in_sight(page) -> list[str]:
    """What of the PIN page is out of the screen or under the keyboard (empty: all in
    sight), with the page not scrolled."""
    return page.evaluate(
        """() => {
        const kb = document.getElementById('keyboard');
        const k = kb && !kb.hidden ? kb.getBoundingClientRect() : null;
        const items = [...document.querySelectorAll(
            '.chip, .for-event, #pin, label[for=pin], .actions .button, .actions button')];
        const bad = items.filter(e => {
            const r = e.getBoundingClientRect();
            const off = r.top < 0 || r.left < 0 || r.bottom > innerHeight || r.right > innerWidth
                || r.height < 47.5 && !e.matches('label[for=pin]');
            const under = k && r.right > k.left && r.left < k.right
                && r.bottom > k.top && r.top < k.bottom;
            return off || under;
        }).map(e => e.textContent.trim() || e.id);
        if (scrollY !== 0) bad.push('scrolled by ' + scrollY);
        return bad;
    }"""
    )


@pytest.mark.parametrize(("width", "height"), [(800, 480), (480, 800)])
def test_a_regular_picks_a_purpose_and_the_event_everything_in_sight(
    kiosk, browser, width, height, record_property, screenshots
):
    url, db_path = kiosk
    context = browser.new_context(
        viewport={"width": width, "height": height}, has_touch=True, locale="en-GB"
    )
    page = context.new_page()
    try:
        you = Person(page)
        page.goto(url)
        started = time.monotonic()
        you.tap(page.get_by_role("link", name="Sign in", exact=True))
        expect(page.locator("#keyboard")).to_be_visible()
        you.key("A")  # the keyboard starts a name with a capital
        you.key("n")
        match = page.get_by_role("link", name=re.compile("•••"))
        expect(match).to_have_count(1)
        you.tap(match)
        expect(page.locator("#keyboard")).to_be_visible()  # the digits, for the PIN
        expect(page.get_by_label("Coworking or a project")).to_be_checked()
        assert in_sight(page) == [], f"at {width}x{height}"
        you.tap(page.get_by_label("A meeting"))
        you.tap(page.get_by_label(f"I'm here for today's event: {EVENT}"))
        expect(page.get_by_label("A meeting")).to_be_checked()
        expect(page.locator("#keyboard")).to_be_visible()
        screenshot(page, screenshots / f"returning-{width}x{height}.png")
        assert in_sight(page) == [], f"after choosing, at {width}x{height}"
        for digit in "2580":  # the fourth digit sends it
            you.key(digit)
        expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
        seconds = time.monotonic() - started
    finally:
        context.close()
    print(f"\nreturning, a purpose, the event ({width}x{height}): {you.taps} taps, {seconds:.1f} s")
    record_property("taps", you.taps)
    with sqlite3.connect(db_path) as db:
        stored = db.execute("SELECT purpose, event, via FROM visits ORDER BY id").fetchall()
    assert stored == [("cowork", None, "kiosk"), ("meeting", EVENT, "kiosk")]


def test_a_regular_signs_in_with_the_same_taps_and_their_purpose_stays(kiosk, touch_page):
    url, db_path = kiosk
    page, you = touch_page, Person(touch_page)
    page.goto(url)
    started = time.monotonic()
    you.tap(page.get_by_role("link", name="Sign in", exact=True))
    expect(page.locator("#keyboard")).to_be_visible()
    you.key("A")  # the keyboard starts a name with a capital
    you.key("n")
    you.tap(page.get_by_role("link", name=re.compile("•••")))
    for digit in "2580":
        you.key(digit)
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    seconds = time.monotonic() - started
    print(f"\nreturning as ever (800x480): {you.taps} taps, {seconds:.1f} s")
    assert you.taps == 8  # Sign in, two letters, the match, four digits
    with sqlite3.connect(db_path) as db:
        stored = db.execute("SELECT purpose, event FROM visits ORDER BY id").fetchall()
    assert stored == [("cowork", None), ("cowork", None)]


def test_the_pin_page_in_greek_fits_beside_the_keyboard(kiosk, browser, screenshots):
    url, db_path = kiosk
    with sqlite3.connect(db_path) as db:
        (handle,) = db.execute("SELECT handle FROM visitors").fetchone()
    for width, height in ((800, 480), (480, 800)):
        context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True)
        page = context.new_page()
        try:
            page.goto(f"{url}lang/el?next=/sign-in/returning/{handle}")
            expect(page.locator("#keyboard")).to_be_visible()
            screenshot(page, screenshots / f"returning-el-{width}x{height}.png")
            assert in_sight(page) == [], f"el at {width}x{height}"
        finally:
            context.close()
