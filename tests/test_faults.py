"""Fault scenarios: visitors sign in through the real kiosk while the space and the centre
are hurt — every service SIGKILLed again and again, the broker away, the Pi's clock at
1970 or an hour fast, the disk full on a small and on a very small file system, three
writers at once. After each the test waits until the collector's totals settle, then
compares: every sign-in the kiosk acknowledged is on the Pi and counted once at the
collector, and the connected time the agent reports is no more than the broker saw.

Each scenario lasts seconds, not minutes, to keep the file within CI's budget: the
connected time is compared in seconds, as recorded (the agent sends it as whole minutes
per hour). The table is printed at the end of the run (tests/conftest.py). Moments and
orders are drawn from SPACEKIOSK_SEED, printed with each scenario.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import (
    FAULT_ROWS,
    SENSORS,
    SPACE,
    SmallDisk,
    usage,
    visitor_form,
    wait_until,
    write_collector_config,
    write_space_config,
)

from kiosk import i18n
from spacekiosk import config, protocol
from spacekiosk.broker import Broker

HOUR = 3600
CONVERGE_SECONDS = 90
UNREACHABLE = str(i18n.MESSAGES["store"])


def for_a_while(visitors: Visitors, seconds: float, acked: int = 10) -> None:
    """Let the scenario's phase last `seconds`, with at least `acked` more sign-ins."""
    until, target = time.monotonic() + seconds, len(visitors.acked) + acked
    wait_until(
        lambda: time.monotonic() >= until and len(visitors.acked) >= target,
        timeout=seconds + 30,
        what=f"{seconds} s and {acked} sign-ins",
    )


def seeded(scenario: str) -> random.Random:
    seed = int(os.environ.get("SPACEKIOSK_SEED") or time.time_ns() % 2**32)
    print(f"{scenario}: SPACEKIOSK_SEED={seed}")
    return random.Random(seed)


class Visitors:
    """Visitors signing in at the kiosk's first-visit form, `workers` at a time, each
    with a name of their own: what was tried, what the kiosk confirmed ("Welcome", 201)
    and what it refused with 503 (the store could not save it)."""

    def __init__(self, url: str, workers: int = 2, pause: float = 0.0):
        self.url, self.pause = url, pause
        self.operations = 0
        self.acked: list[str] = []
        self.refused: list[str] = []  # the 503 pages' text
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._visit) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _visit(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            name = f"V {uuid.uuid4().hex[:10]}"
            with self.lock:
                self.operations += 1
            try:
                answer = session.post(self.url + "sign-in/new", data=visitor_form(name), timeout=10)
            except requests.RequestException:  # the kiosk is down: the visitor tries again
                self.stop.wait(0.05)
                continue
            with self.lock:
                if answer.status_code == 201:
                    self.acked.append(name)
                elif answer.status_code == 503:
                    self.refused.append(answer.text)
            self.stop.wait(self.pause if answer.status_code == 201 else max(self.pause, 0.05))

    def done(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


class Site:
    """A space and the centre as real processes — collector, kiosk, sensors (simulated
    traffic) and sync agent — on the test's broker. `clocked` names the Pi services
    whose wall clock the file `clock` sets (tests/fakeclock.py)."""

    PI = ("kiosk", "sensors", "sync")

    def __init__(
        self,
        tmp_path: Path,
        broker: Broker,
        notified,
        folder: Path | None = None,
        clocked: tuple[str, ...] = (),
        speed: str = "20",
    ):
        self.tmp_path, self.broker, self.notified = tmp_path, broker, notified
        self.toml = write_space_config(
            folder or tmp_path / "space",
            broker_port=broker.port,
            extra=SENSORS,
            sync="send_running_hour = true",
        )
        self.cfg = config.load(self.toml)
        central = write_collector_config(tmp_path / "central", broker_port=broker.port)
        self.central = f"http://127.0.0.1:{config.load(central).central.listen[1]}/"
        self.url = f"http://127.0.0.1:{self.cfg.kiosk.listen[1]}/"
        self.clock = tmp_path / "clock-offset"
        self.clock.write_text("0")
        self.clocked = clocked
        self.args = {
            "collector": ("collector", "--config", str(central)),
            "kiosk": ("kiosk", "--config", str(self.toml)),
            "sensors": (
                "sensors",
                "--simulate",
                "--speed",
                speed,
                "--seed",
                "7",
                "--config",
                str(self.toml),
            ),
            "sync": ("sync", "--config", str(self.toml)),
        }
        self.procs: dict = {}
        self.logs: list = []
        self.started = time.time()
        self.broker_down: list[tuple[float, float]] = []

    def start(self, *names: str) -> None:
        names = names or tuple(self.args)
        for name in names:
            clock = self.clock if name in self.clocked else None
            self.procs[name] = self.notified(*self.args[name], clock_file=clock)
            self.logs.append(self.procs[name])
        for name in names:
            self.procs[name].wait_for("READY=1")

    def kill(self, name: str) -> None:
        self.procs[name].kill()

    def alive(self, name: str) -> bool:
        return self.procs[name].proc.poll() is None

    def set_clock(self, offset: float) -> None:
        self.clock.write_text(str(offset))

    def broker_outage(self, seconds: float) -> None:
        down = time.time()
        self.broker.stop()
        time.sleep(seconds)  # the outage itself: how long the broker stays away
        self.broker.start()  # the same broker, so the fixture stops it at the end
        self.broker_down.append((down, time.time()))

    def output(self, name: str) -> str:
        return "".join(p.output() for p in self.logs if p.args[0] == name)

    # what the Pi and the collector hold

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.cfg.database.path}?mode=ro", uri=True)

    def pi(self) -> dict:
        db = self.db()
        try:
            names = dict(
                db.execute(
                    "SELECT name, count(*) FROM visits JOIN visitors p "
                    "ON p.id = visits.visitor_id GROUP BY name"
                )
            )
            (unsynced,) = db.execute(
                "SELECT count(*) FROM visits WHERE clock_synced = 0"
            ).fetchone()
            (backlog,) = db.execute("SELECT count(*) FROM outbox").fetchone()
            links = db.execute(
                "SELECT start, end FROM link_log WHERE clock_synced = 1 ORDER BY start"
            ).fetchall()
        finally:
            db.close()
        return {
            "names": names,
            "visits": sum(names.values()),
            "unsynced": unsynced,
            "backlog": backlog,
            "links": links,
        }

    def counted(self) -> int:
        with contextlib.suppress(requests.RequestException, ValueError, KeyError):
            return sum(b.get("signins", 0) for b in usage(self.central))
        return -1

    def converged(self) -> bool:
        pi = self.pi()
        return pi["unsynced"] == 0 and pi["backlog"] == 0 and self.counted() == pi["visits"]

    def connected_real(self, until: float) -> float:
        """Seconds the broker saw the space's agent connected, from its own log."""
        opened: float | None = None
        spans = []
        events = []
        for line in self.broker.log.read_text(errors="replace").splitlines():
            at, _, text = line.partition(": ")
            if not at.isdigit():
                continue
            if re.search(rf"New client connected from \S+ as {SPACE} ", text):
                events.append((float(at), "up"))
            elif re.search(rf"[Cc]lient {SPACE}\b", text) and "already connected" not in text:
                events.append((float(at), "down"))
        events += [(down, "down") for down, _up in self.broker_down]
        for at, kind in sorted(events, key=lambda e: e[0]):
            if opened is not None:
                spans.append((opened, at))
                opened = None
            if kind == "up":
                opened = at
        if opened is not None:
            spans.append((opened, until))
        return sum(max(0.0, min(e, until) - max(s, self.started)) for s, e in spans)

    def connected_reported(self) -> float:
        """Seconds of connection the agent recorded (and reports, as minutes per hour)."""
        total, last_end = 0.0, None
        for start, end in self.pi()["links"]:
            if last_end is not None and start < last_end:
                start = min(last_end, end)
            total += end - start
            last_end = max(end, last_end or end)
        return total

    def settle(self, scenario: str, visitors: Visitors, began: float, **extra) -> dict:
        """Wait for the collector to hold what the Pi holds; measure; record the row."""
        visitors.done()
        stopped = time.monotonic()
        try:
            wait_until(
                self.converged,
                timeout=CONVERGE_SECONDS,
                interval=0.2,
                what=f"{scenario}: the collector's totals to settle",
            )
            converge = time.monotonic() - stopped
        except AssertionError:
            converge = float("nan")
        pi = self.pi()
        counted = self.counted()
        lost_on_pi = [name for name in visitors.acked if name not in pi["names"]]
        twice_on_pi = sum(n - 1 for n in pi["names"].values() if n > 1)
        row = {
            "scenario": scenario,
            "operations": visitors.operations,
            "acknowledged": len(visitors.acked),
            "refused": len(visitors.refused),
            "lost": len(lost_on_pi) + max(0, pi["visits"] - counted),
            "twice": twice_on_pi + max(0, counted - pi["visits"]),
            "converge_s": converge,
            "connected_reported_s": self.connected_reported(),
            "connected_real_s": self.connected_real(time.time()),
            "seconds": time.monotonic() - began,
            **extra,
        }
        FAULT_ROWS.append(row)
        print(row)
        logs = {p.args[0]: p.output() for p in self.logs}
        assert not [n for n, text in logs.items() if "Traceback" in text], logs
        assert row["lost"] == 0 and row["twice"] == 0, row
        assert converge == converge, f"{scenario}: never settled: {row}\n{pi}"
        # Never more connected time than the broker saw (its log has whole seconds).
        assert row["connected_reported_s"] <= row["connected_real_s"] + 2 * len(pi["links"]) + 2
        return row


@pytest.fixture
def site(tmp_path, broker, notified):
    def make(**options) -> Site:
        return Site(tmp_path, broker, notified, **options)

    return make


def test_every_service_sigkilled_again_and_again(site):
    rng = seeded("SIGKILL")
    began = time.monotonic()
    s = site()
    s.start()
    visitors = Visitors(s.url)
    for _round in range(3):
        for name in rng.sample(("kiosk", "sensors", "sync", "collector"), 4):
            time.sleep(rng.uniform(0.2, 1.2))  # a random moment of the work
            s.kill(name)
            s.start(name)  # as systemd's Restart= would
    wait_until(lambda: len(visitors.acked) > 20, what="sign-ins after the last restart")
    s.settle("SIGKILL x3 each service", visitors, began)


def test_the_broker_away_for_a_while(site):
    began = time.monotonic()
    s = site()
    s.start()
    visitors = Visitors(s.url)
    for_a_while(visitors, 3)
    s.broker_outage(8)
    for_a_while(visitors, 3)
    row = s.settle("broker outage 8 s", visitors, began)
    assert row["connected_real_s"] <= time.monotonic() - began - 7


def test_a_pi_that_boots_at_1970_and_is_set_later(site):
    began = time.monotonic()
    s = site(clocked=Site.PI)
    s.set_clock(86400 - time.time())  # 1970-01-02: no real-time clock, no time server yet
    s.start()
    visitors = Visitors(s.url)
    for_a_while(visitors, 5)
    assert s.pi()["unsynced"] > 0  # taken on a clock that cannot be trusted: held back
    assert s.counted() <= 0
    s.set_clock(0)  # timesyncd sets it
    wait_until(lambda: s.pi()["unsynced"] == 0, what="the kiosk to move the visits")
    for_a_while(visitors, 3)
    s.settle("clock at 1970, then set", visitors, began)


def test_the_agents_clock_an_hour_fast(site):
    """The running hour goes out as running (send_running_hour): its counts, but none of
    the minutes only a finished hour has. With the clock an hour fast it must stay so."""
    began = time.monotonic()
    s = site(clocked=("sync",))
    s.start()
    visitors = Visitors(s.url)
    running = int(time.time()) // HOUR * HOUR
    for_a_while(visitors, 3)
    s.set_clock(HOUR)
    wait_until(lambda: "ahead of its last trusted reading" in s.output("sync"), what="doubt")
    for_a_while(visitors, 5)
    s.set_clock(0)
    for_a_while(visitors, 3)
    row = s.settle("agent clock +1 h, then set", visitors, began)
    if int(time.time()) // HOUR * HOUR == running:  # else the hour really ended meanwhile
        (bucket,) = [b for b in usage(s.central) if b["start"] == protocol.hour_iso(running)]
        assert "connected_minutes" not in bucket and "open_minutes" not in bucket, bucket
        assert not [b for b in usage(s.central) if protocol.hour_epoch(b["start"]) > running]
    assert row["refused"] == 0


@pytest.mark.parametrize(
    ("size", "label"), [(8 << 20, "small (8 MB)"), (2 << 20, "very small (2 MB)")]
)
def test_the_disk_full_then_freed(tmp_path, site, size, label):
    """Every service rides out a full disk: the kiosk answers 503 with the clear message
    and says so in /healthz, the agent and sensors keep running, each logs it once;
    once space is back, sign-ins succeed again without a restart."""
    began = time.monotonic()
    with SmallDisk(tmp_path / "disk", size) as disk:
        s = site(folder=disk.folder, speed="5")
        s.start()
        visitors = Visitors(s.url, pause=0.05)  # a door's pace: a small disk is for a while
        for_a_while(visitors, 3)
        disk.fill()
        wait_until(lambda: len(visitors.refused) > 5, what="sign-ins refused for space")
        assert all(UNREACHABLE in page for page in visitors.refused)
        health = requests.get(s.url + "healthz", timeout=5)
        assert health.status_code == 503 and health.json()["store"] == "full"
        wait_until(lambda: "is full" in s.output("sync"), what="the agent to notice")
        assert all(s.alive(name) for name in ("kiosk", "sensors", "sync"))
        disk.free()
        wait_until(lambda: requests.get(s.url + "healthz", timeout=5).ok, what="/healthz ok")
        refused = len(visitors.refused)
        for_a_while(visitors, 3)
        row = s.settle(f"disk full, {label}", visitors, began)
        assert row["refused"] >= refused
        for name in ("kiosk", "sync"):  # once, not once per attempt
            assert s.output(name).count("is full") == 1, s.output(name)
        assert all(s.alive(name) for name in ("kiosk", "sensors", "sync"))
        for name in ("kiosk", "sensors", "sync"):
            assert s.procs[name].stop() == 0


def test_three_writers_for_a_while(site):
    """The kiosk (four visitors at once), the sensors (traffic at 200x) and the agent
    (refreshing every second) all write the one file."""
    began = time.monotonic()
    s = site(speed="200")
    s.start()
    visitors = Visitors(s.url, workers=4)
    wait_until(lambda: time.monotonic() - began > 20, what="twenty seconds of three writers")
    row = s.settle("three writers, 20 s", visitors, began)
    assert row["refused"] == 0
    db = s.db()
    assert db.execute("SELECT count(*) FROM sensor_events").fetchone()[0] > 100
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
