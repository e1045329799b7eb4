"""The kiosk's sign-in and sign-out: what a visitor sees, and what bad input gets."""

from __future__ import annotations

import re
import sqlite3

import pytest
from conftest import http_ready, write_space_config
from playwright.sync_api import expect

from kiosk import create_app
from spacekiosk import config


@pytest.fixture
def app(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1883))
    return create_app(cfg, {"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


class KioskActions:
    """What a visitor does, over HTTP."""

    def __init__(self, client):
        self.client = client

    def sign_in(self, name: str, request_id: str | None = None):
        data = {"name": name}
        if request_id:
            data["request_id"] = request_id
        return self.client.post("/sign-in", data=data)

    def sign_out(self, visit_id: int):
        return self.client.post(f"/sign-out/{visit_id}")


@pytest.fixture
def kiosk(client):
    return KioskActions(client)


def rows(app, sql: str):
    path = app.config["SPACE"].database.path
    return sqlite3.connect(path).execute(sql).fetchall()


def test_sign_in_then_out(app, kiosk):
    response = kiosk.sign_in("Ana María Pérez")
    assert response.status_code == 201
    assert "Welcome, Ana" in response.text
    (visit_id,) = rows(app, "SELECT id FROM visits WHERE signed_out_at IS NULL")[0]
    welcome = kiosk.client.get("/").text
    assert "Ana P." in welcome and "Pérez" not in welcome  # first name, last initial only
    response = kiosk.sign_out(visit_id)
    assert response.status_code == 200 and "Goodbye, Ana" in response.text
    assert rows(app, "SELECT closed_by FROM visits") == [("visitor",)]


def test_a_double_tap_makes_one_visit(app, kiosk):
    first = kiosk.sign_in("Lin Mei", request_id="tap-1")
    second = kiosk.sign_in("Lin Mei", request_id="tap-1")
    assert first.status_code == second.status_code == 201
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_signing_in_twice_says_since_when(app, kiosk):
    kiosk.sign_in("Juan Carlos")
    again = kiosk.sign_in("  juan   carlos ")
    assert again.status_code == 409
    assert re.search(r"signed in since \d\d:\d\d", again.text)
    assert rows(app, "SELECT count(*) FROM visits") == [(1,)]


def test_signing_out_twice_is_refused(app, kiosk):
    kiosk.sign_in("Amani")
    (visit_id,) = rows(app, "SELECT id FROM visits")[0]
    assert kiosk.sign_out(visit_id).status_code == 200
    again = kiosk.sign_out(visit_id)
    assert again.status_code == 409 and "already signed out" in again.text
    assert kiosk.sign_out(9999).status_code == 404


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "Please enter your name"),
        ("   ", "Please enter your name"),
        ("x" * 81, "at most 80"),
        ("Ana\x00", "control characters"),
        ("Ana\u202eevil", "control characters"),
    ],
)
def test_bad_names_get_a_400_and_store_nothing(app, kiosk, name, words):
    response = kiosk.sign_in(name)
    assert response.status_code == 400
    assert words in response.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(0,)]


def test_any_script_and_emoji_are_names(app, kiosk):
    for name in ("Γιώργος Παπαδόπουλος", "林美玲", "ಅನಿಲ್ ಕುಮಾರ್", "Zoë 👩🏽‍💻"):
        assert kiosk.sign_in(name).status_code == 201, name
    assert len(rows(app, "SELECT name FROM visitors")) == 4


def test_html_is_shown_escaped(app, kiosk):
    response = kiosk.sign_in("<script>alert(1)</script> Bob")
    assert response.status_code == 201
    assert "<script>alert(1)" not in response.text
    assert "&lt;script&gt;" in response.text


def test_malformed_requests_are_4xx(kiosk):
    assert kiosk.client.post("/sign-in").status_code == 400
    assert kiosk.client.get("/sign-in").status_code == 405
    assert kiosk.client.post("/sign-out/abc").status_code == 404
    assert kiosk.client.post("/sign-in", data={"name": "x" * 70_000}).status_code == 413


def test_a_locked_database_is_never_welcomed(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1883)
    toml.write_text(
        toml.read_text().replace('path = "space.db"', 'path = "space.db"\nbusy_timeout_ms = 200')
    )
    app = create_app(config.load(toml), {"TESTING": True})
    blocker = sqlite3.connect(tmp_path / "space.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        response = app.test_client().post("/sign-in", data={"name": "Locked Out"})
    finally:
        blocker.execute("ROLLBACK")
    assert response.status_code == 503
    assert "could not save" in response.text and "Welcome" not in response.text
    assert rows(app, "SELECT count(*) FROM visitors") == [(0,)]
    assert app.test_client().post("/sign-in", data={"name": "Locked Out"}).status_code == 201


def test_status_api(app, kiosk):
    kiosk.sign_in("Wanjiru Kamau")
    status = kiosk.client.get("/api/v1/status").get_json()
    assert status["people_signed_in"] == 1
    assert status["sync"]["state"] == "idle"  # nothing aggregated yet


def test_the_screens_in_a_real_browser(tmp_path, services, touch_page, screenshots):
    toml = write_space_config(tmp_path, broker_port=1)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    kiosk = services("kiosk", "--config", str(toml))
    http_ready(url + "healthz", kiosk)
    page = touch_page
    page.goto(url)
    name = page.get_by_label("Name")
    name.fill("Γιώργος Παπαδόπουλος")
    page.get_by_role("button", name="Sign in").tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Γιώργος")
    page.get_by_role("link", name="Done").tap()
    expect(page.get_by_text("1 person signed in now")).to_be_visible()
    # The field is empty again: nothing of the last visitor is left on screen.
    expect(page.get_by_label("Name")).to_have_value("")
    page.screenshot(path=screenshots / "kiosk-sign-out.png")
    page.get_by_role("button", name="Sign out Γιώργος Π.").tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Goodbye, Γιώργος")
    page.get_by_role("link", name="Done").tap()
    expect(page.get_by_text("Nobody is signed in.")).to_be_visible()
    # An empty form is refused with a message, not a server error.
    page.get_by_label("Name").fill("   ")
    page.get_by_role("button", name="Sign in").tap()
    expect(page.get_by_role("alert")).to_contain_text("Please enter your name")


def test_an_idle_screen_goes_back_to_welcome_and_forgets(tmp_path, services, touch_page):
    toml = write_space_config(tmp_path, broker_port=1)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    page = touch_page
    page.clock.install()
    page.goto(url)
    page.get_by_label("Name").fill("Half Typed")
    page.clock.run_for("00:45")
    page.get_by_label("Name").press("End")  # a touch of the keyboard restarts the timer
    page.clock.run_for("00:45")
    expect(page.get_by_label("Name")).to_have_value("Half Typed")
    page.clock.run_for("00:20")  # now 65 s without a touch (idle_seconds is 60)
    expect(page.get_by_label("Name")).to_have_value("")
