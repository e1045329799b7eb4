"""SD card wear: the bytes the kiosk, the sensors daemon and the sync agent write per
busy day, read from /proc/<pid>/io, against a baseline measured in the same run.

    .venv/bin/python bench/sdwear.py [--signins 200] [--seconds 60] [--baseline REV]

Each service runs as its own process, as systemd runs it, on a store on this machine's
disk (put --dir on a real file system: tmpfs counts no writes), beside a real broker and
collector. `write_bytes` is what the process made the kernel write to the disk (pages
it dirtied: the WAL's frames, its fsyncs, and the checkpoints that copy pages back into
the database file, whichever process ran them); `wchar` is every byte passed to write(),
cached or not; `rchar` what it read.

- kiosk: SIGNINS first visits through its HTTP form, one after the other, then the same
  visitors signing out; bytes per sign-in and per sign-out, and what it writes idle
  (housekeeping) while the other two run;
- sensors: `--simulate` traffic at --speed SPEED for SECONDS; bytes per sensor event and
  per simulated hour;
- sync: the agent refreshing every second for SECONDS, delivering to the collector (the
  hours were already sent, so most refreshes change nothing, as on an ordinary day);
  bytes per refresh.

A busy day, extrapolated from those per-operation costs: BUSY_VISITS sign-ins and as many
sign-outs, the sensors' measured traffic for the OPEN_HOURS the space is open (nothing
the rest of the day), an agent refresh every 5 minutes (288), and 24 times what the
kiosk wrote idle over the other two's phases (at most one hourly housekeeping round).

Baselines, in the same run: the same work on the release before the write reductions
(--baseline REV, taken with `git archive`; the run of both takes a few minutes), and the
floor: a plain SQLite table with the visit's columns, one INSERT per sign-in, WAL and
synchronous=FULL, in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spacekiosk import pilots  # noqa: E402
from spacekiosk.broker import Broker, free_port, wait_for_port  # noqa: E402

SPACE = "benchspace"
PASSWORDS = {SPACE: "bench-space-secret", "collector": "bench-collector-secret"}
BUSY_VISITS = 300  # sign-ins (and sign-outs) on a busy day
OPEN_HOURS = 13  # 09:00-22:00
REFRESHES_PER_DAY = 24 * 60 // 5  # sync.interval_seconds = 300
# The release before the write reductions: what "before" means below.
BEFORE = "dd184ff"


def proc_io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in ("write_bytes", "wchar", "rchar")}


class Process:
    """`python -m spacekiosk ARGS` with the code in `code` (None: this checkout)."""

    def __init__(self, code: Path | None, args: list[str], log: Path):
        env = dict(os.environ)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spacekiosk", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=code or ROOT,
            )

    def io(self) -> dict[str, int]:
        return proc_io(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Figures:
    label: str
    signin: dict[str, float] = field(default_factory=dict)
    signout: dict[str, float] = field(default_factory=dict)
    kiosk_idle: float = 0.0  # bytes over the sensors' and agent's phases
    kiosk_idle_seconds: float = 0.0
    sensor_event: dict[str, float] = field(default_factory=dict)
    sensor_per_sim_hour: float = 0.0  # at real time
    sensor_batches: tuple[int, int, int] = (0, 0, 0)  # events, commits here, at real time
    refresh: dict[str, float] = field(default_factory=dict)

    def per_day(self) -> dict[str, float]:
        return {
            "kiosk": BUSY_VISITS * (self.signin["write_bytes"] + self.signout["write_bytes"])
            + self.kiosk_idle * 24,
            "sensors": self.sensor_per_sim_hour * OPEN_HOURS,
            "sync": self.refresh["write_bytes"] * REFRESHES_PER_DAY,
        }


def checkpoint(db: Path) -> dict[str, int]:
    """Copy what the WAL holds into the database file now, and what that cost (this
    process's I/O): the phase that wrote those pages pays for their checkpoint, where
    otherwise whichever process crossed the WAL's bound would."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        start = proc_io(os.getpid())
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return delta(proc_io(os.getpid()), start)
    finally:
        conn.close()


def plus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b[k] for k in a}


def per(totals: dict[str, int], count: int) -> dict[str, float]:
    return {k: v / max(count, 1) for k, v in totals.items()}


def run(code: Path | None, label: str, folder: Path, args) -> Figures:
    folder.mkdir(parents=True)
    figures = Figures(label)
    with Broker(folder / "broker", PASSWORDS) as broker:
        (folder / "space-password").write_text(PASSWORDS[SPACE])
        (folder / "collector-password").write_text(PASSWORDS["collector"])
        kiosk_port, collector_port = free_port(), free_port()
        space = folder / "space.toml"
        space.write_text(
            pilots.space_toml(
                id=SPACE,
                name="Bench Space",
                timezone="Europe/Athens",
                languages=["en"],
                capacity=40,
                database=str(folder / "space.db"),
                listen=f"127.0.0.1:{kiosk_port}",
                broker="127.0.0.1",
                broker_port=broker.port,
                tls=False,
                password_file=str(folder / "space-password"),
                opening_hours={day: "00:00-24:00" for day in pilots.WEEKDAYS},
                sync={"interval_seconds": 1, "send_every_minutes": 0},
                sensors=pilots.SENSORS,
            )
        )
        central = folder / "central.toml"
        central.write_text(
            pilots.central_toml(
                listen=f"127.0.0.1:{collector_port}",
                database=str(folder / "central.db"),
                broker="127.0.0.1",
                broker_port=broker.port,
                tls=False,
                username="collector",
                password_file=str(folder / "collector-password"),
            )
        )
        running: list[Process] = []
        try:
            collector = Process(code, ["collector", "--config", str(central)], folder / "c.log")
            running.append(collector)
            kiosk = Process(code, ["kiosk", "--config", str(space)], folder / "kiosk.log")
            running.append(kiosk)
            wait_for_port(kiosk_port, 30, kiosk.proc)
            url = f"http://127.0.0.1:{kiosk_port}/"
            _kiosk(kiosk, url, folder / "space.db", args.signins, figures)

            began, idle = time.monotonic(), kiosk.io()
            sensors = Process(
                code,
                [
                    "sensors",
                    "--config",
                    str(space),
                    "--simulate",
                    "--seed",
                    "7",
                    "--speed",
                    str(args.speed),
                ],
                folder / "sensors.log",
            )
            running.append(sensors)
            time.sleep(2)  # migrated, pins at rest
            first = _count(folder / "space.db", "sensor_events")
            checkpoint(folder / "space.db")
            start = sensors.io()
            time.sleep(args.seconds)
            used = plus(delta(sensors.io(), start), checkpoint(folder / "space.db"))
            times = _event_times(folder / "space.db", first)
            figures.sensor_event = per(used, len(times))
            # Commits, not events, cost pages: at SPEED the writer's batches hold more
            # events than at real time. Its batches, as its rule makes them from the
            # events' times, here and at real time (the same gaps, SPEED times longer):
            # each real-time batch costs what a measured one did.
            window = _batch_seconds(code)
            here = _batches(times, window)
            real = _batches([t * args.speed for t in times], window)
            figures.sensor_batches = (len(times), here, real)
            sim_hours = args.seconds * args.speed / 3600
            figures.sensor_per_sim_hour = used["write_bytes"] / max(here, 1) * real / sim_hours
            sensors.stop()
            running.remove(sensors)

            agent = Process(code, ["sync", "--config", str(space)], folder / "sync.log")
            running.append(agent)
            time.sleep(5)  # connected, the backlog delivered
            checkpoint(folder / "space.db")
            start, t0 = agent.io(), time.monotonic()
            time.sleep(args.seconds)
            used = plus(delta(agent.io(), start), checkpoint(folder / "space.db"))
            figures.refresh = per(used, round(time.monotonic() - t0))  # one a second
            # Idle, the kiosk writes only in its housekeeping: a check a minute (nothing
            # to write on an ordinary day) and a round an hour (pruning, and a checkpoint
            # that copies whatever the other services left in the WAL). The window is
            # shorter than an hour: it holds at most one round, so a day has at most 24
            # times what it wrote.
            figures.kiosk_idle = delta(kiosk.io(), idle)["write_bytes"]
            figures.kiosk_idle_seconds = time.monotonic() - began
        finally:
            for process in reversed(running):
                process.stop()
    return figures


def _kiosk(kiosk: Process, url: str, db: Path, signins: int, figures: Figures) -> None:
    session = requests.Session()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if session.get(url + "healthz", timeout=2).ok:
                break
        time.sleep(0.2)
    checkpoint(db)
    start = kiosk.io()
    for i in range(signins):
        form = {"name": f"Visitor {i} {uuid.uuid4().hex[:6]}", "accept": "yes",
                "purpose": "cowork", "request_id": uuid.uuid4().hex}  # fmt: skip
        answer = session.post(url + "sign-in/new", data=form, timeout=30)
        if answer.status_code != 201:
            raise SystemExit(f"the kiosk answered {answer.status_code} to a sign-in")
    figures.signin = per(plus(delta(kiosk.io(), start), checkpoint(db)), signins)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    handles = [h for (h,) in conn.execute("SELECT handle FROM visits WHERE signed_out_at IS NULL")]
    conn.close()
    start = kiosk.io()
    for handle in handles:
        answer = session.post(url + f"sign-out/{handle}", timeout=30)
        if answer.status_code >= 400:
            raise SystemExit(f"the kiosk answered {answer.status_code} to a sign-out")
    figures.signout = per(plus(delta(kiosk.io(), start), checkpoint(db)), len(handles))


def _event_times(db: Path, after: int) -> list[float]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT at FROM sensor_events WHERE id > ? ORDER BY id", [after])
        return [at for (at,) in rows]
    finally:
        conn.close()


def _batch_seconds(code: Path | None) -> float:
    """How long the measured release's sensor writer gathers events into one commit."""
    env = dict(os.environ, **({"PYTHONPATH": str(code)} if code else {}))
    out = subprocess.run(
        [sys.executable, "-c", "from sensors.daemon import BATCH_SECONDS; print(BATCH_SECONDS)"],
        capture_output=True, text=True, env=env, cwd=code or ROOT, check=True,
    ).stdout  # fmt: skip
    return float(out)


def _batches(times: list[float], window: float) -> int:
    """Commits the sensor writer makes of events at `times`: a batch takes every event
    that comes within `window` of its first."""
    count, until = 0, -1.0
    for at in times:
        if at > until:
            count, until = count + 1, at + window
    return count


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
    finally:
        conn.close()


def plain_insert(folder: Path, count: int) -> dict[str, float]:
    """The floor: one INSERT of a visit's columns per sign-in, WAL + synchronous=FULL."""
    folder.mkdir(parents=True)
    conn = sqlite3.connect(folder / "plain.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE visits (id INTEGER PRIMARY KEY, name TEXT, signed_in_at REAL, "
        "purpose TEXT, request_id TEXT, handle TEXT)"
    )
    start = proc_io(os.getpid())
    for i in range(count):
        conn.execute(
            "INSERT INTO visits (name, signed_in_at, purpose, request_id, handle) "
            "VALUES (?, ?, 'cowork', ?, ?)",
            [f"Visitor {i}", time.time(), uuid.uuid4().hex, uuid.uuid4().hex[:24]],
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # its checkpoint counts too
    used = delta(proc_io(os.getpid()), start)
    conn.close()
    return per(used, count)


def extract(rev: str, into: Path) -> Path:
    """The code of `rev`, from git, without touching the work tree."""
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            rev,
            "spacekiosk",
            "kiosk",
            "sensors",
            "sync",
            "collector",
        ],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def kib(n: float) -> str:
    return f"{n / 1024:8.1f} KiB"


def mb(n: float) -> str:
    return f"{n / 1e6:7.2f} MB"


def report(runs: list[Figures], plain: dict[str, float]) -> None:
    print()
    print(f"{'':34}" + "".join(f"{f.label:>22}" for f in runs))

    def row(title: str, values: list[str]) -> None:
        print(f"{title:34}" + "".join(f"{v:>22}" for v in values))

    for title, pick in (
        ("kiosk write_bytes / sign-in", lambda f: kib(f.signin["write_bytes"])),
        ("kiosk wchar / sign-in", lambda f: kib(f.signin["wchar"])),
        ("kiosk rchar / sign-in", lambda f: kib(f.signin["rchar"])),
        ("kiosk write_bytes / sign-out", lambda f: kib(f.signout["write_bytes"])),
        ("kiosk write_bytes idle (window)", lambda f: kib(f.kiosk_idle)),
        ("sensors write_bytes / event", lambda f: kib(f.sensor_event["write_bytes"])),
        ("sensors wchar / event", lambda f: kib(f.sensor_event["wchar"])),
        (
            "sensor events (commits; real time)",
            lambda f: "{} ({}; {})".format(*f.sensor_batches),
        ),
        ("sensors write_bytes / hour, real", lambda f: kib(f.sensor_per_sim_hour)),
        ("sync write_bytes / refresh", lambda f: kib(f.refresh["write_bytes"])),
        ("sync wchar / refresh", lambda f: kib(f.refresh["wchar"])),
        ("sync rchar / refresh", lambda f: kib(f.refresh["rchar"])),
    ):
        row(title, [pick(f) for f in runs])
    print()
    print(
        f"a busy day: {BUSY_VISITS} visits, sensors {OPEN_HOURS} h, {REFRESHES_PER_DAY} "
        f"refreshes, 24 x the kiosk's idle window ({runs[-1].kiosk_idle_seconds:.0f} s)"
    )
    for service in ("kiosk", "sensors", "sync"):
        row(f"  {service} per day", [mb(f.per_day()[service]) for f in runs])
    row("  all three per day", [mb(sum(f.per_day().values())) for f in runs])
    print()
    print(f"floor: a plain SQLite INSERT per sign-in (WAL, FULL): {kib(plain['write_bytes'])}")
    for f in runs:
        print(f"  {f.label}: kiosk sign-in / plain insert = "
              f"{f.signin['write_bytes'] / plain['write_bytes']:.1f}x")  # fmt: skip
    if len(runs) == 2:
        before, after = runs
        for service in ("kiosk", "sensors", "sync"):
            ratio = after.per_day()[service] / max(before.per_day()[service], 1)
            print(f"{service}: {after.label} / {before.label} per day = {ratio:.2f}")
        total = sum(after.per_day().values()) / max(sum(before.per_day().values()), 1)
        print(f"all three: {after.label} / {before.label} per day = {total:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signins", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60, help="sensors' and agent's run")
    parser.add_argument("--speed", type=float, default=60, help="the sensors' simulation speed")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--dir", default="/var/tmp", help="where the stores go (a real disk)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdwear-", dir=args.dir) as tmp:
        folder = Path(tmp)
        runs = []
        if args.baseline:
            given = Path(args.baseline)
            code = given if given.is_dir() else extract(args.baseline, folder / "before-code")
            runs.append(run(code, f"before ({args.baseline})", folder / "before", args))
        runs.append(run(None, "now", folder / "now", args))
        plain = plain_insert(folder / "plain", args.signins)
        report(runs, plain)


if __name__ == "__main__":
    main()
