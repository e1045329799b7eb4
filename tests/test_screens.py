"""Every visitor screen in a real Chromium with touch, at the official 7-inch display's
800x480 and beyond: the flows, the languages, the on-screen keyboard, phones, and the
page weight, privacy and accessibility rules."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from babel.messages.pofile import read_po
from conftest import ROOT, http_ready, screenshot, write_space_config
from playwright.sync_api import expect

from spacekiosk import config

CATALOGUES = ROOT / "kiosk" / "translations"
NAMES = {"en": "Ana Perez", "el": "Νίκος Παππάς", "zh_Hant_TW": "Lin Mei"}


def tr(lang: str):
    """The visitor-facing text in `lang`, straight from the shipped catalogue."""
    if lang == "en":
        return lambda msgid, **kw: msgid % kw if kw else msgid
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        cat = read_po(fh, locale=lang)

    def lookup(msgid: str, **kw) -> str:
        text = cat.get(msgid).string
        return text % kw if kw else text

    return lookup


@pytest.fixture
def kiosk_url(tmp_path, services):
    toml = write_space_config(tmp_path, broker_port=1)
    text = toml.read_text().replace(
        'languages = ["en", "el"]', 'languages = ["en", "el", "zh_Hant_TW"]'
    )
    text = text.replace("[kiosk]\n", '[kiosk]\npublic_url = "http://192.168.1.20:8080"\n')
    toml.write_text(text)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return url


class Visitor:
    """A person at the touchscreen: every action is a tap, and the taps are counted."""

    def __init__(self, page, lang: str = "en"):
        self.page = page
        self.t = tr(lang)
        self.taps = 0

    def tap(self, locator) -> None:
        locator.tap()
        self.taps += 1

    def key(self, name: str) -> None:
        self.tap(self.page.locator("#keyboard").get_by_role("button", name=name, exact=True))

    def type(self, text: str) -> None:
        """Type on the kiosk's own keyboard, switching layouts as a person would."""
        expect(self.page.locator("#keyboard")).to_be_visible()  # drawn: its layout is read below
        for ch in text:
            board = self.page.locator("#keyboard")
            if ch == " ":
                self.key(self.t("Space"))
                continue
            layout = board.get_attribute("data-layout")
            greek = "\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff"
            if greek and layout != "greek":
                self.key(f"ΑΒΓ ({self.t('Greek letters')})")
            elif ch.isascii() and ch.isalpha() and layout != "latin":
                self.key(f"ABC ({self.t('Latin letters')})")
            shown = board.get_by_role("button", name=ch, exact=True)
            if not shown.count():
                self.key(self.t("Shift"))
            self.key(ch)

    def pin(self, digits: str) -> None:
        for d in digits:
            self.key(d)


def shot(page, screenshots, name: str) -> None:
    screenshot(page, screenshots / f"{name}.png")


@pytest.mark.parametrize("lang", ["en", "el", "zh_Hant_TW"])
def test_first_visit_return_and_sign_out_in_each_language(
    kiosk_url, touch_page, screenshots, lang, record_property
):
    page, you, t = touch_page, Visitor(touch_page, lang), tr(lang)
    name = NAMES[lang]
    first = name.split()[0]
    page.goto(kiosk_url)
    choose_language(you, lang)
    shot(page, screenshots, f"welcome-{lang}")

    # First visit: name on the on-screen keyboard, then the short form.
    you.tap(page.get_by_role("link", name=t("Sign in"), exact=True))
    expect(page.locator("#keyboard")).to_be_visible()
    you.type(name)
    expect(page.get_by_label(t("Name"), exact=True)).to_have_value(name)
    shot(page, screenshots, f"sign-in-{lang}")
    you.key(t("Done"))
    expect(page.get_by_role("heading", level=1)).to_have_text(
        t("Welcome, %(name)s! It looks like your first visit.", name=first)
    )
    # The form comes in steps: why you came, a PIN (optional), the guidelines.
    you.tap(page.get_by_label(t("Coworking or a project")))
    you.tap(page.get_by_role("button", name=t("Next")))
    you.tap(page.get_by_label(t("Choose a 4-digit PIN for next time (optional)")))
    you.pin("2580")
    you.tap(page.get_by_label(t("The same PIN again")))
    you.pin("2580")
    you.tap(page.get_by_role("button", name=t("Next")))  # above the keyboard, and puts it away
    you.tap(page.get_by_label(t("I accept the participation guidelines")))
    shot(page, screenshots, f"first-visit-{lang}")
    you.tap(page.get_by_role("button", name=t("Sign in"), exact=True))
    expect(page.get_by_role("heading", level=1)).to_have_text(t("Welcome, %(name)s", name=first))
    shot(page, screenshots, f"welcome-back-{lang}")

    # The confirmation goes back to a blank Welcome by itself, in the default language.
    expect(page).to_have_url(kiosk_url, timeout=10_000)
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()

    # Sign out: one tap on your first name and initial.
    choose_language(you, lang)
    you.tap(page.get_by_role("link", name=t("Sign out"), exact=True))
    short = f"{first} {name.split()[-1][0]}."
    shot(page, screenshots, f"sign-out-{lang}")
    you.tap(page.get_by_role("button", name=short))
    expect(page.get_by_role("heading", level=1)).to_have_text(t("Goodbye, %(name)s", name=first))
    you.tap(page.get_by_role("link", name=t("Done")))

    # Returning: a few letters, your masked name, your PIN — and in.
    you.taps = 0
    started = time.monotonic()
    choose_language(you, lang)
    you.tap(page.get_by_role("link", name=t("Sign in"), exact=True))
    you.type(first[:2])
    match = page.get_by_role("link", name=re.compile("•••"))
    expect(match).to_have_count(1)
    assert name.split()[-1] not in match.inner_text()  # the surname stays masked
    you.tap(match)
    shot(page, screenshots, f"pin-{lang}")
    you.pin("2580")  # the fourth digit sends it
    expect(page.get_by_role("heading", level=1)).to_have_text(t("Welcome, %(name)s", name=first))
    seconds = time.monotonic() - started
    record_property("returning_taps", you.taps)
    record_property("returning_seconds", round(seconds, 2))
    print(f"\nreturning visitor ({lang}): {you.taps} taps, {seconds:.1f} s in the browser")
    letters = you.taps - 1 - 1 - 4 - (lang != "en")  # Sign in, the match, 4 digits, language
    assert letters <= 3  # two letters, and a layout switch at most


def choose_language(you: Visitor, lang: str) -> None:
    if lang != "en":
        code = lang.replace("_", "-")
        you.tap(you.page.locator(f'nav.languages a[lang="{code}"]'))
        expect(you.page.locator("html")).to_have_attribute("lang", code)


def test_the_screens_fit_portrait_and_full_hd(kiosk_url, browser, screenshots):
    for width, height in ((480, 800), (1920, 1080), (800, 480)):
        context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True)
        page = context.new_page()
        for path in ("", "sign-in", "sign-out"):
            page.goto(kiosk_url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"{path or 'welcome'} scrolls sideways at {width}x{height}"
            small = page.evaluate("""() => [...document.querySelectorAll(
                'a, button, input, summary')].filter(e => e.offsetParent !== null)
                .map(e => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect()])
                .filter(([_, r]) => r.height < 47.5 || r.width < 47.5).map(([n]) => n)""")
            assert small == [], f"targets under 48 px at {width}x{height}: {small}"
        page.goto(kiosk_url)
        screenshot(page, screenshots / f"welcome-{width}x{height}.png")
        context.close()


def test_the_kiosk_makes_no_outside_request_and_stays_light(kiosk_url, touch_page):
    page = touch_page
    seen: list[tuple[str, int]] = []
    page.on("requestfinished", lambda r: seen.append((r.url, len(r.response().body()))))
    page.goto(kiosk_url)
    page.get_by_role("link", name="Sign in", exact=True).tap()
    page.locator("#keyboard").get_by_role("button", name="Done").wait_for()
    page.get_by_label("Name", exact=True).fill("Budget Person")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    expect(page.get_by_label("I accept the participation guidelines")).to_be_attached()
    page.wait_for_load_state("networkidle")
    outside = [url for url, _ in seen if not url.startswith(kiosk_url)]
    assert outside == []
    total = sum(size for _, size in seen)
    print(f"\nwelcome + sign-in screens: {len(seen)} requests, {total / 1024:.1f} KB")
    assert total <= 150 * 1024


CONTRAST = """() => {
  const lum = c => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && !c.endsWith(', 0)') && c !== 'transparent') return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!el.offsetParent || !text) continue;
    const style = getComputedStyle(el);
    const a = lum(style.color), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && style.fontWeight >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(el.textContent.trim().slice(0, 30) + ratio.toFixed(2));
  }
  return bad;
}"""

NAMELESS = """() => [...document.querySelectorAll('a, button, input, select, textarea, summary')]
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) ||
                 e.textContent.trim() || e.getAttribute('title')))
  .map(e => e.outerHTML.slice(0, 80))"""


def test_every_control_has_a_name_and_text_meets_wcag_aa(kiosk_url, touch_page):
    page = touch_page
    screens = []
    page.goto(kiosk_url)
    screens.append("welcome")
    checks = {}

    def check(label):
        checks[label] = (page.evaluate(NAMELESS), page.evaluate(CONTRAST))

    check("welcome")
    page.get_by_role("link", name="Sign in", exact=True).tap()
    expect(page.locator("#keyboard")).to_be_visible()
    check("sign-in with keyboard")
    page.get_by_label("Name", exact=True).fill("Contrast Check")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    check("first visit, step 1")
    page.get_by_role("button", name="Next").tap()
    expect(page.get_by_role("heading", name="E-mail and PIN (optional)")).to_be_focused()
    check("first visit, step 2")
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("I accept the participation guidelines").wait_for()
    check("first visit, step 3")
    page.get_by_role("button", name="Sign in", exact=True).tap()  # without accepting
    expect(page.get_by_role("alert")).to_be_visible()
    check("first visit, with an error")
    page.get_by_label("I accept the participation guidelines").check()
    page.get_by_role("button", name="Sign in", exact=True).tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Contrast")
    check("confirmation")
    page.goto(kiosk_url + "sign-out")
    check("sign out")
    problems = {k: v for k, v in checks.items() if v != ([], [])}
    assert problems == {}


def test_each_key_s_name_holds_the_text_it_shows(kiosk_url, touch_page):
    """WCAG 2.5.3, label in name: a key that shows "ΑΒΓ" is found by a voice saying
    "ΑΒΓ"; a symbol key (⇧, ⌫) is named for what it does."""
    page = touch_page
    page.goto(kiosk_url + "sign-in")
    board = page.locator("#keyboard")
    expect(board).to_be_visible()
    seen = set()
    for layout in ("ΑΒΓ (Greek letters)", "123 (Numbers and symbols)", "ABC (Latin letters)"):
        keys = board.get_by_role("button").evaluate_all(
            "bs => bs.map(b => [b.textContent, b.getAttribute('aria-label')])"
        )
        for shown, name in keys:
            if any(ch.isalnum() for ch in shown):
                assert shown in name, (shown, name)
            seen.add(shown)
        board.get_by_role("button", name=layout, exact=True).tap()
    assert {"ΑΒΓ", "123", "ABC", "1"} - seen == set()
    assert {"a", "A"} & seen  # the letters were there too


def test_a_phone_signs_in_and_the_kiosk_greets(
    kiosk_url, browser, touch_page, tmp_path, screenshots
):
    kiosk = touch_page
    kiosk.goto(kiosk_url)
    expect(kiosk.locator("figure.qr svg")).to_be_visible()
    phone_ctx = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, locale="zh-TW"
    )
    phone = phone_ctx.new_page()
    phone.goto(kiosk_url + "phone")  # what the QR code encodes, on the space's network
    assert phone.locator("#keyboard").count() == 0  # the phone's own keyboard does this
    t = tr("zh_Hant_TW")  # the phone's browser asked for Chinese
    phone.get_by_label(t("Name"), exact=True).fill("林美玲")
    phone.get_by_role("button", name=t("Next")).tap()
    expect(phone.get_by_label(t("Coworking or a project"))).to_be_visible()
    phone.get_by_role("button", name=t("Next")).tap()  # the first visit's steps
    expect(phone.get_by_label(t("The same PIN again"))).to_be_visible()
    phone.get_by_role("button", name=t("Next")).tap()
    phone.get_by_label(t("I accept the participation guidelines")).check()
    screenshot(phone, screenshots / "phone-first-visit.png", full_page=True)
    phone.get_by_role("button", name=t("Sign in"), exact=True).tap()
    expect(phone.get_by_role("heading", level=1)).to_have_text(
        t("Welcome, %(name)s", name="林美玲")
    )
    expect(kiosk.locator("#greeting")).to_have_text("Welcome, 林美玲", timeout=10_000)
    shot(kiosk, screenshots, "kiosk-greets-phone")
    phone_ctx.close()


def test_two_people_of_one_name_each_sign_in_as_themselves(
    kiosk_url, touch_page, tmp_path, screenshots, record_property
):
    """The second Ana Perez types her whole name, is asked whether she is the Ana who
    came before, and says she is new; then each finds her own entry and PIN."""
    page, you = touch_page, Visitor(touch_page)
    for pin in ("1111", "2222"):
        page.goto(kiosk_url + "sign-in")
        page.get_by_label("Name", exact=True).fill("Ana Perez")
        page.locator("#keyboard").get_by_role("button", name="Done").tap()
        if pin == "2222":
            expect(page.get_by_role("heading", level=1)).to_have_text("Have you been here before?")
            expect(page.get_by_role("link", name=re.compile("•••"))).to_have_count(1)
            assert page.evaluate(NAMELESS) == [] and page.evaluate(CONTRAST) == []
            assert page.evaluate(SMALL_TARGETS) == []
            shot(page, screenshots, "same-name-en")
            page.get_by_role("button", name="No, I'm new here").tap()
        expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
        page.get_by_role("button", name="Next").tap()
        page.get_by_label("Choose a 4-digit PIN for next time (optional)").fill(pin)
        page.get_by_label("The same PIN again").fill(pin)
        page.get_by_role("button", name="Next").tap()
        page.get_by_label("I accept the participation guidelines").check()
        page.get_by_role("button", name="Sign in", exact=True).tap()
        expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    page.goto(kiosk_url + "sign-out")
    people = page.locator("ul.people button")
    expect(people).to_have_count(2)
    assert all(label.startswith("Ana P. · ") for label in people.all_inner_texts())
    people.first.tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Goodbye, Ana")

    # The first Ana, signed out, comes back another day: two entries, told apart.
    db = sqlite3.connect(tmp_path / "space.db")
    with db:
        db.execute("UPDATE visitors SET created_at = created_at - 40 * 86400 WHERE id = 1")
    you.taps = 0
    page.goto(kiosk_url + "sign-in")
    you.type("An")
    matches = page.get_by_role("link", name=re.compile("•••"))
    expect(matches).to_have_count(2)
    labels = matches.all_inner_texts()
    assert labels[0] != labels[1], labels
    you.tap(matches.first)
    you.pin("2222")  # the other Ana's PIN: not hers
    expect(page.get_by_role("alert")).to_contain_text("PIN is not right")
    you.pin("1111")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    record_property("same_name_returning_taps", you.taps)


SMALL_TARGETS = """() => [...document.querySelectorAll('a, button, input, summary')]
  .filter(e => e.offsetParent !== null)
  .map(e => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect()])
  .filter(([_, r]) => r.height < 47.5 || r.width < 47.5).map(([n]) => n)"""


def test_a_double_tap_and_hostile_names_in_the_browser(kiosk_url, touch_page, tmp_path):
    page = touch_page
    page.goto(kiosk_url + "sign-in")
    page.get_by_label("Name", exact=True).fill("<img src=x onerror=alert(1)> Mallory")
    page.locator("#keyboard").get_by_role("button", name="Done").tap()
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    page.get_by_role("button", name="Next").tap()
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("I accept the participation guidelines").check()
    # Two taps in the same instant: both reach the form before the page can change.
    page.get_by_role("button", name="Sign in", exact=True).evaluate(
        "b => { b.click(); b.click(); }"
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, <img")
    page.goto(kiosk_url + "sign-out")
    expect(page.get_by_role("button", name="<img M.")).to_have_count(1)
    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("SELECT count(*) FROM visits").fetchone() == (1,)
