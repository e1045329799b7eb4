"""The admins' Visitors page: find a visitor, see their visits, export what is stored
about them, erase them, reset a forgotten PIN, merge two records of one person; the
spreadsheets; and, after an erasure, a byte search of the database files.

In a real Chromium on a running kiosk (a phone, the kiosk's 800x480 screen), and over
HTTP for the rules and for hostile input. Visitors are stored as the kiosk stores them,
with the kiosk's own PIN key."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from admin import csrf_token, log_in, make_admin
from conftest import ErrorLog, http_ready, screenshot, visitor_form, wait_until, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import expect
from test_screens import Visitor

from kiosk import closing, create_app, people, visits
from spacekiosk import config
from spacekiosk.clock import Watch
from spacekiosk.db import connect, open_store, scrub
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import outbox

DAY = 86400
ZONE = ZoneInfo("Europe/Athens")  # the test space's
ERASED = "Zoë Ōkawa-Brandt"  # the visitor who asks to be forgotten
ERASED_EMAIL = "zoe.okawa@uni.example"
STAYS = "Bob Builder"  # another visitor: the byte search must find him
KIOSK_SCREEN, PHONE = (800, 480), (390, 844)


def seed(path: Path, secret: str, now: float) -> dict[str, int]:
    """Visitors as the kiosk stores them (with its PIN key), each with past visits, none
    signed in: two Ana Perez (one since long ago, with a PIN), Zoë, Bob, and a name a
    spreadsheet would take for a formula. Returns each visitor's id by a short key."""
    db = connect(path)
    ids = {}
    try:
        for key, name, email, pin, first_days_ago, count in (
            ("ana1", "Ana Perez", "ana@example.org", "1111", 200, 3),
            ("ana2", "Ana Perez", "ana.perez@mail.example", None, 20, 2),
            ("zoe", ERASED, ERASED_EMAIL, "4321", 60, 4),
            ("bob", STAYS, None, None, 10, 1),
            ("formula", "=HYPERLINK(1) Formula", None, None, 5, 1),
        ):
            at = now - first_days_ago * DAY
            visit = visits.sign_in_new(
                db, visits.NewVisitor(name, email=email, pin=pin, purpose="cowork"), secret, now=at
            )
            visits.sign_out(db, visit.id, now=at + 3600)
            ids[key] = visit.visitor_id
            for i in range(1, count):  # and back on the days after
                later = at + i * DAY
                visit = visits.sign_in_returning(
                    db, visit.visitor_id, pin, secret, 1, True, now=later
                )
                visits.sign_out(db, visit.id, now=later + 1800)
    finally:
        db.close()
    return ids


def store_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as bytes on the disk."""
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def assert_gone(path: Path, *texts: str) -> None:
    """The texts, in UTF-8 and case-folded, are nowhere in the files; STAYS still is
    (so the search is a real one)."""
    data = store_bytes(path)
    assert STAYS.encode() in data and STAYS.casefold().encode() in data
    for text in texts:
        for form in {text, text.casefold()}:
            assert form.encode() not in data, f"{form!r} is still in the database files"


def rows(path: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def handle_of(path: Path, visitor_id: int) -> str | None:
    found = rows(path, "SELECT handle FROM visitors WHERE id = ?", visitor_id)
    return found[0][0] if found else None


# --- over HTTP ---


@pytest.fixture
def app(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1))
    app = create_app(cfg, {"TESTING": True})
    make_admin(cfg.database.path)
    app.ids = seed(cfg.database.path, app.config["PIN_KEY"], time.time())
    app.path = cfg.database.path
    return app


@pytest.fixture
def admin(app):
    client = app.test_client()
    log_in(client)
    client.token = csrf_token(client, "/admin/visitors")
    return client


def audit(app) -> list[tuple[str, str, str]]:
    return rows(app.path, "SELECT admin, action, detail FROM audit_log WHERE action != 'logged in'")


def test_a_search_finds_by_part_of_a_name_or_e_mail_and_tells_namesakes_apart(app, admin):
    page = admin.get("/admin/visitors", query_string={"q": "PEREZ"}).text
    found = re.findall(r'<span class="facts">([^<]*)</span>', page)
    assert len(found) == 2
    first, second = found  # the older record first: same name, told apart
    assert first.startswith("first came in ") and "•••@example.org · 3 visits" in first
    assert "•••@mail.example · 2 visits" in second
    assert "ana@example.org" not in page  # the list masks the addresses
    assert "Ana Perez" in admin.get("/admin/visitors", query_string={"q": "mail.exam"}).text
    assert "Zoë" in admin.get("/admin/visitors", query_string={"q": "ZOË ō"}).text
    short = admin.get("/admin/visitors", query_string={"q": "a"}).text
    assert "Type at least two letters." in short and "Ana Perez" not in short
    # Wildcards are letters here, not patterns.
    assert "Nobody found." in admin.get("/admin/visitors", query_string={"q": "%_"}).text


def test_a_visitors_page_shows_their_visits_and_the_export_holds_everything(app, admin):
    zoe = handle_of(app.path, app.ids["zoe"])
    page = admin.get(f"/admin/visitors/{zoe}").text
    assert ERASED in page and ERASED_EMAIL in page
    assert len(re.findall(r"<tr>", page.split('id="visits"')[1])) == 1 + 4  # header, 4 visits
    answer = admin.post(f"/admin/visitors/{zoe}/export", data={"csrf_token": admin.token})
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert "attachment" in answer.headers["Content-Disposition"]
    assert ERASED not in answer.headers["Content-Disposition"]
    data = json.loads(answer.text)
    assert data["visitor"]["name"] == ERASED and data["visitor"]["email"] == ERASED_EMAIL
    assert data["visitor"]["pin_set"] is True  # that a PIN is set, never its hash:
    assert "hash" not in answer.text and "salt" not in answer.text
    assert len(data["visits"]) == 4  # the first says why she came, as the form asked
    assert [v["purpose"] for v in data["visits"]] == [None, None, None, "cowork"]
    assert all(v["signed_out_at"] for v in data["visits"])
    assert audit(app) == [("ada", "exported a visitor's data", f"visitor {app.ids['zoe']}")]


def test_an_erasure_leaves_the_visits_nameless_and_no_byte_of_the_name(app, admin):
    zoe = handle_of(app.path, app.ids["zoe"])
    # She is in now: the erasure signs that visit out too.
    visits.sign_in_returning(
        connect(app.path), app.ids["zoe"], "4321", app.config["PIN_KEY"], 1, True
    )
    before = rows(app.path, "SELECT count(*) FROM visits")
    confirm = admin.get(f"/admin/visitors/{zoe}/erase").text
    assert f"Erase {ERASED}?" in confirm and "They are signed in now" in confirm
    assert rows(app.path, "SELECT name FROM visitors WHERE id = ?", app.ids["zoe"]) == [(ERASED,)]
    answer = admin.post(f"/admin/visitors/{zoe}/erase", data={"csrf_token": admin.token})
    assert answer.status_code == 302 and answer.location.endswith("/admin/visitors?done=erased")
    assert rows(app.path, "SELECT name, email, pin_hash, handle FROM visitors WHERE id = ?",
                app.ids["zoe"]) == [(visits.ERASED, None, None, None)]  # fmt: skip
    assert rows(app.path, "SELECT count(*) FROM visits") == before  # every visit still counts
    assert rows(app.path, "SELECT closed_by FROM visits WHERE visitor_id = ? ORDER BY id DESC "
                "LIMIT 1", app.ids["zoe"]) == [("admin",)]  # fmt: skip
    assert_gone(app.path, ERASED, ERASED_EMAIL)
    assert admin.get(f"/admin/visitors/{zoe}").status_code == 404
    assert "Nobody found." in admin.get("/admin/visitors", query_string={"q": "Zoë"}).text
    detail = f"visitor {app.ids['zoe']}, 1 open visit signed out"
    assert audit(app) == [("ada", "erased a visitor", detail)]  # by number: no name in the log


def test_erasure_past_retention_leaves_no_byte_of_the_name_either(app, tmp_path):
    """The housekeeping's erasure of names past `retention.days`, as the kiosk runs it."""
    ana1 = app.ids["ana1"]
    db = connect(app.path)
    db.execute("UPDATE visits SET signed_in_at = signed_in_at - 300 * ?, signed_out_at = "
               "signed_out_at - 300 * ? WHERE visitor_id = ?", [DAY, DAY, ana1])  # fmt: skip
    db.execute("UPDATE visitors SET created_at = created_at - 300 * ? WHERE id = ?", [DAY, ana1])
    watch = Watch(timesync=tmp_path / "none")
    stopping = threading.Event()
    thread = closing.run(app.config["SPACE"], stopping, watch, tick=0.01)
    try:
        wait_until(lambda: handle_of(app.path, ana1) is None, what="Ana's name erased")
        wait_until(lambda: Path(f"{app.path}-wal").stat().st_size == 0, what="the log scrubbed")
    finally:
        stopping.set()
        thread.join(10)
    data = store_bytes(app.path)
    assert b"ana@example.org" not in data
    assert b"Ana Perez" in data  # the other Ana Perez keeps her name


def test_a_new_pin_lets_the_visitor_in_and_a_removed_one_asks_for_none(app, admin):
    ana = handle_of(app.path, app.ids["ana1"])
    key = app.config["PIN_KEY"]
    db = connect(app.path)
    for _ in range(visits.PIN_TRIES):  # she forgot it: her PIN rests after five tries
        with pytest.raises(visits.VisitError):
            visits.sign_in_returning(db, app.ids["ana1"], "0000", key, 1, True)
    form = {"csrf_token": admin.token, "pin": "5678", "pin2": "5679"}
    assert "not the same" in admin.post(f"/admin/visitors/{ana}/pin", data=form).text
    assert admin.post(f"/admin/visitors/{ana}/pin", data=form | {"pin2": "5678"}).status_code == 302
    visitor = app.test_client()  # the visitor, on the visitor screen's form
    assert visitor.post(f"/sign-in/returning/{ana}", data={"pin": "1111"}).status_code == 403
    assert visitor.post(f"/sign-in/returning/{ana}", data={"pin": "5678"}).status_code == 201
    visit = rows(app.path, "SELECT handle FROM visits ORDER BY id DESC LIMIT 1")[0][0]
    visitor.post(f"/sign-out/{visit}")
    form = {"csrf_token": admin.token, "remove": "yes"}
    assert admin.post(f"/admin/visitors/{ana}/pin", data=form).status_code == 302
    assert visitor.post(f"/sign-in/returning/{ana}", data={"pin": ""}).status_code == 201
    assert [a[1:] for a in audit(app)] == [
        ("reset a visitor's PIN", f"visitor {app.ids['ana1']}: new PIN"),
        ("reset a visitor's PIN", f"visitor {app.ids['ana1']}: PIN removed"),
    ]


def test_merging_moves_the_visits_and_erases_the_other_record(app, admin):
    keep, other = (handle_of(app.path, app.ids[k]) for k in ("ana2", "ana1"))
    choose = admin.get(f"/admin/visitors/{keep}/merge").text  # the namesake is offered
    assert f"/admin/visitors/{keep}/merge/{other}" in choose
    confirm = admin.get(f"/admin/visitors/{keep}/merge/{other}").text
    assert "Merge these two records?" in confirm
    answer = admin.post(f"/admin/visitors/{keep}/merge/{other}", data={"csrf_token": admin.token})
    assert answer.status_code == 302 and answer.location.endswith("?done=merged")
    kept = people.by_handle(connect(app.path), keep)
    assert kept.visits == 5 and kept.email == "ana.perez@mail.example"
    assert kept.has_pin  # the other record's PIN came over: she had none on this one
    assert kept.first_seen < time.time() - 199 * DAY  # the earlier first visit
    assert handle_of(app.path, app.ids["ana1"]) is None
    assert rows(app.path, "SELECT count(*) FROM visits WHERE visitor_id = ?", app.ids["ana1"]) == [
        (0,)
    ]
    assert_gone(app.path, "ana@example.org")
    visitor = app.test_client()  # she signs in with the PIN she remembers
    assert visitor.post(f"/sign-in/returning/{keep}", data={"pin": "1111"}).status_code == 201
    assert audit(app) == [
        ("ada", "merged two visitors", f"visitor {app.ids['ana1']} into visitor "
         f"{app.ids['ana2']}: 3 visits moved"),
    ]  # fmt: skip


def test_two_records_both_signed_in_are_not_merged(app, admin):
    key = app.config["PIN_KEY"]
    db = connect(app.path)
    visits.sign_in_returning(db, app.ids["ana1"], "1111", key, 1, True)
    visits.sign_in_returning(db, app.ids["ana2"], None, key, 1, True)
    keep, other = (handle_of(app.path, app.ids[k]) for k in ("ana1", "ana2"))
    answer = admin.post(f"/admin/visitors/{keep}/merge/{other}", data={"csrf_token": admin.token})
    assert answer.status_code == 409 and "Both are signed in now" in answer.text
    assert handle_of(app.path, app.ids["ana2"]) == other and audit(app) == []
    same = admin.get(f"/admin/visitors/{keep}/merge/{keep}")
    assert same.status_code == 409 and "That is the same record." in same.text


def test_the_visits_spreadsheet_has_names_no_formulas_and_is_audited(app, admin):
    today = datetime.now(ZONE).date()
    span = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
    assert admin.post("/admin/visitors/visits.csv", data=span).status_code == 400  # no token
    answer = admin.post("/admin/visitors/visits.csv", data=span | {"csrf_token": admin.token})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(answer.text)))
    assert table[0] == list(people.VISITS_HEADER)
    names = [row[2] for row in table[1:]]
    assert len(names) == 11 and names.count("Ana Perez") == 5
    assert "'=HYPERLINK(1) Formula" in names and "=HYPERLINK(1) Formula" not in names
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row[0]) for row in table[1:])
    assert audit(app) == [("ada", "exported the visits with names", f"{span['from']} to "
                           f"{span['to']}: 11 visits")]  # fmt: skip
    for bad in (
        {"from": "2026-13-01", "to": "2026-12-01"},
        {"from": "x", "to": "y"},
        {"from": "2026-12-02", "to": "2026-12-01"},
        {"from": "1900-01-01", "to": "2026-01-01"},
        {"from": "9999-12-31", "to": "9999-12-31"},
    ):
        answer = admin.post("/admin/visitors/visits.csv", data=bad | {"csrf_token": admin.token})
        assert answer.status_code == 400, bad


def test_the_hourly_counts_spreadsheet_reads_the_stored_hours(app, admin):
    db = connect(app.path)
    outbox.refresh(db, app.config["SPACE"], time.time())
    stored = rows(app.path, "SELECT hour_start, counts FROM buckets ORDER BY hour_start")
    today = datetime.now(ZONE).date()
    span = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
    answer = admin.get("/admin/visitors/hourly.csv", query_string=span)
    table = list(csv.reader(io.StringIO(answer.text)))
    assert table[0][:4] == ["hour", "hour_utc", "signins", "signouts"]
    assert len(table) - 1 == len(stored) > 0
    counts = [json.loads(c) for _hour, c in stored]
    cowork = table[0].index("purpose:cowork")  # a first visit's purpose, per hour
    assert sum(int(row[cowork]) for row in table[1:]) == sum(
        c.get("by_purpose", {}).get("cowork", 0) for c in counts
    )
    assert sum(int(row[2]) for row in table[1:]) == sum(c.get("signins", 0) for c in counts)
    first = datetime.fromtimestamp(stored[0][0], UTC)
    assert table[1][1] == first.strftime("%Y-%m-%dT%H:%MZ")


def test_nobody_else_reaches_a_visitor_or_changes_one(app):
    zoe = handle_of(app.path, app.ids["zoe"])
    stranger = app.test_client()
    for path in ("/admin/visitors", f"/admin/visitors/{zoe}", f"/admin/visitors/{zoe}/erase"):
        answer = stranger.get(path)
        assert answer.status_code == 302 and "/admin/login" in answer.location
    assert stranger.post(f"/admin/visitors/{zoe}/erase").status_code in (302, 400)
    assert handle_of(app.path, app.ids["zoe"]) == zoe
    admin = app.test_client()
    log_in(admin)
    assert admin.post(f"/admin/visitors/{zoe}/erase").status_code == 400  # no CSRF token
    assert admin.post(f"/admin/visitors/{zoe}/erase", data={"csrf_token": "x"}).status_code == 400
    assert handle_of(app.path, app.ids["zoe"]) == zoe


# --- hostile input: a 4xx, never a 500 ---


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One kiosk as in production (errors rendered, not raised), an admin logged in."""
    folder = tmp_path_factory.mktemp("hostile-visitors")
    cfg = config.load(write_space_config(folder, broker_port=1))
    app = create_app(cfg, {})
    make_admin(cfg.database.path)
    client = app.test_client()
    for name in ("Ana Pérez", "Ana Pérez", "Lin Mei", "عمر خالد", "李小龍"):
        assert client.post("/sign-in/new", data=visitor_form(name, "1234")).status_code == 201
    log_in(client)
    client.token = csrf_token(client, "/admin/visitors")
    log = ErrorLog()
    logging.getLogger().addHandler(log)
    app.logger.addHandler(log)
    yield app, client, log
    logging.getLogger().removeHandler(log)


NASTY = ["", " ", "\x00", "\u202eevil", "\u2066x\u2069", "\u200b", "\ufffd", "%", "_", "\\",
         "'", '"', "<b>", "a" * 255, "x" * 5000, "99999999999999999999", "-1", "0" * 24,
         "F" * 24, "../..", "%2e%2e", "Ana", "ana@", "@", "a\nb", "👩🏽‍💻"]  # fmt: skip
text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
)


def _handle(draw, db) -> str:
    real = [h for (h,) in db.execute("SELECT handle FROM visitors WHERE handle IS NOT NULL")]
    value = draw(
        st.one_of(
            st.sampled_from(real or ["0" * 24]),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            text,
        )
    )
    return quote(value, safe="") or "x"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_searches_handles_and_forms_get_a_4xx_never_a_500(hostile, data):
    app, client, log = hostile
    db = sqlite3.connect(app.config["SPACE"].database.path)
    try:
        one, two = _handle(data.draw, db), _handle(data.draw, db)
    finally:
        db.close()
    query = {"q": data.draw(text)}
    form = {
        "csrf_token": client.token,
        "pin": data.draw(text),
        "pin2": data.draw(text),
        "remove": data.draw(st.sampled_from(["", "yes", "no"])),
        "from": data.draw(st.one_of(text, st.dates().map(str))),
        "to": data.draw(st.one_of(text, st.dates().map(str))),
    }
    method, path, kwargs = data.draw(
        st.sampled_from(
            [
                ("GET", "/admin/visitors", {"query_string": query}),
                ("GET", f"/admin/visitors/{one}", {}),
                ("GET", f"/admin/visitors/{one}/erase", {}),
                ("GET", f"/admin/visitors/{one}/merge", {"query_string": query}),
                ("GET", f"/admin/visitors/{one}/merge/{two}", {}),
                ("POST", f"/admin/visitors/{one}/export", {"data": form}),
                ("POST", f"/admin/visitors/{one}/pin", {"data": form}),
                ("POST", f"/admin/visitors/{one}/merge/{two}", {"data": form}),
                ("POST", "/admin/visitors/visits.csv", {"data": form}),
                ("GET", "/admin/visitors/hourly.csv", {"query_string": form}),
            ]
        )
    )
    answer = client.open(path, method=method, **kwargs)
    assert answer.status_code < 500, (method, path, kwargs, answer.text[:300])
    assert not log.bad, log.bad
    if answer.status_code >= 400 and answer.mimetype == "text/html":
        assert 'role="alert"' in answer.text or 'class="message"' in answer.text


# --- in a real Chromium, on a running kiosk ---


class Kiosk:
    def __init__(self, url: str, path: Path, ids: dict[str, int]):
        self.url, self.path, self.ids = url, path, ids


@pytest.fixture
def kiosk(tmp_path, services):
    toml = write_space_config(tmp_path, broker_port=1)
    cfg = config.load(toml)
    open_store(cfg.database.path, SPACE_MIGRATIONS).close()
    make_admin(cfg.database.path)
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    secret = (cfg.database.path.parent / "kiosk-secret").read_text().strip()  # the kiosk's
    return Kiosk(url, cfg.database.path, seed(cfg.database.path, secret, time.time()))


def page_of(browser, size, touch: bool = True):
    width, height = size
    context = browser.new_context(
        viewport={"width": width, "height": height},
        has_touch=touch,
        is_mobile=size == PHONE,
        locale="en-GB",
        accept_downloads=True,
    )
    return context.new_page()


def find(page, kiosk: Kiosk, query: str) -> None:
    page.goto(kiosk.url + "admin/visitors")
    page.get_by_label("Find a visitor by name or e-mail").fill(query)
    page.get_by_role("button", name="Find", exact=True).click()


@pytest.mark.parametrize("size", [PHONE, KIOSK_SCREEN], ids=["phone", "kiosk-screen"])
def test_find_visits_export_erase_then_the_name_is_nowhere_in_the_files(kiosk, browser, size):
    page = page_of(browser, size)
    log_in(page, kiosk.url)
    counted = rows(kiosk.path, "SELECT count(*) FROM visits")
    find(page, kiosk, "zoë")
    page.get_by_role("link", name=re.compile(ERASED)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ERASED)
    expect(page.locator("#visits tbody tr")).to_have_count(4)
    overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the visitor's page scrolls sideways at {size}"

    with page.expect_download() as download:
        page.get_by_role("button", name="Download (JSON)").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["visitor"]["name"] == ERASED and len(exported["visits"]) == 4

    page.get_by_role("link", name="Erase this visitor…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Erase {ERASED}?")
    page.get_by_role("link", name="Cancel").click()  # second thoughts change nothing
    assert handle_of(kiosk.path, kiosk.ids["zoe"]) is not None
    page.get_by_role("link", name="Erase this visitor…").click()
    page.get_by_role("button", name="Erase for good").click()
    expect(page.get_by_role("status")).to_have_text(
        "The visitor was erased. Their visits still count, without a name."
    )
    # The byte search: the kiosk scrubbed its log; nothing of her is in either file.
    assert_gone(kiosk.path, ERASED, ERASED_EMAIL)
    assert rows(kiosk.path, "SELECT count(*) FROM visits") == counted
    logged = rows(
        kiosk.path,
        "SELECT action, detail FROM audit_log WHERE action LIKE '%visitor%' ORDER BY id",
    )
    assert logged == [
        ("exported a visitor's data", f"visitor {kiosk.ids['zoe']}"),
        ("erased a visitor", f"visitor {kiosk.ids['zoe']}"),
    ]
    page.context.close()


def test_namesakes_told_apart_a_pin_reset_and_the_visitor_back_in(kiosk, browser, screenshots):
    page = page_of(browser, KIOSK_SCREEN)  # an admin at the kiosk's own 800x480 screen
    log_in(page, kiosk.url)
    find(page, kiosk, "Ana")
    found = page.locator("#found li")
    expect(found).to_have_count(2)
    facts = found.locator(".facts").all_inner_texts()
    assert facts[0] != facts[1] and "•••@example.org" in facts[0]
    screenshot(page, screenshots / "admin-visitors.png")
    found.first.get_by_role("link").click()
    expect(page.locator(".visitor-facts")).to_contain_text("ana@example.org")
    screenshot(page, screenshots / "admin-visitor.png")

    # She forgot her PIN: she types a new one, twice.
    page.get_by_label("New PIN").fill("9753")
    page.get_by_label("The same PIN again").fill("9753")
    page.get_by_role("button", name="Set the new PIN").click()
    expect(page.get_by_role("status")).to_have_text(
        "The PIN was changed. The visitor can sign in with it now."
    )
    assert rows(kiosk.path, "SELECT action FROM audit_log ORDER BY id DESC LIMIT 1") == [
        ("reset a visitor's PIN",)
    ]

    # At the visitor screen: two letters, her masked name, the new PIN — and in.
    screen = page_of(browser, KIOSK_SCREEN)
    you = Visitor(screen)
    screen.goto(kiosk.url)
    you.tap(screen.get_by_role("link", name="Sign in", exact=True))
    you.type("An")
    match = screen.get_by_role("link", name=re.compile("•••"))
    expect(match).to_have_count(1)  # only the Ana with a PIN is offered by letters
    you.tap(match)
    you.pin("9753")
    expect(screen.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    page.context.close()
    screen.context.close()


def test_merging_two_records_on_a_phone(kiosk, browser):
    page = page_of(browser, PHONE)
    log_in(page, kiosk.url)
    keep = handle_of(kiosk.path, kiosk.ids["ana1"])
    page.goto(kiosk.url + f"admin/visitors/{keep}")
    page.get_by_role("link", name="Merge another record into this one…").click()
    page.locator("#found").get_by_role("link", name=re.compile("mail.example")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Merge these two records?")
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(
        "The two records are one now; the other was erased."
    )
    expect(page.locator(".visitor-facts")).to_contain_text("5")
    assert handle_of(kiosk.path, kiosk.ids["ana2"]) is None
    assert_gone(kiosk.path, "ana.perez@mail.example")
    page.context.close()


def test_every_connection_to_the_store_zeroes_what_it_deletes(tmp_path):
    """An erasure zeroes the bytes it deletes, but not copies of them that an earlier
    write left in a page's free space: a row that grew or shrank (a wrong PIN counted, a
    guideline accepted) leaves its old copy behind unless the connection that wrote it
    zeroes too. So every connection the services open must have secure_delete on, as
    Debian's and Raspberry Pi OS's SQLite is built to (SQLITE_SECURE_DELETE)."""
    path = tmp_path / "space.db"
    open_store(path, SPACE_MIGRATIONS).close()
    assert connect(path).execute("PRAGMA secure_delete").fetchone() == (1,)

    careless = connect(path)
    careless.execute("PRAGMA secure_delete = OFF")  # what a build without it would do
    zoe = visits.sign_in_new(careless, visits.NewVisitor(ERASED), "k").visitor_id
    for n in range(3):  # others after her on the page: her row, grown, has to move
        visits.sign_in_new(careless, visits.NewVisitor(f"{STAYS} {n}"), "k")
    careless.execute("UPDATE visitors SET pin_failures = 4, pin_rest_until = 1e9 WHERE id = ?",
                     [zoe])  # fmt: skip
    people.erase(connect(path), zoe)  # with secure_delete on, as every erasure is
    scrub(connect(path))
    assert ERASED.encode() in path.read_bytes()  # a stale copy the erasure never saw
