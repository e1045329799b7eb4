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
from kiosk.lookups import LOOKUPS_PER_MINUTE, Lookups
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
    """What a visitor does, over HTTP. Visitors and visits are named by the handles the
    screens carry; `handle()` and `visit()` read them as the screens would show them."""

    def __init__(self, client):
        self.client = client

    def first_visit(self, name: str, pin: str | None = None, **extra):
        return self.client.post("/sign-in/new", data=visitor_form(name, pin, **extra))

    def returning(self, visitor: int | str, pin: str | None, **extra):
        handle = self.handle(visitor) if isinstance(visitor, int) else visitor
        return self.client.post(f"/sign-in/returning/{handle}", data={"pin": pin or ""} | extra)

    def sign_out(self, visit: int | str):
        handle = self.visit(visit) if isinstance(visit, int) else visit
        return self.client.post(f"/sign-out/{handle}")

    def handle(self, visitor_id: int) -> str:
        return self._one("SELECT handle FROM visitors WHERE id = ?", visitor_id) or "0" * 24

    def visit(self, visit_id: int) -> str:
        return self._one("SELECT handle FROM visits WHERE id = ?", visit_id) or "0" * 24

    def _one(self, sql: str, *args):
        path = self.client.application.config["SPACE"].database.path
        row = sqlite3.connect(path).execute(sql, args).fetchone()
        return row[0] if row else None


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
    (handle,) = rows(app, "SELECT handle FROM visits")[0]
    assert f'action="/sign-out/{handle}"' in listing  # a random handle, not a row id
    response = kiosk.sign_out(handle)
    assert response.status_code == 200 and "Goodbye, Ana" in response.text
    assert rows(app, "SELECT closed_by FROM visits") == [("visitor",)]


def test_a_returning_visitor_with_a_pin(app, kiosk):
    kiosk.first_visit("Wanjiru Kamau", pin="2468")
    kiosk.sign_out(1)
    found = kiosk.client.get("/sign-in/matches?q=wan").get_json()
    assert found == [{"label": "Wanjiru K•••", "url": f"/sign-in/returning/{kiosk.handle(1)}"}]
    wrong = kiosk.returning(1, "1111")
    assert wrong.status_code == 403 and "PIN is not right" in wrong.text
    right = kiosk.returning(1, "2468")
    assert right.status_code == 201 and "Welcome, Wanjiru" in right.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(1,)]
    assert rows(app, "SELECT count(*) FROM visits") == [(2,)]


def test_typing_a_known_name_asks_whether_it_is_you(app, kiosk):
    kiosk.first_visit("Lin Mei", pin="1357")
    kiosk.sign_out(1)
    step = kiosk.client.post("/sign-in", data={"name": "  lin   MEI "})
    assert step.status_code == 200 and "Have you been here before?" in step.text
    assert f'href="/sign-in/returning/{kiosk.handle(1)}">Lin M•••</a>' in step.text
    assert "No, I'm new here" in step.text and "Your PIN" not in step.text
    pin = kiosk.client.get(f"/sign-in/returning/{kiosk.handle(1)}").text
    assert "Welcome back, Lin M•••" in pin and "Your PIN" in pin
    new = kiosk.client.post("/sign-in", data={"name": "Lin Mei", "new": "yes"}).text
    assert "It looks like your first visit" in new


def test_matches_need_two_letters_show_only_pin_holders_and_escape_wildcards(app, kiosk):
    kiosk.first_visit("Amani Otieno", pin="1111")
    kiosk.first_visit("Amara Diallo")  # no PIN: cannot be signed in by lookup
    assert kiosk.client.get("/sign-in/matches?q=a").get_json() == []
    assert [m["label"] for m in kiosk.client.get("/sign-in/matches?q=am").get_json()] == [
        "Amani O•••"
    ]
    assert kiosk.client.get("/sign-in/matches?q=%25%25").get_json() == []
    assert kiosk.client.get("/sign-in/matches?q=__").get_json() == []


def test_a_script_on_the_network_cannot_try_every_start_of_a_name(app, kiosk):
    """A phone typing a name looks up a handful of times; a script trying "aa", "ab", …
    gets nothing once its address passes the minute's allowance. The kiosk's own screen,
    on loopback, is never held back."""
    kiosk.first_visit("Amani Otieno", pin="1111")
    lan = {"REMOTE_ADDR": "192.168.1.30"}
    answers = [
        kiosk.client.get(f"/sign-in/matches?q=a{chr(97 + i % 26)}", environ_base=lan)
        for i in range(LOOKUPS_PER_MINUTE + 5)
    ]
    assert [a.status_code for a in answers].count(200) == LOOKUPS_PER_MINUTE
    assert [m["label"] for m in answers[12].get_json()] == ["Amani O•••"]  # "am", in time
    assert all(a.status_code == 429 and a.get_json() == [] for a in answers[-5:])
    other = kiosk.client.get("/sign-in/matches?q=am", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert [m["label"] for m in other.get_json()] == ["Amani O•••"]
    for _ in range(LOOKUPS_PER_MINUTE + 5):
        screen = kiosk.client.get("/sign-in/matches?q=am")
        assert screen.status_code == 200 and screen.get_json() != []


def test_the_lookup_allowance_comes_back_after_a_minute():
    lookups = Lookups(limit=3, window=60)
    assert [lookups.allow("10.0.0.5", now=t) for t in (0, 1, 2, 3)] == [True] * 3 + [False]
    assert lookups.allow("10.0.0.5", now=59) is False
    assert lookups.allow("10.0.0.5", now=60.5) is True  # the first has left the window
    assert all(lookups.allow("127.0.0.1", now=5) for _ in range(10))


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
    page = kiosk.client.get(f"/sign-in/returning/{kiosk.handle(1)}").text
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
    kiosk.first_visit("Juan Carlos", pin="1234")
    again = kiosk.returning(1, "1234")
    assert again.status_code == 409
    assert re.search(r"already signed in \(since \d\d?:\d\d", again.text)
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_signing_out_twice_is_refused(app, kiosk):
    kiosk.first_visit("Amani")
    assert kiosk.sign_out(1).status_code == 200
    again = kiosk.sign_out(1)
    assert again.status_code == 409 and "already signed out at" in again.text
    assert kiosk.sign_out(9999).status_code == 404
    assert kiosk.client.post("/sign-out/1").status_code == 404  # row ids name nothing


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
    assert visits.matches(db, "Ol") == [] and visits.known(db, "Old Timer") == []
    assert visits.known(db, "erased:1") == []  # nor by the placeholder its key became
    assert visits.erase_expired(db, cfg.retention.days, now=now) == 0


# A name is not an identity (issue 11, item 3)


def test_a_known_name_on_the_first_visit_form_is_a_new_person(app, kiosk):
    """The first-visit form with a returning visitor's name, in any case or spacing,
    makes someone new: it never signs the visitor of that name in."""
    kiosk.first_visit("Ana Pérez", pin="1111")
    kiosk.sign_out(1)
    for spelled in ("Ana Pérez", "  ana   PÉREZ ", "ANA\u00a0pérez"):
        response = kiosk.first_visit(spelled)
        assert response.status_code == 201
    assert rows(app, "SELECT visitor_id FROM visits ORDER BY id") == [(1,), (2,), (3,), (4,)]
    assert rows(app, "SELECT count(*) FROM visitors") == [(4,)]


def test_a_resting_pin_stays_resting_whatever_is_posted(app, kiosk):
    kiosk.first_visit("Juan Carlos", pin="4321")
    (earlier_request,) = rows(app, "SELECT request_id FROM visits")[0]
    kiosk.sign_out(1)
    for _ in range(visits.PIN_TRIES):
        assert kiosk.returning(1, "0000").status_code == 403
    assert kiosk.returning(1, "4321").status_code == 429
    # The request id of Juan's own earlier visit, as a resent form would carry it.
    assert kiosk.returning(1, "4321", request_id=earlier_request).status_code == 429
    assert kiosk.returning(1, "", accept="yes").status_code == 429
    step = kiosk.client.post("/sign-in", data={"name": "juan carlos"})
    assert step.status_code == 200 and "Have you been here before?" in step.text
    assert kiosk.first_visit("Juan Carlos", pin="4321").status_code == 201  # someone new
    assert rows(app, "SELECT count(*) FROM visits WHERE visitor_id = 1") == [(1,)]
    assert rows(app, "SELECT pin_rest_until IS NOT NULL FROM visitors WHERE id = 1") == [(1,)]


def test_two_ana_p_in_madrid_both_sign_in(tmp_path):
    """Two people called Ana Pérez: the second says she is new; each then finds her own
    entry (told apart by when she first came), proves it with her PIN, and signs out."""
    toml = write_space_config(tmp_path, broker_port=1883)
    text = toml.read_text().replace('"Europe/Athens"', '"Europe/Madrid"')
    toml.write_text(text.replace('languages = ["en", "el"]', 'languages = ["es", "en"]'))
    app = create_app(config.load(toml), {"TESTING": True})
    db = sqlite3.connect(app.config["SPACE"].database.path)
    kiosk = KioskActions(app.test_client())
    assert kiosk.first_visit("Ana Pérez", pin="1111").status_code == 201
    db.execute("UPDATE visitors SET created_at = created_at - 40 * 86400")  # came in spring
    db.commit()
    step = kiosk.client.post("/sign-in", data={"name": "ana pérez"})
    assert step.status_code == 200 and step.text.count('class="match"') == 1
    new = kiosk.client.post("/sign-in", data={"name": "Ana Pérez", "new": "yes"})
    assert new.status_code == 200 and 'name="name" value="Ana Pérez"' in new.text
    assert kiosk.first_visit("Ana Pérez", pin="2222").status_code == 201
    both = kiosk.client.get("/sign-out").text
    assert both.count("Ana P. · ") == 2  # told apart by when each signed in
    kiosk.sign_out(1)
    kiosk.sign_out(2)

    found = kiosk.client.get("/sign-in/matches?q=an").get_json()
    assert len(found) == 2 and found[0]["label"] != found[1]["label"]
    assert all(m["label"].startswith("Ana P••• · ") for m in found)
    first, second = (m["url"] for m in found)
    assert first.endswith(kiosk.handle(1)) and second.endswith(kiosk.handle(2))
    assert kiosk.client.post(first, data={"pin": "2222"}).status_code == 403  # not hers
    assert kiosk.client.post(second, data={"pin": "2222"}).status_code == 201
    assert kiosk.client.post(first, data={"pin": "1111"}).status_code == 201
    assert rows(app, "SELECT visitor_id FROM visits ORDER BY id") == [(1,), (2,), (2,), (1,)]


def test_a_visitor_without_a_pin_signs_in_by_their_whole_name(app, kiosk):
    """Chose no PIN: not in the lookup by letters, found by typing the whole name, and
    signed in with a tap on their entry; a PIN holder of the same name still needs hers."""
    kiosk.first_visit("Amara Diallo")
    kiosk.first_visit("Amara Diallo", pin="5555")
    kiosk.sign_out(1)
    kiosk.sign_out(2)
    (only,) = kiosk.client.get("/sign-in/matches?q=amara").get_json()
    assert only["url"].endswith(kiosk.handle(2))
    step = kiosk.client.post("/sign-in", data={"name": "Amara Diallo"}).text
    assert kiosk.handle(1) in step and kiosk.handle(2) in step
    page = kiosk.client.get(f"/sign-in/returning/{kiosk.handle(1)}").text
    assert "Your PIN" not in page
    assert kiosk.returning(1, None).status_code == 201
    assert kiosk.returning(2, None).status_code == 403
    assert rows(app, "SELECT visitor_id FROM visits WHERE id = 3") == [(1,)]


def test_a_request_id_of_someone_else_s_visit_is_refused(app, kiosk):
    """A resent form replays its own visit; another visitor's request id shows nobody's
    name and makes no visit."""
    kiosk.first_visit("Wanjiru Kamau", pin="2468", request_id="abc123")
    kiosk.first_visit("Baraka Otieno", pin="1357")
    kiosk.sign_out(2)
    theirs = kiosk.returning(2, "1357", request_id="abc123")
    assert theirs.status_code == 400 and "Wanjiru" not in theirs.text
    stolen = kiosk.first_visit("Someone Else", request_id="abc123")
    assert stolen.status_code == 400 and "Wanjiru" not in stolen.text
    again = kiosk.first_visit("Wanjiru Kamau", pin="2468", request_id="abc123")
    assert again.status_code == 201 and "Welcome, Wanjiru" in again.text
    assert rows(app, "SELECT count(*) FROM visits") == [(2,)]


# Nothing to count through (issue 11, item 5)


def test_visitor_pages_cannot_be_counted_through(app, kiosk):
    for i in range(20):
        kiosk.first_visit(f"Ana Tester{i:02d}", pin="1234" if i % 2 else None)
    for n in (0, 1, 2, 3, 20, 99999999999999999999):
        for method in ("get", "post"):
            page = getattr(kiosk.client, method)(f"/sign-in/returning/{n}")
            assert page.status_code == 404 and "Ana" not in page.text
        assert kiosk.client.post(f"/sign-out/{n}").status_code == 404
    handles = [h for (h,) in rows(app, "SELECT handle FROM visitors")]
    assert len(set(handles)) == 20 and all(re.fullmatch("[0-9a-f]{24}", h) for h in handles)
    for q in ("", "a", " a ", "%", "_"):
        assert kiosk.client.get("/sign-in/matches", query_string={"q": q}).get_json() == []
    found = kiosk.client.get("/sign-in/matches?q=an").get_json()
    assert len(found) == visits.MAX_MATCHES  # ten PIN holders match; a few are shown
    assert not any("Tester" in m["label"] for m in found)
    assert kiosk.client.get("/sign-in/matches", query_string={"q": "a" * 81}).get_json() == []


def test_the_migration_gives_every_visitor_and_visit_a_handle(tmp_path):
    from spacekiosk.db import open_store
    from spacekiosk.migrations import SPACE_MIGRATIONS

    path = tmp_path / "space.db"
    old = open_store(path, SPACE_MIGRATIONS[:4])  # a store written by the last release
    old.execute("INSERT INTO visitors (name, name_key, created_at) VALUES ('Ama', 'ama', 1)")
    old.execute("INSERT INTO visitors (name, name_key, created_at) VALUES ('—', 'erased:2', 1)")
    old.execute("INSERT INTO visits (visitor_id, signed_in_at) VALUES (1, 5), (2, 6)")
    old.conn.commit()
    old.close()
    app = make_app(tmp_path)  # migrates, as the kiosk does at start
    assert [h is None for (h,) in rows(app, "SELECT handle FROM visitors ORDER BY id")] == [
        False,
        True,  # erased: no page reaches it
    ]
    visit_handles = [h for (h,) in rows(app, "SELECT handle FROM visits")]
    assert len(set(visit_handles)) == 2 and None not in visit_handles
    kiosk = KioskActions(app.test_client())
    step = kiosk.client.post("/sign-in", data={"name": "erased:2"})  # its placeholder key
    assert step.status_code == 200 and "It looks like your first visit" in step.text


def test_every_page_names_the_tab_s_icon_and_it_is_there(app):
    """Browsers ask every site for /favicon.ico: a 404 on each page fills the logs and
    leaves the tab blank."""
    client = app.test_client()
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data.startswith(b"<svg")
    page = client.get("/").get_data(as_text=True)
    linked = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', page)
    assert linked and client.get(linked[1]).status_code == 200
