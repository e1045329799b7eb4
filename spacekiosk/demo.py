"""`spacekiosk demo`: a whole space and its collector on one machine, as separate processes.

Kiosk, simulated sensors, sync agent and collector each run as their own process (as
systemd runs them on a Pi) over one SQLite file, with a Mosquitto broker on a free
loopback port. Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from spacekiosk import pilots
from spacekiosk.broker import Broker, find_mosquitto, free_port
from spacekiosk.config import WEEKDAYS, write_secret

log = logging.getLogger("spacekiosk.demo")

SPACE = "demo"
WATCHER = "collector-watch"  # a login that sees all the traffic, beside the collector


def space_config(folder: Path, kiosk_port: int, broker_port: int, sync_interval: int) -> str:
    return pilots.space_toml(
        id=SPACE,
        name="Demo Community Space",
        timezone="Africa/Nairobi",
        languages=["en", "sw"],
        capacity=30,
        database=folder / "space.db",
        opening_hours=dict.fromkeys(WEEKDAYS, "00:00-24:00"),
        listen=f"127.0.0.1:{kiosk_port}",
        broker="127.0.0.1",
        broker_port=broker_port,
        tls=False,
        password_file=folder / "mqtt-password",
        keepalive_seconds=60,
        sync={
            "interval_seconds": sync_interval,
            "ack_timeout_seconds": 10,
            "send_running_hour": True,
            "send_every_minutes": 0,
        },
        sensors=pilots.SENSORS,
        note="\nThe demo space: everything on loopback, sensors simulated. It sends the hour\n"
        "still running; a space on a metered link waits for it to end.",
    )


def collector_config(folder: Path, port: int, broker_port: int) -> str:
    return pilots.central_toml(
        listen=f"127.0.0.1:{port}",
        database=folder / "central.db",
        broker="127.0.0.1",
        broker_port=broker_port,
        tls=False,
        password_file=folder / "collector-password",
        note="\nThe demo's collector, beside the demo space on loopback.",
    )


def _central_logins(central_toml: Path) -> tuple[str, str]:
    """A login for the collector's page and a token for its API: nothing there is
    readable without one. Made fresh for each demo, in the collector's store."""
    from collector import accounts, store
    from spacekiosk import config

    db = store.connect(config.load(central_toml).central)
    try:
        password = secrets.token_urlsafe(9)
        accounts.add_user(db, SPACE, password)
        return password, accounts.add_api_token(db, SPACE)
    finally:
        db.close()


def _local_admin(space_toml: Path) -> tuple[str, str]:
    """A local admin for the space's admin pages: (password, PIN), made fresh for each
    demo in the space's store."""
    from kiosk import admins
    from spacekiosk import config
    from spacekiosk.db import open_store
    from spacekiosk.migrations import SPACE_MIGRATIONS

    db = open_store(config.load(space_toml, secrets=False).database.path, SPACE_MIGRATIONS)
    try:
        password, pin = secrets.token_urlsafe(9), f"{secrets.randbelow(10**6):06d}"
        admins.add(db, SPACE, password, pin)
        return password, pin
    finally:
        db.close()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself dies, so nothing is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Demo:
    """The demo's processes, started in order and stopped in reverse."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.broker: Broker | None = None

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        logfile = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed with the demo
        proc = subprocess.Popen(
            [sys.executable, "-m", "spacekiosk", *args],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        logfile.close()
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for name, proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.wait()
        if self.broker:
            self.broker.stop()

    def died(self) -> str | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}"
        return None


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).ok:
                return True
        time.sleep(0.2)
    return False


def run(
    data: Path | None = None,
    kiosk_port: int = 0,
    collector_port: int = 0,
    sync_interval: int = 10,
    ready: threading.Event | None = None,
    stopping: threading.Event | None = None,
) -> int:
    folder = data or Path(tempfile.mkdtemp(prefix="spacekiosk-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    stopping = stopping or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    demo = Demo(folder)
    code = 1
    try:
        code = _run(
            demo,
            folder,
            kiosk_port or free_port(),
            collector_port or free_port(),
            sync_interval,
            ready,
            stopping,
            kept=data is not None,
        )
        return code
    finally:
        demo.stop()
        if data is not None:
            print(f"demo stopped; its files and logs stay in {folder}", flush=True)
        elif code != 0:
            # Its logs are what tell why it failed: never delete them then.
            print(f"demo stopped; its files and logs are kept in {folder}", flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print(
                f"demo stopped; deleted its temporary folder {folder} and the logs in it "
                "(run it with --data DIR to keep them)",
                flush=True,
            )


def _run(
    demo: Demo,
    folder: Path,
    kiosk_port: int,
    collector_port: int,
    sync_interval: int,
    ready: threading.Event | None,
    stopping: threading.Event,
    kept: bool = True,
) -> int:
    space_password, collector_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    write_secret(folder / "mqtt-password", space_password)
    write_secret(folder / "collector-password", collector_password)
    # The broker names each client after its login, so watching the traffic as `collector`
    # would take the collector's place: the watcher has a collector's login of its own.
    watch_password = secrets.token_urlsafe(12)
    watch_file = write_secret(folder / "watch-password", watch_password)
    logins = {SPACE: space_password, "collector": collector_password, WATCHER: watch_password}
    broker = Broker(folder / "broker", logins)
    if find_mosquitto():
        broker.start()
        demo.broker = broker
        broker_line = (
            f"broker: mqtt://127.0.0.1:{broker.port}  (watch it: spacekiosk watch --broker "
            f"mqtt://127.0.0.1:{broker.port} --username {WATCHER} --password-file {watch_file}"
            f"; or raw: mosquitto_sub -p {broker.port} -u {WATCHER} -P {watch_password} "
            "-t 'spacekiosk/#' -v)"
        )
    else:
        broker_line = (
            "broker: none — mosquitto is not installed (apt install mosquitto); "
            "usage data stays queued in the kiosk's outbox"
        )
    space_toml, central_toml = folder / "space.toml", folder / "central.toml"
    space_toml.write_text(space_config(folder, kiosk_port, broker.port, sync_interval))
    central_toml.write_text(collector_config(folder, collector_port, broker.port))

    kiosk = demo.spawn("kiosk", "kiosk", "--config", str(space_toml))
    collector = demo.spawn("collector", "collector", "--config", str(central_toml))
    # Ten times real time: a busy afternoon every few minutes, still slow enough for
    # the PIRs, which gpiozero samples ten times a second.
    demo.spawn("sensors", "sensors", "--simulate", "--speed", "10", "--config", str(space_toml))
    demo.spawn("sync", "sync", "--config", str(space_toml))
    kiosk_url, collector_url = (
        f"http://127.0.0.1:{kiosk_port}/",
        f"http://127.0.0.1:{collector_port}/",
    )
    if not (
        _wait_http(kiosk_url + "healthz", kiosk)
        and _wait_http(collector_url + "healthz", collector)
    ):
        print(
            f"the demo did not come up: {demo.died() or 'timed out'}; logs are in {folder}",
            file=sys.stderr,
        )
        return 1
    password, token = _central_logins(central_toml)
    admin_password, pin = _local_admin(space_toml)
    print(f"kiosk: {kiosk_url}", flush=True)
    print(
        f"admin: {kiosk_url}admin/  (log in as {SPACE}, password {admin_password}; on the "
        f"kiosk's screen hold the space's name for 3 seconds, then PIN {pin})",
        flush=True,
    )
    print(f"collector: {collector_url}  (log in as demo, password {password})", flush=True)
    print(
        f"api token: {token}  (curl -H 'Authorization: Bearer {token}' "
        f"'{collector_url}api/v1/usage?space={SPACE}&granularity=day')",
        flush=True,
    )
    print(broker_line, flush=True)
    if kept:
        print(f"files and logs: {folder}", flush=True)
    else:
        print(
            f"files and logs: {folder}  (a temporary folder, deleted when the demo stops; "
            "keep them with --data DIR)",
            flush=True,
        )
    print("press Ctrl-C to stop", flush=True)
    if ready:
        ready.set()
    while not stopping.wait(1):
        if reason := demo.died():
            print(f"stopping: {reason}; see {folder}", file=sys.stderr, flush=True)
            return 1
    return 0
