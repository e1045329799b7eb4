"""The README's demo: up within 60 s, a sign-in in the collector's API within 30 s, Ctrl-C clean."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from stat import S_IMODE

import paho.mqtt.client as mqtt
import requests
from conftest import ROOT, visitor_form, wait_until


def start_demo(
    tmp_path: Path, env: dict | None = None, umask: int = 0o022
) -> tuple[subprocess.Popen, dict]:
    out = tmp_path / "demo.out"
    args = ["demo", "--data", str(tmp_path / "data"), "--sync-interval", "2"]
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spacekiosk", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: os.umask(umask),
        )
    started = time.monotonic()

    def addresses():
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited: {out.read_text()}")
        text = out.read_text()
        found = dict(re.findall(r"^(kiosk|collector|broker|api token): (\S+)", text, re.M))
        return found if "press Ctrl-C" in text else None

    found = wait_until(addresses, timeout=60, what="the demo's addresses")
    assert time.monotonic() - started < 60
    return proc, found


class Watcher:
    def __init__(self, port: int, user: str, password: str):
        self.topics: list[str] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = lambda c, *_: c.subscribe("spacekiosk/#", qos=1)
        self.client.on_message = lambda c, u, m: self.topics.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()


def watch(tmp_path: Path, broker: str) -> Watcher:
    """The `mosquitto_sub` the demo prints, as a paho client with the same login."""
    user, password = re.search(r" -u (\S+) -P (\S+) ", (tmp_path / "demo.out").read_text()).groups()
    return Watcher(int(broker.rsplit(":", 1)[1]), user, password)


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def descendants_of(pid: int) -> list[int]:
    kids = children_of(pid)
    return kids + [grandchild for kid in kids for grandchild in descendants_of(kid)]


def stop_demo(proc: subprocess.Popen) -> None:
    assert len(children_of(proc.pid)) >= 4  # kiosk, collector, sensors, sync (and the broker)
    kids = descendants_of(proc.pid)  # and theirs: the collector's committer
    assert len(kids) > len(children_of(proc.pid))
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(60) == 0
    for kid in kids:
        assert (
            not Path(f"/proc/{kid}").exists()
            or Path(f"/proc/{kid}/stat").read_text().split()[2] == "Z"
        ), f"{kid} left behind"


def assert_private(folder: Path, expected: set[str]) -> None:
    """Everything the demo wrote is its user's alone (secrets, stores, logs): none of it
    has a right for the group or others, whatever the umask it was started with."""
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")}
    assert expected <= set(found), sorted(found)
    open_to_others = {
        name: oct(S_IMODE(p.stat().st_mode))
        for name, p in found.items()
        if S_IMODE(p.stat().st_mode) & 0o077
    }
    assert open_to_others == {}
    assert S_IMODE(folder.stat().st_mode) == 0o700
    for secret in expected:
        assert S_IMODE(found[secret].stat().st_mode) == 0o600, secret


SECRETS = {"mqtt-password", "collector-password", "collector-secret"}


def test_the_demo_shows_a_sign_in_at_the_collector(tmp_path):
    proc, found = start_demo(tmp_path, umask=0o000)
    watcher = None
    try:
        assert found["broker"].startswith("mqtt://127.0.0.1:")
        watcher = watch(tmp_path, found["broker"])
        kiosk, collector = found["kiosk"], found["collector"]
        response = requests.post(
            kiosk + "sign-in/new", data=visitor_form("Demo Visitor"), timeout=10
        )
        assert response.status_code == 201
        signed = time.monotonic()

        def counted():
            body = requests.get(
                collector + "api/v1/usage",
                params={"space": "demo"},
                headers={"Authorization": f"Bearer {found['api token']}"},
                timeout=5,
            )
            return body.ok and sum(b.get("signins", 0) for b in body.json()["buckets"]) == 1

        wait_until(counted, timeout=30, what="the sign-in at the collector")
        assert time.monotonic() - signed < 30
        # The watch command it printed sees the traffic, acks too, beside the collector.
        wait_until(lambda: any(t.endswith("/ack") for t in watcher.topics), what="an ack")
        assert any(t.endswith("/usage") for t in watcher.topics)
    finally:
        if watcher is not None:
            watcher.client.disconnect()
            watcher.client.loop_stop()
        stop_demo(proc)
    assert_private(tmp_path / "data", SECRETS | {"broker/passwd"})


def test_without_mosquitto_the_demo_runs_and_says_data_is_queued(tmp_path):
    proc, found = start_demo(tmp_path, env={"SPACEKIOSK_MOSQUITTO": ""})
    try:
        assert "broker" in found
        assert "mosquitto is not installed" in (tmp_path / "demo.out").read_text()
        kiosk = found["kiosk"]
        assert (
            requests.post(
                kiosk + "sign-in/new", data=visitor_form("Offline Visitor"), timeout=10
            ).status_code
            == 201
        )

        def queued():
            status = requests.get(kiosk + "api/v1/status", timeout=5).json()["sync"]
            return status if status["state"] == "queued" else None

        status = wait_until(queued, timeout=30, what="the kiosk to say data is queued")
        assert status["backlog"] >= 1
        assert "queued" in requests.get(kiosk, timeout=5).text
    finally:
        stop_demo(proc)
    assert_private(tmp_path / "data", SECRETS)
