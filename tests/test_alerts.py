"""The central team's alerts: judged from what the collector received and stored (real
statuses, contacts and refusals committed into a real store, SQLite and PostgreSQL),
sent through Apprise to a real HTTP receiver started here, shown on the page and in the
API. Each alert fires once and clears once, whatever its condition does in between."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import write_collector_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_figures import PASSWORD, logged_in

from collector import accounts, alerts, store
from spacekiosk import config
from spacekiosk.broker import free_port
from spacekiosk.config import Alerts

HOUR = 3600
T0 = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC, a fixed moment the store is told is "now"
ONLINE = {"online": True, "backlog": 0, "clock": "synchronized", "agent": "0.1.0"}


class Receiver:
    """A webhook endpoint on a port of its own: Apprise's json:// target posts here. It
    can be taken down (connection refused) and brought back on the same port."""

    def __init__(self):
        self.port = free_port()
        self.bodies: list[dict] = []
        self.arrived = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()
                with receiver.arrived:
                    receiver.bodies.append(body)
                    receiver.arrived.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout), self.bodies
            return list(self.bodies)


@pytest.fixture
def receiver():
    r = Receiver()
    r.up()
    yield r
    r.down()


@pytest.fixture
def central(tmp_path):
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    accounts.add_user(db, "central", PASSWORD)
    yield cfg, db
    db.close()


@pytest.fixture
def pg_central(tmp_path, pg_url):
    cfg = config.load(
        write_collector_config(tmp_path / "central", broker_port=1, database_url=pg_url)
    )
    db = store.connect(cfg.central)
    yield cfg, db
    db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def either(request):
    """The central store in SQLite, then in PostgreSQL."""
    yield request.getfixturevalue("central" if request.param == "sqlite" else "pg_central")


def heard(db, space: str, at: float, **status) -> None:
    """A status from `space` arriving at `at`, as the committer stores it."""
    store.commit(db, statuses=[(space, ONLINE | status)], now=at, contacts=[space])


def events(db, space: str) -> list[tuple[str, str]]:
    return [(e.kind, e.event) for e in reversed(alerts.history(db, space))]


def assert_silent_space_fires_once_and_clears(db, rules: Alerts) -> None:
    heard(db, "nairobi", T0)
    heard(db, "bogota", T0)
    assert alerts.evaluate(db, rules, T0 + 71 * HOUR) == []
    heard(db, "bogota", T0 + 71 * HOUR)  # bogota keeps in touch; nairobi goes quiet
    fired = alerts.evaluate(db, rules, T0 + 72 * HOUR)
    assert [(e.space, e.kind, e.event) for e in fired] == [("nairobi", "silent", "fired")]
    for later in (73, 80, 100):  # still silent: nothing new
        assert alerts.evaluate(db, rules, T0 + later * HOUR) == []
    assert [(a.kind, a.state) for a in alerts.current(db)["nairobi"]] == [("silent", "firing")]
    heard(db, "nairobi", T0 + 101 * HOUR)  # it comes back
    cleared = alerts.evaluate(db, rules, T0 + 101 * HOUR + 30)
    assert [(e.space, e.kind, e.event) for e in cleared] == [("nairobi", "silent", "cleared")]
    assert alerts.evaluate(db, rules, T0 + 102 * HOUR) == []
    assert alerts.current(db) == {}
    assert events(db, "nairobi") == [("silent", "fired"), ("silent", "cleared")]
    assert events(db, "bogota") == []


def test_a_silent_space_raises_one_alert_and_clears_it_when_it_comes_back(either, receiver):
    _cfg, db = either
    rules = Alerts(targets=(receiver.url,), silent_hours=72)
    heard(db, "nairobi", T0)
    alerts.evaluate(db, rules, T0 + 72 * HOUR)
    assert alerts.deliver(db, rules, T0 + 72 * HOUR) == 1
    receiver.wait_for(1)
    assert alerts.evaluate(db, rules, T0 + 90 * HOUR) == []
    assert alerts.deliver(db, rules, T0 + 90 * HOUR) == 0
    heard(db, "nairobi", T0 + 91 * HOUR)
    alerts.evaluate(db, rules, T0 + 91 * HOUR)
    assert alerts.deliver(db, rules, T0 + 91 * HOUR) == 1
    bodies = receiver.wait_for(2)
    assert len(bodies) == 2
    assert bodies[0]["title"].startswith("ALERT: nairobi") and "silent" in bodies[0]["title"]
    assert "fired" in bodies[0]["message"]
    assert bodies[1]["title"].startswith("Cleared: nairobi") and "cleared" in bodies[1]["message"]
    for body in bodies:  # ids, conditions and times: the centre holds nothing personal
        assert set(body) <= {"version", "title", "message", "type", "attachments"}


def test_silent_alert_in_sqlite(central):
    assert_silent_space_fires_once_and_clears(central[1], Alerts(silent_hours=72))


def test_silent_alert_in_postgresql(pg_central):
    assert_silent_space_fires_once_and_clears(pg_central[1], Alerts(silent_hours=72))


def test_a_flapping_sensor_fires_once_and_clears_once(central, receiver):
    _cfg, db = central
    rules = Alerts(targets=(receiver.url,), sensor_hours=24, clear_minutes=60)
    faulty = {"sensors": {"faults": {"beam": "stuck"}, "door_alert": False}}
    fine = {"sensors": {"faults": {}, "door_alert": False}}
    at = T0
    heard(db, "athens", at, **faulty)
    assert alerts.evaluate(db, rules, at) == []  # seen, not yet a day
    at += 23 * HOUR
    heard(db, "athens", at, **fine)  # fixed just before the day is out: no alert
    assert alerts.evaluate(db, rules, at) == []
    at += 60
    heard(db, "athens", at, **faulty)  # and faulty again: a new day starts
    assert alerts.evaluate(db, rules, at) == []
    at += 24 * HOUR
    assert [e.event for e in alerts.evaluate(db, rules, at)] == ["fired"]
    for _ in range(12):  # flapping every 20 minutes, across its threshold
        at += 20 * 60
        heard(db, "athens", at, **fine)
        assert alerts.evaluate(db, rules, at) == []
        at += 20 * 60
        heard(db, "athens", at, **faulty)
        assert alerts.evaluate(db, rules, at) == []
    at += 60
    heard(db, "athens", at, **fine)
    assert alerts.evaluate(db, rules, at) == []
    assert alerts.evaluate(db, rules, at + 59 * 60) == []
    assert [e.event for e in alerts.evaluate(db, rules, at + 60 * 60)] == ["cleared"]
    assert alerts.deliver(db, rules, at + 60 * 60) == 2
    bodies = receiver.wait_for(2)
    assert [b["title"].split(":")[0] for b in bodies] == ["ALERT", "Cleared"]
    assert events(db, "athens") == [("sensor", "fired"), ("sensor", "cleared")]


def test_refused_messages_fire_once_while_they_keep_coming(central):
    _cfg, db = central
    rules = Alerts(rejects_per_hour=5, clear_minutes=30)
    heard(db, "lagos", T0)
    for minute in range(0, 180, 10):  # 3 refused every 10 minutes: 18 an hour
        for _ in range(3):
            store.reject(db, "spacekiosk/v1/lagos/usage", "bad", now=T0 + minute * 60)
        store.reject(db, "/api/v1/status lagos", "bad", now=T0 + minute * 60)
        alerts.evaluate(db, rules, T0 + minute * 60)
    assert events(db, "lagos") == [("refused", "fired")]
    # The last came at 2:50: from 3:40 the last hour holds 4, then none.
    assert alerts.evaluate(db, rules, T0 + 3 * HOUR + 30 * 60) == []  # still 8 in the hour
    assert alerts.evaluate(db, rules, T0 + 3 * HOUR + 45 * 60) == []  # under: clear from now
    assert alerts.evaluate(db, rules, T0 + 4 * HOUR + 14 * 60) == []  # gone 29 min: not yet
    assert [e.event for e in alerts.evaluate(db, rules, T0 + 4 * HOUR + 15 * 60)] == ["cleared"]


def test_backlog_and_clock_fire_from_the_status(central):
    _cfg, db = central
    rules = Alerts(backlog_hours=24, clock_hours=1)
    heard(db, "kochi", T0, backlog=30, oldest_pending="2026-11-16T00:00:00Z")
    heard(db, "quito", T0, clock="unsynchronized")
    assert [(e.space, e.kind) for e in alerts.evaluate(db, rules, T0)] == [("kochi", "backlog")]
    fired = alerts.evaluate(db, rules, T0 + HOUR)
    assert [(e.space, e.kind) for e in fired] == [("quito", "clock")]


def test_a_receiver_down_is_retried_and_gets_the_message_once(either, receiver):
    _cfg, db = either
    rules = Alerts(targets=(receiver.url,), silent_hours=1)
    receiver.down()  # the link to the chat service is cut
    heard(db, "manila", T0)
    at = T0 + 2 * HOUR
    assert [e.event for e in alerts.evaluate(db, rules, at)] == ["fired"]
    assert alerts.deliver(db, rules, at) == 0
    ((tries, sent),) = db.execute("SELECT tries, sent_at FROM alert_outbox").fetchall()
    assert (tries, sent) == (1, None)
    assert alerts.deliver(db, rules, at + 10) == 0  # not due yet: not even tried
    assert db.execute("SELECT tries FROM alert_outbox").fetchone()[0] == 1
    assert alerts.deliver(db, rules, at + alerts.FIRST_RETRY) == 0  # still down
    assert db.execute("SELECT tries FROM alert_outbox").fetchone()[0] == 2
    receiver.up()  # restored
    assert alerts.deliver(db, rules, at + alerts.FIRST_RETRY) == 0  # waits for its time
    assert alerts.deliver(db, rules, at + 3 * alerts.FIRST_RETRY) == 1
    assert alerts.deliver(db, rules, at + HOUR) == 0
    (body,) = receiver.wait_for(1)
    assert body["title"].startswith("ALERT: manila")
    assert alerts.evaluate(db, rules, at + HOUR) == []
    assert alerts.deliver(db, rules, at + 2 * HOUR) == 0
    assert len(receiver.bodies) == 1


def test_the_collectors_evaluator_judges_and_sends_on_its_own(central, receiver):
    """The thread the collector runs: a space silent for days is sent, once."""
    cfg, db = central
    import time

    heard(db, "dakar", time.time() - 100 * HOUR)
    rules = Alerts(targets=(receiver.url,), silent_hours=72, every_seconds=1)
    evaluator = alerts.Evaluator(dataclasses.replace(cfg, alerts=rules))
    evaluator.start()
    try:
        (body,) = receiver.wait_for(1)
    finally:
        evaluator.stop()
    assert body["title"].startswith("ALERT: dakar")
    assert events(db, "dakar") == [("silent", "fired")]


def test_the_api_and_the_pages_show_alerts(central):
    cfg, db = central
    heard(db, "nairobi", T0)
    heard(db, "athens", T0, sensors={"faults": {"beam": "stuck"}, "door_alert": False})
    rules = Alerts(silent_hours=1, sensor_hours=24)
    alerts.evaluate(db, rules, T0 + 2 * HOUR)
    client = logged_in(cfg)
    spaces = {s["id"]: s for s in client.get("/api/v1/spaces").json["spaces"]}
    assert [(a["kind"], a["state"]) for a in spaces["nairobi"]["alerts"]] == [("silent", "firing")]
    assert spaces["nairobi"]["alerts"][0]["since"] == "2026-11-18T13:06:40Z"
    athens = [(a["kind"], a["state"]) for a in spaces["athens"]["alerts"]]
    assert athens == [("silent", "firing"), ("sensor", "pending")]
    dashboard = client.get("/").text
    assert dashboard.count("alert: silent") == 2
    page = client.get("/spaces/nairobi").text
    assert "alert: silent" in page and "Alert history" in page and "fired" in page
    heard(db, "nairobi", T0 + 3 * HOUR)
    alerts.evaluate(db, rules, T0 + 3 * HOUR)
    spaces = {s["id"]: s for s in client.get("/api/v1/spaces").json["spaces"]}
    assert spaces["nairobi"]["alerts"] == []
    page = client.get("/spaces/nairobi").text
    assert "alert: silent" not in page and "cleared" in page


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 120)), min_size=1, max_size=40))
def test_any_flapping_alternates_fired_and_cleared(tmp_path_factory, steps):
    """Whatever a space's sensor does, and however often it is judged: events alternate,
    each fire after a full hold, each clear after a full `clear_minutes` clear."""
    cfg = config.load(write_collector_config(tmp_path_factory.mktemp("c"), broker_port=1))
    db = store.connect(cfg.central)
    rules = Alerts(sensor_hours=1, clear_minutes=30)
    at, seen = T0, []
    held_since = clear_since = None
    try:
        for faulty, minutes in steps:
            faults = {"beam": "stuck"} if faulty else {}
            heard(db, "athens", at, sensors={"faults": faults, "door_alert": False})
            held_since = (held_since or at) if faulty else None
            clear_since = None if faulty else (clear_since or at)
            for e in alerts.evaluate(db, rules, at):
                if e.event == "fired":
                    assert held_since is not None and at - held_since >= HOUR
                else:
                    assert clear_since is not None and at - clear_since >= 30 * 60
                seen.append(e.event)
            at += minutes * 60
    finally:
        db.close()
    assert seen == ["fired", "cleared"] * (len(seen) // 2) + ["fired"] * (len(seen) % 2)
