"""How fast the collector commits 10,000 spaces' days, against a bare subscriber.

    .venv/bin/python bench/collector.py [--spaces 10000] [--postgres URL]

Each simulated space sends a day of hourly buckets the way the agent does by default:
4 messages of 6 buckets, compressed (40,000 messages, 240,000 buckets for 10,000 spaces).

1. Collector against a bare paho subscriber that only counts the same messages. Each
   one's session is made first, then the whole load is published while it is away, so
   that the broker holds it all; the clock runs from its reconnect to the last message
   counted (bare) or the last bucket committed and acknowledged (collector). The
   publisher's speed is out of the figure. Goal: at least half the bare rate. The cores
   each one kept busy meanwhile are printed too: a collector is two processes (MQTT, and
   the committer), so it can use two where the bare subscriber uses one.
2. The gain from a second collector: one, then two collectors sharing the spaces'
   messages (MQTT 5 shared subscription), each held to a core of its own as if it ran
   on a machine of its own (one collector alone keeps two cores busy, so on a small
   machine a second could add nothing). They are stopped while the load is published,
   so that the broker holds each one's share, then let go together. On SQLite, and on
   PostgreSQL when --postgres is given (or a server answers on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spacekiosk import protocol  # noqa: E402
from spacekiosk.broker import Broker, free_port  # noqa: E402
from spacekiosk.protocol import Bucket  # noqa: E402

DAY = 1795564800  # 2026-11-25T00:00:00Z
PER_MESSAGE = 6


class OpenBroker(Broker):
    """Mosquitto without logins, with room to hold the whole load for an absent client."""

    def write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
            f"log_dest file {self.log}\nlog_type error\n"
        )
        return conf


def load(spaces: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(topic, payload) of every message: a day per space, 6 hours to a message."""
    rng = random.Random(seed)
    messages = []
    for n in range(spaces):
        space = f"space-{n:05d}"
        for first in range(0, 24, PER_MESSAGE):
            buckets = [Bucket(DAY + h * 3600, 1, _counts(rng, h)) for h in range(first, first + 6)]
            messages.append(
                (protocol.topic(space, "usage"), protocol.usage_message(space, buckets))
            )
    return messages


def _counts(rng: random.Random, hour: int) -> dict:
    if not 8 <= hour < 21:
        return {"connected_minutes": 60}
    signins = rng.randint(0, 12)
    return {
        "signins": signins,
        "signouts": rng.randint(0, signins),
        "unique_visitors": signins,
        "new_visitors": signins // 4,
        "returning_visitors": signins - signins // 4,
        "by_purpose": {"cowork": signins // 2, "workshop": signins - signins // 2},
        "door_openings": 2 * signins + rng.randint(0, 4),
        "entries": signins + 1,
        "exits": signins,
        "occupancy_peak": rng.randint(signins // 2, signins + 2),
        "person_minutes": rng.randint(0, 600),
        "occupied_minutes": rng.randint(0, 60),
        "open_minutes": 60,
        "connected_minutes": 60,
    }


def publish(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1 as fast as the broker takes them; seconds it took."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    done = threading.Event()
    acked = [0]

    def on_publish(*_args) -> None:
        acked[0] += 1
        if acked[0] == len(messages):
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.monotonic()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise RuntimeError(f"only {acked[0]} of {len(messages)} publishes acknowledged")
    took = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return took


def bare(port: int, messages: list, publish_first) -> float:
    """Messages per second a subscriber that only counts them reads, from its reconnect."""
    got = [0]
    done = threading.Event()

    def on_message(*_args) -> None:
        got[0] += 1
        if got[0] == len(messages):
            done.set()

    def session() -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5
        )
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        return client

    client = session()
    client.loop_start()
    client.subscribe(f"{protocol.PREFIX}/+/usage", qos=1)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    publish_first()
    client = session()
    started, cpu = time.monotonic(), time.process_time()
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"the bare subscriber got {got[0]} of {len(messages)}")
    took = time.monotonic() - started
    cores = (time.process_time() - cpu) / took
    client.disconnect()
    client.loop_stop()
    return len(messages) / took, cores


def collector_config(folder: Path, port: int, client_id: str, shared: bool, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    toml = folder / "central.toml"
    toml.write_text(
        f'[central]\nlisten = "127.0.0.1:{free_port()}"\ndatabase = "{folder.parent / "c.db"}"\n'
        f'database_url = "{url}"\nclient_id = "{client_id}"\nshared = {str(shared).lower()}\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
    )
    return toml


class Collector:
    def __init__(self, toml: Path):
        text = toml.read_text()
        self.url = "http://" + text.split('listen = "')[1].split('"')[0] + "/"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spacekiosk", "collector", "--config", str(toml)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait(lambda h: h["broker"] == "connected", 30, poll=0.01)

    def health(self) -> dict:
        try:
            return requests.get(self.url + "healthz", timeout=2).json()
        except requests.RequestException:
            return {"broker": "down", "committed": 0}

    def wait(self, predicate, timeout: float, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.health()):
                return
            time.sleep(poll)
        raise RuntimeError(f"collector at {self.url}: {self.health()}")

    def pids(self) -> list[int]:
        """The collector's process and those it started (its committer)."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(pid) for pid in task.read_text().split()]
        return pids

    def signal(self, number: int) -> None:
        for pid in self.pids():
            os.kill(pid, number)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the collector and the processes it started."""
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def committed(collectors: list[Collector]) -> int:
    return sum(c.health()["committed"] for c in collectors)


def collector_rate(folder: Path, port: int, messages: list, publish_first, url: str) -> float:
    """Buckets per second one collector commits, from its reconnect to the last one."""
    toml = collector_config(folder / "drain", port, "bench-drain", False, url)
    Collector(toml).stop()  # its session now waits at the broker
    publish_first()
    total = len(messages) * PER_MESSAGE
    collector = Collector(toml)  # returns once it is connected, and reading
    started, cpu = time.monotonic(), collector.cpu_seconds()
    collector.wait(lambda h: h["committed"] >= total, 900)
    took = time.monotonic() - started
    cores = (collector.cpu_seconds() - cpu) / took
    collector.stop()
    return total / took, cores


def pinned_rate(folder: Path, port: int, messages: list, n: int, url: str, publish_first) -> float:
    """Buckets per second that n collectors sharing the spaces' messages commit, each held
    to a core of its own, as if on a machine of its own. They connect, are stopped
    (SIGSTOP) while the load is published, so that the broker holds each one's share,
    and are let go together; the clock runs until the last bucket is committed."""
    collectors = [
        Collector(collector_config(folder / f"pinned{n}-{i}", port, f"pinned{n}-{i}", True, url))
        for i in range(n)
    ]
    for core, collector in enumerate(collectors):
        for pid in collector.pids():  # every thread: affinity is a thread's, not a process's
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {core})
    for collector in collectors:
        collector.signal(signal.SIGSTOP)
    publish_first()
    total = len(messages) * PER_MESSAGE
    started = time.monotonic()
    for collector in collectors:
        collector.signal(signal.SIGCONT)
    deadline = started + 900
    while committed(collectors) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - started
    for collector in collectors:
        collector.stop()
    return total / took


def postgres_url(given: str | None) -> str:
    if given:
        return given
    try:
        import psycopg

        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
    except Exception:
        return ""
    return "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database(server: str) -> str:
    import uuid

    import psycopg

    name = f"spacekiosk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return server.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=10_000)
    parser.add_argument("--postgres", help="a server URL; default: 127.0.0.1:5432 if it answers")
    args = parser.parse_args()
    messages = load(args.spaces)
    buckets = len(messages) * PER_MESSAGE
    size = sum(len(p) for _, p in messages) / len(messages)
    print(f"{args.spaces} spaces, {len(messages)} messages of {size:.0f} B, {buckets} buckets")
    print(f"{os.cpu_count()} cores, shared by the broker, the benchmark and what it measures")
    with tempfile.TemporaryDirectory() as tmp, OpenBroker(Path(tmp) / "broker", {}) as broker:
        folder = Path(tmp)
        port = broker.port

        def load_broker() -> None:
            took = publish(port, messages)
            print(f"  (published in {took:.1f} s, {len(messages) / took:.0f} msg/s)")

        rate, cores = bare(port, messages, load_broker)
        print(f"bare subscriber:          {rate * PER_MESSAGE:>9.0f} buckets/s ({rate:.0f} msg/s), "
              f"{cores:.2f} cores")  # fmt: skip
        sqlite, cores = collector_rate(folder / "sqlite", port, messages, load_broker, "")
        print(f"collector, SQLite:        {sqlite:>9.0f} buckets/s, {cores:.2f} cores")
        print(f"  ratio collector/bare: {sqlite / (rate * PER_MESSAGE):.2f} (goal >= 0.50)")
        server = postgres_url(args.postgres)
        if not server:
            print("no PostgreSQL: the second-collector figure is skipped")
            return
        pg, cores = collector_rate(
            folder / "pg", port, messages, load_broker, fresh_database(server)
        )
        print(f"collector, PostgreSQL:    {pg:>9.0f} buckets/s, {cores:.2f} cores "
              "(and the server's own)")  # fmt: skip
        print(f"  ratio collector/bare: {pg / (rate * PER_MESSAGE):.2f} (goal >= 0.50)")
        if len(os.sched_getaffinity(0)) < 2:
            print("one core: the second-collector figure is skipped")
            return
        print("shared subscription, each collector held to a core of its own:")
        for db_name, fresh in (("SQLite", lambda _server: ""), ("PostgreSQL", fresh_database)):
            one = pinned_rate(folder / f"one-{db_name}", port, messages, 1, fresh(server),
                              load_broker)  # fmt: skip
            two = pinned_rate(folder / f"two-{db_name}", port, messages, 2, fresh(server),
                              load_broker)  # fmt: skip
            print(f"  {db_name:<11} one collector {one:>8.0f} buckets/s, two {two:>8.0f}: "
                  f"gain {two / one:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
