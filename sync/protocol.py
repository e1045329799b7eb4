"""Wire protocol v1 between a space's sync agent and the central collector.

See docs/protocol.md. Payloads are UTF-8 JSON; a usage batch is zlib-compressed when
that makes it smaller, and the first byte tells which ('{' is plain JSON).
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

VERSION = 1
PREFIX = f"spacekiosk/v{VERSION}"
MAX_WIRE_BYTES = 256 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_BUCKETS = 5000
MAX_DIGEST_DAYS = 400

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
    "open_minutes",
    "connected_minutes",
    "sensor_fault_minutes",
)
# Counts that are minutes of the bucket's span, so at most 60 per hour it covers.
MINUTES = ("occupied_minutes", "open_minutes", "connected_minutes", "sensor_fault_minutes")
# Sign-ins broken down by a label: {label: count}. Labels are the space's own purposes
# and community event names, never anything a visitor typed.
BREAKDOWNS = ("by_purpose", "by_event")
MAX_LABELS = 64
MAX_LABEL_CHARS = 80
SPANS = (1, 24)  # an hour, or a day rolled up from its hours

_SPACE = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")
_HOUR = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):00:00Z\Z")  # \Z: no newline after
_DAY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
DAY = 86400


class ProtocolError(ValueError):
    """A payload that does not follow the protocol; the message says what is wrong."""


TOO_DEEP = "not JSON this reader takes: nested too deeply"


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


def hour_epoch(text: object) -> int:
    """Seconds since the epoch of an hour like 2026-11-25T16:00:00Z, or ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError(f"'start' must be an hour like 2026-11-25T16:00:00Z, not {text!r}")
    return _hour_epoch(text)


@functools.lru_cache(maxsize=4096)  # spaces send the same few hours: parse each once
def _hour_epoch(text: str) -> int:
    return _epoch(text, _HOUR, "'start' must be an hour like 2026-11-25T16:00:00Z")


def day_iso(start: int) -> str:
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")


def day_epoch(text: object) -> int:
    """Seconds since the epoch of a UTC day like 2026-11-25, or ProtocolError."""
    return _epoch(text, _DAY, "a day must look like 2026-11-25")


def _epoch(text: object, pattern: re.Pattern, expected: str) -> int:
    match = pattern.match(text) if isinstance(text, str) else None
    if match is None:
        raise ProtocolError(f"{expected}, not {text!r}")
    try:
        moment = datetime(*map(int, match.groups()), tzinfo=UTC)
    except ValueError:
        raise ProtocolError(f"not a real date: {text!r}") from None
    return int(moment.timestamp())


@dataclass(frozen=True)
class Bucket:
    """One space's counts for one UTC hour (or, rolled up, one UTC day), at one version."""

    start: int
    version: int
    counts: dict
    hours: int = 1

    @property
    def key(self) -> tuple[int, int]:
        """What identifies the bucket at the collector: (start, hours)."""
        return self.start, self.hours

    def to_wire(self) -> dict:
        head = {"start": hour_iso(self.start), "version": self.version}
        if self.hours != 1:
            head["hours"] = self.hours
        return head | self.counts


def add_counts(total: dict, counts: dict) -> dict:
    """Sum `counts` into `total`: breakdowns label by label, occupancy_peak as a maximum."""
    for name, value in counts.items():
        if name in BREAKDOWNS:
            into = total.setdefault(name, {})
            for label, n in value.items():
                into[label] = into.get(label, 0) + n
        elif name == "occupancy_peak":
            total[name] = max(total.get(name, 0), value)
        else:
            total[name] = total.get(name, 0) + value
    return total


def digest(units: list[tuple[int, int, int]]) -> list[list]:
    """[[day, units, crc32], ...] of delivered (start, hours, version) units, by UTC day.

    Both ends compute it the same way; a day whose entry differs is resent."""
    days: dict[int, list[tuple[int, int, int]]] = {}
    for unit in units:
        days.setdefault(unit[0] // DAY * DAY, []).append(unit)
    return [
        [day_iso(day), len(found), zlib.crc32(";".join(map(_unit, sorted(found))).encode())]
        for day, found in sorted(days.items())
    ]


def _unit(unit: tuple[int, int, int]) -> str:
    start, hours, version = unit
    return f"{start}:{hours}:{version}"


def pack(message: dict) -> bytes:
    """JSON, compressed when compression pays for itself."""
    return _squeeze(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def _squeeze(raw: bytes) -> bytes:
    packed = zlib.compress(raw, 9)
    return packed if len(packed) < len(raw) else raw


def unpack(payload: bytes) -> dict:
    try:
        message = json.loads(_inflate(payload).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    except RecursionError:  # a few hundred compressed bytes can nest 100,000 deep
        raise ProtocolError(TOO_DEEP) from None
    if not isinstance(message, dict):
        raise ProtocolError("the payload must be a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.get('v')!r}")
    return message


def _inflate(payload: bytes) -> bytes:
    """The JSON text of a payload, inflated if it came compressed, within the limits."""
    if not payload:
        raise ProtocolError("empty payload")
    if len(payload) > MAX_WIRE_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_WIRE_BYTES}")
    if payload[:1] == b"{":
        return payload
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, MAX_JSON_BYTES)
    except zlib.error as exc:
        raise ProtocolError(f"neither JSON nor zlib data ({exc})") from None
    if inflater.unconsumed_tail:
        raise ProtocolError(f"payload inflates to more than {MAX_JSON_BYTES} bytes")
    return text


def usage_message(space: str, buckets: list[Bucket]) -> bytes:
    return pack({"v": VERSION, "space": space, "buckets": [b.to_wire() for b in buckets]})


def read_hours(payload: bytes, topic_space: str) -> list[tuple[int, Hour]]:
    """(start in seconds, bucket) of each bucket in a usage batch, or ProtocolError:
    every bucket must be well-formed, or the whole batch is refused.

    The collector's reader: a compiled decoder checks the shape and every count as it
    parses, so a collector reads thousands of batches a second; what a schema cannot
    say (a real date, whole days, minutes within the span) is checked after it."""
    text = _inflate(payload)
    try:
        message = _USAGE.decode(text)
    except msgspec.ValidationError as exc:
        raise ProtocolError(_usage_problem(text, exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    except RecursionError:  # a few hundred compressed bytes can nest 100,000 deep
        raise ProtocolError(TOO_DEEP) from None
    if message.v != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.v!r}")
    if message.space != topic_space:
        raise ProtocolError(
            f"payload names space {message.space!r} but was sent on {topic_space!r}'s topic"
        )
    found = []
    for index, hour in enumerate(message.buckets):
        start = _hour_epoch(hour.start)
        if hour.hours == 24 and start % DAY:
            raise ProtocolError(f"buckets[{index}] is a day, so it must start at 00:00Z")
        longest = max(
            hour.occupied_minutes, hour.open_minutes, hour.connected_minutes,
            hour.sensor_fault_minutes,
        )  # fmt: skip
        if longest > 60 * hour.hours:
            raise ProtocolError(
                f"buckets[{index}] has {longest} minutes in a bucket of {60 * hour.hours}: "
                "more minutes than the bucket has"
            )
        found.append((start, hour))
    return found


def _usage_problem(text: bytes, exc: msgspec.ValidationError) -> str:
    """The reason to give, in the protocol's words, with the decoder's own after it. A
    newer protocol's message is refused for its version, not for fields this one lacks."""
    try:
        version = json.loads(text).get("v")
    except (ValueError, AttributeError, RecursionError):
        version = VERSION
    if version != VERSION:
        return f"unsupported protocol version {version!r}"
    detail, _, where = str(exc).rpartition(" - at ")
    path = re.sub(r"^(`key` in )?`\$\.?|`$", "", where)
    field = path.removesuffix("[...]").rsplit(".", 1)[-1]  # "[...]": in a breakdown
    if re.fullmatch(r"buckets\[\d+\]", field) and "unknown field" not in detail:
        field = "buckets[]"  # an item that is not an object at all
    rule = _RULES.get(field) or ("must be a non-negative integer" if field in COUNTS else None)
    if rule is None:
        return str(exc)
    if "regex" in detail:  # the rule says it better than a pattern
        return f"{path} {rule}"
    return f"{path} {rule} ({detail})"


_RULES = {
    "buckets": f"must be a list of 1 to {MAX_BUCKETS} buckets",
    "buckets[]": "must be an object",
    "space": "must be the space's id",
    "start": "must be an hour like 2026-11-25T16:00:00Z",
    "version": "must be a positive integer",
    "hours": "must be 1 or 24",
    **dict.fromkeys(
        BREAKDOWNS, f"must map at most {MAX_LABELS} labels of 1-{MAX_LABEL_CHARS} chars to counts"
    ),
}


_MAX_COUNT = 2**31 - 1
Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_COUNT)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_CHARS)]
Breakdown = Annotated[dict[Label, Count], msgspec.Meta(max_length=MAX_LABELS)]


class Hour(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One bucket as it travels: when, which version, its span, then its counts. A count
    left out is 0. The fields are in `COUNTS` and `BREAKDOWNS`; a test holds them equal."""

    start: Annotated[str, msgspec.Meta(pattern=_HOUR.pattern)]
    version: Annotated[int, msgspec.Meta(ge=1, le=_MAX_COUNT)]
    hours: Literal[1, 24] = 1
    # The counts in alphabetical order, as COUNTS and BREAKDOWNS sorted.
    by_event: Breakdown | msgspec.UnsetType = msgspec.UNSET
    by_purpose: Breakdown | msgspec.UnsetType = msgspec.UNSET
    connected_minutes: Count = 0
    door_openings: Count = 0
    entries: Count = 0
    exits: Count = 0
    motion_periods: Count = 0
    new_visitors: Count = 0
    occupancy_peak: Count = 0
    occupied_minutes: Count = 0
    open_minutes: Count = 0
    person_minutes: Count = 0
    returning_visitors: Count = 0
    sensor_fault_minutes: Count = 0
    signins: Count = 0
    signouts: Count = 0
    unique_visitors: Count = 0

    def counts(self) -> dict:
        """The counts that are not zero, by name."""
        found = msgspec.to_builtins(self)
        del found["start"], found["version"]
        found.pop("hours", None)
        return found

    def counts_json(self) -> str:
        return counts_json(self.counts())

    def ack(self) -> str:
        """This bucket's entry in an ack, as JSON: its start is already the wire's text."""
        if self.hours == 1:
            return f'["{self.start}",{self.version}]'
        return f'["{self.start}",{self.version},{self.hours}]'


class _Usage(msgspec.Struct):
    v: int
    space: str
    buckets: Annotated[list[Hour], msgspec.Meta(min_length=1, max_length=MAX_BUCKETS)]


_USAGE = msgspec.json.Decoder(_Usage)
_encode = msgspec.json.Encoder(order="sorted").encode


def counts_json(counts: dict) -> str:
    """Counts as the collector stores them: compact JSON, keys sorted at every level."""
    return _encode(counts).decode()


def hours_ack(hours: list[Hour]) -> bytes:
    """The ack of buckets as read off the wire: `ack_message`'s bytes, without building
    a dict, a date or an encoder for each of the collector's thousands a second."""
    entries = ",".join([hour.ack() for hour in hours])
    return _squeeze(f'{{"v":{VERSION},"committed":[{entries}]}}'.encode())


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


@dataclass(frozen=True)
class Ack:
    """What the collector tells a space: buckets it committed, days it asks for again."""

    committed: list[tuple[int, int, int]]  # (start, version, hours)
    resend: list[int]  # UTC day starts


def ack_message(buckets: list[Bucket] = (), resend: list[int] = ()) -> bytes:
    message: dict = {"v": VERSION}
    if buckets:
        message["committed"] = [
            [hour_iso(b.start), b.version] + ([b.hours] if b.hours != 1 else []) for b in buckets
        ]
    if resend:
        message["resend"] = [day_iso(day) for day in resend]
    return pack(message)


def read_ack(payload: bytes) -> Ack:
    message = unpack(payload)
    committed = message.get("committed", [])
    resend = message.get("resend", [])
    if not isinstance(committed, list) or not isinstance(resend, list):
        raise ProtocolError("'committed' and 'resend' must be lists")
    units = []
    for unit in committed:
        if not (
            isinstance(unit, list)
            and len(unit) in (2, 3)
            and _count(unit[1])
            and (len(unit) == 2 or unit[2] in SPANS)
        ):
            raise ProtocolError(f"bad [start, version(, hours)] entry: {unit!r}")
        units.append((hour_epoch(unit[0]), unit[1], unit[2] if len(unit) == 3 else 1))
    return Ack(units, [day_epoch(day) for day in resend])


def digest_message(space: str, days: list[list]) -> bytes:
    return pack({"v": VERSION, "space": space, "days": days})


def read_digest(payload: bytes, topic_space: str) -> dict[int, tuple[int, int]]:
    """{day start: (units, crc32)} from a space's digest of what it believes delivered."""
    message = unpack(payload)
    if message.get("space") != topic_space:
        raise ProtocolError("the digest names another space than its topic")
    days = message.get("days")
    if not isinstance(days, list) or len(days) > MAX_DIGEST_DAYS:
        raise ProtocolError(f"'days' must be a list of at most {MAX_DIGEST_DAYS} entries")
    found = {}
    for entry in days:
        if not (isinstance(entry, list) and len(entry) == 3 and _count(entry[1])):
            raise ProtocolError(f"bad [day, units, crc32] entry: {entry!r}")
        if not (isinstance(entry[2], int) and 0 <= entry[2] < 2**32):
            raise ProtocolError(f"bad crc32 in {entry!r}")
        found[day_epoch(entry[0])] = (entry[1], entry[2])
    return found


def status_message(**fields) -> bytes:
    return pack({"v": VERSION, **fields})


def read_status(payload: bytes) -> dict:
    message = unpack(payload)
    if not isinstance(message.get("online"), bool):
        raise ProtocolError("'online' must be true or false")
    about = message.get("about", {})
    if not (
        isinstance(about, dict)
        and _text(about.get("name", "-"), MAX_LABEL_CHARS)
        and _text(about.get("timezone", "-"), 64)
        and (about.get("capacity") is None or _count(about["capacity"]))
    ):
        raise ProtocolError("'about' must give a name, a time zone and a capacity, or none")
    return message


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit
