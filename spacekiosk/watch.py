"""`spacekiosk watch`: the broker's traffic, decoded, one readable line per message.

A usage batch travels compressed, so `mosquitto_sub` shows bytes; this subscribes with a
collector's login and prints what the protocol's own readers make of each payload. What
they refuse is printed as not readable, with their reason: a watcher never stops on a
payload, whatever a space or a stranger sends.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from spacekiosk import protocol
from spacekiosk.config import broker_address

DEFAULT_TOPIC = "spacekiosk/#"


def describe(topic: str, payload: bytes, now: float | None = None) -> list[str]:
    """The lines to print for one message: one per bucket of a usage batch, else one;
    printable whatever the topic and payload hold."""
    try:
        lines = [f"{topic}: {line}" for line in _read(topic, payload, now)]
    except protocol.ProtocolError as exc:
        lines = [f"{topic}: not readable ({exc})"]
    except Exception as exc:  # the readers raise only ProtocolError; the watcher never stops
        lines = [f"{topic}: not readable ({type(exc).__name__}: {exc})"]
    return [_printable(line) for line in lines]


def _read(topic: str, payload: bytes, now: float | None) -> list[str]:
    space, kind = protocol.parse_topic(topic)
    if kind == "usage":
        return [_bucket(space, hour) for _start, hour in protocol.read_hours(payload, space, now)]
    if kind == "status":
        return [f"status of {space}: {_status(protocol.read_status(payload, now))}"]
    if kind == "ack":
        return [f"ack to {space}: {_ack(protocol.read_ack(payload))}"]
    if kind == "digest":
        return [f"digest of {space}: {_digest(protocol.read_digest(payload, space, now))}"]
    raise protocol.ProtocolError(f"no message of the protocol is sent on {kind!r}")


def _bucket(space: str, hour: protocol.Hour) -> str:
    span = " (day)" if hour.hours == 24 else ""
    counts = " ".join(f"{name}={_value(value)}" for name, value in hour.counts().items())
    return f"usage {space} {hour.start}{span} v{hour.version} {counts or 'no counts'}"


def _value(value: object) -> str:
    if isinstance(value, dict):  # a breakdown: {label: count}
        return ",".join(f"{label}:{n}" for label, n in value.items()) or "none"
    return str(value)


def _status(status: dict) -> str:
    fields = []
    for name, value in _flat(status):
        if name == "v":
            continue
        if name == "last_sync" and isinstance(value, float):
            value = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif value is None:
            value = "none"
        elif isinstance(value, str) and (not value or " " in value):
            value = repr(value)
        fields.append(f"{name}={value}")
    return " ".join(fields)


def _flat(found: dict, prefix: str = ""):
    for name, value in found.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{name}.")
        elif isinstance(value, dict):
            yield f"{prefix}{name}", "none"
        else:
            yield f"{prefix}{name}", value


def _ack(ack: protocol.Ack) -> str:
    parts = []
    if ack.committed:
        units = [
            f"{protocol.day_iso(start)} (day)" if hours == 24 else protocol.hour_iso(start)
            for start, _version, hours in ack.committed
        ]
        versions = [version for _start, version, _hours in ack.committed]
        parts.append(
            "committed "
            + ", ".join(f"{unit} v{v}" for unit, v in zip(units, versions, strict=True))
        )
    if ack.resend:
        parts.append("resend " + ", ".join(protocol.day_iso(day) for day in ack.resend))
    return "; ".join(parts) or "nothing"


def _digest(days: dict[int, tuple[int, int]]) -> str:
    if not days:
        return "no days"
    return ", ".join(
        f"{protocol.day_iso(day)} {units} units (crc32 {crc:08x})"
        for day, (units, crc) in days.items()
    )


def _printable(line: str) -> str:
    """The line with any control or formatting character escaped: a topic is any UTF-8."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)


def read_password(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read a password from {path}: {exc}") from None


def run(
    url: str,
    username: str,
    password: str,
    topic: str,
    stopping: threading.Event,
    count: int | None = None,
    out=print,
    err=print,
) -> int:
    """Print each message on `topic` until `stopping` is set or `count` messages came.
    0 when stopped or done; 1 when the broker cannot be reached or refuses the login."""
    host, port, tls = broker_address(url)  # the config's own reading of a broker URL
    seen = 0
    failed: list[str] = []
    lock = threading.Lock()

    def on_connect(client, userdata, flags, reason, properties):
        if reason.is_failure:
            failed.append(f"the broker refused the login {username!r}: {reason}")
            stopping.set()
            return
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reasons, properties):
        if any(reason.is_failure for reason in reasons):
            failed.append(f"the broker refused the subscription to {topic!r}: {reasons[0]}")
            stopping.set()
            return
        err(f"watching {topic} on {url} as {username} (Ctrl-C to stop)")

    def on_message(client, userdata, message):
        nonlocal seen
        with lock:
            if count is not None and seen >= count:
                return
            for line in describe(message.topic, message.payload):
                out(line)
            seen += 1
            if count is not None and seen >= count:
                stopping.set()

    # The broker names a client after its login anyway; an empty id it takes as an error.
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{username}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    if tls:
        client.tls_set()
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        err(f"cannot reach the broker at {url}: {exc}")
        return 1
    client.loop_start()
    try:
        stopping.wait()
    finally:
        client.disconnect()
        client.loop_stop()
    for problem in failed:
        err(problem)
    return 1 if failed else 0
