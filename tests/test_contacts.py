"""A metered link's contacts, one at a time: the sync agent in this process ([sync] link =
"metered"), over TLS to a real Mosquitto through a TCP proxy, with a packet capture on the
proxy's port counting what a SIM would bill, and a real collector acknowledging.

Each contact is driven as bench/wire.py drives them: made due, then pumped until it has
ended; the agent's wall clock is a replayed one (its TLS context reads it too), so a
contact can be a minute or three hours after the last by that clock. The schedule of
retries itself is a Hypothesis property. tests/test_metered.py has the week of a space
through a carrier's NAT; these are the contact's parts, each on its own.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sqlite3
import threading
import time
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from conftest import (
    PASSWORDS,
    SPACE,
    summarise,
    sync_once,
    usage,
    wait_until,
    write_space_config,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from ipcapture import Capture
from tcpproxy import TcpProxy
from test_truth import sync_state

from bench.wire import ReplayClock, store, traffic, until
from collector import store as central_store
from spacekiosk import clock, config, protocol
from spacekiosk.broker import Broker
from spacekiosk.db import connect
from sync import contact
from sync.agent import Agent

HOUR, DAY = 3600, 86400
EVERY = DAY  # contact_every_minutes' default, as seconds
SECTION = "a metered link's contacts (tests/test_contacts.py)"
TICKET = 7200  # Mosquitto's (OpenSSL's) TLS ticket lifetime, seconds
# Open all week, as bench/wire.py's space: a day of its traffic is a few hundred events.
OPENING_HOURS = "[space.opening_hours]\n" + "".join(
    f'{day} = "{hours}"\n'
    for day, hours in zip(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        ["09:00-21:00"] * 5 + ["10:00-18:00"] * 2,
        strict=True,
    )
)


@pytest.fixture
def broker(tmp_path):
    """The test broker with a TLS listener beside its plain one (for the collector)."""
    with Broker(tmp_path / "broker", PASSWORDS, tls=True) as running:
        yield running


@pytest.fixture
def proxy(broker):
    """The space's way to the broker's TLS listener, to block and to count on."""
    with TcpProxy(broker.tls_port) as running:
        yield running


def metered_space(tmp_path, port: int, ca_file, sync: str = "") -> config.SpaceConfig:
    toml = write_space_config(
        tmp_path / "space",
        broker_port=port,
        sync='link = "metered"\n' + sync,
        extra=OPENING_HOURS,
        mqtt=f'tls = true\nca_file = "{ca_file}"',
    )
    return config.load(toml)


def a_day(cfg, seed: int = 3) -> list[dict]:
    """A day of a space's traffic, two days ago, in its store."""
    start = (datetime.now(UTC) - timedelta(days=2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    events = traffic(cfg, start, 1, seed)
    store(cfg, events, None)
    return events


def signins(events: list[dict]) -> Counter:
    """Sign-ins by hour, from the events themselves."""
    return Counter(int(e["at"]) // HOUR * HOUR for e in events if e["kind"] == "signin")


def received(url: str) -> Counter:
    """Sign-ins by hour at the collector."""
    return Counter(
        {protocol.hour_epoch(b["start"]): b["signins"] for b in usage(url) if b.get("signins")}
    )


def replayed(at: float) -> tuple[ReplayClock, clock.Reckoning]:
    """The agent's wall clock, at `at` until the test moves it (10 minutes past an hour, so
    a minute on crosses no hour)."""
    replay = ReplayClock(at)
    return replay, clock.Reckoning(wall=replay, monotonic=replay)


def past_the_hour() -> float:
    return time.time() // HOUR * HOUR - HOUR + 600


def make_contact(agent: Agent) -> None:
    """A contact made due now, pumped until it has ended (connected or not)."""
    agent.schedule.due_at = 0.0
    agent.pump()
    assert agent.contact_began is not None, "the contact did not begin"
    until(lambda: agent.contact_began is None, "the contact to end", agent=agent)


def state(cfg, key: str):
    db = sqlite3.connect(cfg.database.path, timeout=30)
    try:
        return sync_state(db, key)
    finally:
        db.close()


class Watcher:
    """The space's topics as a collector-like login sees them: each message, and whether
    the broker gave it as the retained one (on subscribing) or as it was published."""

    def __init__(self, port: int, kinds: tuple[str, ...] = ("status",)):
        self.messages: list[tuple[str, dict | bytes, bool]] = []
        self.subscribed = threading.Event()
        self.changed = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="tap-collector-tap", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set("collector-tap", PASSWORDS["collector-tap"])
        topics = [(protocol.topic(SPACE, kind), 1) for kind in kinds]
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the watcher never subscribed"

    def _on_message(self, client, userdata, message):
        kind = message.topic.rsplit("/", 1)[1]
        body: dict | bytes = message.payload
        if kind == "status":
            raw = body if body[:1] == b"{" else zlib.decompress(body)
            body = json.loads(raw)
        with self.changed:
            self.messages.append((kind, body, bool(message.retain)))
            self.changed.notify_all()

    def of(self, kind: str, retained: bool | None = None) -> list:
        with self.changed:
            return [
                body
                for k, body, r in self.messages
                if k == kind and (retained is None or r == retained)
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_status(port: int) -> dict:
    """The space's retained status, as a collector subscribing now is given it."""
    watcher = Watcher(port)
    try:
        (status,) = wait_until(lambda: watcher.of("status"), what="the retained status")
        assert watcher.of("status", retained=True) == [status]
        return status
    finally:
        watcher.close()


# --- 1. a contact: everything delivered, then no connection left open ---


def test_a_contact_delivers_the_day_and_leaves_no_connection_open(
    tmp_path, broker, proxy, collector
):
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file)
    events = a_day(cfg)
    truth = signins(events)
    assert sum(truth.values()) > 20
    _replay, reckoning = replayed(time.time())
    with Capture(proxy.port) as capture, Agent(cfg, reckoning=reckoning) as agent:
        assert proxy.connections == 0  # a metered agent does not connect as it starts
        assert state(cfg, "broker") == "between contacts"
        make_contact(agent)
        spent = capture.settle()  # raises if a connection is left open
        assert capture.open_flows() == [] and proxy.links_open == 0
        assert agent.backlog() == 0 and agent.schedule.failures == 0
        assert not agent.link.connected.is_set()
        assert state(cfg, "broker") == "between contacts"
        assert abs(state(cfg, "next_contact_at") - (time.time() + EVERY)) < 60
        for _ in range(5):  # pumped again, it does not call before the next is due
            agent.pump()
            agent.link.wake.wait(0.05)
        assert proxy.connections == 1 and agent.contact_began is None
    assert received(collector) == truth
    assert spent.connections == 1 == proxy.connections
    assert spent.dropped == 0
    assert state(cfg, "broker") == "stopped"  # the agent's own stop, after the contact
    with sqlite3.connect(cfg.database.path) as db:
        row = dict(db.execute("SELECT key, value FROM sync_state").fetchall())
    next_at, last_at = json.loads(row["next_contact_at"]), json.loads(row["last_contact_at"])
    assert abs(next_at - (last_at + EVERY)) < 1
    assert abs(last_at - time.time()) < 60
    summarise(
        SECTION,
        f"a contact with a day's hours ({sum(truth.values())} sign-ins): {spent.bytes} IP "
        f"bytes in {spent.packets} packets, one connection, closed",
    )


# --- 2. the retained status a metered space leaves, and no last will ---


def test_the_retained_status_says_online_and_no_will_replaces_it(tmp_path, broker, proxy):
    """No collector: a contact waits for acks, so the test can cut its connection — the
    way a will would be published — and see that none is."""
    # A contact tells its status once its hours are acked or it has waited an ack
    # timeout for them; with no collector, the latter, soon.
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file, "ack_timeout_seconds = 2")
    a_day(cfg)
    watcher = Watcher(broker.port, ("status", "usage"))
    try:
        with Agent(cfg, reckoning=replayed(time.time())[1]) as agent:
            for n in (1, 2):
                batches = len(watcher.of("usage"))
                agent.schedule.due_at = 0.0
                agent.pump()
                until(lambda b=batches: len(watcher.of("usage")) > b, "a batch", agent=agent)
                if n == 1:
                    until(lambda: watcher.of("status"), "its status", agent=agent)
                assert agent.contact_began is not None and agent.contact_reached  # for acks
                proxy.cut()  # no DISCONNECT: as a link that died
                until(lambda: agent.contact_began is None, "the cut contact", agent=agent)
                assert agent.schedule.failures == n
                # The contact reached the broker: the link is fine, the contact short.
                assert state(cfg, "broker") == "between contacts"
            # The second contact connected with the first's client id, after the cut:
            # a will of the first would have been published before its batch came.
            (status,) = watcher.of("status")
            assert status["online"] is True and status["contact_every"] == EVERY
        # Stopped between contacts: nothing more said.
        assert retained_status(broker.port) == status
    finally:
        watcher.close()
    assert all(s["online"] for s in watcher.of("status"))


# --- 3. TLS resumption, by the agent's clock ---


def test_a_second_contact_resumes_the_tls_session_while_its_ticket_lasts(
    tmp_path, broker, proxy, collector, caplog
):
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file)
    events = a_day(cfg)
    replay, reckoning = replayed(past_the_hour())
    costs = []
    caplog.set_level(logging.INFO, logger="sync.agent")
    with Capture(proxy.port) as capture, Agent(cfg, reckoning=reckoning) as agent:
        # A minute on, then past the ticket's lifetime by the agent's clock (the real
        # clock has moved a second or two: the broker would still take the ticket).
        for step in (0, 60, TICKET + 1):
            replay.at += step
            before = capture.sync()
            caplog.clear()
            make_contact(agent)
            assert agent.schedule.failures == 0 and agent.backlog() == 0
            costs.append(capture.settle() - before)
            (said,) = [r.message for r in caplog.records if r.message.startswith("connected")]
            assert said.endswith("(TLS session resumed)") == (step == 60), (step, said)
    first, resumed, expired = costs
    assert [c.connections for c in costs] == [1, 1, 1]
    assert resumed.bytes < first.bytes and resumed.bytes < expired.bytes, costs
    assert received(collector) == signins(events)
    summarise(
        SECTION,
        f"IP bytes of a contact: the first (a day's hours) {first.bytes}, a minute later "
        f"(TLS session resumed) {resumed.bytes}, past the ticket's lifetime {expired.bytes}",
    )


# --- 4. a contact's last word: the status and the digest once its hours are acked ---


def test_a_contact_leaves_its_status_caught_up_and_the_next_sends_none(
    tmp_path, broker, proxy, collector
):
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file)
    a_day(cfg)
    watcher = Watcher(broker.port)
    try:
        with Agent(cfg, reckoning=replayed(past_the_hour())[1]) as agent:
            make_contact(agent)
            assert agent.backlog() == 0
            # Between contacts, the retained status is what the contact left: caught up
            # (not the backlog it had as it connected, for a day, until the next).
            left = retained_status(broker.port)
            assert left["online"] is True and left["contact_every"] == EVERY
            assert left["backlog"] == 0, left
            published = len(watcher.of("status", retained=False))
            assert published >= 1
            make_contact(agent)  # nothing changed: no status
            assert len(watcher.of("status", retained=False)) == published
    finally:
        watcher.close()


def test_a_contact_sends_the_reconciliation_digest_once_its_hours_are_acked(
    tmp_path, broker, proxy, collector
):
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file)
    a_day(cfg)
    watcher = Watcher(broker.port, ("digest",))
    try:
        with Agent(cfg, reckoning=replayed(past_the_hour())[1]) as agent:
            make_contact(agent)
            assert agent.backlog() == 0
            assert agent.stamps["last_digest_at"], "no digest in the contact"
    finally:
        watcher.close()
    assert len(watcher.of("digest")) == 1


# --- 5. the link blocked: one failed attempt, then the schedule's backoff ---


def test_a_blocked_link_fails_the_contact_and_waits_a_minute(tmp_path, broker, proxy):
    cfg = metered_space(tmp_path, proxy.port, broker.ca_file)
    a_day(cfg)
    proxy.block()
    with Agent(cfg, reckoning=replayed(time.time())[1]) as agent:
        assert agent.refresh() > 0  # as the service's loop does, contact or not
        make_contact(agent)
        failed_at = time.time()
        assert proxy.connections == 1
        assert agent.schedule.failures == 1 and agent.backlog() > 0
        assert state(cfg, "broker") == "unreachable"
        wait = state(cfg, "next_contact_at") - failed_at
        assert 0.9 * 60 - 5 <= wait <= 1.1 * 60, wait
        assert state(cfg, "last_contact_at") is None
        for _ in range(5):  # no further attempt before then
            agent.pump()
            agent.link.wake.wait(0.1)
        assert proxy.connections == 1 and agent.contact_began is None


# --- 6. the HTTPS route after a failed contact ---


def test_a_failed_contact_sends_over_https(tmp_path, broker, proxy, collector):
    token = "t0k3n-" + "m" * 40
    central_store.set_token(connect(tmp_path / "central" / "central.db"), SPACE, token)
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "token").write_text(token + "\n")
    cfg = metered_space(
        tmp_path,
        proxy.port,
        broker.ca_file,
        f'http_url = "{collector.rstrip("/")}"\ntoken_file = "token"',
    )
    events = a_day(cfg)
    proxy.block()  # the MQTT port is blocked; the HTTP(S) route is not
    with Agent(cfg, reckoning=replayed(time.time())[1]) as agent:
        assert agent.refresh() > 0  # as the service's loop does, contact or not
        make_contact(agent)
        assert agent.schedule.failures == 1
        until(lambda: agent.backlog() == 0, "the hours over HTTPS", agent=agent)
        assert state(cfg, "http") == "ok"
    assert received(collector) == signins(events)
    assert proxy.connections == 1


# --- 7. `spacekiosk sync --once` on a metered space ---


def test_sync_once_on_a_metered_space_delivers_everything(tmp_path, broker, collector):
    cfg = metered_space(tmp_path, broker.tls_port, broker.ca_file)
    events = a_day(cfg)
    done = sync_once(cfg.source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all " in done.stdout and "hour(s) delivered" in done.stdout
    assert received(collector) == signins(events)
    # What it leaves for the collector: a metered space, online between its contacts.
    left = retained_status(broker.port)
    assert left["contact_every"] == EVERY
    assert left["online"] is True, left


# --- 8. the schedule of contacts and retries ---

EVERIES = st.integers(10, 7 * 1440).map(lambda m: 60.0 * m)  # contact_every_minutes' bounds


@settings(max_examples=300, deadline=None)
@given(
    every=EVERIES,
    seed=st.integers(0, 2**32),
    events=st.lists(st.tuples(st.booleans(), st.floats(0, 3 * DAY)), max_size=40),
)
def test_failures_back_off_from_a_minute_to_the_interval(every, seed, events):
    """Whatever failures and successes come, at whatever times: each wait is the nominal
    one (a minute, doubling, at most the interval) within the jitter; a success resets."""
    schedule = contact.Schedule(every, last_contact=1e9, rng=random.Random(seed))
    assert schedule.due_at == 1e9 + every
    now = 1e9
    streak = 0
    for ok, gap in events:
        now += gap
        if ok:
            schedule.succeeded(now)
            streak = 0
            assert schedule.failures == 0 and schedule.due_at == now + every
            continue
        nominal = min(60 * 2**streak, every)
        wait = schedule.failed(now)
        streak += 1
        assert schedule.failures == streak
        assert 0.9 * nominal * (1 - 1e-9) <= wait <= 1.1 * nominal * (1 + 1e-9), (streak, wait)
        assert wait <= 1.1 * every * (1 + 1e-9)
        assert schedule.due_at == now + wait
        assert not schedule.due(now + wait * 0.99) and schedule.due(now + wait)


@settings(max_examples=200, deadline=None)
@given(every=EVERIES, seed=st.integers(0, 2**32))
def test_a_week_of_failures_costs_a_handful_of_attempts(every, seed):
    """A link down for a week, each attempt made as soon as it is due: the doublings up to
    the interval, then one an interval (less the jitter) at most."""
    schedule = contact.Schedule(every, rng=random.Random(seed))
    now = start = 1e9
    attempts = 0
    while now < start + 7 * DAY:
        assert schedule.due(now)
        attempts += 1
        now += schedule.failed(now)
    bound = math.log2(every / 60) + 2 + 7 * DAY / (0.9 * every)
    assert attempts <= bound, (every, attempts, bound)
