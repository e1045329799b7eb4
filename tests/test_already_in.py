"""A visitor who is still signed in and signs in again is most likely leaving: the kiosk
says since when they are in and offers one tap to sign out, through the sign-out list's
own route, instead of sending them back to the name screen with a warning."""

from __future__ import annotations

import re
import sqlite3

import pytest
from conftest import http_ready, screenshot, write_space_config
from playwright.sync_api import expect
from test_kiosk import KioskActions, make_app, rows
from test_screens import CONTRAST, NAMELESS, SMALL_TARGETS, Visitor

from spacekiosk import config
from spacekiosk.config import LANGUAGES

OFFER = re.compile(r'<form method="post" action="/sign-out/([0-9a-f]{24})">')


@pytest.fixture
def kiosk(tmp_path):
    return KioskActions(make_app(tmp_path).test_client())


def test_signing_in_again_offers_to_sign_out(kiosk):
    kiosk.first_visit("Juan Carlos Pérez", pin="1234")
    again = kiosk.returning(1, "1234")
    assert again.status_code == 409
    assert "Already signed in" in again.text and "Sign out now" in again.text
    assert re.search(r"already signed in \(since \d\d?:\d\d", again.text)
    assert OFFER.findall(again.text) == [kiosk.visit(1)]  # the visit's handle, not its id
    assert "Pérez" not in again.text and "Carlos" not in again.text
    assert kiosk.handle(1) not in again.text.replace("/sign-in/returning/", "")  # no link back
    assert rows(kiosk.client.application, "SELECT count(*) FROM visits") == [(1,)]

    gone = kiosk.sign_out(OFFER.findall(again.text)[0])
    assert gone.status_code == 200 and "Goodbye, Juan" in gone.text
    closed = "SELECT signed_out_at IS NOT NULL, closed_by FROM visits"
    assert rows(kiosk.client.application, closed) == [(1, "visitor")]
    # The page is old now: its button is refused as the list's would be, not repeated.
    twice = kiosk.sign_out(OFFER.findall(again.text)[0])
    assert twice.status_code == 409 and "already signed out at" in twice.text


def test_the_offer_needs_the_pin(kiosk):
    """A wrong PIN says so, as always: the offer, and the visit's handle, come only to
    whoever proved who they are."""
    kiosk.first_visit("Amani Njeri", pin="1234")
    wrong = kiosk.returning(1, "9999")
    assert wrong.status_code == 403 and "PIN is not right" in wrong.text
    assert "Sign out now" not in wrong.text and kiosk.visit(1) not in wrong.text


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang not in ("en", "es_CO")])
def test_the_offer_speaks_each_language(tmp_path, lang):
    extra = f'[space]\nlanguages = ["en", "{lang}"]\n'
    app = make_app(tmp_path, extra=extra)
    kiosk = KioskActions(app.test_client())
    kiosk.first_visit("Lin Mei", pin="1234")
    kiosk.client.get(f"/lang/{lang}")
    again = kiosk.returning(1, "1234")
    assert again.status_code == 409
    assert "Sign out now" not in again.text and "Already signed in" not in again.text


@pytest.fixture
def kiosk_url(tmp_path, services):
    toml = write_space_config(tmp_path, broker_port=1)
    toml.write_text(toml.read_text().replace("[kiosk]\n", "[kiosk]\nidle_seconds = 10\n"))
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return url


def test_a_visitor_still_in_signs_out_from_the_sign_in(
    kiosk_url, touch_page, tmp_path, screenshots
):
    page, you = touch_page, Visitor(touch_page)
    page.goto(kiosk_url + "sign-in")
    page.get_by_label("Name", exact=True).fill("Juan Pérez")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    page.get_by_role("button", name="Next").tap()  # the first visit's steps
    page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill("2580")
    page.get_by_label("The same PIN again").fill("2580")
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("I accept the participation guidelines").check()
    page.get_by_role("button", name="Sign in", exact=True).tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Juan")

    def sign_in_again():
        page.goto(kiosk_url)
        you.tap(page.get_by_role("link", name="Sign in", exact=True))
        you.type("Ju")
        you.tap(page.get_by_role("link", name=re.compile("•••")))
        you.pin("2580")  # the fourth digit sends it
        expect(page.get_by_role("heading", level=1)).to_have_text("Already signed in")

    # Nobody touches the offer: the idle reset takes the screen back to Welcome.
    sign_in_again()
    expect(page).to_have_url(kiosk_url, timeout=20_000)

    sign_in_again()
    expect(page.get_by_role("status")).to_contain_text(re.compile(r"since \d\d?:\d\d"))
    assert "Pérez" not in page.locator("body").inner_text()
    assert page.evaluate(NAMELESS) == [] and page.evaluate(CONTRAST) == []
    assert page.evaluate(SMALL_TARGETS) == []
    button = page.get_by_role("button", name="Sign out now")
    box = button.bounding_box()
    assert box["y"] + box["height"] <= 480 and box["height"] >= 64  # big, and on screen
    expect(page.get_by_role("link", name="Back")).to_have_attribute("href", "/reset")
    screenshot(page, screenshots / "already-in-en.png")
    you.tap(button)
    expect(page.get_by_role("heading", level=1)).to_have_text("Goodbye, Juan")
    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("SELECT count(*), count(signed_out_at) FROM visits").fetchone() == (1, 1)
