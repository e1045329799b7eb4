"""Delivery through a real broker: queued while it is down, delivered once, versions win."""

from __future__ import annotations

import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
import requests
from conftest import (
    PASSWORDS,
    ROOT,
    SPACE,
    http_ready,
    wait_until,
    write_collector_config,
    write_space_config,
)

from kiosk import visits
from spacekiosk import config
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import protocol
from sync.broker import Broker
from sync.protocol import Bucket


def sync_once(toml, timeout: int = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "spacekiosk",
            "sync",
            "--once",
            "--timeout",
            str(timeout),
            "--config",
            str(toml),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
def collector(tmp_path, broker, services):
    toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    cfg = config.load(toml)
    url = f"http://127.0.0.1:{cfg.central.listen[1]}/"
    http_ready(url + "healthz", services("collector", "--config", str(toml)))
    wait_until(
        lambda: requests.get(url + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector's subscription",
    )
    return url


def usage(url: str, space: str = SPACE) -> list[dict]:
    response = requests.get(url + "api/v1/usage", params={"space": space}, timeout=5)
    return response.json()["buckets"] if response.status_code == 200 else []


def test_a_backlog_from_an_outage_is_delivered_once(tmp_path, broker, collector):
    """The broker is down while visits happen; once it is back, everything arrives once."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    now = time.time()
    names = [f"Visitor {i}" for i in range(30)]
    for i, name in enumerate(names):  # one visit an hour over the last 30 hours
        visits.sign_in_new(db, visits.NewVisitor(name), "pin-key", now=now - (29 - i) * 3600)

    broker.stop()
    down = sync_once(toml, timeout=3)
    assert down.returncode == 75, down.stdout + down.stderr
    assert "stay queued" in down.stdout
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 30

    Broker(broker.folder, PASSWORDS, port=broker.port).start()
    wait_until(
        lambda: requests.get(collector + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector to reconnect",
    )
    up = sync_once(toml)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "all 30 hour(s) delivered" in up.stdout
    buckets = usage(collector)
    assert sum(b["signins"] for b in buckets) == 30
    assert all(b["version"] == 1 for b in buckets)
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

    assert "0 hour(s) to deliver" in sync_once(toml).stdout  # nothing is sent twice

    # Late data: a sign-out in the current hour makes that hour's version 2.
    last = db.execute("SELECT max(id) FROM visits").fetchone()[0]
    visits.sign_out(db, last, now=now)
    assert sync_once(toml).returncode == 0
    latest = usage(collector)[-1]
    assert latest["version"] == 2 and latest["signouts"] == 1 and latest["signins"] == 1
    assert sum(b["signins"] for b in usage(collector)) == 30


def publisher(port: int, user: str = SPACE) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, PASSWORDS[user])
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_duplicates_and_reordering_leave_the_highest_version(broker, collector):
    client = publisher(broker.port)
    hour = 1795622400
    for version, signins in ((2, 5), (1, 3), (2, 5), (3, 7), (1, 3)):
        message = protocol.usage_message(SPACE, [Bucket(hour, version, {"signins": signins})])
        client.publish(protocol.topic(SPACE, "usage"), message, qos=1).wait_for_publish(5)
    wait_until(lambda: usage(collector) and usage(collector)[0]["version"] == 3, what="version 3")
    time.sleep(0.5)  # let the later, older versions arrive too; they must change nothing
    client.publish(
        protocol.topic(SPACE, "usage"),
        protocol.usage_message(SPACE, [Bucket(hour, 1, {"signins": 1})]),
        qos=1,
    ).wait_for_publish(5)
    sentinel = protocol.usage_message(SPACE, [Bucket(hour + 3600, 1, {"signins": 1})])
    client.publish(protocol.topic(SPACE, "usage"), sentinel, qos=1).wait_for_publish(5)
    wait_until(lambda: len(usage(collector)) == 2, what="the sentinel hour")
    assert usage(collector)[0] == {"start": "2026-11-25T16:00:00Z", "version": 3, "signins": 7}
    client.disconnect()
    client.loop_stop()


def test_bad_payloads_are_rejected_counted_and_survived(broker, collector):
    client = publisher(broker.port)
    bad = [
        b"",
        b"garbage",
        b'{"v": 9}',
        protocol.usage_message("otherspace", [Bucket(1795622400, 1, {"signins": 1})]),
    ]
    for payload in bad:
        client.publish(protocol.topic(SPACE, "usage"), payload, qos=1).wait_for_publish(5)
    good = protocol.usage_message(SPACE, [Bucket(1795622400, 1, {"signins": 4})])
    client.publish(protocol.topic(SPACE, "usage"), good, qos=1).wait_for_publish(5)
    wait_until(lambda: usage(collector), what="the good batch")
    assert usage(collector) == [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": 4}]
    page = requests.get(collector, timeout=5).text
    assert f"Rejected messages: {len(bad)}" in page
    client.disconnect()
    client.loop_stop()


def test_the_collector_api_refuses_bad_queries(collector):
    assert requests.get(collector + "api/v1/usage", timeout=5).status_code == 400
    missing = requests.get(collector + "api/v1/usage", params={"space": "nowhere"}, timeout=5)
    assert missing.status_code == 404 and "nowhere" in missing.json()["error"]
