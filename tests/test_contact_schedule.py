"""A metered space ([sync] link = "metered") connects on a schedule, sends, and
disconnects, with no last will: its retained status says online between contacts, and
says how often it makes contact (`contact_every`, seconds). The collector shows it as
metered, counts it online while its last contact is at most two intervals and an hour
old and late past that, holds its silent alert until then, and refuses a `contact_every`
out of bounds.

A real Mosquitto and a real collector process whose wall clock the test moves on
(tests/fakeclock.py: its committer, a process of its own, keeps the real clock, so a
contact is stored when it happens); the alerts judged on a real store as
tests/test_alerts.py judges them; hostile values posted to the collector's own app and
stored behind its back, as tests/test_hostile_payloads.py does."""

from __future__ import annotations

import json
import math

import pytest
import requests
import test_alerts
import test_hostile_payloads
from central import commit_usage
from conftest import (
    SPACE,
    api_get,
    log_in,
    publisher,
    wait_until,
    write_collector_config,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_alerts import HOUR, T0, heard
from test_hostile_payloads import SLOW, logged_in, post

from collector import accounts, alerts, reading, reports, store
from collector.web import create_app
from spacekiosk import config, protocol
from spacekiosk.config import Alerts
from spacekiosk.protocol import Bucket

EVERY = 12 * HOUR  # twice a day, as a space on a metered link might
LATE = 2 * EVERY + HOUR  # its last contact older than this: late
ALWAYS_ON = "otherspace"  # beside it, a space that keeps its connection open

# The stores those tests judge alerts in and post hostile payloads to (a space's token
# and a login in it): their fixtures, not copies of them.
central = test_hostile_payloads.central
pg_central = test_alerts.pg_central
either = test_alerts.either  # SQLite (the store above), then PostgreSQL


@pytest.fixture
def running(tmp_path, broker, notified):
    """A collector on the test broker, its page's wall clock set by writing seconds to
    the file returned beside its address."""
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    url = f"http://127.0.0.1:{config.load(toml).central.listen[1]}/"
    notified("collector", "--config", str(toml), clock_file=clock).wait_for("READY=1")
    wait_until(
        lambda: requests.get(url + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector's subscription",
    )
    return url, clock


def spaces(url: str) -> dict[str, dict]:
    answer = api_get(url, "api/v1/spaces")
    assert answer.status_code == 200, answer.text
    return {s["id"]: s for s in answer.json()["spaces"]}


def publish_status(client, space: str, **fields) -> None:
    """A status as an agent publishes it: retained, at least once."""
    message = protocol.status_message(agent="0.1.0", clock="synchronized", **fields)
    client.publish(protocol.topic(space, "status"), message, qos=1, retain=True).wait_for_publish(5)


class Page:
    """The collector's pages through its login, logging in again when the session has
    ended (its clock moved past the session's hours)."""

    def __init__(self, url: str):
        self.url, self.session = url, log_in(url)

    def text(self, path: str = "") -> str:
        answer = self.session.get(self.url + path, timeout=5, allow_redirects=False)
        if answer.status_code == 302:
            self.session = log_in(self.url)
            answer = self.session.get(self.url + path, timeout=5, allow_redirects=False)
        assert answer.status_code == 200, answer.text
        return answer.text

    def rejected(self) -> int:
        found = self.text().rsplit("Rejected messages: ", 1)[1]
        return int(found.split(" ", 1)[0])


def test_a_metered_space_is_online_between_contacts_and_late_past_two_intervals(running, broker):
    url, clock = running
    metered, always = publisher(broker.port), publisher(broker.port, ALWAYS_ON)
    try:
        publish_status(metered, SPACE, online=True, backlog=0, contact_every=EVERY)
        publish_status(always, ALWAYS_ON, online=True, backlog=0)
        wait_until(lambda: {SPACE, ALWAYS_ON} <= spaces(url).keys(), what="both statuses stored")
        contact = spaces(url)[SPACE]["last_contact"]
        assert contact is not None  # a status saying online, as it arrives, is contact

        said = spaces(url)
        assert {"online": True, "contact_every": EVERY, "late": False}.items() <= said[
            SPACE
        ].items()
        assert said[ALWAYS_ON]["contact_every"] is None and said[ALWAYS_ON]["late"] is False
        page = Page(url)
        dashboard = page.text()
        assert "2 of 2 online" in dashboard
        assert '<span class="badge never">metered</span>' in dashboard
        assert "contacts every 12 h" in dashboard and "late since" not in dashboard
        assert dashboard.count("badge online") == 2
        details = page.text(f"spaces/{SPACE}")
        assert "metered" in details and "contacts every 12 h" in details
        assert "metered" not in page.text(f"spaces/{ALWAYS_ON}")

        # Just inside two intervals and an hour: a contact failed, the next is due.
        clock.write_text(str(LATE - 120))
        # The page says how long ago the last contact was: by that, its clock has moved.
        dashboard = wait_until(
            lambda: (text := page.text()).count("24 h ago") == 2 and text,
            what="the page's clock moved on",
        )
        assert "2 of 2 online" in dashboard and "late since" not in dashboard
        assert spaces(url)[SPACE]["late"] is False

        # Past it: late, and no longer counted online; the always-on space is as it was.
        clock.write_text(str(LATE + 120))
        wait_until(lambda: spaces(url)[SPACE]["late"], what="the space judged late")
        said = spaces(url)
        assert said[SPACE]["online"] is False and said[SPACE]["contact_every"] == EVERY
        assert said[ALWAYS_ON]["online"] is True and said[ALWAYS_ON]["late"] is False
        dashboard = page.text()
        assert "1 of 2 online" in dashboard
        assert '<span class="badge offline">late</span>' in dashboard
        assert "late since" in dashboard and "next contact due" in dashboard
        assert "late since" in page.text(f"spaces/{SPACE}")

        # A status whose interval is out of bounds is refused, over MQTT too, and the
        # one stored stays.
        before = page.rejected()
        publish_status(metered, SPACE, online=True, backlog=0, contact_every=59)
        publish_status(metered, SPACE, online=True, backlog=0, contact_every="12 h")
        wait_until(lambda: page.rejected() == before + 2, what="two statuses refused")
        assert spaces(url)[SPACE]["contact_every"] == EVERY
    finally:
        for client in (metered, always):
            client.disconnect()
            client.loop_stop()


# --- the silent alert ---


def test_a_metered_space_is_silent_only_once_it_is_late(either):
    _cfg, db = either
    rules = Alerts(silent_hours=24)
    heard(db, "karachi", T0, contact_every=EVERY)  # late after 25 h: silent then, not at 24
    heard(db, "lima", T0, contact_every=2 * HOUR)  # late after 5 h: silent_hours still rule
    heard(db, "quito", T0)  # always on
    assert alerts.evaluate(db, rules, T0 + 24 * HOUR - 1) == []
    fired = alerts.evaluate(db, rules, T0 + 24 * HOUR)
    assert sorted((e.space, e.kind, e.event) for e in fired) == [
        ("lima", "silent", "fired"),
        ("quito", "silent", "fired"),
    ]
    assert alerts.evaluate(db, rules, T0 + 25 * HOUR - 1) == []
    (late,) = alerts.evaluate(db, rules, T0 + 25 * HOUR)
    assert (late.space, late.kind, late.event) == ("karachi", "silent", "fired")
    assert "every 12 h" in late.detail
    heard(db, "karachi", T0 + 26 * HOUR, contact_every=EVERY)  # its next contact
    (back,) = alerts.evaluate(db, rules, T0 + 26 * HOUR + 30)
    assert (back.space, back.event) == ("karachi", "cleared")


def test_a_long_interval_holds_the_silent_alert_past_silent_hours(central):
    _cfg, db = central
    rules = Alerts(silent_hours=72)
    every = 3 * 86400  # every three days: late after six days and an hour
    heard(db, "ushuaia", T0, contact_every=every)
    assert alerts.evaluate(db, rules, T0 + 145 * HOUR - 1) == []
    assert alerts.current(db) == {}
    (fired,) = alerts.evaluate(db, rules, T0 + 145 * HOUR)
    assert (fired.space, fired.event) == ("ushuaia", "fired")
    assert "every 3 days" in fired.detail


# --- link availability ---


def test_link_availability_counts_on_for_a_metered_space_once_it_is_late(central):
    """Not late, its hours over but not sent wait on the Pi; late, it is cut off from
    the collector's side, as a space whose last will said offline."""
    _cfg, db = central
    sent = int(T0) // HOUR * HOUR  # the end of the newest hour it sent, at its contact
    commit_usage(db, SPACE, [Bucket(sent - HOUR, 1, {"connected_minutes": 60})], now=T0)
    store.commit(
        db,
        statuses=[(SPACE, {"v": 1, "online": True, "contact_every": EVERY})],
        now=T0,
        contacts=[SPACE],
    )

    def until(now: float) -> int:
        (space,) = [s for s in reports.spaces(db, now) if s.id == SPACE]
        return reports.link_until(space, now)

    assert until(T0 + LATE) == sent
    assert until(T0 + LATE + 1) == reports.over(T0 + LATE + 1) > sent
    store.commit(db, statuses=[(SPACE, {"v": 1, "online": True})], now=T0)  # always on
    assert until(T0 + LATE + 1) == sent  # online by its status: the hours wait on the Pi


# --- any contact_every a space may send, or may have stored ---

BOUNDS = (60, 7 * 86400)
intervals = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(0, 2 * BOUNDS[1]),
    st.sampled_from([59, 60, 61, BOUNDS[1] - 1, BOUNDS[1], BOUNDS[1] + 1, 0, -60, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([60.0, 43200.0, 1e300, -0.0]),
    st.text(max_size=12),
    st.sampled_from(["43200", "12 h", ""]),
    st.none(),
    st.booleans(),
)


def in_bounds(value: object) -> bool:
    return type(value) is int and BOUNDS[0] <= value <= BOUNDS[1]


def test_any_contact_every_is_refused_or_kept_and_never_breaks_a_page(central):
    cfg, db = central
    app = create_app(cfg)
    client, page = app.test_client(), logged_in(app)
    reader = {"Authorization": "Bearer " + accounts.add_api_token(db, "contact-every")}
    # An always-on space's status first: what a refused one must leave as it was.
    assert post(client, "status", protocol.status_message(online=True)).status_code == 200
    kept: list[int | None] = [None]  # the interval the stored status holds
    answers = {200: 0, 400: 0}

    def api_says() -> dict:
        answer = app.test_client().get("/api/v1/spaces", headers=reader)
        assert answer.status_code == 200, answer.text
        (found,) = [s for s in answer.json["spaces"] if s["id"] == SPACE]
        return found

    @settings(SLOW, max_examples=300)
    @given(value=intervals, stored=st.booleans())
    def one(value, stored):
        before = store.reject_count(db)
        text = json.dumps({"v": 1, "online": True, "contact_every": value}, allow_nan=True)
        answer = post(client, "status", text.encode())
        assert answer.status_code in (200, 400), answer.text
        answers[answer.status_code] += 1
        if in_bounds(value):
            assert answer.status_code == 200, answer.text
            kept[0] = value
        else:
            assert answer.status_code == 400
            # Infinity and NaN are not JSON at all: refused as such, not for the field.
            finite = value == value and value not in (math.inf, -math.inf)
            assert ("contact_every" if finite else "not JSON") in answer.json["error"]
            assert store.reject_count(db) == before + 1
        assert store.spaces(db)[0]["status"].get("contact_every") == kept[0]
        assert api_says()["contact_every"] == kept[0]
        if stored:  # as if stored before statuses were checked: read within bounds
            raw = {"v": 1, "online": True, "contact_every": value}
            store.commit_status(db, SPACE, raw)
            expected = value if in_bounds(value) else None
            assert reading.contact_every(reading.status(SPACE, json.dumps(raw))) == expected
            said = api_says()
            assert said["contact_every"] == expected and isinstance(said["late"], bool)
            kept[0] = expected
            store.commit_status(
                db,
                SPACE,
                {"v": 1, "online": True} | ({"contact_every": expected} if expected else {}),
            )
        for path in ("/", f"/spaces/{SPACE}", "/reports"):
            assert page.get(path).status_code == 200, path

    one()
    assert answers[200] > 20 and answers[400] > 100, answers
