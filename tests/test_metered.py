"""A metered link: the sync agent's contacts on a schedule, over TLS, through a carrier NAT
that drops idle connections silently, across a link down for days and a collector away.

The agent runs as its service does (`spacekiosk sync`), on tests/stepclock.py's clock,
which the test moves through a week in steps of hours; the proxy's NAT reads the same
clock, so a connection left open across a step has been idle for hours and is dropped
without a FIN or a reset, as a mobile carrier drops it. A packet capture on loopback
counts what the SIM would bill. What the collector holds at the end is checked hour by
hour against the week's events themselves, counted here without the project's code.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import conftest
import pytest
import requests
from conftest import PASSWORDS, http_ready, summarise, usage, wait_until, write_space_config
from ipcapture import Capture
from tcpproxy import TcpProxy
from test_truth import Agent, sync_state

from bench.wire import store, traffic
from spacekiosk import config
from spacekiosk.broker import Broker

HOUR, DAY = 3600, 86400
NAT_IDLE = 240  # seconds: some carriers drop an idle TCP connection after 4-5 minutes
CONTACT = 12 * HOUR  # the space's contact_every_minutes, as seconds
MARGIN = 600  # each step goes this far past a contact's due time


@pytest.fixture
def broker(tmp_path):
    """The test broker with a TLS listener beside its plain one (for the collector)."""
    with Broker(tmp_path / "broker", PASSWORDS, tls=True) as running:
        yield running


def metered_space(folder, port: int, ca_file) -> config.SpaceConfig:
    toml = write_space_config(
        folder,
        broker_port=port,
        # A contact waits for its acks past an hour's step (CONNECT_SECONDS + 2 x this),
        # so a step leaves a waiting contact's connection idle for the NAT to drop.
        sync=f'link = "metered"\ncontact_every_minutes = {CONTACT // 60}\n'
        "ack_timeout_seconds = 1800",
        mqtt=f'tls = true\nca_file = "{ca_file}"',
    )
    return toml, config.load(toml)


def expected(events: list[dict], start: float, end: float) -> dict[int, Counter]:
    """The week's counts hour by hour, from the events themselves."""
    names = {("door", "open"): "door_openings", ("counter", "entry"): "entries",
             ("counter", "exit"): "exits", (None, "signin"): "signins"}  # fmt: skip
    hours: dict[int, Counter] = {}
    for event in events:
        name = names.get((event.get("sensor"), event["kind"]))
        if name and start <= event["at"] < end:
            hours.setdefault(int(event["at"]) // HOUR * HOUR, Counter())[name] += 1
    return hours


def held(url: str) -> dict[int, Counter]:
    """What the collector holds, hour by hour, for the counts `expected` knows."""
    hours: dict[int, Counter] = {}
    for bucket in usage(url):
        at = datetime.fromisoformat(bucket["start"].replace("Z", "+00:00")).timestamp()
        counts = Counter({k: bucket.get(k, 0) for k in ("door_openings", "entries", "exits",
                                                          "signins")})  # fmt: skip
        if +counts:
            hours[int(at)] = +counts
    return hours


def restart_collector(url: str, services) -> None:
    toml = conftest._COLLECTORS[urlsplit(url).port]
    http_ready(url + "healthz", services("collector", "--config", str(toml)))
    wait_until(
        lambda: requests.get(url + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector's subscription",
    )


def test_a_week_through_a_carrier_nat_that_drops_idle_connections(
    tmp_path, broker, collector, services
):
    start = (datetime.now(UTC) - timedelta(days=10)).replace(hour=0, minute=0, second=0)
    t0 = start.replace(microsecond=0).timestamp()
    clock_file = tmp_path / "agent-clock"
    clock_file.write_text(repr(t0 - time.time()))

    def pi_clock() -> float:
        return time.time() + float(clock_file.read_text())

    with (
        TcpProxy(broker.tls_port, nat_idle=NAT_IDLE, clock=pi_clock) as nat,
        Capture(nat.port) as capture,
    ):
        toml, cfg = metered_space(tmp_path / "space", nat.port, broker.ca_file)
        events = traffic(cfg, start, 7, seed=11)
        store(cfg, events, None)
        db = sqlite3.connect(cfg.database.path, timeout=30)
        agent = Agent(toml, clock_file, tmp_path / "sync-agent.log")
        services.started.append(agent)  # stopped, and its exit checked, at the end

        def contacted_since(at: float) -> bool:
            return (sync_state(db, "last_contact_at") or 0) >= at

        def between_contacts(to: float) -> bool:
            """No contact under way, and none due by `to`."""
            return (
                sync_state(db, "broker") in ("between contacts", "unreachable")
                and (sync_state(db, "next_contact_at") or 0) > to
            )

        def step(to: float, waiting: bool = False) -> bool:
            """Move the Pi's clock to `to`, and wait for what is due by then to be done
            or, `waiting`, for a new contact to be connected and waiting for its acks
            (then True). A step taken while a contact is under way leaves its connection
            idle for hours: the NAT drops it."""
            seen = nat.connections
            agent.set(to)

            def waits() -> bool:
                return nat.connections > seen and sync_state(db, "broker") == "connected"

            wait_until(lambda: between_contacts(to) or (waiting and waits()),
                       what=f"the agent's contacts due by {to}")  # fmt: skip
            return waiting and waits()

        wait_until(lambda: between_contacts(t0), what="the first contact")
        first = sync_state(db, "last_contact_at")

        # Two days as planned: a contact every 12 hours, each its own connection.
        while agent.at < t0 + 2 * DAY:
            step(sync_state(db, "next_contact_at") + MARGIN)
        planned, planned_last = nat.connections, sync_state(db, "last_contact_at")

        # The link down for two days: attempts back off, and none is a storm.
        nat.block()
        down_at, attempts_before = agent.at, nat.connections
        while agent.at < down_at + 2 * DAY:
            step(agent.at + HOUR)
        attempts = nat.connections - attempts_before
        nat.unblock()
        back_at = agent.at
        while not contacted_since(back_at):
            step(agent.at + HOUR)
        back = sync_state(db, "last_contact_at")

        # The collector away for a day: contacts connect but no ack comes, so each waits
        # until the next step, which leaves its connection idle past the NAT's limit.
        [running] = [s for s in services.started if s.args[0] == "collector"]
        running.stop()
        away_at, waited = agent.at, 0
        while agent.at < away_at + DAY:
            if step(agent.at + HOUR, waiting=True):  # a contact waits for its acks:
                waited += 1
                agent.set(agent.at + HOUR)  # an hour without a byte, and the NAT drops it
                wait_until(lambda n=waited: nat.nat_drops >= n,
                           what="the NAT to drop the idle contact")  # fmt: skip
        restart_collector(collector, services)

        # On to the end of the week and beyond, then to now.
        while (due := max(agent.at, sync_state(db, "next_contact_at")) + MARGIN) < time.time():
            step(due)
        agent.set(max(agent.at, time.time()))
        truth = expected(events, t0, t0 + 7 * DAY)
        wait_until(lambda: held(collector) == truth, timeout=60,
                   what="the collector to hold the week")  # fmt: skip
        wait_until(lambda: not db.execute("SELECT count(*) FROM outbox").fetchone()[0],
                   what="the outbox to empty")  # fmt: skip
        links = db.execute("SELECT start, end FROM link_log ORDER BY start").fetchall()
        spent = capture.sync()
        drops = nat.nat_drops
        total_connections = nat.connections

    days = (agent.at - t0) / DAY
    log = (tmp_path / "sync-agent.log").read_text(errors="replace")
    resumed = log.count("TLS session resumed")
    summarise(
        "a metered link through a carrier NAT (tests/test_metered.py)",
        f"{days:.1f} days on the Pi's clock; {sum(sum(c.values()) for c in truth.values())} "
        f"counts in {len(truth)} hours, every one at the collector as it happened",
        f"connections: {total_connections} ({planned} in the first two days; {attempts} "
        f"attempts while the link was down for 2 days; {resumed} resumed a TLS session)",
        f"NAT drops of idle connections: {drops} (contacts left waiting for an ack while "
        "the collector was away for a day; each ended by the agent, its hours sent again)",
        f"IP bytes: {spent.bytes} in all, {spent.bytes / days:.0f} a day, {spent.packets} packets",
    )
    # Nothing lost, nothing counted twice: every hour equals the events themselves.
    assert held(collector) == truth
    # Link availability, sampled at the contacts: up from one successful contact to the
    # next through the first two days, down from the last before the outage to the
    # first after it (a lower bound: the link went down some time in between).
    assert any(start <= first and end >= planned_last - 60 for start, end in links), links
    assert all(end <= planned_last or start >= back_at for start, end in links), links
    assert any(back_at <= start <= back for start, end in links), links
    # No storm: 1, 2, 4 ... minutes apart, at most 12 h; 48 hourly steps see at most
    # one attempt each while the wait is under an hour, then fewer.
    assert 2 <= attempts <= 14, attempts
    assert planned <= 5, planned  # a contact at the start, then every 12 hours
    # The NAT dropped each contact left waiting for an ack (and, on a busy machine, may
    # have dropped a slow contact that a step of the clock caught under way).
    assert waited >= 2 and drops >= waited, (waited, drops)
