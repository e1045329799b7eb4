"""What the kiosk's status page says of the link to the central server: on a metered
link the Pi is not connected between its calls, and that is not a fault."""

from __future__ import annotations

import time

import pytest
import requests
from admin import log_in, make_admin
from conftest import http_ready, write_space_config
from playwright.sync_api import expect

import kiosk
from spacekiosk import config, syncstate
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import notify, outbox

HOUR = 3600


def metered_space(tmp_path, sync: str = "", extra: str = ""):
    """A metered space's config, its store with an admin, and the store open."""
    toml = write_space_config(
        tmp_path / "space", broker_port=1, extra=extra, sync='link = "metered"\n' + sync
    )
    cfg = config.load(toml)
    make_admin(cfg.database.path)
    return cfg, open_store(cfg.database.path, SPACE_MIGRATIONS)


def queue_since(db, cfg, at: float, now: float) -> None:
    """A door opened at `at`: the hours from there to `now` queued for the next send."""
    with write(db):
        db.execute("INSERT INTO sensor_events (at, sensor, kind) VALUES (?, 'door', 'open')",
                   [at])  # fmt: skip
    outbox.refresh(db, cfg, now=now)


@pytest.fixture
def metered(tmp_path):
    cfg, db = metered_space(
        tmp_path, "contact_every_minutes = 720", '[space]\nlanguages = ["en", "sw"]'
    )
    db.close()
    return cfg


def health(cfg, lang: str = "en") -> str:
    client = kiosk.create_app(cfg, {"TESTING": True}).test_client()
    client.set_cookie("lang", lang)
    log_in(client)
    answer = client.get("/admin/health")
    assert answer.status_code == 200
    return " ".join(answer.get_data(as_text=True).split())


def test_between_calls_the_page_says_when_the_next_is(metered):
    db = open_store(metered.database.path, SPACE_MIGRATIONS)
    outbox.set_state(db, broker="between contacts", next_contact_at=time.time() + 5 * HOUR)
    db.close()
    page = health(metered)
    assert "The link is metered: the Pi calls the central server every 12 hours" in page
    assert "Connected to the central server" not in page
    assert "cannot be reached" not in page
    swahili = health(metered, "sw")
    assert "Muunganisho unalipiwa kwa kiasi cha data" in swahili


def test_counts_waiting_a_day_on_a_metered_link_are_not_yet_a_problem(tmp_path):
    """Hours wait up to the interval on the Pi (here a day); only a wait past two of them
    and an hour is reported as the central server not being reached."""
    cfg, db = metered_space(tmp_path)
    now = time.time()
    queue_since(db, cfg, now - 30 * HOUR, now)
    assert syncstate.health(db)["oldest_pending"] <= now - 29 * HOUR  # waiting over a day
    outbox.set_state(db, broker="between contacts", next_contact_at=now + HOUR)
    db.close()
    page = health(cfg)
    assert "has not reached the central server" not in page
    assert "The link is metered: the Pi calls the central server every 24 hours" in page

    db = open_store(cfg.database.path, SPACE_MIGRATIONS)  # past two days and an hour
    queue_since(db, cfg, now - 60 * HOUR, now)
    outbox.set_state(db, broker="unreachable", next_contact_at=now + HOUR)
    db.close()
    assert "has not reached the central server" in health(cfg)


def test_the_space_chat_hears_of_a_backlog_only_past_two_contacts(tmp_path):
    """The notifier's backlog waits for two contacts and an hour on a metered link (a day
    each here), though `notifications.backlog_hours` says one hour."""
    cfg, db = metered_space(tmp_path, extra="[notifications]\nbacklog_hours = 1")
    now = time.time()
    queue_since(db, cfg, now - 30 * HOUR, now)
    oldest = syncstate.health(db)["oldest_pending"]
    assert notify.conditions(db, cfg, now)["backlog"].state != "behind"
    late = oldest + HOUR + 49 * HOUR
    assert notify.conditions(db, cfg, late + 1)["backlog"].state == "behind"
    assert notify.conditions(db, cfg, late - 60)["backlog"].state != "behind"
    db.close()


def test_the_welcome_screen_says_the_hours_go_with_the_next_call(tmp_path, services, browser):
    """Between calls a metered space's hours wait by design: the screen and the status
    API say they go with the next call, not that they wait for the network."""
    cfg, db = metered_space(tmp_path)
    now = time.time()
    queue_since(db, cfg, now - 3 * HOUR, now)
    assert syncstate.health(db)["backlog"] > 0
    outbox.set_state(db, broker="between contacts", next_contact_at=now + HOUR)
    db.close()
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(cfg.source)))
    assert requests.get(url + "api/v1/status", timeout=10).json()["sync"]["state"] == "scheduled"
    page = browser.new_page()
    try:
        page.goto(url)
        footer = page.locator("footer.sync")
        expect(footer).to_have_attribute("data-state", "scheduled")
        expect(footer).to_have_text("Usage data goes with the next call to the central server.")
    finally:
        page.close()
