"""The whole path, through real processes: a tap on the kiosk ends up in the collector's API."""

from __future__ import annotations

import json
import sqlite3

import paho.mqtt.client as mqtt
from conftest import (
    LOGINS,
    PASSWORDS,
    SPACE,
    add_user,
    api_get,
    http_ready,
    screenshot,
    wait_until,
    write_collector_config,
    write_space_config,
)
from playwright.sync_api import expect

from spacekiosk import config, protocol


def test_a_sign_in_on_the_kiosk_reaches_the_collector(
    tmp_path, broker, services, touch_page, tap, screenshots
):
    # A well-connected space can send the hour still running; a metered one waits.
    space_toml = write_space_config(
        tmp_path / "space", broker_port=broker.port, sync="send_running_hour = true"
    )
    central_toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    space, central = config.load(space_toml), config.load(central_toml)
    kiosk_url = f"http://127.0.0.1:{space.kiosk.listen[1]}/"
    collector_url = f"http://127.0.0.1:{central.central.listen[1]}/"
    kiosk = services("kiosk", "--config", str(space_toml))
    collector = services("collector", "--config", str(central_toml))
    services("sync", "--config", str(space_toml))
    http_ready(kiosk_url + "healthz", kiosk)
    http_ready(collector_url + "healthz", collector)

    page = touch_page
    page.goto(kiosk_url)
    screenshot(page, screenshots / "kiosk-welcome.png")
    page.get_by_role("link", name="Sign in").tap()
    page.get_by_label("Name", exact=True).fill("Ana Papadopoulou")
    page.get_by_role("button", name="Done").tap()  # the on-screen keyboard's check key
    expect(page.get_by_role("heading", name="Why are you here today?")).to_be_visible()
    page.get_by_role("button", name="Next").tap()  # the first visit's steps
    page.get_by_role("button", name="Next").tap()
    page.get_by_label("I accept the participation guidelines").check()
    page.get_by_role("button", name="Sign in").tap()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ana")
    screenshot(page, screenshots / "kiosk-welcome-ana.png")

    def usage():
        body = api_get(collector_url, "api/v1/usage", space=SPACE)
        if body.status_code != 200:
            return None
        buckets = body.json()["buckets"]
        return buckets if sum(b.get("signins", 0) for b in buckets) == 1 else None

    buckets = wait_until(usage, timeout=30, what="the sign-in in the collector's API")
    (bucket,) = [b for b in buckets if b.get("signins")]
    assert bucket["start"].endswith(":00:00Z") and bucket["version"] >= 1
    assert bucket["unique_visitors"] == 1 and bucket["new_visitors"] == 1

    # The agent lets go of the hour only once the collector has acknowledged it.
    db = sqlite3.connect(space.database.path)
    wait_until(
        lambda: db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0,
        what="the outbox to drain",
    )
    delivered = db.execute("SELECT delivered_version, version FROM buckets").fetchall()
    assert all(d == v for d, v in delivered)

    # The name stayed on the Pi: not in any payload, not in the central store.
    wait_until(
        lambda: any(t == f"spacekiosk/v1/{SPACE}/ack" for t, _ in tap.payloads),
        what="the collector's ack on the broker",
    )
    texts = tap.texts()
    assert any('"signins":1' in t for t in texts)
    # The retained status says the space is online, with its backlog and sensor health.
    statuses = [
        json.loads(t)
        for topic, t in zip(tap.payloads, texts, strict=True)
        if topic[0].endswith("/status")
    ]
    assert statuses and statuses[-1]["online"] is True
    assert statuses[-1]["sensors"] == {"faults": {}, "door_alert": False}
    assert not [t for t in texts if "Ana" in t or "Papadopoulou" in t]
    assert b"Papadopoulou" not in central.central.database.read_bytes()

    add_user(collector_url, "central")
    page.goto(collector_url)  # nothing without a login: the page asks for one
    page.get_by_label("Name").fill("central")
    page.get_by_label("Password").fill(LOGINS["central"])
    page.get_by_role("button", name="Log in").tap()
    expect(page.get_by_role("table", name="Spaces")).to_contain_text(SPACE)
    page.set_viewport_size({"width": 1280, "height": 720})
    screenshot(page, screenshots / "collector-end-to-end.png", full_page=True)


def test_a_space_cannot_publish_as_another_space(tmp_path, broker, services):
    """The ACL, not good manners, keeps spaces apart: the row stays queued, nothing lands."""
    write_space_config(tmp_path / "space", broker_port=broker.port)
    central_toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    central = config.load(central_toml)
    collector = services("collector", "--config", str(central_toml))
    http_ready(f"http://127.0.0.1:{central.central.listen[1]}/healthz", collector)

    intruder = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv5
    )
    refused = []
    intruder.on_publish = lambda c, u, mid, rc, p: refused.append(rc.is_failure)
    intruder.username_pw_set("otherspace", PASSWORDS["otherspace"])
    intruder.connect("127.0.0.1", broker.port)
    intruder.loop_start()
    forged = protocol.usage_message(SPACE, [protocol.Bucket(1795622400, 9, {"signins": 99})])
    intruder.publish(protocol.topic(SPACE, "usage"), forged, qos=1)
    wait_until(lambda: refused, what="the broker's PUBACK")
    intruder.disconnect()
    intruder.loop_stop()
    assert refused == [True]  # 0x87 not authorised
    url = f"http://127.0.0.1:{central.central.listen[1]}/"
    assert api_get(url, "api/v1/usage", space=SPACE).status_code == 404
