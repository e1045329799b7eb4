"""Running as services: a taken port is refused, and SIGTERM at any moment is safe."""

from __future__ import annotations

import random
import sqlite3
import threading
import time

import requests
from conftest import http_ready, visitor_form, write_space_config

from spacekiosk import config

SENSORS = """
[sensors.door]
pin = 17
[sensors.counter]
beam_a = 22
beam_b = 23
"""


def test_a_second_kiosk_on_a_port_in_use_says_so(tmp_path, services):
    toml = write_space_config(tmp_path, broker_port=1)
    port = config.load(toml).kiosk.listen[1]
    first = services("kiosk", "--config", str(toml))
    http_ready(f"http://127.0.0.1:{port}/healthz", first)
    second = services("kiosk", "--config", str(toml))
    assert second.proc.wait(30) != 0
    assert f"127.0.0.1:{port} is already in use" in second.output()
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok  # first unharmed


def test_sigterm_under_load_leaves_every_confirmed_visit_on_disk(tmp_path, services):
    """Visitors keep signing in while the sensors write; every process gets SIGTERM (or,
    once, SIGKILL) at a random moment. Each "Welcome" must be on disk, the file intact."""
    toml = write_space_config(tmp_path, broker_port=1, extra=SENSORS)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    confirmed: list[str] = []
    rng = random.Random(42)
    for round_ in range(3):
        kiosk = services("kiosk", "--config", str(toml))
        sensors = services(
            "sensors", "--simulate", "--speed", "50", "--seed", str(round_), "--config", str(toml)
        )
        sync = services("sync", "--config", str(toml))
        http_ready(url + "healthz", kiosk)
        stop = threading.Event()

        def visitors(worker: int, round_=round_, stop=stop):
            session = requests.Session()
            n = 0
            while not stop.is_set():
                name = f"R{round_} W{worker} N{n}"
                n += 1
                try:
                    response = session.post(url + "sign-in/new", data=visitor_form(name), timeout=5)
                except requests.RequestException:
                    continue
                if response.status_code == 201 and f"Welcome, R{round_}" in response.text:
                    confirmed.append(name)

        workers = [threading.Thread(target=visitors, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(rng.uniform(0.5, 1.5))
        for service in (sensors, sync, kiosk):
            if round_ == 1:
                service.kill()  # a power cut, as far as a process can tell
            else:
                assert service.stop() == 0, service.output()
        stop.set()
        for worker in workers:
            worker.join()
    db = sqlite3.connect(tmp_path / "space.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {name for (name,) in db.execute("SELECT name FROM visitors")}
    assert confirmed and set(confirmed) <= stored
    assert db.execute("SELECT count(*) FROM sensor_events").fetchone()[0] > 0
    # The outbox never points at a bucket that is not there.
    assert (
        db.execute(
            "SELECT count(*) FROM outbox LEFT JOIN buckets USING (hour_start) "
            "WHERE buckets.hour_start IS NULL"
        ).fetchone()[0]
        == 0
    )
