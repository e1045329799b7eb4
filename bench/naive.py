"""The naive design the bytes benchmark compares against: one MQTT message per event.

Where the agent sends hourly counts, a naive kiosk would publish each raw event (a door
opening, a sign-in) as it happens: compact JSON, QoS 1, a PUBACK for each. It publishes on
the space's `usage` topic: the broker's ACL lets a space write only that and its status, and
the same topic name costs each message the same bytes as it costs the agent's batches. It
logs in as the agent does (client id `spacekiosk-<space>`, MQTT 5), so its CONNECT is as
long as the agent's; it sets no last will and keeps no session.

Over TLS (`ca_file`) it verifies the broker as the agent does. With `pace`, each event
waits for its PUBACK, and then `pace()` is called before the next goes: a day's events are
minutes apart, so each is its own packets (and the ACK of its PUBACK its own), where a
burst would share them.

`keepalive_exchange_bytes()` measures what one idle keep-alive exchange (PINGREQ and
PINGRESP) costs on the wire, for the benchmark to charge each keep-alive interval a
connection stays open.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spacekiosk import protocol  # noqa: E402
from tests.tcpproxy import TcpProxy  # noqa: E402


def publish_events(
    host: str,
    port: int,
    space: str,
    password: str,
    events: list[dict],
    timeout: float = 30.0,
    ca_file: Path | None = None,
    pace: Callable[[], None] | None = None,
) -> None:
    """Publish each event as its own QoS 1 message, wait for every PUBACK, disconnect.

    Raises if the broker refuses the login or any message (an MQTT 5 PUBACK can say no).
    """
    client = _client(space, password, ca_file)
    acked: set[int] = set()
    refusals: list[str] = []
    changed = threading.Condition()

    def on_publish(_client, _userdata, mid, reason_code, _properties) -> None:
        with changed:  # paho may call this before publish() has returned the mid
            acked.add(mid)
            if reason_code.is_failure:
                refusals.append(str(reason_code))
            changed.notify_all()

    client.on_publish = on_publish
    with _connected(client, host, port, keepalive=60, timeout=timeout):
        topic = protocol.topic(space, "usage")
        mids = []
        for event in events:
            if pace is not None:
                pace()  # the event before has had its PUBACK, and its packets
            mids.append(client.publish(topic, encode(event), qos=1).mid)
            if pace is not None:
                with changed:
                    changed.wait_for(lambda: mids[-1] in acked, timeout)
        if pace is not None:
            pace()
        with changed:
            if not changed.wait_for(lambda: acked.issuperset(mids), timeout):
                raise TimeoutError(f"{len(set(mids) - acked)} of {len(mids)} PUBACKs missing")
    if refusals:
        raise RuntimeError(f"the broker refused {len(refusals)} event(s): {refusals[0]}")


def encode(event: dict) -> bytes:
    """An event as the naive design sends it: compact JSON, nothing added."""
    return json.dumps(event, separators=(",", ":")).encode()


def keepalive_exchange_bytes(
    host: str,
    port: int,
    space: str,
    password: str,
    pings: int = 3,
    timeout: float = 30.0,
    ca_file: Path | None = None,
) -> float:
    """Bytes, both ways, of one PINGREQ + PINGRESP: an idle client with a 1 s keep-alive,
    through a TcpProxy, from its CONNACK to its `pings`-th PINGRESP, over `pings`.

    The pings are counted by the client (paho logs each PINGRESP it reads), and the bytes
    read at those moments, on paho's thread, before it can send anything else.
    """
    client = _client(space, password, ca_file)
    marks: list[int] = []  # bytes both ways at the CONNACK, then at each PINGRESP
    enough = threading.Event()

    with TcpProxy(port, host) as proxy:

        def on_log(_client, _userdata, _level, message: str) -> None:
            if message.startswith("Received CONNACK") or message == "Received PINGRESP":
                marks.append(proxy.bytes_up + proxy.bytes_down)
                if len(marks) > pings:
                    enough.set()

        client.on_log = on_log
        with _connected(client, "127.0.0.1", proxy.port, keepalive=1, timeout=timeout):
            if not enough.wait(timeout):
                raise TimeoutError(f"{len(marks) - 1} of {pings} keep-alive exchanges seen")
        return (marks[pings] - marks[0]) / pings


def _client(space: str, password: str, ca_file: Path | None = None) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"spacekiosk-{space}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(space, password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))
    return client


@contextlib.contextmanager
def _connected(
    client: mqtt.Client, host: str, port: int, keepalive: int, timeout: float
) -> Iterator[None]:
    """Connect `client` and yield once the broker has accepted it; then send DISCONNECT
    and wait until it is out before stopping paho's thread."""
    connack: queue.SimpleQueue[mqtt.ReasonCode] = queue.SimpleQueue()
    gone = threading.Event()
    client.on_connect = lambda _c, _u, _flags, reason_code, _p: connack.put(reason_code)
    client.on_disconnect = lambda *_: gone.set()
    client.connect(host, port, keepalive=keepalive)
    client.loop_start()
    try:
        try:
            reason = connack.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no CONNACK from {host}:{port} in {timeout}s") from None
        if reason.is_failure:
            raise ConnectionRefusedError(f"{host}:{port} refused the login: {reason}")
        yield
    finally:
        if client.is_connected():
            client.disconnect()
            gone.wait(timeout)
        client.loop_stop()


def hold_idle(
    host: str,
    port: int,
    space: str,
    password: str,
    pings: int,
    ca_file: Path | None = None,
    timeout: float = 30.0,
) -> None:
    """Connect with a 1 s keep-alive, stay idle until `pings` PINGRESPs have come, and
    disconnect: two such connections, captured, differ by their keep-alive exchanges."""
    client = _client(space, password, ca_file)
    seen: list[str] = []
    enough = threading.Event()

    def on_log(_client, _userdata, _level, message: str) -> None:
        if message == "Received PINGRESP":
            seen.append(message)
            if len(seen) >= pings:
                enough.set()

    client.on_log = on_log
    with _connected(client, host, port, keepalive=1, timeout=timeout):
        if pings and not enough.wait(timeout):
            raise TimeoutError(f"{len(seen)} of {pings} keep-alive exchanges seen")
