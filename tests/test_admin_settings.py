"""The admins' Settings and Events pages: a change saved there reaches the visitor screens
at their next load and the sensors and sync services, running as real processes, without
a restart; refusals come back next to their fields in the checker's words; every change is
in the audit log; and no form, however hostile, gets a 500 or stores anything the config
file could not hold."""

from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from datetime import datetime

import pytest
import requests
from admin import csrf_token, log_in, make_admin
from conftest import (
    SENSORS,
    ErrorLog,
    http_ready,
    screenshot,
    visitor_form,
    wait_until,
    write_space_config,
)
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from playwright.sync_api import expect
from werkzeug.datastructures import MultiDict

from kiosk import create_app
from spacekiosk import config, settings
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

KIOSK_SCREEN, PHONE, LAPTOP = (800, 480), (390, 844), (1280, 800)
CLOSED_ALL_WEEK = "[space.opening_hours]\n" + "".join(f'{d} = "closed"\n' for d in config.WEEKDAYS)


def rows(path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def statuses(tap) -> list[dict]:
    """The space's retained status messages the broker carried, in order."""
    found = []
    for topic, payload in list(tap.payloads):
        if topic.endswith("/status"):
            found.append(json.loads(payload if payload[:1] == b"{" else zlib.decompress(payload)))
    return found


def page_of(browser, size, touch: bool = False):
    width, height = size
    context = browser.new_context(
        viewport={"width": width, "height": height},
        has_touch=touch or size == PHONE,
        is_mobile=size == PHONE,
        locale="en-GB",
    )
    return context.new_page()


# --- one change, every service ---


def test_a_change_on_the_pages_reaches_the_screens_and_every_service_without_a_restart(
    tmp_path, broker, services, tap, browser, touch_page, screenshots
):
    toml = write_space_config(tmp_path, broker_port=broker.port, extra=SENSORS + CLOSED_ALL_WEEK)
    cfg = config.load(toml)
    make_admin(cfg.database.path)
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    sensors = services("sensors", "--config", str(toml), "--simulate", "--speed", "3600")
    services("sync", "--config", str(toml))
    wait_until(lambda: "sensors running" in sensors.output(), what="the sensors daemon")
    wait_until(
        lambda: any(s.get("about", {}).get("capacity") == 20 for s in statuses(tap)),
        what="the agent's status with the file's capacity",
    )

    # The visitor screen, 800x480, before: closed all week, no event.
    screen = touch_page
    screen.goto(url)
    expect(screen.locator(".open-state")).to_have_class("open-state closed")
    expect(screen.locator(".event")).to_have_count(0)
    # Closed all week, the simulated space has had nobody through its door.
    assert rows(cfg.database.path, "SELECT count(*) FROM sensor_events WHERE kind = 'entry'") == [
        (0,)
    ]

    # An admin on a screen of the kiosk's size: open every day, room for 33.
    admin = page_of(browser, KIOSK_SCREEN)
    log_in(admin, url)
    admin.goto(url + "admin/settings")
    for day in config.WEEKDAYS:
        admin.fill(f"#hours-{day}", "00:00-24:00")
    admin.get_by_role("button", name="Save opening hours").click()
    expect(admin.locator("#hours .saved")).to_have_text("Saved: Opening hours.")
    expect(admin.locator("#hours .saved")).to_be_in_viewport()  # the page opens at the form
    expect(admin.locator("#hours-mon")).to_have_value("00:00-24:00")
    screenshot(admin, screenshots / "admin-settings.png")
    admin.fill("#capacity", "33")
    admin.get_by_role("button", name="Save signing in").click()
    expect(admin.locator("#signin .saved")).to_have_text("Saved: Signing in.")
    expect(admin.locator("#capacity")).to_have_value("33")
    expect(admin.locator("#signin .changed-note").first).to_contain_text("Changed by ada")
    expect(admin.locator("#signin .saved")).to_be_in_viewport()

    # Today's event, on the Events page.
    today = datetime.now(cfg.space.timezone).date().isoformat()
    admin.goto(url + "admin/events")
    admin.fill("#name", "Repair café")
    admin.fill("#date", today)
    admin.fill("#start", "00:00")
    admin.fill("#end", "23:59")
    admin.get_by_role("button", name="Add the event").click()
    expect(admin.locator(".saved")).to_have_text("The event was added.")
    expect(admin.locator("#event-list .event-item.today .event-name")).to_have_text("Repair café")
    screenshot(admin, screenshots / "admin-events.png")
    admin.context.close()

    # The visitor screen, at its next load: open, with today's event; sign-ins can be
    # tagged with it.
    screen.reload()
    expect(screen.locator(".open-state")).to_have_class("open-state open")
    expect(screen.locator(".event")).to_have_text("Today: Repair café")
    signed = requests.post(
        url + "sign-in/new", data=visitor_form("Ana Perez", event="yes"), timeout=10
    )
    assert signed.status_code == 201
    assert rows(cfg.database.path, "SELECT event FROM visits") == [("Repair café",)]
    status = requests.get(url + "api/v1/status", timeout=5).json()
    assert status["capacity"] == 33 and status["open"] is True

    # The sync agent's next status carries the new capacity; no restart.
    wait_until(
        lambda: statuses(tap)[-1].get("about", {}).get("capacity") == 33,
        what="the agent's status with the admins' capacity",
    )
    # The simulated foot traffic follows the new hours: people come through the door.
    wait_until(
        lambda: (
            rows(cfg.database.path, "SELECT count(*) FROM sensor_events WHERE kind = 'entry'")[0][0]
            > 0
        ),
        what="the sensors daemon's first entry under the new opening hours",
    )
    assert "new foot traffic" in sensors.output()
    audit = rows(cfg.database.path, "SELECT admin, action, detail FROM audit_log ORDER BY id")
    assert ("ada", "setting changed", "space.capacity: 20 → 33") in audit
    assert ("ada", "event added", f"Repair café · {today} 00:00-23:59") in audit
    assert config.load(toml) == cfg  # the file is as it was


# --- the pages over HTTP ---


@pytest.fixture
def app(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1, extra="[kiosk]\nidle_seconds = 60\n")
    app = create_app(config.load(toml), {"TESTING": True})
    make_admin(app.config["SPACE"].database.path)
    return app


@pytest.fixture
def client(app):
    client = app.test_client()
    log_in(client)
    return client


def post(client, path: str, form: dict):
    return client.post(path, data={"csrf_token": csrf_token(client, "/admin/settings"), **form})


def week(**days) -> dict:
    return {f"hours-{d}": days.get(d, "10:00-18:00") for d in config.WEEKDAYS}


def audit_of(app) -> list[tuple[str, str]]:
    """The audit log's entries of settings and events (logins are there too)."""
    return rows(
        app.config["SPACE"].database.path,
        "SELECT action, detail FROM audit_log WHERE action LIKE 'setting%' OR action LIKE 'event%'",
    )


def test_a_refusal_comes_back_next_to_its_field_and_nothing_is_saved(app, client):
    form = week(tue="10:00-08:00") | {"closed_dates": "2026-12-25\nChristmas"}
    answer = post(client, "/admin/settings/hours", form)
    assert answer.status_code == 400
    page = answer.text
    assert "Nothing was saved: please check the fields marked below." in page
    tuesday = page[page.index('id="hours-tue"') :]
    assert "&#39;10:00-08:00&#39; ends before it starts" in tuesday[: tuesday.index("</div>")]
    assert 'value="10:00-08:00"' in tuesday  # what was typed stays, to be fixed
    assert "autofocus" in tuesday[: tuesday.index(">")]  # the page opens at it
    assert "&#39;Christmas&#39; is not a date; write it as YYYY-MM-DD" in page
    assert rows(app.config["SPACE"].database.path, "SELECT * FROM settings") == []
    assert audit_of(app) == []
    answer = post(client, "/admin/settings/signin", {"capacity": "lots", "default_language": "en"})
    assert answer.status_code == 400 and "Write a whole number." in answer.text


def test_every_change_is_audited_old_and_new(app, client):
    answer = post(client, "/admin/settings/hours", week(sun="closed"))
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/admin/settings?saved=hours&changed=1#hours")
    form = {"default_language": "en", "languages": ["en", "el"], "purposes": "cowork\nevent"}
    form |= {"capacity": "25", "idle_seconds": "60", "confirm_seconds": "5"}
    assert post(client, "/admin/settings/signin", form).status_code == 302
    hours = json.dumps({**{d: "10:00-18:00" for d in config.WEEKDAYS}, "sun": "closed"})
    assert audit_of(app) == [
        ("setting changed", f"space.opening_hours: {{}} → {hours}"),
        (
            "setting changed",
            'kiosk.purposes: ["cowork", "event", "meeting", "other"] → ["cowork", "event"]',
        ),
        ("setting changed", "space.capacity: 20 → 25"),
    ]
    # Saved again as it is: nothing changes, nothing is logged.
    assert (
        post(client, "/admin/settings/signin", form)
        .headers["Location"]
        .endswith("changed=0#signin")
    )
    assert len(audit_of(app)) == 3
    assert "Nothing was changed." in client.get("/admin/settings?saved=signin&changed=0").text


def test_the_guidelines_in_each_language_and_a_new_version_to_accept(app, client):
    visitor = app.test_client()
    assert (
        visitor.post("/sign-in/new", data=visitor_form("Ana Perez", pin="1357")).status_code == 201
    )
    handle = rows(app.config["SPACE"].database.path, "SELECT handle FROM visitors")[0][0]
    visit = rows(app.config["SPACE"].database.path, "SELECT handle FROM visits")[0][0]
    assert visitor.post(f"/sign-out/{visit}").status_code == 200  # she comes back another day
    form = {"guidelines-el": "Σεβαστείτε όλους.\n\nΡωτήστε πριν βγάλετε φωτογραφία."}
    assert post(client, "/admin/settings/guidelines", form).status_code == 302

    def guidelines(language: str) -> str:
        visitor.set_cookie("lang", language)
        page = visitor.post("/sign-in", data={"name": "Bo Li"}).text
        start = page.index('<div class="guidelines-text"')  # the first visit's last step
        return page[start : page.index("</div>", start)]

    # Greek has its text; English, the first language, has none: the kiosk's own.
    assert "<p>Σεβαστείτε όλους.</p>" in guidelines("el")
    assert "<p>Ρωτήστε πριν βγάλετε φωτογραφία.</p>" in guidelines("el")
    assert "Be kind and respectful." in guidelines("en")
    form = {"guidelines-en": "Be <b>kind</b>.\nAsk first.", **form}
    assert post(client, "/admin/settings/guidelines", form).status_code == 302
    assert "<p>Be &lt;b&gt;kind&lt;/b&gt;.<br>Ask first.</p>" in guidelines("en")
    # Returning visitors are asked again only once the version is raised.
    visitor.set_cookie("lang", "en")
    assert 'name="accept"' not in visitor.get(f"/sign-in/returning/{handle}").text
    assert (
        post(client, "/admin/settings/guidelines", {**form, "accept_again": "yes"}).status_code
        == 302
    )
    pin_page = visitor.get(f"/sign-in/returning/{handle}").text
    assert 'name="accept"' in pin_page and "Ask first." in pin_page
    assert ("setting changed", "kiosk.guidelines_version: 1 → 2") in audit_of(app)
    refused = visitor.post(
        f"/sign-in/returning/{handle}", data={"pin": "1357", "request_id": "a" * 32}
    )
    assert refused.status_code == 400 and "The guidelines have changed" in refused.text
    answer = visitor.post(
        f"/sign-in/returning/{handle}",
        data={"pin": "1357", "accept": "yes", "request_id": "b" * 32},
    )
    assert answer.status_code == 201


def test_languages_and_the_spaceapi_contact_take_effect_at_the_next_request(app, client):
    visitor = app.test_client()
    assert visitor.get("/lang/sw").status_code == 404  # not one of the space's yet
    form = {"default_language": "sw", "languages": ["en"], "purposes": "cowork"}
    form |= {"capacity": "20", "idle_seconds": "60", "confirm_seconds": "5"}
    assert post(client, "/admin/settings/signin", form).status_code == 302
    welcome = visitor.get("/").text
    assert 'lang="sw"' in welcome and "Kiswahili" in welcome and "Ελληνικά" not in welcome
    assert '<html lang="sw"' in welcome  # the screen starts in the first language
    assert visitor.get("/lang/en").status_code == 302
    form = {
        "spaceapi-email": "hello@example.org",
        "spaceapi-lat": "-1.2921",
        "spaceapi-lon": "36,8219",
    }
    assert post(client, "/admin/settings/spaceapi", form).status_code == 302
    document = visitor.get("/spaceapi.json").json
    assert document["contact"] == {"email": "hello@example.org"}
    assert document["location"] == {"timezone": "Europe/Athens", "lat": -1.2921, "lon": 36.8219}


def test_events_are_added_changed_and_deleted_and_a_stale_form_changes_nothing(app, client):
    token = csrf_token(client, "/admin/events")
    event = {
        "csrf_token": token,
        "name": "Hack night",
        "date": "2031-05-06",
        "start": "18:00",
        "end": "21:00",
    }
    assert client.post("/admin/events", data=event).headers["Location"].endswith("done=added")
    page = client.get("/admin/events").text.replace("\u202f", " ")  # CLDR's narrow space
    assert "Hack night" in page and "Tue, May 6, 2031 · 6:00 PM–9:00 PM" in page
    key = rows(app.config["SPACE"].database.path, "SELECT value FROM settings")[0][0]
    assert json.loads(key) == [{"name": "Hack night", "date": "2031-05-06", "hours": "18:00-21:00"}]
    from kiosk.admin.events import key_of

    old = key_of({"name": "Hack night", "date": "2031-05-06", "hours": "18:00-21:00"})
    assert 'value="Hack night"' in client.get(f"/admin/events/{old}").text
    changed = client.post(f"/admin/events/{old}", data={**event, "name": "Hack night #2"})
    assert changed.headers["Location"].endswith("done=changed")
    # The old key is gone: a form left open elsewhere changes nothing, and says so.
    stale = client.post(f"/admin/events/{old}", data={**event, "name": "Overwritten"})
    assert stale.headers["Location"].endswith("done=gone")
    assert (
        client.post(f"/admin/events/{old}/delete", data={"csrf_token": token})
        .headers["Location"]
        .endswith("done=gone")
    )
    new = key_of({"name": "Hack night #2", "date": "2031-05-06", "hours": "18:00-21:00"})
    assert (
        client.post(f"/admin/events/{new}/delete", data={"csrf_token": token})
        .headers["Location"]
        .endswith("done=deleted")
    )
    assert "No events on today or later." in client.get("/admin/events").text
    assert [a for a, _ in audit_of(app)] == ["event added", "event changed", "event deleted"]
    twice = client.post("/admin/events", data=event)
    assert twice.status_code == 302
    refused = client.post("/admin/events", data=event)  # the same event again
    assert refused.status_code == 400 and "lists &#39;Hack night&#39; twice" in refused.text


def test_nobody_but_an_admin_reaches_the_pages(app):
    stranger = app.test_client()
    for path in ("/admin/settings", "/admin/events"):
        answer = stranger.get(path)
        assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]
    answer = stranger.post("/admin/settings/signin", data={"capacity": "1"})
    assert answer.status_code in (302, 400)
    assert rows(app.config["SPACE"].database.path, "SELECT * FROM settings") == []


@pytest.mark.parametrize("size", [KIOSK_SCREEN, PHONE, LAPTOP], ids=["kiosk", "phone", "laptop"])
def test_the_pages_fit_every_screen(tmp_path, services, browser, size):
    toml = write_space_config(tmp_path, broker_port=1)
    cfg = config.load(toml)
    make_admin(cfg.database.path)
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    page = page_of(browser, size)
    log_in(page, url)
    for path, button in (
        ("admin/settings", "Save opening hours"),
        ("admin/events", "Add the event"),
    ):
        page.goto(url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        target = page.get_by_role("button", name=button)
        target.scroll_into_view_if_needed()
        expect(target).to_be_in_viewport()
    page.context.close()


# --- hostile forms ---

NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\u202e",
        "closed",
        "00:00-24:00",
        "09:00-25:00",
        "24:00-24:00",
        "-1",
        "0",
        "1",
        "10001",
        "9" * 5000,
        "nan",
        "inf",
        "1e400",
        "٣",
        "en",
        "sw",
        "zh",
        "2026-12-25",
        "2026-02-30",
        "x" * 5000,
        "<script>alert(1)</script>",
        "a@b.c",
        "+254 20 123 4567",
    ]
) | st.text(max_size=80)
FIELDS = [
    *(f"hours-{d}" for d in config.WEEKDAYS),
    "closed_dates",
    "languages",
    "default_language",
    "purposes",
    "capacity",
    "idle_seconds",
    "confirm_seconds",
    *(f"guidelines-{c}" for c in config.LANGUAGES),
    "accept_again",
    *(f"retention-{k.split('.')[1]}" for k in settings.EDITABLE if k.startswith("retention.")),
    *(f"spaceapi-{k.split('.')[1]}" for k in settings.EDITABLE if k.startswith("spaceapi.")),
    "name",
    "date",
    "start",
    "end",
    "csrf_token",
]
TARGETS = st.sampled_from(
    [
        "/admin/settings/hours",
        "/admin/settings/signin",
        "/admin/settings/guidelines",
        "/admin/settings/retention",
        "/admin/settings/spaceapi",
        "/admin/settings/nonsense",
        "/admin/events",
        "/admin/events/0123456789abcdef",
        "/admin/events/0123456789abcdef/delete",
    ]
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A kiosk as in production (errors rendered, not raised) and a logged-in admin."""
    folder = tmp_path_factory.mktemp("hostile-settings")
    toml = write_space_config(folder, broker_port=1)
    app = create_app(config.load(toml), {})
    make_admin(app.config["SPACE"].database.path)
    client = app.test_client()
    log_in(client)
    token = csrf_token(client, "/admin/settings")
    log = ErrorLog()
    app.logger.addHandler(log)
    logging.getLogger().addHandler(log)
    db = open_store(app.config["SPACE"].database.path, SPACE_MIGRATIONS)
    yield app, client, token, db, log, toml.read_bytes()
    logging.getLogger().removeHandler(log)
    db.close()


@hypothesis_settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=TARGETS,
    fields=st.lists(st.tuples(st.sampled_from(FIELDS), NASTY), max_size=12),
    real_token=st.booleans(),
)
def test_no_form_however_hostile_gets_a_500_or_stores_what_the_file_could_not(
    hostile, target, fields, real_token
):
    app, client, token, db, log, file_bytes = hostile
    form = MultiDict(fields)
    if real_token:
        form.setlist("csrf_token", [token])
    answer = client.post(target, data=form)
    event(f"{target.split('/')[2]}: {answer.status_code}")
    assert answer.status_code < 500, (target, fields, answer.text[:300])
    assert not log.bad, log.bad
    if answer.status_code >= 400:
        assert 'role="alert"' in answer.text or 'class="message"' in answer.text
    base = app.config["SPACE"]
    layered = settings.read(db, base)
    assert layered.ignored == {}  # every stored value passes the file's checker
    assert config.from_data(settings.as_toml(layered.config), base.source) == layered.config
    assert base.source.read_bytes() == file_bytes  # the file is never written
    assert client.get("/").status_code == 200  # and the visitor screen still answers
