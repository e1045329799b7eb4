"""The kiosk's sign-in and sign-out over HTTP: every rule, and what bad input gets."""

from __future__ import annotations

import re
import resource
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import http_ready, visitor_form, write_space_config

from kiosk import create_app, visits
from spacekiosk import config

EVENT_TODAY = """
[[events]]
name = "Firefox OS hack night"
date = "{date}"
hours = "18:00-21:00"
"""


def make_app(tmp_path, kiosk_extra: str = "", extra: str = ""):
    toml = write_space_config(tmp_path, broker_port=1883, extra=extra)
    if kiosk_extra:
        toml.write_text(toml.read_text().replace("[kiosk]\n", f"[kiosk]\n{kiosk_extra}\n"))
    return create_app(config.load(toml), {"TESTING": True})


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


class KioskActions:
    """What a visitor does, over HTTP."""

    def __init__(self, client):
        self.client = client

    def first_visit(self, name: str, pin: str | None = None, **extra):
        return self.client.post("/sign-in/new", data=visitor_form(name, pin, **extra))

    def returning(self, visitor_id: int, pin: str | None, **extra):
        return self.client.post(f"/sign-in/returning/{visitor_id}", data={"pin": pin or ""} | extra)

    def sign_out(self, visit_id: int):
        return self.client.post(f"/sign-out/{visit_id}")


@pytest.fixture
def kiosk(app):
    return KioskActions(app.test_client())


def rows(app, sql: str):
    return sqlite3.connect(app.config["SPACE"].database.path).execute(sql).fetchall()


def test_a_first_visit_then_sign_out(app, kiosk):
    response = kiosk.first_visit("Ana María Pérez", purpose="meeting", email="ana@example.org")
    assert response.status_code == 201
    assert "Welcome, Ana" in response.text
    assert rows(app, "SELECT name, email FROM visitors") == [("Ana María Pérez", "ana@example.org")]
    assert rows(app, "SELECT purpose, via FROM visits") == [("meeting", "kiosk")]
    listing = kiosk.client.get("/sign-out").text
    assert "Ana P." in listing and "Pérez" not in listing  # first name, last initial only
    (visit_id,) = rows(app, "SELECT id FROM visits")[0]
    response = kiosk.sign_out(visit_id)
    assert response.status_code == 200 and "Goodbye, Ana" in response.text
    assert rows(app, "SELECT closed_by FROM visits") == [("visitor",)]


def test_a_returning_visitor_with_a_pin(app, kiosk):
    kiosk.first_visit("Wanjiru Kamau", pin="2468")
    kiosk.sign_out(1)
    found = kiosk.client.get("/sign-in/matches?q=wan").get_json()
    assert found == [{"label": "Wanjiru K•••", "url": "/sign-in/returning/1"}]
    wrong = kiosk.returning(1, "1111")
    assert wrong.status_code == 403 and "PIN is not right" in wrong.text
    right = kiosk.returning(1, "2468")
    assert right.status_code == 201 and "Welcome, Wanjiru" in right.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(1,)]
    assert rows(app, "SELECT count(*) FROM visits") == [(2,)]


def test_typing_a_known_name_leads_to_the_pin(app, kiosk):
    kiosk.first_visit("Lin Mei", pin="1357")
    kiosk.sign_out(1)
    step = kiosk.client.post("/sign-in", data={"name": "  lin   MEI "})
    assert step.status_code == 200 and "Welcome back, Lin M•••" in step.text
    assert "Your PIN" in step.text


def test_matches_need_two_letters_show_only_pin_holders_and_escape_wildcards(app, kiosk):
    kiosk.first_visit("Amani Otieno", pin="1111")
    kiosk.first_visit("Amara Diallo")  # no PIN: cannot be signed in by lookup
    assert kiosk.client.get("/sign-in/matches?q=a").get_json() == []
    assert [m["label"] for m in kiosk.client.get("/sign-in/matches?q=am").get_json()] == [
        "Amani O•••"
    ]
    assert kiosk.client.get("/sign-in/matches?q=%25%25").get_json() == []
    assert kiosk.client.get("/sign-in/matches?q=__").get_json() == []


def test_wrong_pins_make_the_pin_rest(app, kiosk):
    kiosk.first_visit("Juan Carlos", pin="4321")
    kiosk.sign_out(1)
    for _ in range(visits.PIN_TRIES):
        assert kiosk.returning(1, "0000").status_code == 403
    resting = kiosk.returning(1, "4321")
    assert resting.status_code == 429 and "Too many wrong PINs" in resting.text
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_changed_guidelines_are_asked_for_again(tmp_path):
    app = make_app(tmp_path)
    KioskActions(app.test_client()).first_visit("Maria Santos", pin="9999")
    KioskActions(app.test_client()).sign_out(1)
    newer = make_app(tmp_path, kiosk_extra="guidelines_version = 2")
    kiosk = KioskActions(newer.test_client())
    page = kiosk.client.get("/sign-in/returning/1").text
    assert "I accept the participation guidelines" in page
    refused = kiosk.returning(1, "9999")
    assert refused.status_code == 400 and "guidelines have changed" in refused.text
    assert kiosk.returning(1, "9999", accept="yes").status_code == 201
    assert rows(newer, "SELECT guidelines_version FROM visitors") == [(2,)]


def test_todays_event_can_be_chosen(tmp_path):
    today = datetime.now(ZoneInfo("Europe/Athens")).date().isoformat()
    app = make_app(tmp_path, extra=EVENT_TODAY.format(date=today))
    kiosk = KioskActions(app.test_client())
    assert "Firefox OS hack night" in kiosk.client.get("/").text
    form = kiosk.client.post("/sign-in", data={"name": "Nikos"}).text
    assert "here for today's event: Firefox OS hack night" in form
    assert kiosk.first_visit("Nikos", event="yes").status_code == 201
    assert rows(app, "SELECT event FROM visits") == [("Firefox OS hack night",)]


def test_a_double_tap_makes_one_visit(app, kiosk):
    form = visitor_form("Lin Mei")
    first = kiosk.client.post("/sign-in/new", data=form)
    second = kiosk.client.post("/sign-in/new", data=form)
    assert first.status_code == second.status_code == 201
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_signing_in_twice_says_since_when(app, kiosk):
    kiosk.first_visit("Juan Carlos")
    again = kiosk.first_visit("  juan   carlos ")
    assert again.status_code == 409
    assert re.search(r"already signed in \(since \d\d?:\d\d", again.text)
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_signing_out_twice_is_refused(app, kiosk):
    kiosk.first_visit("Amani")
    assert kiosk.sign_out(1).status_code == 200
    again = kiosk.sign_out(1)
    assert again.status_code == 409 and "already signed out at" in again.text
    assert kiosk.sign_out(9999).status_code == 404


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "Please enter your name"),
        ("   ", "Please enter your name"),
        ("x" * 81, "at most 80"),
        ("Ana\x00", "only letters, marks"),
        ("Ana\u202eevil", "only letters, marks"),
    ],
)
def test_bad_names_get_a_400_and_store_nothing(app, kiosk, name, words):
    for response in (kiosk.client.post("/sign-in", data={"name": name}), kiosk.first_visit(name)):
        assert response.status_code == 400
        assert words in response.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(0,)]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"email": "not-an-address"}, "e-mail address does not look right"),
        ({"pin": "12a4", "pin2": "12a4"}, "PIN must be four digits"),
        ({"pin": "1234", "pin2": "1243"}, "not the same"),
        ({"purpose": "smuggling"}, "choose why you are here"),
        ({"accept": ""}, "accept the participation guidelines"),
    ],
)
def test_a_bad_first_visit_form_gets_a_400_and_keeps_nothing(app, kiosk, fields, words):
    response = kiosk.client.post("/sign-in/new", data=visitor_form("Zoë Example") | fields)
    assert response.status_code == 400
    assert words in response.text
    assert "Zoë" in response.text  # the form comes back filled in, to fix and resend
    assert rows(app, "SELECT count(*) FROM visitors") == [(0,)]


def test_any_script_and_emoji_are_names(app, kiosk):
    for name in ("Γιώργος Παπαδόπουλος", "林美玲", "ಅನಿಲ್ ಕುಮಾರ್", "Zoë 👩🏽‍💻"):
        assert kiosk.first_visit(name).status_code == 201, name
    assert len(rows(app, "SELECT name FROM visitors")) == 4


def test_html_is_shown_escaped(app, kiosk):
    response = kiosk.first_visit("<script>alert(1)</script> Bob")
    assert response.status_code == 201
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;" in response.text


def test_malformed_requests_are_4xx(kiosk):
    client = kiosk.client
    assert client.post("/sign-in").status_code == 400
    assert client.post("/sign-in/new").status_code == 400
    assert client.get("/sign-in/new").status_code == 405
    assert client.post("/sign-out/abc").status_code == 404
    assert client.get("/sign-in/returning/999").status_code == 404
    assert client.post("/sign-in/returning/999", data={"pin": "1234"}).status_code == 404
    assert client.get("/lang/xx").status_code == 404
    assert client.post("/sign-in", data={"name": "x" * 70_000}).status_code == 413


def test_a_locked_database_is_never_welcomed(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1883)
    toml.write_text(
        toml.read_text().replace('path = "space.db"', 'path = "space.db"\nbusy_timeout_ms = 200')
    )
    app = create_app(config.load(toml), {"TESTING": True})
    blocker = sqlite3.connect(tmp_path / "space.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        response = KioskActions(app.test_client()).first_visit("Locked Out")
    finally:
        blocker.execute("ROLLBACK")
    assert response.status_code == 503
    assert "could not save" in response.text and "Welcome" not in response.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(0,)]
    assert KioskActions(app.test_client()).first_visit("Locked Out").status_code == 201


def test_a_full_disk_is_never_welcomed_and_loses_nothing(tmp_path, services):
    """The kiosk process may not grow any file (as on a full SD card): the visitor is
    told, in their language, that nothing was saved; earlier visits are untouched."""
    toml = write_space_config(tmp_path, broker_port=1)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    kiosk = services("kiosk", "--config", str(toml))
    http_ready(url + "healthz", kiosk)
    for name in ("Before One", "Before Two"):
        assert requests.post(url + "sign-in/new", data=visitor_form(name), timeout=5).ok
    _, hard = resource.prlimit(kiosk.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(kiosk.proc.pid, resource.RLIMIT_FSIZE, (0, hard))
    full = requests.post(
        url + "sign-in/new", data=visitor_form("Too Late"), cookies={"lang": "el"}, timeout=10
    )
    assert full.status_code == 503
    assert "Welcome" not in full.text and "Καλώς" not in full.text
    assert '<html lang="el">' in full.text
    resource.prlimit(kiosk.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    assert requests.post(url + "sign-in/new", data=visitor_form("After"), timeout=5).ok
    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    names = [n for (n,) in db.execute("SELECT name FROM visitors ORDER BY id")]
    assert names == ["Before One", "Before Two", "After"]


def test_visits_left_open_are_signed_out_at_closing_time(tmp_path):
    extra = '[space.opening_hours]\nwed = "10:00-21:00"\n'
    toml = write_space_config(tmp_path, broker_port=1883)
    toml.write_text(toml.read_text().replace("capacity = 20\n", "capacity = 20\n" + extra))
    cfg = config.load(toml)
    create_app(cfg, {"TESTING": True})  # migrates the store, as the kiosk does at start
    db = sqlite3.connect(cfg.database.path)
    zone = ZoneInfo("Europe/Athens")
    at = datetime(2026, 11, 25, 19, 30, tzinfo=zone).timestamp()  # a Wednesday evening
    from spacekiosk.db import connect

    store = connect(cfg.database.path)
    visits.sign_in_new(store, visits.NewVisitor("Late Stayer"), "k", now=at)
    assert visits.close_at_closing(store, cfg.space, now=at + 3600) == 0  # 20:30, still open
    assert visits.close_at_closing(store, cfg.space, now=at + 7200) == 1  # 21:30
    closed = db.execute("SELECT signed_out_at, closed_by FROM visits").fetchone()
    assert closed == (datetime(2026, 11, 25, 21, 0, tzinfo=zone).timestamp(), "closing")


def test_the_status_api(app, kiosk):
    kiosk.first_visit("Wanjiru Kamau")
    status = kiosk.client.get("/api/v1/status").get_json()
    assert status["people_signed_in"] == 1
    assert status["open"] is False  # the test space lists no opening hours
    assert status["sync"]["state"] == "idle"  # nothing aggregated yet


def test_phone_greetings_are_only_for_the_kiosk_s_own_browser(tmp_path):
    app = make_app(tmp_path, kiosk_extra='public_url = "http://192.168.1.20:8080"')
    phone = app.test_client()
    assert phone.get("/phone").status_code == 302
    page = phone.get("/sign-in").text
    assert 'id="keyboard"' not in page and 'inputmode="none"' not in page
    assert phone.post("/sign-in/new", data=visitor_form("林美玲")).status_code == 201
    kiosk = app.test_client()
    assert kiosk.get("/api/v1/greetings").get_json()[0]["first_name"] == "林美玲"
    lan = kiosk.get("/api/v1/greetings", environ_base={"REMOTE_ADDR": "192.168.1.30"})
    assert lan.status_code == 404
    assert rows(app, "SELECT via FROM visits") == [("phone",)]


def test_each_confirmation_shows_its_own_visitor(app, kiosk):
    """The confirmation page is rendered once per language and reused: the name in it
    must still be each visitor's own, escaped, in the visitor's language."""
    assert "Welcome, Ana" in kiosk.first_visit("Ana One").text
    second = kiosk.first_visit("<b>Bob</b> Two")
    assert "Welcome, &lt;b&gt;Bob&lt;/b&gt;" in second.text and "Ana" not in second.text
    kiosk.client.set_cookie("lang", "el")
    greek = kiosk.first_visit("Νίκος Τρία").text
    assert '<html lang="el">' in greek and "Νίκος" in greek and "Bob" not in greek
    kiosk.client.delete_cookie("lang")
    assert "Goodbye, Ana" in kiosk.sign_out(1).text


def test_names_past_retention_are_erased_and_counts_survive(tmp_path):
    from spacekiosk.db import connect
    from sync.buckets import compute

    cfg = config.load(write_space_config(tmp_path, broker_port=1883))
    create_app(cfg, {"TESTING": True})
    db = connect(cfg.database.path)
    day = 86400
    now = datetime(2027, 3, 1, 12, tzinfo=ZoneInfo("UTC")).timestamp()  # 100 days in
    old = visits.sign_in_new(
        db,
        visits.NewVisitor("Old Timer", email="old@example.org", pin="1234"),
        "k",
        now=now - 100 * day,
    )
    visits.sign_out(db, old.id, now=now - 100 * day + 3600)
    visits.sign_in_new(db, visits.NewVisitor("Recent Person"), "k", now=now - 10 * day)
    hour = int(now - 100 * day) // 3600 * 3600
    before = compute(db, hour, hour + 3600, cfg, now)
    assert before[hour]["signins"] == 1
    assert visits.erase_expired(db, cfg.retention.days, now=now) == 1  # 90 days by default
    rows = db.execute("SELECT name, email, pin_hash FROM visitors ORDER BY id").fetchall()
    assert rows == [(visits.ERASED, None, None), ("Recent Person", None, None)]
    assert compute(db, hour, hour + 3600, cfg, now) == before  # the counts are untouched
    assert visits.matches(db, "Ol") == [] and visits.find(db, "Old Timer") is None
    assert visits.erase_expired(db, cfg.retention.days, now=now) == 0
