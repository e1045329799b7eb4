"""The first visit in steps, in a real Chromium by touch alone: at 800x480 (the official
7-inch display) and 480x800 (the same, turned), every step's targets are on the screen
without scrolling, the on-screen keyboard never hides the field being typed or the
step's Next, and a refusal from the server opens the step that holds the refused field.
Without JavaScript the same form shows every step at once and still signs in.

The time and taps of a first visit are printed at the end of the run (pytest's terminal
summary), whatever the verbosity."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import http_ready, screenshot, write_space_config
from playwright.sync_api import expect
from test_screens import CONTRAST, NAMELESS, Visitor

from spacekiosk import config
from spacekiosk.config import LANGUAGES

# Several paragraphs, as a space's admins may write them: longer than the screen has room
# for at 800x480, so the box scrolls and says so.
GUIDELINES = "\n\n".join(
    [
        "Be kind and respectful to everyone, whoever they are and wherever they come from.",
        "Help keep the space clean: put tools back where you found them, and wash your cup.",
        "Ask before you photograph or film people, and respect a no.",
        "Food and drink stay away from the electronics bench and the laser cutter.",
        "Only use the machines you have been shown how to use. Ask a volunteer for a "
        "first lesson: we are glad to give one.",
        "Report anything broken, unsafe or worrying to a volunteer, or write to the space.",
        "Sign out when you leave, so that we know who is in if the alarm sounds.",
    ]
)

FIGURES: list[str] = []  # the measured first visits, printed in the terminal summary


class _Summary:
    """Prints the first visits' time and taps at the end of the run."""

    @staticmethod
    def pytest_terminal_summary(terminalreporter):
        if FIGURES:
            terminalreporter.section("first visit by touch (machine time, taps)")
            for line in FIGURES:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
def _summary(pytestconfig):
    if not pytestconfig.pluginmanager.has_plugin("first-visit-summary"):
        pytestconfig.pluginmanager.register(_Summary(), "first-visit-summary")


def _kiosk(tmp_path, services, languages: str = "") -> str:
    today = datetime.now(ZoneInfo("Europe/Athens")).date().isoformat()  # the space's day
    toml = write_space_config(
        tmp_path,
        broker_port=1,
        extra=languages
        + f'[[events]]\nname = "Repair café"\ndate = "{today}"\nhours = "18:00-21:00"\n',
    )
    guidelines = f"[kiosk]\nguidelines = {{ en = '''{GUIDELINES}''' }}\n"
    toml.write_text(toml.read_text().replace("[kiosk]\n", guidelines))
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return url


@pytest.fixture
def kiosk_url(tmp_path, services):
    return _kiosk(tmp_path, services)


def _page(browser, width: int, height: int, **options):
    context = browser.new_context(
        viewport={"width": width, "height": height}, has_touch=True, locale="en-GB", **options
    )
    return context, context.new_page()


# Every target of the step on screen, with its box: a radio or checkbox is tapped by its
# label, which is what a finger aims at; the guidelines' box is there to be scrolled.
TARGETS = """() => {
  const step = document.querySelector('[data-step]:not([hidden])');
  const all = [...document.querySelectorAll(
      'main a, main button, main input:not([type=hidden]), .guidelines-text')]
    .filter(e => e.offsetParent !== null)
    .filter(e => !e.closest('[data-step]') || e.closest('[data-step]') === step)
    .filter(e => !e.closest('.bar'));
  return all.map(e => {
    const target = (e.type === 'radio' || e.type === 'checkbox') ? e.closest('label') : e;
    const r = target.getBoundingClientRect();
    return {name: (target.textContent.trim() || e.name || e.id).slice(0, 40),
            box: e.classList.contains('guidelines-text'),
            x: r.x, y: r.y, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  });
}"""


def check_step(page, heading: str, counter: str, expected: set[str]) -> None:
    """The step shows, says where it is, and every target is on screen, big enough,
    without scrolling."""
    expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()
    expect(page.get_by_role("status")).to_have_text(counter)
    names = on_screen(page, heading)
    assert expected <= names, (heading, names)
    assert page.evaluate(NAMELESS) == [] and page.evaluate(CONTRAST) == []


def on_screen(page, where: str) -> set[str]:
    """Every target of the step shown is on screen and at least 44 px, with nothing to
    scroll; returns their names."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    assert page.evaluate("scrollY") == 0
    assert page.evaluate("document.documentElement.scrollHeight") <= height, where
    targets = page.evaluate(TARGETS)
    for t in targets:
        where = f"{where}: {t['name']!r} at {width}x{height}: {t}"
        assert t["x"] >= 0 and t["y"] >= 0, where
        assert t["right"] <= width and t["bottom"] <= height, where
        if not t["box"]:
            assert t["height"] >= 44 and t["width"] >= 44, where
    return {t["name"] for t in targets}


def above_keyboard(page, *locators) -> None:
    """Each of `locators` wholly on screen and above the on-screen keyboard."""
    board = page.locator("#keyboard")
    expect(board).to_be_visible()
    top = board.bounding_box()["y"]
    for locator in locators:
        box = locator.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= top, (
            locator,
            box,
            top,
        )


@pytest.mark.parametrize("width,height", [(800, 480), (480, 800)])
def test_a_first_visit_by_touch_fits_every_step_on_the_screen(
    kiosk_url, browser, screenshots, tmp_path, width, height, record_property
):
    context, page = _page(browser, width, height)
    you = Visitor(page)
    page.goto(kiosk_url)
    paused = 0.0  # screenshots are for the docs, not the visitor's time

    def shot(name: str) -> None:
        nonlocal paused
        if (width, height) == (800, 480):
            began = time.monotonic()
            screenshot(page, screenshots / f"{name}.png")
            paused += time.monotonic() - began

    started = time.monotonic()
    you.tap(page.get_by_role("link", name="Sign in", exact=True))
    expect(page.locator("#keyboard")).to_be_visible()  # drawn: the typing reads its layout
    you.type("Ana Perez")
    you.key("Done")

    check_step(
        page,
        "Why are you here today?",
        "Step 1 of 3",
        {"Coworking or a project", "I'm here for today's event: Repair café", "Cancel", "Next"},
    )
    shot("kiosk-first-visit-1")
    you.tap(page.get_by_label("Coworking or a project"))
    you.tap(page.get_by_role("button", name="Next"))

    details = page.get_by_role("heading", level=2, name="E-mail and PIN (optional)")
    expect(details).to_be_focused()
    check_step(
        page,
        "E-mail and PIN (optional)",
        "Step 2 of 3",
        {"email", "pin", "pin2", "Cancel", "Back", "Skip", "Next"},
    )
    shot("kiosk-first-visit-2")
    next_ = page.get_by_role("button", name="Next")
    you.tap(page.get_by_label("Choose a 4-digit PIN for next time (optional)"))
    above_keyboard(page, page.get_by_label("Choose a 4-digit PIN for next time (optional)"), next_)
    you.pin("2580")
    you.tap(page.get_by_label("The same PIN again"))
    above_keyboard(page, page.get_by_label("The same PIN again"), next_)
    you.pin("2580")
    shot("kiosk-first-visit-2-keyboard")
    you.tap(next_)  # straight from the keyboard: Next puts it away

    guidelines = page.get_by_role("heading", level=2, name="Participation guidelines")
    expect(guidelines).to_be_focused()
    expect(page.locator("#keyboard")).to_be_hidden()
    check_step(
        page,
        "Participation guidelines",
        "Step 3 of 3",
        {"I accept the participation guidelines", "Cancel", "Back", "Sign in"},
    )
    box = page.get_by_role("region", name="Participation guidelines")
    if page.evaluate(
        "() => { const b = document.querySelector('.guidelines-text');"
        " return b.scrollHeight > b.clientHeight + 1; }"
    ):
        expect(page.get_by_text("There is more: scroll the box to read it all.")).to_be_visible()
    else:
        expect(page.get_by_text("There is more: scroll the box to read it all.")).to_be_hidden()
    expect(box).to_contain_text("Sign out when you leave")
    shot("kiosk-first-visit-3")
    you.tap(page.get_by_label("I accept the participation guidelines"))
    you.tap(page.get_by_role("button", name="Sign in", exact=True))
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    seconds = time.monotonic() - started - paused

    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("SELECT purpose FROM visits").fetchall() == [("cowork",)]
    assert db.execute("SELECT pin_hash IS NOT NULL FROM visitors").fetchall() == [(1,)]
    record_property("first_visit_taps", you.taps)
    record_property("first_visit_seconds", round(seconds, 2))
    FIGURES.append(
        f"{width}x{height}: {seconds:.1f} s, {you.taps} taps "
        f"(name 'Ana Perez' on the kiosk's keyboard, a purpose, a PIN twice, the guidelines)"
    )
    print(f"\nfirst visit at {width}x{height}: {you.taps} taps, {seconds:.1f} s")
    assert seconds <= 30
    context.close()


@pytest.mark.parametrize("width,height", [(800, 480), (480, 800)])
def test_the_keyboard_never_hides_the_field_or_next(kiosk_url, browser, width, height):
    context, page = _page(browser, width, height)
    page.goto(kiosk_url + "sign-in")
    page.get_by_label("Name", exact=True).fill("Kim Lee")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    page.get_by_role("button", name="Next").tap()
    email = page.get_by_label("E-mail (optional)")
    email.tap()
    above_keyboard(page, email, page.get_by_role("button", name="Next"))
    for ch in "kim@example.org":
        page.locator("#keyboard").get_by_role("button", name=ch, exact=True).tap()
    expect(email).to_have_value("kim@example.org")
    above_keyboard(page, email, page.get_by_role("button", name="Next"))
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.locator("#keyboard")).to_be_hidden()
    check_step(page, "E-mail and PIN (optional)", "Step 2 of 3", {"email", "pin", "Next"})
    context.close()


def test_back_skip_and_a_refusal_open_the_right_step(kiosk_url, touch_page, tmp_path):
    page = touch_page
    page.goto(kiosk_url + "sign-in")
    page.get_by_label("Name", exact=True).fill("Sam Okoro")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    status = page.get_by_role("status")
    expect(status).to_have_text("Step 1 of 3")
    expect(status).to_have_attribute("aria-live", "polite")
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill("1234")
    page.get_by_label("The same PIN again").fill("4321")
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("I accept the participation guidelines").tap()
    page.get_by_role("button", name="Sign in", exact=True).tap()

    # The server refuses the PINs: the page opens on step 2, where they are.
    expect(page.get_by_role("alert")).to_have_text(
        "The two PINs are not the same. Please try again."
    )
    expect(page.get_by_role("heading", level=2, name="E-mail and PIN (optional)")).to_be_focused()
    expect(status).to_have_text("Step 2 of 3")
    expect(page.get_by_label("Coworking or a project")).to_be_hidden()
    expect(page.get_by_label("I accept the participation guidelines")).to_be_hidden()
    assert page.evaluate(NAMELESS) == [] and page.evaluate(CONTRAST) == []

    # Skip gives nothing on this step, whatever was typed; Back and Next keep it so.
    page.get_by_label("E-mail (optional)").fill("not an address")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()  # the PINs show again
    page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill("12")
    page.get_by_role("button", name="Skip").tap()
    expect(status).to_have_text("Step 3 of 3")
    expect(page.get_by_label("I accept the participation guidelines")).to_be_checked()
    page.get_by_role("button", name="Back").tap()
    expect(page.get_by_label("E-mail (optional)")).to_have_value("")
    expect(page.get_by_label("Choose a 4-digit PIN for next time (optional)")).to_have_value("")
    page.get_by_role("button", name="Back").tap()
    expect(status).to_have_text("Step 1 of 3")
    expect(page.get_by_role("heading", level=2, name="Why are you here today?")).to_be_focused()
    page.get_by_label("A meeting").tap()
    page.get_by_role("button", name="Next").tap()
    page.get_by_role("button", name="Next").tap()
    page.get_by_role("button", name="Sign in", exact=True).tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Sam")

    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("SELECT email, pin_hash FROM visitors").fetchall() == [(None, None)]
    assert db.execute("SELECT purpose FROM visits").fetchall() == [("meeting",)]


def test_without_javascript_the_one_page_form_still_signs_in(kiosk_url, browser, tmp_path):
    context, page = _page(browser, 800, 480, java_script_enabled=False)
    page.goto(kiosk_url + "sign-in")
    page.get_by_label("Name", exact=True).fill("Noor Haddad")
    page.get_by_role("button", name="Next").click()
    steps = ("Why are you here today?", "E-mail and PIN (optional)", "Participation guidelines")
    for heading in steps:
        expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()
    for only_with_script in ("Next", "Back", "Skip"):
        expect(page.get_by_role("button", name=only_with_script)).to_have_count(0)
    expect(page.get_by_text("Step 1 of 3")).to_have_count(0)
    expect(page.get_by_role("region", name="Participation guidelines")).to_contain_text(
        "Sign out when you leave"
    )
    page.get_by_label("Something else").check()
    page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill("8642")
    page.get_by_label("The same PIN again").fill("8642")
    page.get_by_role("button", name="Sign in", exact=True).click()  # not accepted yet
    expect(page.get_by_role("alert")).to_have_text(
        "Please accept the participation guidelines to sign in."
    )
    expect(page.get_by_label("Something else")).to_be_checked()
    page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill("8642")
    page.get_by_label("The same PIN again").fill("8642")
    page.get_by_label("I accept the participation guidelines").check()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Noor")
    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("SELECT purpose FROM visits").fetchall() == [("other",)]
    assert db.execute("SELECT pin_hash IS NOT NULL FROM visitors").fetchall() == [(1,)]
    context.close()


def test_every_step_fits_in_every_language(tmp_path, services, browser):
    """Greek, Filipino or Kannada words are longer than English ones: each step, and the
    keyboard beside the PIN and the e-mail, still fit both ways up in each language."""
    languages = f"[space]\nlanguages = {list(LANGUAGES)!r}\n".replace("'", '"')
    url = _kiosk(tmp_path, services, languages)
    for width, height in ((800, 480), (480, 800)):
        context, page = _page(browser, width, height)
        for lang in LANGUAGES:
            page.goto(f"{url}lang/{lang}?next=/sign-in")
            page.fill("#name", "Ana Perez")
            with page.expect_navigation():
                page.locator("#keyboard button").last.tap()  # ✓, whatever its name
            for step in ("why", "details", "guidelines"):
                shown = page.locator(f"[data-step={step}]")
                expect(shown).to_be_visible()
                on_screen(page, f"{lang}, step {step}")
                if step == "details":
                    ahead = shown.locator("[data-go=next]")
                    for field in ("#pin", "#email"):
                        page.locator(field).tap()
                        above_keyboard(page, page.locator(field), ahead)
                        page.locator("#keyboard button").last.tap()  # ✓: put it away
                        expect(page.locator("#keyboard")).to_be_hidden()
                if step != "guidelines":
                    shown.locator("[data-go=next]").tap()
        context.close()
