"""Wire protocol v1 between a space's sync agent and the central collector.

See docs/protocol.md. Payloads are UTF-8 JSON; a usage batch is zlib-compressed when
that makes it smaller, and the first byte tells which ('{' is plain JSON).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 1
PREFIX = f"spacekiosk/v{VERSION}"
MAX_WIRE_BYTES = 256 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_BUCKETS = 5000

# Counts a bucket carries; all are non-negative integers (see docs/protocol.md).
COUNTS = (
    "signins",
    "signouts",
    "unique_visitors",
    "new_visitors",
    "returning_visitors",
    "door_openings",
    "entries",
    "exits",
    "motion_periods",
    "occupancy_peak",
    "person_minutes",
    "occupied_minutes",
)

_SPACE = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")
_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00Z$")


class ProtocolError(ValueError):
    """A payload that does not follow the protocol; the message says what is wrong."""


def topic(space: str, kind: str) -> str:
    return f"{PREFIX}/{space}/{kind}"


def parse_topic(name: str) -> tuple[str, str]:
    """(space, kind) from a topic name, or ProtocolError."""
    parts = name.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != PREFIX or not _SPACE.match(parts[2]):
        raise ProtocolError(f"not a protocol v{VERSION} topic: {name!r}")
    return parts[2], parts[3]


def hour_iso(hour_start: int) -> str:
    return datetime.fromtimestamp(hour_start, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def hour_epoch(text: str) -> int:
    if not isinstance(text, str) or not _HOUR.match(text):
        raise ProtocolError(f"'start' must be an hour like 2026-11-25T16:00:00Z, not {text!r}")
    try:
        return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise ProtocolError(f"'start' is not a real date: {text!r}") from None


@dataclass(frozen=True)
class Bucket:
    """One space's counts for one UTC hour, at one version."""

    start: int
    version: int
    counts: dict[str, int]

    def to_wire(self) -> dict:
        return {"start": hour_iso(self.start), "version": self.version, **self.counts}


def pack(message: dict) -> bytes:
    """JSON, compressed when compression pays for itself."""
    raw = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    packed = zlib.compress(raw, 9)
    return packed if len(packed) < len(raw) else raw


def unpack(payload: bytes) -> dict:
    if not payload:
        raise ProtocolError("empty payload")
    if len(payload) > MAX_WIRE_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_WIRE_BYTES}")
    if payload[:1] != b"{":
        inflater = zlib.decompressobj()
        try:
            payload = inflater.decompress(payload, MAX_JSON_BYTES)
        except zlib.error as exc:
            raise ProtocolError(f"neither JSON nor zlib data ({exc})") from None
        if inflater.unconsumed_tail:
            raise ProtocolError(f"payload inflates to more than {MAX_JSON_BYTES} bytes")
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("the payload must be a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.get('v')!r}")
    return message


def usage_message(space: str, buckets: list[Bucket]) -> bytes:
    return pack({"v": VERSION, "space": space, "buckets": [b.to_wire() for b in buckets]})


def read_usage(payload: bytes, topic_space: str) -> list[Bucket]:
    """Validate a usage batch; every bucket must be well-formed or the whole batch is refused."""
    message = unpack(payload)
    if message.get("space") != topic_space:
        raise ProtocolError(
            f"payload names space {message.get('space')!r} but was sent on {topic_space!r}'s topic"
        )
    items = message.get("buckets")
    if not isinstance(items, list) or not items or len(items) > MAX_BUCKETS:
        raise ProtocolError(f"'buckets' must be a list of 1 to {MAX_BUCKETS} buckets")
    return [_read_bucket(item, i) for i, item in enumerate(items)]


def _read_bucket(item: object, index: int) -> Bucket:
    if not isinstance(item, dict):
        raise ProtocolError(f"buckets[{index}] is not an object")
    start = hour_epoch(item.get("start"))
    version = item.get("version")
    if not _count(version) or version < 1:
        raise ProtocolError(f"buckets[{index}].version must be a positive integer")
    counts = {}
    for key, value in item.items():
        if key in ("start", "version"):
            continue
        if key not in COUNTS:
            raise ProtocolError(f"buckets[{index}] has an unknown field {key!r}")
        if not _count(value):
            raise ProtocolError(f"buckets[{index}].{key} must be a non-negative integer")
        counts[key] = value
    return Bucket(start, version, counts)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def ack_message(buckets: list[Bucket]) -> bytes:
    return pack({"v": VERSION, "committed": [[hour_iso(b.start), b.version] for b in buckets]})


def read_ack(payload: bytes) -> list[tuple[int, int]]:
    message = unpack(payload)
    committed = message.get("committed")
    if not isinstance(committed, list):
        raise ProtocolError("'committed' must be a list of [start, version] pairs")
    pairs = []
    for pair in committed:
        if not (isinstance(pair, list) and len(pair) == 2 and _count(pair[1])):
            raise ProtocolError(f"bad [start, version] pair: {pair!r}")
        pairs.append((hour_epoch(pair[0]), pair[1]))
    return pairs


def status_message(**fields) -> bytes:
    return json.dumps({"v": VERSION, **fields}, separators=(",", ":")).encode()


def read_status(payload: bytes) -> dict:
    message = unpack(payload)
    if not isinstance(message.get("online"), bool):
        raise ProtocolError("'online' must be true or false")
    return message
