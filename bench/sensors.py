"""The sensors daemon: edge-to-commit latency, events per second and CPU at rest, each
against a bare baseline measured in the same run.

    .venv/bin/python bench/sensors.py [--seconds 5] [--rate 20] [--events 30000]
                                      [--rounds 3] [--idle 30]

Latency and throughput run in this process: gpiozero's MockFactory pins drive the real
sensors.daemon.Sensors and EventWriter over a real SQLite file (WAL, synchronous=NORMAL),
first at a steady rate (doorway crossings, pairs, turn-backs, door and motion edges),
then at full speed (crossings and door edges; the PIR is sampled at 10 Hz and cannot
follow). An event's latency runs from the moment the pin that completed it was driven to
the moment the batch holding its row was committed (EventWriter._commit, timed in a
subclass). The doorway decoder reads a 50 ms walking-pace clock, as in the tests, so
edges driven back to back read as people walking. The baseline inserts the same rows into
the same schema in a bare loop, one transaction per batch, replaying the batch sizes the
daemon's writer used: no gpiozero, no queue, no thread.

CPU at rest: the real daemon (`spacekiosk sensors --simulate`, door, two PIRs and the
counter) for a space that never opens, so the simulator sends no one, read from
/proc/PID/stat over --idle seconds, next to a sleeping `python -c` measured the same way.
The machine is shared and noisy: compare ratios, not absolute figures. Goal: the daemon
at rest under 1% of one core; at full speed, far beyond the 20 crossings a second the
tests ask for.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ahead of bench/: this file is called sensors.py too

from gpiozero.pins.mock import MockFactory  # noqa: E402

from sensors import daemon  # noqa: E402
from sensors.daemon import EventWriter, Sensors  # noqa: E402
from spacekiosk import config, pilots  # noqa: E402
from spacekiosk.db import open_store  # noqa: E402
from spacekiosk.migrations import SPACE_MIGRATIONS  # noqa: E402

DOOR, MOTION_1, MOTION_2, BEAM_A, BEAM_B = 17, 27, 24, 22, 23
# The sensors the daemon runs: a door, two PIRs and the counter, none debounced.
SENSORS = {
    "door": {"pin": DOOR, "bounce_ms": 0},
    "motion": [
        {"pin": MOTION_1, "location": "main room"},
        {"pin": MOTION_2, "location": "workshop"},
    ],
    "counter": {"beam_a": BEAM_A, "beam_b": BEAM_B, "bounce_ms": 0},
}
NEVER_OPEN = dict.fromkeys(config.WEEKDAYS, "closed")
INSERT = "INSERT INTO sensor_events (at, sensor, kind, value) VALUES (?, ?, ?, ?)"

# Beam edges per crossing, as in tests/test_doorway.py: A is outside, B inside, + broken.
CROSSINGS = {
    "in": "A+ B+ A- B-",
    "out": "B+ A+ B- A-",
    "pair in": "A+ B+ A- A+ B- B+ A- B-",
    "turns back": "A+ B+ B- A-",
}
# What a round drives, action by action; each makes one event (a pair makes two).
STEADY = [
    "motion main room on",
    "door open",
    "in",
    "motion workshop on",
    "door close",
    "motion main room off",
    "pair in",
    "out",
    "motion workshop off",
    "turns back",
]
FULL_SPEED = ["door open", "in", "door close", "pair in", "out", "turns back"]


def write_config(folder: Path, hours: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.toml"
    path.write_text(
        pilots.space_toml(
            id="bench",
            name="Benchmark Space",
            timezone="Europe/Athens",
            languages=["en"],
            capacity=40,
            database=folder / "space.db",
            opening_hours=hours,
            broker="127.0.0.1",
            broker_port=1,
            tls=False,
            sensors=SENSORS,
        )
    )
    return path


class TimedWriter(EventWriter):
    """The daemon's writer, noting when each batch's commit has returned."""

    def __init__(self, db):
        super().__init__(db)
        self.commits: list[tuple[float, list[daemon.Event]]] = []

    def _commit(self, batch: list[daemon.Event]) -> None:
        super()._commit(batch)
        self.commits.append((time.time(), batch))


class Driver:
    """Drives the mock pins and notes when each was driven, by what it should cause."""

    def __init__(self, factory: MockFactory):
        self.pin = {n: factory.pin(n) for n in (DOOR, MOTION_1, MOTION_2, BEAM_A, BEAM_B)}
        self.driven: dict[tuple, list[float]] = defaultdict(list)

    def _drive(self, pin: int, high: bool, key: tuple) -> None:
        self.driven[key].append(time.time())
        self.pin[pin].drive_high() if high else self.pin[pin].drive_low()

    def act(self, action: str) -> int:
        """Perform one action; returns how many events it should store."""
        if action in CROSSINGS:
            for step in CROSSINGS[action].split():
                # the beams have pull-ups: broken pulls the pin low
                self._drive(BEAM_A if step[0] == "A" else BEAM_B, step[1] == "-", ("counter",))
            return 2 if action == "pair in" else 1
        if action.startswith("door"):
            kind = action.split()[1]
            self._drive(DOOR, kind == "open", ("door", kind))  # open: the reed lets go
            return 1
        where, on = action.removeprefix("motion ").rsplit(" ", 1)
        pin = MOTION_1 if where == "main room" else MOTION_2
        self._drive(pin, on == "on", (f"motion:{where}", "motion" if on == "on" else "still"))
        return 1

    def latencies(self, writer: TimedWriter) -> list[float]:
        """For each committed event a drive caused, its commit time minus the time its pin
        was driven: the last drive of that pin (any beam, for a crossing) before the event
        was put. Events nothing here drove (a health report, say) are left out."""
        out = []
        for committed, batch in writer.commits:
            for event in batch:
                key = ("counter",) if event.sensor == "counter" else (event.sensor, event.kind)
                times = self.driven.get(key, [])
                n = bisect.bisect_right(times, event.at)
                if n:
                    out.append(committed - times[n - 1])
        return out


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def sensors_run(folder: Path, script: list[str], count: int, rate: float | None) -> dict:
    """Drive `count` actions from `script` (at `rate` a second, or flat out) through the
    real Sensors and EventWriter; the committed rows, their latencies and batch sizes."""
    cfg = config.load(write_config(folder), secrets=False)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = TimedWriter(db)
    writer.start()
    factory = MockFactory()
    ticks = itertools.count(0, 0.05)
    try:
        with Sensors(cfg, writer, pin_factory=factory, clock=lambda: next(ticks)):
            driver = Driver(factory)
            time.sleep(0.3)  # a PIR's first sample sets where it stands and fires nothing
            expected = driver.act("door close")  # the pull-up leaves the door open
            first, started = time.time(), time.monotonic()
            for n, action in zip(range(count), itertools.cycle(script), strict=False):
                if rate:
                    time.sleep(max(started + n / rate - time.monotonic(), 0))
                expected += driver.act(action)
            drove = time.time() - first
            if rate:  # let the last batch close on its own deadline, as it would
                time.sleep(daemon.BATCH_SECONDS + 0.3)
            writer.stop()
    finally:
        factory.reset()
    latencies = driver.latencies(writer)
    rows = [(e.at, e.sensor, e.kind, e.value) for _, batch in writer.commits for e in batch]
    db.close()
    return {
        "events": writer.written,
        "lost": expected - len(latencies),
        "per_s": writer.written / (writer.commits[-1][0] - first),
        "driven_per_s": expected / drove,
        "latencies": latencies,
        "batches": [len(batch) for _, batch in writer.commits],
        "rows": rows,
    }


def baseline_run(folder: Path, rows: list[tuple], batches: list[int]) -> dict:
    """The same rows into the same schema, one bare transaction per batch."""
    folder.mkdir(parents=True, exist_ok=True)
    db = open_store(folder / "baseline.db", SPACE_MIGRATIONS, synchronous="NORMAL")
    conn = db.conn
    latencies = []
    i = 0
    first = time.time()
    for size in batches:
        start = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows[i : i + size])
        conn.execute("COMMIT")
        latencies += [time.time() - start] * size
        i += size
    elapsed = time.time() - first
    db.close()
    return {
        "events": i,
        "lost": 0,
        "per_s": i / elapsed,
        "latencies": latencies,
        "batches": batches,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int) -> int:
    """Context switches of all the process's threads: roughly, how often it wakes up."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:  # voluntary and not
                    total += int(line.split()[1])
    return total


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def idle_cpu(folder: Path, seconds: float) -> dict[str, dict]:
    """The real daemon with no traffic, next to a sleeping python, over the same window."""
    toml = write_config(folder, NEVER_OPEN)
    log = folder / "sensors.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        procs = {
            "daemon": subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "spacekiosk",
                    "sensors",
                    "--simulate",
                    "--config",
                    str(toml),
                ],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            ),
            "sleeping python": subprocess.Popen(
                [sys.executable, "-c", f"import time; time.sleep({seconds + 120})"], env=env
            ),
        }
    try:
        deadline = time.monotonic() + 30
        while "sensors running" not in log.read_text(errors="replace"):
            if procs["daemon"].poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the sensors daemon did not start:\n{log.read_text()}")
            time.sleep(0.1)
        time.sleep(1.0)  # past start-up: imports, migrations, the simulator's first look
        before = {k: (cpu_seconds(p.pid), switches(p.pid)) for k, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        results = {}
        for kind, proc in procs.items():
            cpu, woke = cpu_seconds(proc.pid) - before[kind][0], switches(proc.pid)
            results[kind] = {
                "cpu": cpu,
                "percent": cpu / wall * 100,
                "wakeups": (woke - before[kind][1]) / wall,
                "threads": threads(proc.pid),
            }
    finally:
        for proc in procs.values():
            proc.terminate()
        codes = [proc.wait(15) for proc in procs.values()]
    if codes[0] != 0:
        raise SystemExit(f"the sensors daemon exited {codes[0]} on SIGTERM:\n{log.read_text()}")
    return results


def row(name: str, r: dict) -> str:
    lat = r["latencies"]
    return (
        f"{name:<20}{r['events']:>8}{r['lost']:>6}{r['per_s']:>12.0f}"
        f"{percentile(lat, 50) * 1000:>9.1f}{percentile(lat, 99) * 1000:>9.1f}"
        f"{statistics.mean(r['batches']):>8.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="of steady traffic")
    parser.add_argument("--rate", type=float, default=20, help="steady actions a second")
    parser.add_argument("--events", type=int, default=30000, help="per full-speed round")
    parser.add_argument("--rounds", type=int, default=3, help="full-speed/baseline turns")
    parser.add_argument("--idle", type=float, default=30, help="seconds of CPU at rest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        steady = sensors_run(
            folder / "steady", STEADY, int(args.seconds * args.rate), rate=args.rate
        )
        per_action = 7 / len(FULL_SPEED)  # events per action, pairs making two
        full, base = [], []
        for n in range(args.rounds):  # in turns: a burst of noise lands on both
            full.append(
                sensors_run(folder / f"full{n}", FULL_SPEED, int(args.events / per_action), None)
            )
            base.append(baseline_run(folder / f"base{n}", full[-1]["rows"], full[-1]["batches"]))
        idle = idle_cpu(folder / "idle", args.idle)

    def merged(runs: list[dict]) -> dict:
        return {
            "events": sum(r["events"] for r in runs) // len(runs),
            "lost": sum(r["lost"] for r in runs),
            "per_s": statistics.median(r["per_s"] for r in runs),
            "latencies": [x for r in runs for x in r["latencies"]],
            "batches": [b for r in runs for b in r["batches"]],
        }

    full_m, base_m = merged(full), merged(base)
    driven = statistics.median(r["driven_per_s"] for r in full)
    print(
        f"{'run':<20}{'events':>8}{'lost':>6}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'batch':>8}"
    )
    print(row(f"daemon {args.rate:g} acts/s", steady))
    print(row("daemon full speed", full_m))
    print(row("baseline (bare)", base_m))
    print(
        f"  steady: latency is the writer's batching window ({daemon.BATCH_SECONDS:g} s, "
        f"up to {daemon.BATCH_MAX} rows) plus the PIR's 10 Hz sampling; "
        f"goal: p99 under {(daemon.BATCH_SECONDS + 0.1) * 1000:.0f} ms"
    )
    ratio = full_m["per_s"] / base_m["per_s"]
    crossings = full_m["per_s"] * 4 / 7  # of the 7 events a round drives, 4 are crossings
    print(
        f"  ratio daemon/baseline at full speed: events/s {ratio:.2f} "
        f"(median of {args.rounds}); {crossings:.0f} crossings/s (goal >= 20), "
        f"{full_m['lost'] + steady['lost']} lost (goal 0)"
    )
    print(
        f"  full speed: the pins were driven at {driven:.0f} events/s; latency there is the "
        "queue's backlog behind the writer"
    )
    print()
    print(
        f"{'at rest, ' + format(args.idle, 'g') + ' s':<20}{'CPU s':>8}{'% core':>9}"
        f"{'wakeups/s':>11}{'threads':>9}"
    )
    for kind, r in idle.items():
        print(
            f"{kind:<20}{r['cpu']:>8.2f}{r['percent']:>9.2f}{r['wakeups']:>11.1f}{r['threads']:>9}"
        )
    extra = idle["daemon"]["percent"] - idle["sleeping python"]["percent"]
    print(
        f"  daemon at rest: {idle['daemon']['percent']:.2f}% of one core, "
        f"{extra:.2f} points above a sleeping python (goal: under 1% of one core)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
