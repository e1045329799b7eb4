"""Running as services: a taken port is refused, and SIGTERM at any moment is safe."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sqlite3
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import requests
from conftest import (
    PASSWORDS,
    SPACE,
    free_port,
    http_ready,
    publisher,
    visitor_form,
    wait_until,
    write_collector_config,
    write_space_config,
)

from kiosk import visits
from spacekiosk import config, protocol
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

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


STOP_SECONDS = 2.0  # every service stops within this long of SIGTERM, whatever it waits on
TRIES = 3  # SIGTERMs at random moments, per service


def _seeded() -> tuple[random.Random, int]:
    seed = int(os.environ.get("SPACEKIOSK_SEED") or time.time_ns() % 2**32)
    print(f"SIGTERM moments: SPACEKIOSK_SEED={seed}")
    return random.Random(seed), seed


def _retained_status(port: int) -> dict | None:
    """The space's retained status on the broker, as a late subscriber gets it."""
    got: list[bytes] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="collector", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("collector", PASSWORDS["collector"])
    client.on_connect = lambda c, *a: c.subscribe(protocol.topic(SPACE, "status"), qos=1)
    client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(lambda: got, timeout=10, what="the retained status")
    finally:
        client.disconnect()
        client.loop_stop()
    return protocol.unpack(got[-1])


def test_every_service_stops_within_two_seconds_of_sigterm_at_any_moment(
    tmp_path, broker, notified
):
    """Kiosk, sensors, sync and collector, each started and sent SIGTERM at a random
    moment of its work, TRIES times: each exits 0 within STOP_SECONDS. The agent, whose
    loop sleeps up to a minute with the shipped interval, also says "offline" and closes
    its link interval on the way out."""
    rng, seed = _seeded()
    toml = write_space_config(tmp_path / "space", broker_port=broker.port, extra=SENSORS)
    toml.write_text(toml.read_text().replace("interval_seconds = 1", "interval_seconds = 300"))
    cfg = config.load(toml)
    central = write_collector_config(tmp_path / "central", broker_port=broker.port)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    for back in range(1, 48):  # a backlog: the agent has work whenever it is stopped
        visits.sign_in_new(
            db, visits.NewVisitor(f"Earlier {back}"), "k", now=time.time() - back * 3600
        )
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    work = {
        "kiosk": ("kiosk", "--config", str(toml)),
        "sensors": ("sensors", "--simulate", "--speed", "50", "--config", str(toml)),
        "sync": ("sync", "--config", str(toml)),
        "collector": ("collector", "--config", str(central)),
    }
    timings: dict[str, list[float]] = {name: [] for name in work}
    for attempt in range(TRIES):
        for name, args in work.items():
            service = notified(*args)
            service.wait_for("READY=1")
            busy = threading.Event()
            load = threading.Thread(target=_keep_busy, args=(name, url, broker.port, busy))
            load.start()
            time.sleep(rng.uniform(0, 1.5))  # the random moment
            sent = time.time()
            started = time.monotonic()
            service.proc.send_signal(signal.SIGTERM)
            try:
                code = service.proc.wait(STOP_SECONDS + 20)
            finally:
                busy.set()
                load.join()
            took = time.monotonic() - started
            timings[name].append(took)
            where = f"{name}, try {attempt + 1}, SPACEKIOSK_SEED={seed}"
            assert code == 0, f"{where}: exit {code}\n{service.output()}"
            assert took <= STOP_SECONDS, f"{where}: stopped after {took:.2f} s\n{service.output()}"
            assert "Traceback" not in service.output(), f"{where}:\n{service.output()}"
            if name == "sync":
                (end,) = db.execute("SELECT max(end) FROM link_log").fetchone()
                assert end is not None and end >= sent - 0.5, f"{where}: link not closed"
    assert _retained_status(broker.port)["online"] is False  # the agent's goodbye
    print({name: [round(t, 2) for t in ts] for name, ts in timings.items()})


def _keep_busy(name: str, url: str, port: int, stop: threading.Event) -> None:
    """What each service does while the SIGTERM comes: visitors sign in at the kiosk,
    batches arrive at the collector; the sensors simulate traffic, the agent has its
    backlog."""
    if name == "kiosk":
        session = requests.Session()
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):
                session.post(
                    url + "sign-in/new", data=visitor_form(uuid.uuid4().hex[:12]), timeout=5
                )
    elif name == "collector":
        client = publisher(port, user="otherspace")
        hour = (int(time.time()) // 3600 - 5) * 3600
        version = 0
        while not stop.wait(0.05):
            version += 1
            batch = [protocol.Bucket(hour, version, {"signins": 1})]
            client.publish(
                protocol.topic("otherspace", "usage"),
                protocol.usage_message("otherspace", batch),
                qos=1,
            )
        client.disconnect()
        client.loop_stop()


def test_a_collector_that_never_answers_an_https_post_does_not_hold_up_a_stop(tmp_path, notified):
    """The MQTT port is blocked, so the agent POSTs its backlog; the collector takes the
    connection and says nothing. A SIGTERM then ends the agent at once, not after the
    POST's 30 s read timeout (longer than systemd waits), and the batch stays queued."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    posted = threading.Event()

    def take() -> None:
        conn, _ = silent.accept()
        accepted.append(conn)
        conn.recv(65536)  # the request begins; no answer ever comes
        posted.set()

    threading.Thread(target=take, daemon=True).start()
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "token").write_text("t0k3n\n")
    toml = write_space_config(
        folder,
        broker_port=free_port(),  # nothing listens: the MQTT port is blocked
        sync=f'http_url = "http://127.0.0.1:{silent.getsockname()[1]}"\n'
        'token_file = "token"\nhttp_after_seconds = 0',
    )
    db = open_store(config.load(toml).database.path, SPACE_MIGRATIONS)
    visits.sign_in_new(db, visits.NewVisitor("Earlier Visitor"), "k", now=time.time() - 7200)
    try:
        service = notified("sync", "--config", str(toml))
        service.wait_for("READY=1")
        assert posted.wait(30), service.output()
        started = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        code = service.proc.wait(STOP_SECONDS + 40)
        took = time.monotonic() - started
        assert code == 0, service.output()
        assert took <= STOP_SECONDS, f"stopped after {took:.2f} s\n{service.output()}"
        assert "Traceback" not in service.output(), service.output()
        (queued,) = db.execute("SELECT count(*) FROM outbox").fetchone()
        assert queued >= 1  # nothing acknowledged, nothing released
    finally:
        for conn in accepted:
            conn.close()
        silent.close()
