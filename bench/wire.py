"""Bytes on the wire per space-day, and the time and memory to drain a month's backlog.

    .venv/bin/python bench/wire.py [--seed 7] [--backlog-days 30]

1. Bytes per space-day. One realistic day of a space (the demo's day-shaped foot
   traffic: door, counter, PIR, sign-ins and sign-outs) is sent twice through a counting
   TCP proxy to a real Mosquitto with the collector running:
   - the agent, as it runs by default: finished hours every `sync.send_every_minutes`
     (6 h), compressed, each batch acknowledged by the collector; a 600 s keep-alive;
     its status and a reconciliation digest (sent weekly, counted here in full);
   - the naive design: one JSON message per event at QoS 1, a 60 s keep-alive.
   The day's sends are replayed at the times they would happen (the agent's own outbox
   and publish code, with the clock of that day); keep-alives are charged at the bytes
   one PINGREQ + PINGRESP measured on the wire, times the intervals in a day. The
   figures are application bytes (MQTT), both directions. Goal: at least 20x fewer.
2. Draining a backlog. `spacekiosk sync --once` on a store holding `--backlog-days` of
   traffic never sent, against the same command with nothing to send (the baseline):
   wall time, and peak RSS of the process. Memory must not grow with the backlog.
"""

from __future__ import annotations

import argparse
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
from spacekiosk import config, pilots  # noqa: E402
from spacekiosk.broker import Broker, free_port  # noqa: E402
from spacekiosk.db import open_store, write  # noqa: E402
from spacekiosk.migrations import SPACE_MIGRATIONS  # noqa: E402
from sync import outbox  # noqa: E402
from sync.agent import Agent  # noqa: E402
from tests.tcpproxy import TcpProxy  # noqa: E402

SPACE = "nairobi"
USERS = {SPACE: "space-secret", "hourly": "hourly-secret", "drain": "drain-secret",
         "naive": "naive-secret", "collector": "collector-secret"}  # fmt: skip
SIGN_IN_SHARE = 0.8  # of the people counted at the door, those who sign in

# Open on weekdays and Saturdays; on Sundays the bench's space stays shut.
HOURS = dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "09:00-21:00") | {"sat": "10:00-18:00"}


def write_space(
    folder: Path, space: str, port: int, sync: dict | None = None
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
            tls=False,
            password_file="password",
            sync=sync,
            sensors=pilots.SENSORS,
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


def agent_day(cfg, proxy: TcpProxy, day: datetime) -> int:
    """Replay one day of the agent's sends; the bytes its connection carried."""
    every = cfg.sync.send_every_minutes * 60 or 3600
    before = proxy.bytes_up + proxy.bytes_down
    with Agent(cfg) as agent:
        if not agent.link.connected.wait(10):
            raise RuntimeError("the agent could not connect")
        agent.eager = True  # the replay decides when a send is due
        send_at = day.timestamp() + every
        while send_at <= day.timestamp() + 86400 + every:
            outbox.refresh(agent.db, cfg, now=send_at)
            deadline = time.monotonic() + 30
            while agent.backlog() and time.monotonic() < deadline:
                agent.pump()
                agent.link.wake.wait(0.2)
                agent.link.wake.clear()
            if agent.backlog():
                raise RuntimeError("the collector did not acknowledge the day")
            send_at += every
        agent.pump()  # the digest, once nothing is pending
        time.sleep(0.5)
    return proxy.bytes_up + proxy.bytes_down - before


def bytes_per_day(folder: Path, broker: Broker, seed: int) -> None:
    ping = naive.keepalive_exchange_bytes("127.0.0.1", broker.port, SPACE, USERS[SPACE])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=2)
    print(f"one PINGREQ + PINGRESP: {ping:.1f} bytes on the wire")
    print(f"{'design':<34}{'messages':>9}{'data B':>10}{'keep-alive B':>14}{'B/day':>10}")
    results = {}
    for name, space, sync in (
        ("agent, every 6 h (default)", SPACE, None),
        ("agent, every hour", "hourly", {"send_every_minutes": 60}),
    ):
        with TcpProxy(broker.port) as proxy:
            cfg = write_space(folder / space, space, proxy.port, sync)
            events = traffic(cfg, day, 1, seed)
            store(cfg, events, (day.timestamp() - 3600, day.timestamp() + 2 * 86400))
            data = agent_day(cfg, proxy, day)
        keepalive = ping * 86400 / cfg.mqtt.keepalive_seconds
        results[name] = data + keepalive
        sends = 86400 // (cfg.sync.send_every_minutes * 60)
        print(f"{name:<34}{sends:>9}{data:>10}{keepalive:>14.0f}{results[name]:>10.0f}")
    with TcpProxy(broker.port) as proxy:
        naive.publish_events("127.0.0.1", proxy.port, "naive", USERS["naive"], events)
        data = proxy.bytes_up + proxy.bytes_down
    keepalive = ping * 86400 / 60
    results["naive"] = data + keepalive
    name = "naive: a message per event, 60 s"
    print(f"{name:<34}{len(events):>9}{data:>10}{keepalive:>14.0f}{results['naive']:>10.0f}")
    for name, total in results.items():
        if name != "naive":
            ratio = results["naive"] / total
            print(f"  naive/{name}: {ratio:.1f}x fewer bytes (goal >= 20x)")


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
        with Broker(folder / "broker", USERS) as broker:
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
