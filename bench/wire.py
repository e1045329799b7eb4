"""Bytes per space-day as a SIM bills them, and the time and memory to drain a backlog.

    sudo .venv/bin/python bench/wire.py [--seed 7] [--backlog-days 30]

1. Bytes per space-day. One realistic day of a space (the demo's day-shaped foot
   traffic: door, counter, PIR, sign-ins and sign-outs) goes from the space's store to a
   real Mosquitto, over TLS (TLS 1.3, one 2048-bit RSA certificate from a private CA),
   through a TCP proxy on loopback, with the collector running and acknowledging. A
   packet capture on loopback (tests/ipcapture.py: needs root) counts every IP packet
   between the space and the proxy — TCP and IP headers, the TLS handshake and records,
   MQTT, every ACK, the connection's setup and teardown — split as a 1500-byte MTU
   carries it. Each design, measured the same way in the same run:
   - metered (the default for `sync.link = "metered"`): a contact every
     `sync.contact_every_minutes` (24 h): connect, send, wait for the acks, disconnect;
     the same every 12 h and every 6 h, for the choice;
   - always-on (the default otherwise): one connection held all day with a 600 s
     keep-alive, finished hours every `sync.send_every_minutes` (6 h);
   - the naive design: one JSON message per event at QoS 1, each its own packets (a
     day's events are minutes apart), on one connection with a 60 s keep-alive.
   Each agent also sends its status once and a reconciliation digest (weekly, counted
   here in full). The contacts and sends are replayed at the times of that day (the
   agent's own code, with the clock of that day). Keep-alives are charged at what one
   PINGREQ + PINGRESP exchange costs, captured, times the intervals in a day. Goals: the
   metered profile at most 10 KB a day, and at least 30x fewer bytes than the naive.
2. Draining a backlog. `spacekiosk sync --once` on a store holding `--backlog-days` of
   traffic never sent, against the same command with nothing to send (the baseline):
   wall time, and peak RSS of the process. Memory must not grow with the backlog.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import naive  # noqa: E402
from kiosk import visits  # noqa: E402
from sensors import simulate  # noqa: E402
from spacekiosk import clock, config, pilots  # noqa: E402
from spacekiosk.broker import Broker, free_port  # noqa: E402
from spacekiosk.db import open_store, write  # noqa: E402
from spacekiosk.migrations import SPACE_MIGRATIONS  # noqa: E402
from sync import outbox  # noqa: E402
from sync.agent import Agent  # noqa: E402
from tests.ipcapture import Capture  # noqa: E402
from tests.tcpproxy import TcpProxy  # noqa: E402

SPACE = "nairobi"
USERS = {SPACE: "space-secret", "daily": "daily-secret", "sixhourly": "sixhourly-secret",
         "alwayson": "alwayson-secret", "drain": "drain-secret", "naive": "naive-secret",
         "collector": "collector-secret"}  # fmt: skip
# The designs measured: (label, login, [sync] keys).
PROFILES = (
    ("metered, every 24 h (default)", SPACE, {"link": "metered"}),
    ("metered, every 12 h", "daily", {"link": "metered", "contact_every_minutes": 720}),
    ("metered, every 6 h", "sixhourly", {"link": "metered", "contact_every_minutes": 360}),
    ("always-on, 6 h sends, 600 s", "alwayson", {"link": "always-on"}),
)
DAY = 86400
SIGN_IN_SHARE = 0.8  # of the people counted at the door, those who sign in

# Open on weekdays and Saturdays; on Sundays the bench's space stays shut.
HOURS = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "09:00-21:00") | {"sat": "10:00-18:00"}


def write_space(
    folder: Path, space: str, port: int, sync: dict | None = None, ca_file: Path | None = None
) -> config.SpaceConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "password").write_text(USERS[space])
    toml = folder / "space.toml"
    toml.write_text(
        pilots.space_toml(
            id=space,
            name="Bench Space",
            timezone="Africa/Nairobi",
            languages=["en", "sw"],
            capacity=30,
            database="space.db",
            opening_hours=HOURS,
            broker="127.0.0.1",
            broker_port=port,
            tls=ca_file is not None,
            password_file="password",
            sync=sync,
            sensors=pilots.SENSORS,
            overrides={"mqtt": {"ca_file": str(ca_file)}} if ca_file else None,
        )
    )
    return config.load(toml)


def traffic(cfg, start: datetime, days: int, seed: int) -> list[dict]:
    """Every event of `days` days from `start`, as the naive design would send them."""
    plan = simulate.FootTraffic(cfg, None, seed=seed, start_at=start)
    rng = random.Random(seed)
    purposes = cfg.kiosk.purposes
    t0 = start.timestamp()
    events: list[dict] = []
    inside = 0  # signed in and not yet out
    while (move := plan.next_move()) is not None and move.offset < days * 86400:
        at = t0 + move.offset
        people = 2 if move.kind in (simulate.PAIR_IN, simulate.PAIR_OUT) else 1
        events += [door(at, "open"), door(at + 4, "close")]
        if move.kind == simulate.TURNS_BACK:
            continue
        kind = "exit" if move.leaving else "entry"
        events += [{"sensor": "counter", "kind": kind, "at": at + 2}] * people
        events += [motion(at + 3, "motion"), motion(at + 150, "still")]
        for _ in range(people):
            if not move.leaving and rng.random() < SIGN_IN_SHARE:
                purpose = rng.choice(purposes)
                events.append({"kind": "signin", "purpose": purpose, "at": at + 30})
                inside += 1
            elif move.leaving and inside:  # the longest present signs out (a stand-in)
                events.append({"kind": "signout", "at": at - 20})
                inside -= 1
    return sorted(events, key=lambda e: e["at"])


def door(at: float, kind: str) -> dict:
    return {"sensor": "door", "kind": kind, "at": at}


def motion(at: float, kind: str) -> dict:
    return {"sensor": "motion:main room", "kind": kind, "at": at}


def store(cfg, events: list[dict], connected: tuple[float, float] | None) -> None:
    """The same events in the space's store, written as the kiosk and sensors would."""
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    present: list[int] = []  # visit ids, oldest first
    rows = []
    for n, event in enumerate(events):
        if event["kind"] == "signin":
            visitor = visits.NewVisitor(f"Visitor {n}", purpose=event["purpose"])
            present.append(visits.sign_in_new(db, visitor, "k", now=event["at"]).id)
        elif event["kind"] == "signout":
            if present:
                visits.sign_out(db, present.pop(0), now=event["at"])
        else:
            rows.append((event["at"], event["sensor"], event["kind"]))
    with write(db):
        db.conn.executemany("INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)", rows)
    if connected:  # a well-connected day: the broker reachable throughout
        outbox.link_extend(db, outbox.link_start(db, connected[0], True), connected[1])
    db.close()


class ReplayClock:
    """The day being replayed, for the agent's judgement of which hours are over."""

    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


def until(done, what: str, timeout: float = 30.0, agent: Agent | None = None) -> None:
    """Pump `agent` (if given) until `done()`; each turn waits on the agent's wake event."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        if agent is not None:
            agent.pump()
            agent.link.wake.wait(0.2)
            agent.link.wake.clear()


def metered_day(cfg, day: datetime) -> int:
    """Replay one day of a metered agent's contacts; returns how many there were."""
    replay = ReplayClock(day.timestamp())
    reckoning = clock.Reckoning(wall=replay, monotonic=replay)
    contacts = DAY // cfg.sync.every_seconds
    with Agent(cfg, reckoning=reckoning) as agent:
        for n in range(1, contacts + 1):
            replay.at = day.timestamp() + n * cfg.sync.every_seconds
            agent.schedule.due_at = 0.0  # this contact is due now
            agent.pump()  # begins it
            until(lambda: agent.contact_began is None, "a contact to end", agent=agent)
            if agent.backlog() or agent.schedule.failures:
                raise RuntimeError("a contact did not deliver everything")
    return contacts


def always_on_day(cfg, day: datetime) -> int:
    """Replay one day of an always-on agent's sends, on one connection; returns the sends."""
    every = cfg.sync.every_seconds or 3600
    with Agent(cfg) as agent:
        until(agent.link.connected.is_set, "the agent to connect")
        agent.eager = True  # the replay decides when a send is due
        for n in range(1, DAY // every + 1):
            outbox.refresh(agent.db, cfg, now=day.timestamp() + n * every)
            until(lambda: not agent.backlog(), "the collector's acks", agent=agent)
        # The digest goes once nothing is pending; then its PUBACK, and the status's.
        until(lambda: agent.stamps["last_digest_at"], "the digest", agent=agent)
        until(lambda: all(i.is_published() for i in agent.unconfirmed), "the PUBACKs", agent=agent)
    return DAY // every


def keepalive_bytes(broker: Broker) -> float:
    """IP bytes of one idle PINGREQ + PINGRESP (and the ACK after it), over TLS: two idle
    connections, 2 and 6 exchanges long, captured; their difference over 4."""
    totals = []
    for pings in (2, 6):
        with TcpProxy(broker.tls_port) as proxy, Capture(proxy.port) as capture:
            naive.hold_idle("127.0.0.1", proxy.port, "naive", USERS["naive"], pings,
                            ca_file=broker.ca_file)  # fmt: skip
            totals.append(capture.settle().bytes)
    return (totals[1] - totals[0]) / 4


def bytes_per_day(folder: Path, broker: Broker, seed: int) -> None:
    ping = keepalive_bytes(broker)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=2)
    print(f"one keep-alive exchange over TLS: {ping:.0f} IP bytes (PINGREQ, PINGRESP, ACK)")
    print(
        f"{'design':<32}{'conns':>6}{'sends':>6}{'packets':>8}{'TLS B':>8}{'IP B':>8}"
        f"{'keep-alive B':>13}{'IP B/day':>10}"
    )
    results = {}

    def row(name: str, conns: int, sends: int, got, tls: int, keepalive: float) -> None:
        results[name] = got.bytes + keepalive
        print(
            f"{name:<32}{conns:>6}{sends:>6}{got.packets:>8}{tls:>8}{got.bytes:>8}"
            f"{keepalive:>13.0f}{results[name]:>10.0f}"
        )

    events: list[dict] = []
    for name, space, sync in PROFILES:
        with TcpProxy(broker.tls_port) as proxy, Capture(proxy.port) as capture:
            cfg = write_space(folder / space, space, proxy.port, sync, broker.ca_file)
            events = traffic(cfg, day, 1, seed)
            store(cfg, events, (day.timestamp() - 3600, day.timestamp() + 2 * DAY))
            if cfg.sync.metered:
                sends = metered_day(cfg, day)
                keepalive = 0.0
            else:
                sends = always_on_day(cfg, day)
                keepalive = ping * DAY / cfg.mqtt.keepalive_seconds
            got = capture.settle()
            row(name, got.connections, sends, got, proxy.bytes_up + proxy.bytes_down, keepalive)
    with TcpProxy(broker.tls_port) as proxy, Capture(proxy.port) as capture:
        last: list[int] = []

        def pace() -> None:
            """Wait for the last event's PUBLISH, PUBACK and the ACK of the PUBACK (a
            delayed ACK, some 40 ms later), as when the next event is minutes away."""
            if last:
                with contextlib.suppress(TimeoutError):  # the ACK may have ridden along
                    capture.wait_for(lambda t: t.packets >= last[-1] + 3, timeout=0.25)
            last.append(capture.sync().packets)

        naive.publish_events("127.0.0.1", proxy.port, "naive", USERS["naive"], events,
                             ca_file=broker.ca_file, pace=pace)  # fmt: skip
        got = capture.settle()
        row("naive: a message per event, 60 s", got.connections, len(events), got,
            proxy.bytes_up + proxy.bytes_down, ping * DAY / 60)  # fmt: skip
    naive_total = results.pop("naive: a message per event, 60 s")
    for name, total in results.items():
        goal = " (goals: <= 10,000 B/day, >= 30x)" if name == PROFILES[0][0] else ""
        print(f"  naive/{name}: {naive_total / total:.1f}x fewer bytes{goal}")


def drain(folder: Path, broker: Broker, seed: int, days: int) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    print(f"\ndraining a backlog with `spacekiosk sync --once` ({days} days offline)")
    print(f"{'store':<28}{'hours':>7}{'seconds':>9}{'peak RSS MB':>13}")
    rows = {}
    for name, n_days in (("empty (baseline)", 0), (f"{days} days of traffic", days)):
        cfg = write_space(folder / f"drain-{n_days}", "drain", broker.port)
        if n_days:
            store(cfg, traffic(cfg, today - timedelta(days=n_days), n_days, seed), None)
        else:
            open_store(cfg.database.path, SPACE_MIGRATIONS).close()
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "spacekiosk", "sync", "--once", "--timeout", "300",
             "--config", str(cfg.source)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        output = proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        took = time.monotonic() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"sync --once failed:\n{output}")
        hours = int(output.split()[0])
        rows[name] = (took, usage.ru_maxrss / 1024)
        print(f"{name:<28}{hours:>7}{took:>9.2f}{usage.ru_maxrss / 1024:>13.1f}")
        if n_days:
            print("  " + "\n  ".join([*output.strip().splitlines()[:3], "..."]))
    (base_t, base_m), (t, m) = rows.values()
    print(f"  backlog/baseline: time {t / base_t:.2f}x, peak memory {m / base_m:.2f}x")


def wait_for_collector(port: int) -> None:
    """Until the collector answers and has subscribed: batches sent before would be lost
    to a collector that never had a session."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
            if health["broker"] == "connected":
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("the collector did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backlog-days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with Broker(folder / "broker", USERS, tls=True) as broker:
            central = folder / "central"
            central.mkdir()
            (central / "password").write_text(USERS["collector"])
            free_listen = free_port()
            (central / "central.toml").write_text(
                pilots.central_toml(
                    listen=f"127.0.0.1:{free_listen}",
                    database="central.db",
                    broker="127.0.0.1",
                    broker_port=broker.port,
                    tls=False,
                    password_file="password",
                )
            )
            collector = subprocess.Popen(
                [sys.executable, "-m", "spacekiosk", "collector", "--config",
                 str(central / "central.toml")],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                wait_for_collector(free_listen)
                bytes_per_day(folder, broker, args.seed)
                drain(folder, broker, args.seed, args.backlog_days)
            finally:
                collector.terminate()
                collector.wait(10)


if __name__ == "__main__":
    main()
