"""The space's notifications: what the notifier tells, once, in the space's language, and
never a visitor's name — through Apprise's JSON webhook to a real HTTP receiver the test
starts, cut and restored as a link would be."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from conftest import SENSORS, wait_until, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacekiosk import config as configuration
from spacekiosk import notices
from spacekiosk.broker import free_port
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import notify, outbox


class Receiver:
    """A small HTTP server standing in for a chat's webhook: it keeps each JSON body it
    is sent, answers `status`, and can be stopped (the link cut) and started again on the
    same port (the link back)."""

    def __init__(self):
        self.port = free_port()
        self.received: list[dict] = []
        self.status = 200
        self.arrived = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                size = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(size) or b"{}")
                body["path"] = self.path
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"thanks")
                if receiver.status < 300:
                    with receiver.arrived:
                        receiver.received.append(body)
                        receiver.arrived.notify_all()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} messages arrived")
            return list(self.received)


@pytest.fixture
def receiver():
    running = Receiver()
    running.start()
    yield running
    running.stop()


def test_send_test_reaches_the_target_in_its_language(receiver):
    ok, answer = notices.send_test(receiver.url("test"), "es", space="Casa Bogotá")
    assert ok, answer
    assert "JSON" in answer
    (got,) = receiver.wait_for(1)
    assert got["path"] == "/test"
    assert got["title"] == "Prueba desde Casa Bogotá"
    assert "quiosco" in got["message"]


def test_send_test_says_what_went_wrong(receiver):
    receiver.status = 500
    ok, answer = notices.send_test(receiver.url(), "en")
    assert not ok
    assert "500" in answer
    receiver.stop()  # nothing listens there now: the link is down
    ok, answer = notices.send_test(receiver.url(), "en")
    assert not ok and "onnection" in answer
    ok, answer = notices.send_test("nonsense://what", "en")
    assert not ok and "Apprise" in answer


def test_every_language_has_every_text():
    keys = set(notices.TEXTS["en"])
    for lang in notices.LANGUAGES:
        assert set(notices.TEXTS[lang]) == keys, lang
        for kind in notices.KINDS:
            title, body = notices.message(kind, lang, {"space": "S", "time": "10:00"})
            assert title and body and "{" not in title + body
    assert notices.language("es_CO") == "es"
    assert notices.language("zh-Hant-TW") == "zh_Hant_TW"
    assert notices.language("xx") == "en"


def test_a_test_from_the_kiosk_loads_neither_apprise_nor_paho(receiver):
    """The kiosk calls send_test in its own process: Apprise (and paho, which Apprise's
    MQTT target imports) stay in a child process."""
    import subprocess
    import sys

    code = (
        "import sys; from spacekiosk import notices; "
        f"print(notices.send_test({receiver.url('kiosk')!r}, 'el')); "
        "assert 'paho' not in sys.modules and 'apprise' not in sys.modules, 'loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(True, " in done.stdout
    (got,) = receiver.wait_for(1)
    assert got["path"] == "/kiosk" and got["title"].startswith("Δοκιμή")


# --- the notifier in the sync agent: sync/notify.py on a real store ---


ATHENS = ZoneInfo("Europe/Athens")
VISITORS = [("Zoë Papadopoulou", "zoe@example.org"), ("Kwame Mensah", "kwame@example.org")]
ALL = list(notices.EVENTS)
HOURS = '\n[space.opening_hours]\nmon = "10:00-21:00"\n'


def at(hhmm: str, day: str = "2026-11-30") -> float:
    """A Monday in Athens (open 10:00-21:00 by the pilots' hours)."""
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=ATHENS).timestamp()


@pytest.fixture
def space(tmp_path):
    """A space's config (door, PIR, counter; the backlog told after an hour) and its
    real store, with two visitors signed in whose names must never be told."""
    path = write_space_config(
        tmp_path,
        broker_port=free_port(),
        extra=SENSORS + HOURS + "\n[notifications]\nbacklog_hours = 1\n",
    )
    cfg = configuration.load(path)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    for name, email in VISITORS:
        visitor = db.execute(
            "INSERT INTO visitors (name, name_key, email, created_at) VALUES (?, ?, ?, ?)",
            [name, name.lower(), email, at("09:00")],
        ).lastrowid
        db.execute(
            "INSERT INTO visits (visitor_id, signed_in_at) VALUES (?, ?)", [visitor, at("10:06")]
        )
    yield cfg, db
    db.close()


def add_target(db, url, events=ALL, language="en", personal=False, name="chat") -> int:
    return db.execute(
        "INSERT INTO notify_targets (name, url, events, language, personal, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [name, url, json.dumps(events), language, int(personal), at("09:00")],
    ).lastrowid


def sensor(db, when: float, name: str, kind: str, detail: str | None = None) -> None:
    """A row as the sensors daemon writes it."""
    db.execute(
        "INSERT INTO sensor_events (at, sensor, kind, detail) VALUES (?, ?, ?, ?)",
        [when, name, kind, detail],
    )


def step(db, cfg, now, **seen) -> int:
    """What the notifier's loop does once: observe, then deliver."""
    notify.observe(db, cfg, now, **({"clock_state": "synchronized", "disk": 10} | seen))
    return notify.deliver(db, now, zone=ATHENS)


def no_names(received: list[dict]) -> None:
    for got in received:
        text = json.dumps(got, ensure_ascii=False)
        for name, email in VISITORS:
            for part in (*name.split(), email):
                assert part not in text, (part, got)


def test_each_event_arrives_once_and_what_waited_for_the_link_says_it_is_late(space, receiver):
    cfg, db = space
    add_target(db, receiver.url("chat"))
    assert step(db, cfg, at("09:00")) == 0  # closed, all well: nothing to tell
    sensor(db, at("10:05"), "door", "open")
    assert step(db, cfg, at("10:05:30")) == 1
    sensor(db, at("10:10"), "motion:main room", "fault", "no motion for 3 days")
    assert step(db, cfg, at("10:10:30")) == 1
    assert [g["title"] for g in receiver.wait_for(2)] == [
        "Test Space is open",
        "Sensor fault",
    ]

    receiver.stop()  # the link is cut
    assert step(db, cfg, at("10:21")) == 0  # the door, open 16 minutes: queued
    sensor(db, at("10:45"), "motion:main room", "ok")
    outbox.refresh(db, cfg, at("11:01"))  # the 10:00 hour is over: to be sent
    db.execute("INSERT INTO roll_calls (started_at, started_by) VALUES (?, 'admin')", [at("11:50")])
    roll = db.execute("SELECT id FROM roll_calls").fetchone()[0]
    for (visit,) in db.execute("SELECT id FROM visits").fetchall():
        db.execute("INSERT INTO roll_call_people (roll_call_id, visit_id) VALUES (?, ?)",
                   [roll, visit])  # fmt: skip
    assert step(db, cfg, at("12:00"), clock_state="unsynchronized", disk=95) == 0
    waiting = db.execute("SELECT kind, attempts FROM notify_outbox WHERE sent_at IS NULL")
    kinds = {kind for kind, _ in waiting}
    assert kinds == {
        notices.DOOR_OPEN,
        notices.SENSOR_OK,
        notices.BACKLOG,
        notices.CLOCK,
        notices.DISK,
        notices.EVACUATION,
    }

    receiver.start()  # the link is back: after the backoff, everything goes, once
    assert step(db, cfg, at("12:00:10")) == 0  # not due yet
    assert step(db, cfg, at("12:30")) == 6
    sensor(db, at("20:00"), "door", "close")
    assert step(db, cfg, at("21:00:30")) == 1
    received = receiver.wait_for(9)
    assert step(db, cfg, at("21:30")) == 0
    titles = [g["title"] for g in received]
    assert len(titles) == len(set(titles)) == 9, titles
    assert titles[-1] == "Test Space is closed"
    assert received[-1]["message"] == "Test Space closed at 21:00."
    late = [g for g in received[2:8]]
    assert all("(late: happened at" in g["message"] for g in late), late
    door = next(g for g in received if g["title"] == "Door left open")
    assert "since 10:05" in door["message"] and "(late: happened at 10:05)" in door["message"]
    evacuation = next(g for g in received if g["title"] == "Evacuation started")
    assert "2 people" in evacuation["message"]
    no_names(received)
    assert db.execute("SELECT count(*) FROM notify_outbox WHERE sent_at IS NULL").fetchone() == (0,)


def test_a_personal_target_alone_hears_who_was_signed_in(space, receiver):
    cfg, db = space
    add_target(db, receiver.url("team"), events=[notices.EVACUATION])
    add_target(db, receiver.url("wardens"), events=[notices.EVACUATION], personal=True,
               language="el")  # fmt: skip
    step(db, cfg, at("11:00"))
    db.execute("INSERT INTO roll_calls (started_at, started_by) VALUES (?, 'a')", [at("11:05")])
    for (visit,) in db.execute("SELECT id FROM visits").fetchall():
        db.execute("INSERT INTO roll_call_people (roll_call_id, visit_id) VALUES (1, ?)", [visit])
    assert step(db, cfg, at("11:05:10")) == 2
    got = {g["path"]: g for g in receiver.wait_for(2)}
    no_names([got["/team"]])
    assert got["/wardens"]["title"] == "Ξεκίνησε εκκένωση"
    assert "Zoë P." in got["/wardens"]["message"] and "Kwame M." in got["/wardens"]["message"]
    assert "Papadopoulou" not in got["/wardens"]["message"]  # first name and initial only
    assert "example.org" not in got["/wardens"]["message"]
    stored = json.dumps(db.execute("SELECT * FROM notify_outbox").fetchall(), ensure_ascii=False)
    assert "Zoë" not in stored and "Kwame" not in stored  # sent, never kept


def test_a_flapping_sensor_is_told_at_most_once_per_interval(space, receiver):
    cfg, db = space
    interval = cfg.notifications.min_interval_minutes * 60
    add_target(db, receiver.url("chat"), events=[notices.SENSOR_FAULT, notices.SENSOR_OK])
    start = at("10:00")
    step(db, cfg, start)
    for i in range(50):  # fault and recovery, fifty times in twenty minutes
        now = start + 1 + i * 24
        sensor(db, now, "beam_a", "fault" if i % 2 == 0 else "ok", "blocked")
        step(db, cfg, now + 1)
        rows = db.execute(
            "SELECT count(*) FROM notify_outbox WHERE key = 'sensor:beam_a' AND sent_at IS NULL"
        ).fetchone()[0]
        assert rows <= 1  # coalesced, never a row per flap
    assert len(receiver.wait_for(1)) == 1
    sensor(db, start + 1250, "beam_a", "fault", "blocked")  # left at fault
    for minute in range(21, 95):  # then an hour and more of checks
        step(db, cfg, start + minute * 60)
    received = receiver.wait_for(1)
    sent = [at_ for (at_,) in db.execute("SELECT sent_at FROM notify_outbox ORDER BY sent_at")]
    assert all(b - a >= interval for a, b in itertools.pairwise(sent)), sent
    # It went fault, then ended at fault: the first message said so, nothing more is due.
    assert [g["title"] for g in received] == ["Sensor fault"]
    state = db.execute("SELECT flaps FROM notify_state WHERE key = 'sensor:beam_a'").fetchone()
    assert state[0] >= 50


def test_a_link_down_for_long_backs_off_and_coalesces(space):
    cfg, db = space
    url = f"json://127.0.0.1:{free_port()}/nobody"
    add_target(db, url, events=[notices.SENSOR_FAULT, notices.SENSOR_OK])
    start = at("10:00")
    step(db, cfg, start)
    sensor(db, start + 10, "door", "fault", "stuck")
    tries = []
    for minute in range(0, 240, 5):
        now = start + 20 + minute * 60
        if minute == 120:
            sensor(db, now - 5, "door", "ok")
        step(db, cfg, now)
        tries.append(db.execute("SELECT attempts FROM notify_outbox").fetchone()[0])
    rows = db.execute("SELECT kind, repeats, attempts, due_at FROM notify_outbox").fetchall()
    assert len(rows) == 1  # the recovery replaced the fault that never went out
    kind, repeats, attempts, due = rows[0]
    assert kind == notices.SENSOR_OK and repeats == 1
    assert attempts < 15  # backoff: 48 rounds, far fewer tries
    assert due - (start + 20 + 235 * 60) <= notify.MAX_RETRY


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    url=st.text(max_size=300),
    events=st.one_of(
        st.lists(st.one_of(st.sampled_from(ALL), st.text(max_size=30)), max_size=20),
        st.text(max_size=50),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
        st.integers(),
    ),
    language=st.text(max_size=40),
    personal=st.integers(-5, 5),
    name=st.text(min_size=1, max_size=80),
    reason=st.text(max_size=500),
)
def test_what_an_admin_stores_never_breaks_the_notifier(
    tmp_path_factory, url, events, language, personal, name, reason
):
    """Whatever the admin pages stored (a URL, the events as any JSON, any language,
    any flag) and whatever a sensor's fault says, the notifier neither crashes nor
    writes a message outside its bounds; a URL is judged without a crash."""
    folder = tmp_path_factory.mktemp("prop")
    cfg = configuration.load(write_space_config(folder, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        problem = notices.check_url(url)
        assert problem is None or len(problem) < 200
        db.execute(
            "INSERT INTO notify_targets (name, url, events, language, personal, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            [name, url, json.dumps(events), language, personal],
        )
        sensor(db, at("10:01"), "door", "fault", reason)
        notify.observe(db, cfg, at("10:02"), clock_state="synchronized", disk=10)
        for title, body in db.execute("SELECT title, body FROM notify_outbox"):
            assert 0 < len(title) <= 300 and 0 < len(body) <= 1000
            assert "\n" not in title
    finally:
        db.close()


def test_the_sync_agent_tells_the_chat(tmp_path, broker, notified, receiver):
    """The real `spacekiosk sync` service runs the notifier in a thread: a sensor at
    fault and a target that wants it are told at its first look, in the target's
    language, while the agent goes on with the usage data."""
    toml = write_space_config(tmp_path, broker_port=broker.port, extra=SENSORS)
    cfg = configuration.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        add_target(db, receiver.url("space"), events=[notices.SENSOR_FAULT], language="sw")
        add_target(db, receiver.url("off"), events=[notices.SENSOR_OK])  # wants no fault
        sensor(db, time.time() - 5, "beam_b", "fault", "blocked")
        agent = notified("sync", "--config", str(toml))
        agent.wait_for("READY=1")
        (got,) = receiver.wait_for(1, timeout=30)
        assert got["path"] == "/space"
        assert got["title"] == "Hitilafu ya kihisi" and "beam_b" in got["message"]
        wait_until(
            lambda: db.execute("SELECT sent_at FROM notify_outbox").fetchone()[0] is not None,
            what="the agent marks the message sent",
        )
    finally:
        db.close()


def test_a_boot_before_the_clock_is_set_is_told_only_if_it_lasts(space, receiver):
    cfg, db = space
    add_target(db, receiver.url("chat"), events=[notices.CLOCK])
    seen = {"clock_state": "unsynchronized", "disk": 10}
    assert notify.observe(db, cfg, at("09:00"), uptime=30, **seen) == 0  # just booted
    assert notify.observe(db, cfg, at("09:05"), uptime=330, **seen) == 0
    assert notify.observe(db, cfg, at("09:10"), uptime=notify.CLOCK_GRACE, **seen) == 1
    assert notify.deliver(db, at("09:10"), zone=ATHENS) == 1
    assert receiver.wait_for(1)[0]["title"] == "Clock not synchronised"


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    events=st.lists(st.sampled_from(ALL), min_size=1, unique=True),
    language=st.one_of(st.sampled_from(notices.LANGUAGES), st.text(max_size=20)),
    visitor=st.from_regex(r"[A-Z][a-z]{9,14} [A-Z][a-z]{9,14}", fullmatch=True),
    reason=st.text(max_size=300),
    faults=st.lists(st.booleans(), min_size=1, max_size=12),
)
def test_whatever_happens_no_name_reaches_a_target_that_did_not_allow_it(
    tmp_path_factory, receiver, events, language, visitor, reason, faults
):
    """A visitor signed in, an evacuation, a sensor's faults with any text, any events
    and language: a target without `personal` gets messages within bounds and never
    the visitor's name."""
    folder = tmp_path_factory.mktemp("names")
    cfg = configuration.load(write_space_config(folder, broker_port=1, extra=SENSORS + HOURS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    before = len(receiver.received)
    try:
        add_target(db, receiver.url("prop"), events=events, language=language)
        who = db.execute(
            "INSERT INTO visitors (name, name_key, email, created_at) VALUES (?, ?, ?, 0)",
            [visitor, visitor.lower(), "someone@example.net"],
        ).lastrowid
        visit = db.execute(
            "INSERT INTO visits (visitor_id, signed_in_at) VALUES (?, ?)", [who, at("10:00")]
        ).lastrowid
        now = at("10:30")
        for i, fault in enumerate(faults):
            sensor(db, now + i * 60, "beam_a", "fault" if fault else "ok", reason)
            step(db, cfg, now + i * 60 + 1)
        db.execute("INSERT INTO roll_calls (started_at, started_by) VALUES (?, 'a')", [now + 900])
        db.execute("INSERT INTO roll_call_people VALUES (1, ?, NULL, NULL)", [visit])
        step(db, cfg, now + 901)
        sent = db.execute("SELECT count(*) FROM notify_outbox WHERE sent_at IS NOT NULL")
        expected = sent.fetchone()[0]
        assert expected >= (notices.EVACUATION in events)
        got = receiver.wait_for(before + expected)[before:]
        for message in got:
            assert len(message["title"]) <= 300 and len(message["message"]) <= 1000
            for part in (*visitor.split(), "someone@example.net"):
                assert part not in message["title"] + message["message"]
    finally:
        db.close()
