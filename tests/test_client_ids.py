"""Client ids are bound to logins: no space can take the collector's place on the broker,
nor another space's, however often it tries.

MQTT lets a client name itself, and a broker that sees a second client with a name in
use disconnects the first. With `use_username_as_clientid` (central.conf, and the tests'
broker alike) the broker names every client after its login instead. Here one space's
login connects again and again with the collector's ids and another space's, while a
real collector ingests from that other space; the broker's own log says who was
disconnected to make room for whom.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import PASSWORDS, SPACE, usage, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spacekiosk import protocol
from spacekiosk.broker import BINDING, Broker
from spacekiosk.protocol import Bucket

THIEF = "otherspace"
# The collector's login and the id it asks for (central.client_id), the agent's id for
# SPACE (`spacekiosk-<id>`) and the id the broker gives SPACE: everything worth stealing.
STOLEN = ("collector", "collector-1", f"spacekiosk-{SPACE}", SPACE)
TAKEOVER = "already connected, closing old connection"


class WatchedBroker(Broker):
    """The tests' broker (bound ids unless `bound` is False), logging every connection."""

    def __init__(self, *args, bound: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.bound = bound

    def write_config(self):
        conf = super().write_config()
        text = conf.read_text() + "log_type information\nconnection_messages true\n"
        conf.write_text(text if self.bound else text.replace(BINDING, ""))
        return conf

    def lines(self, words: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if words in line]


@pytest.fixture
def broker(tmp_path, request):
    """Overrides conftest's, so that its `collector` fixture runs on this one."""
    bound = getattr(request, "param", True)
    with WatchedBroker(tmp_path / "broker", PASSWORDS, bound=bound) as running:
        yield running


class Space:
    """SPACE's sender, as its agent connects (its id, a session that outlives a
    disconnect, its acks): counts every disconnect and keeps every ack."""

    def __init__(self, port: int):
        self.acked: set[tuple[int, int]] = set()
        self.disconnects: list[str] = []
        self.session_present: bool | None = None
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"spacekiosk-{SPACE}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(SPACE, PASSWORDS[SPACE])
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(str(rc))
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10), "SPACE could not log in"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        assert not reason_code.is_failure, reason_code
        self.session_present = flags.session_present
        client.subscribe(protocol.topic(SPACE, "ack"), qos=1)
        self.ready.set()

    def _on_message(self, client, userdata, message):
        with self.lock:
            for start, version, _hours in protocol.read_ack(message.payload).committed:
                self.acked.add((start, version))

    def send(self, hour: int, signins: int) -> None:
        batch = protocol.usage_message(SPACE, [Bucket(hour, 1, {"signins": signins})])
        self.client.publish(protocol.topic(SPACE, "usage"), batch, qos=1).wait_for_publish(5)

    def has_ack(self, hour: int) -> bool:
        with self.lock:
            return (hour, 1) in self.acked

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Thief(threading.Thread):
    """THIEF's login, connecting with each stolen id in turn, about once a second."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.logins: list[str] = []  # the ids it asked for, each time the broker let it in

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            wanted = STOLEN[n % len(STOLEN)]
            n += 1
            answered = threading.Event()
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=wanted, protocol=mqtt.MQTTv5
            )
            client.username_pw_set(THIEF, PASSWORDS[THIEF])

            def connected(c, u, f, rc, p, wanted=wanted, answered=answered):
                if not rc.is_failure:
                    self.logins.append(wanted)
                answered.set()

            client.on_connect = connected
            client.connect("127.0.0.1", self.port)
            client.loop_start()
            answered.wait(5)
            self.stop.wait(0.5)  # holding the stolen id a moment, as an attacker would
            client.disconnect()
            client.loop_stop()
            self.stop.wait(0.5)  # the attack's own pace: about a second a round

    def close(self) -> None:
        self.stop.set()
        self.join(10)


def hours(n: int) -> list[int]:
    """The n hours before the current one, oldest first."""
    this = int(time.time()) // 3600 * 3600
    return [this - k * 3600 for k in range(n, 0, -1)]


def test_a_space_cannot_take_the_collector_s_place_nor_another_space_s(broker, collector):
    space = Space(broker.port)
    thief = Thief(broker.port)
    thief.start()
    try:
        # One batch at a time, each committed and acked while the thief is at work.
        sent = hours(12)
        for n, hour in enumerate(sent, 1):
            wait_until(lambda n=n: len(thief.logins) >= n, 10, what="the thief's next try")
            space.send(hour, n)
            wait_until(lambda h=hour: space.has_ack(h), 15, what=f"the ack for batch {n}")
    finally:
        thief.close()
        space.close()
    assert set(thief.logins) == set(STOLEN)  # it tried each id, and got in each time
    buckets = usage(collector)
    assert [(protocol.hour_epoch(b["start"]), b["signins"]) for b in buckets] == [
        (hour, n) for n, hour in enumerate(sent, 1)
    ]
    assert space.disconnects == ["Normal disconnection"]  # its own, at the end
    # The broker took no client's place for another: each of the rightful clients
    # connected once (as their logins), and the thief always as itself.
    assert broker.lines(TAKEOVER) == []
    connected = broker.lines("New client connected")
    assert sum(" as collector " in line for line in connected) == 1
    assert sum(f" as {SPACE} " in line for line in connected) == 1
    assert sum(f" as {THIEF} " in line for line in connected) == len(thief.logins)
    # Its session is kept under its login, as the agent's is: it finds it again.
    again = Space(broker.port)
    again.close()
    assert again.session_present is True


@pytest.mark.parametrize("broker", [False], indirect=True)
def test_without_the_binding_a_space_would_throw_the_collector_off(broker, collector):
    """The check above is not idle: on a broker that lets clients name themselves (as
    the shipped config did), the same thief throws the collector off at the first try."""
    thief = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="collector-1", protocol=mqtt.MQTTv5
    )
    thief.username_pw_set(THIEF, PASSWORDS[THIEF])
    thief.connect("127.0.0.1", broker.port)
    thief.loop_start()
    try:
        wait_until(lambda: broker.lines(TAKEOVER), 10, what="the broker dropping the collector")
    finally:
        thief.disconnect()
        thief.loop_stop()
    assert "Client collector-1 " + TAKEOVER in broker.lines(TAKEOVER)[0]
