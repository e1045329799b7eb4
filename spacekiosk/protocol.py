"""Wire protocol v1 between a space's sync agent and the central collector.

See docs/protocol.md. Payloads are UTF-8 JSON; a usage batch is zlib-compressed when
that makes it smaller, and the first byte tells which ('{' is plain JSON).

Every reader here decodes against a schema with bounds on the size and on every field,
and raises ProtocolError (never anything else) for what breaks it: whatever a space or a
stranger sends, the collector stores only what these readers return.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec

from spacekiosk import BUILD_DATE, EARLIEST

VERSION = 1
PREFIX = f"spacekiosk/v{VERSION}"
MAX_WIRE_BYTES = 256 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_BUCKETS = 5000
MAX_DIGEST_DAYS = 400
MAX_DAY_UNITS = 25  # a day's 24 hours, and the day rolled up
MAX_DIGEST_BYTES = 32 * 1024  # 400 days of [day, units, crc32] fit in half of it
MAX_STATUS_BYTES = 8 * 1024  # on the wire and inflated; an agent's status is ~400 bytes
MAX_FAULTS = 16  # faulty sensors named in one status
MAX_REASON_CHARS = 200
MAX_NAME_CHARS = 80  # a space's name, a sensor's name
CLOCK_STATES = ("synchronized", "unsynchronized", "unknown")
# Whether the space's store takes writes: "full" (no space left) or "error" (another
# write failure). A status leaves it out while all is well.
STORE_STATES = ("ok", "full", "error")
# How far past the collector's own clock a bucket may begin: the clocks of a Pi and of the
# centre differ by a little. An hour is taken once it has begun (a space with
# `sync.send_running_hour` sends the hour still running), never before EARLIEST.
SKEW_SECONDS = 600
# How far ahead a time a space states of itself (its last sync) may be: a space whose
# clock is off by an hour still says it is online; its hours are held to SKEW_SECONDS.
STATUS_AHEAD_SECONDS = 86400

# The calendar periods, in UTC as the collector sums them, whose distinct visitors a
# bucket's first_in_<period> counts let the collector sum exactly.
PERIODS = ("day", "week", "month", "quarter", "year")
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
    *(FIRST_IN := tuple(f"first_in_{period}" for period in PERIODS)),
    "open_person_minutes",
)
# Counts an agent before these fields left out, so a bucket without them says nothing of
# them (the collector then shows no exact figure): people whose first sign-in of a UTC
# period (day, ISO week, month, quarter, year) fell in the bucket, and person-minutes
# while the space was open. Each first_in_* is at most the bucket's unique_visitors, and
# open_person_minutes at most its person_minutes.
OPTIONAL = (*FIRST_IN, "open_person_minutes")
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


def check_hour(start: int, hours: int, where: str, now: float | None = None) -> None:
    """ProtocolError for a bucket (or a digest's day) that no space can have counted: one
    that begins before the release's earliest date, or more than SKEW_SECONDS past the
    collector's clock."""
    if start < EARLIEST:
        raise ProtocolError(
            f"{where} starts at {_iso(start, hours)}, before {BUILD_DATE}: "
            "no space running this release counted it"
        )
    now = time.time() if now is None else now
    if start > now + SKEW_SECONDS:
        raise ProtocolError(
            f"{where} starts at {_iso(start, hours)}, more than {SKEW_SECONDS // 60} minutes "
            f"past the collector's clock ({_iso(int(now) // 60 * 60, 0)}): it has not begun"
        )


def _iso(start: int, hours: int) -> str:
    if hours == 24:
        return day_iso(start)
    if hours == 0:  # a moment, to the minute
        return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%MZ")
    return hour_iso(start)


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


def lacks(counts: dict, name: str) -> bool:
    """Whether a bucket says nothing of an OPTIONAL count it would have had from an agent
    that sends it: first_in_* where anyone signed in, open_person_minutes where anyone
    was there. (Where nobody was, the count is 0 whoever sent it.)"""
    if name in counts:
        return False
    return bool(counts.get("unique_visitors" if name in FIRST_IN else "person_minutes"))


def add_counts(total: dict, counts: dict) -> dict:
    """Sum `counts` into `total`: breakdowns label by label, occupancy_peak as a maximum.
    An OPTIONAL count that a bucket `lacks` makes the total's None: not known (and a
    None stays None)."""
    for name in OPTIONAL:
        if total.get(name, 0) is not None and lacks(counts, name):
            total[name] = None
    for name, value in counts.items():
        if name in OPTIONAL and total.get(name, 0) is None:
            continue
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
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of 5,000 digits
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:  # a few hundred compressed bytes can nest 100,000 deep
        raise ProtocolError(TOO_DEEP) from None
    if not isinstance(message, dict):
        raise ProtocolError("the payload must be a JSON object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.get('v')!r}")
    return message


def _inflate(payload: bytes, wire: int = MAX_WIRE_BYTES, inflated: int = MAX_JSON_BYTES) -> bytes:
    """The JSON text of a payload, inflated if it came compressed, within the limits:
    `wire` bytes as it came, `inflated` bytes of JSON."""
    if not payload:
        raise ProtocolError("empty payload")
    if len(payload) > wire:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {wire}")
    if payload[:1] == b"{":
        if len(payload) > inflated:
            raise ProtocolError(f"payload of {len(payload)} bytes is over {inflated}")
        return payload
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload, inflated)
    except zlib.error as exc:
        raise ProtocolError(f"neither JSON nor zlib data ({exc})") from None
    if inflater.unconsumed_tail:
        raise ProtocolError(f"payload inflates to more than {inflated} bytes")
    if not inflater.eof:
        raise ProtocolError("zlib data that ends before its end")
    return text


def usage_message(space: str, buckets: list[Bucket]) -> bytes:
    return pack({"v": VERSION, "space": space, "buckets": [b.to_wire() for b in buckets]})


def read_hours(
    payload: bytes, topic_space: str, now: float | None = None
) -> list[tuple[int, Hour]]:
    """(start in seconds, bucket) of each bucket in a usage batch, or ProtocolError:
    every bucket must be well-formed, or the whole batch is refused.

    The collector's reader: a compiled decoder checks the shape and every count as it
    parses, so a collector reads thousands of batches a second; what a schema cannot
    say (a real date, whole days, minutes within the span, an hour that can have been
    counted by `now`) is checked after it."""
    text = _inflate(payload)
    message = _decode(_USAGE, text, _RULES)
    if message.v != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.v!r}")
    if message.space != topic_space:
        raise ProtocolError(
            f"payload names space {message.space!r} but was sent on {topic_space!r}'s topic"
        )
    if b"\\" in text or not text.isascii():  # else no string can hold a control character
        _check_labels(message.buckets)
    found = []
    now = time.time() if now is None else now
    latest = now + SKEW_SECONDS
    for index, hour in enumerate(message.buckets):
        start = _hour_epoch(hour.start)
        if hour.hours == 24 and start % DAY:
            raise ProtocolError(f"buckets[{index}] is a day, so it must start at 00:00Z")
        if not EARLIEST <= start <= latest:  # thousands a second: the call only to refuse
            check_hour(start, hour.hours, f"buckets[{index}]", now)
        longest = max(
            hour.occupied_minutes, hour.open_minutes, hour.connected_minutes,
            hour.sensor_fault_minutes,
        )  # fmt: skip
        if longest > 60 * hour.hours:
            raise ProtocolError(
                f"buckets[{index}] has {longest} minutes in a bucket of {60 * hour.hours}: "
                "more minutes than the bucket has"
            )
        _check_parts(hour, index)
        found.append((start, hour))
    return found


def _check_parts(hour: Hour, index: int) -> None:
    """ProtocolError for an OPTIONAL count over the count it is a part of."""
    for name in OPTIONAL:
        value = getattr(hour, name)
        if value is msgspec.UNSET:
            continue
        whole = "person_minutes" if name == "open_person_minutes" else "unique_visitors"
        if value > getattr(hour, whole):
            raise ProtocolError(
                f"buckets[{index}] has {name} {value} over its {whole} {getattr(hour, whole)}"
            )


def _check_labels(buckets: list[Hour]) -> None:
    """ProtocolError for a breakdown label with a control character in it (the schema
    cannot say it as fast: checked only when the payload could hold one)."""
    for index, hour in enumerate(buckets):
        for name in BREAKDOWNS:
            labels = getattr(hour, name)
            if labels and any(_CONTROL.search(label) for label in labels):
                raise ProtocolError(f"buckets[{index}].{name} {_RULES[name]}")


def _decode(decoder: msgspec.json.Decoder, text: bytes, rules: dict[str, str], what: str = ""):
    """`text` decoded by a compiled schema, or ProtocolError with the reason (after
    `what`). Invalid UTF-8 (even in a field the schema skips), a lone surrogate and
    nesting too deep are refusals too."""
    if not text.isascii():  # as most are: then it is UTF-8 (and ASCII is checked fast)
        try:
            text.decode()  # the decoder checks only the strings it keeps
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{what}not UTF-8: {exc}") from None
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise ProtocolError(what + _schema_problem(text, exc, rules, bool(what))) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}not JSON: {exc}") from None
    except RecursionError:  # a few hundred compressed bytes can nest 100,000 deep
        raise ProtocolError(what + TOO_DEEP) from None


def _schema_problem(
    text: bytes, exc: msgspec.ValidationError, rules: dict[str, str], quote: bool = False
) -> str:
    """The reason to give, in the protocol's words, with the decoder's own after it
    (`quote`: the field's path in quotes). A newer protocol's message is refused for its
    version, not for fields this one lacks."""
    try:
        version = json.loads(text).get("v")
    except (ValueError, AttributeError, RecursionError):
        version = VERSION
    if version != VERSION:
        return f"unsupported protocol version {repr(version)[:40]}"
    detail, at, where = str(exc).rpartition(" - at ")
    if not at:  # said of the message itself
        detail, where = str(exc), ""
    path = re.sub(r"^(`key` in )?`\$\.?|`$", "", where)
    missing = re.search(r"missing required field `(\w+)`", str(exc))
    if missing:  # said of the object that lacks it: name the field itself
        detail = "missing"
        path = f"{path}.{missing[1]}" if path else missing[1]
    field = re.sub(r"\[\d+\]", "[]", path.removesuffix("[...]")).rsplit(".", 1)[-1]
    while field not in rules and field.endswith("[]"):  # in an entry of a list
        field = field[:-2]
    if "unknown field" in detail:  # the field is named in the detail
        field = "unknown"
    rule = rules.get(field) or ("must be a non-negative integer" if field in COUNTS else None)
    if rule is None:
        return str(exc)
    shown = f"'{path}'" if quote else path
    if "regex" in detail:  # the rule says it better than a pattern
        return f"{shown} {rule}"
    return f"{shown} {rule} ({detail})"


_RULES = {
    "v": "must be the protocol's version, 1",
    "buckets": f"must be a list of 1 to {MAX_BUCKETS} buckets",
    "buckets[]": "must be an object",
    "space": "must be the space's id",
    "start": "must be an hour like 2026-11-25T16:00:00Z",
    "version": "must be a positive integer",
    "hours": "must be 1 or 24",
    **dict.fromkeys(
        BREAKDOWNS,
        f"must map at most {MAX_LABELS} labels of 1-{MAX_LABEL_CHARS} characters, none of "
        "them a control character, to counts",
    ),
}


_MAX_COUNT = 2**31 - 1
Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_COUNT)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_CHARS)]
# No control character in a label: it is shown on pages, written to CSV and to jsonb.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
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
    first_in_day: Count | msgspec.UnsetType = msgspec.UNSET
    first_in_month: Count | msgspec.UnsetType = msgspec.UNSET
    first_in_quarter: Count | msgspec.UnsetType = msgspec.UNSET
    first_in_week: Count | msgspec.UnsetType = msgspec.UNSET
    first_in_year: Count | msgspec.UnsetType = msgspec.UNSET
    motion_periods: Count = 0
    new_visitors: Count = 0
    occupancy_peak: Count = 0
    occupied_minutes: Count = 0
    open_minutes: Count = 0
    open_person_minutes: Count | msgspec.UnsetType = msgspec.UNSET
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
    """The agent's reader of the collector's ack."""
    message = unpack(payload)
    committed = message.get("committed", [])
    resend = message.get("resend", [])
    if not isinstance(committed, list) or not isinstance(resend, list):
        raise ProtocolError("'committed' and 'resend' must be lists")
    if len(committed) > MAX_BUCKETS or len(resend) > MAX_DIGEST_DAYS:
        raise ProtocolError(
            f"an ack names at most {MAX_BUCKETS} buckets and {MAX_DIGEST_DAYS} days to resend"
        )
    units = []
    for unit in committed:
        if not (
            isinstance(unit, list)
            and len(unit) in (2, 3)
            and _count(unit[1])
            and (len(unit) == 2 or unit[2] in SPANS)
        ):
            raise ProtocolError(f"bad [start, version(, hours)] entry: {str(unit)[:80]}")
        units.append((hour_epoch(unit[0]), unit[1], unit[2] if len(unit) == 3 else 1))
    return Ack(units, [day_epoch(day) for day in resend])


def digest_message(space: str, days: list[list]) -> bytes:
    return pack({"v": VERSION, "space": space, "days": days})


_Day = Annotated[str, msgspec.Meta(pattern=_DAY.pattern)]
_Units = Annotated[int, msgspec.Meta(ge=0, le=MAX_DAY_UNITS)]
_Crc = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class _Digest(msgspec.Struct):
    v: int
    space: str
    days: Annotated[list[tuple[_Day, _Units, _Crc]], msgspec.Meta(max_length=MAX_DIGEST_DAYS)]


_DIGEST = msgspec.json.Decoder(_Digest)
_DIGEST_RULES = {
    "v": "must be the protocol's version, 1",
    "space": "must be the space's id",
    "days": f"must be a list of at most {MAX_DIGEST_DAYS} [day, units, crc32] entries",
    "days[]": f"must be [day like 2026-11-25, 0-{MAX_DAY_UNITS} units, a crc32]",
}


def read_digest(
    payload: bytes, topic_space: str, now: float | None = None
) -> dict[int, tuple[int, int]]:
    """{day start: (units, crc32)} from a space's digest of what it believes delivered;
    every day one that can have been counted by `now`, or ProtocolError."""
    text = _inflate(payload, MAX_DIGEST_BYTES)
    message = _decode(_DIGEST, text, _DIGEST_RULES, "digest: ")
    if message.v != VERSION:
        raise ProtocolError(f"unsupported protocol version {message.v!r}")
    if message.space != topic_space:
        raise ProtocolError("the digest names another space than its topic")
    found = {}
    now = time.time() if now is None else now
    for index, (day, units, crc) in enumerate(message.days):
        start = day_epoch(day)
        check_hour(start, 24, f"digest: days[{index}]", now)
        found[start] = (units, crc)
    return found


def status_message(**fields) -> bytes:
    return pack({"v": VERSION, **fields})


_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
_Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)]
_Zone = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+\Z")]
_HourText = Annotated[str, msgspec.Meta(pattern=_HOUR.pattern)]


class _Sensors(msgspec.Struct):
    faults: Annotated[dict[_Name, _Reason | None], msgspec.Meta(max_length=MAX_FAULTS)] = {}
    door_alert: bool = False


class _About(msgspec.Struct, omit_defaults=True):
    name: _Name | msgspec.UnsetType = msgspec.UNSET
    capacity: Annotated[int, msgspec.Meta(ge=1, le=10000)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    timezone: _Zone | msgspec.UnsetType = msgspec.UNSET


class _Status(msgspec.Struct, omit_defaults=True):
    """A space's retained status. A field it leaves out stays out (the last will is
    short); a field this version does not know is dropped, never stored."""

    v: int
    online: bool
    backlog: Count | msgspec.UnsetType = msgspec.UNSET
    oldest_pending: _HourText | msgspec.UnsetType | None = msgspec.UNSET
    last_sync: float | msgspec.UnsetType | None = msgspec.UNSET
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    clock: Literal[CLOCK_STATES] | msgspec.UnsetType = msgspec.UNSET
    store: Literal[STORE_STATES] | msgspec.UnsetType = msgspec.UNSET
    sensors: _Sensors | msgspec.UnsetType = msgspec.UNSET
    about: _About | msgspec.UnsetType = msgspec.UNSET
    # A metered space ([sync] link = "metered"): the seconds between its scheduled
    # contacts. It sets no last will, so its "online" holds between contacts; the
    # collector judges it late once its last contact is two of these and an hour old.
    # Absent for a space that keeps its connection open.
    contact_every: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


_STATUS = msgspec.json.Decoder(_Status)
_STATUS_RULES = {
    "v": "must be the protocol's version, 1",
    "online": "must be true or false",
    "backlog": "must be a non-negative integer",
    "oldest_pending": "must be an hour like 2026-11-25T16:00:00Z, or null",
    "last_sync": "must be seconds since the epoch, or null",
    "agent": "must be a version of 1-40 characters",
    "clock": f"must be one of {', '.join(CLOCK_STATES)}",
    "store": f"must be one of {', '.join(STORE_STATES)}",
    "contact_every": "must be whole seconds between contacts, from 60 to 604800 (a week)",
    "sensors": "must be an object with 'faults' and 'door_alert'",
    "faults": f"must map at most {MAX_FAULTS} sensors (1-{MAX_NAME_CHARS} characters) to "
    f"reasons (1-{MAX_REASON_CHARS} characters)",
    "door_alert": "must be true or false",
    "about": "must be an object giving a name, a capacity and a time zone, or none of them",
    "name": f"must be 1-{MAX_NAME_CHARS} characters",
    "capacity": "must be a whole number of people from 1 to 10000, or null",
    "timezone": "must be an IANA time zone such as Africa/Nairobi",
}


def read_status(payload: bytes, now: float | None = None) -> dict:
    """A space's status, decoded and within bounds, as the collector stores it: only the
    fields the protocol knows, each of the right type, with printable text, and times
    that can be real by `now`. ProtocolError, with the reason, for anything else."""
    text = _inflate(payload, MAX_STATUS_BYTES, MAX_STATUS_BYTES)
    status = _decode(_STATUS, text, _STATUS_RULES, "status: ")
    if status.v != VERSION:
        raise ProtocolError(f"status: unsupported protocol version {status.v!r}")
    now = time.time() if now is None else now
    found = msgspec.to_builtins(status)
    synced = status.last_sync
    if isinstance(synced, float) and not (math.isfinite(synced) and _plausible(synced, now)):
        raise ProtocolError(
            f"status: 'last_sync' must be a time from {BUILD_DATE} to a day past the "
            f"collector's clock (seconds since the epoch), or null, not {synced!r}"
        )
    if isinstance(status.oldest_pending, str):
        pending = _hour_epoch(status.oldest_pending)
        if not _plausible(pending, now):
            raise ProtocolError(
                f"status: 'oldest_pending' must be an hour from {BUILD_DATE} to a day past the "
                f"collector's clock, not {status.oldest_pending!r}"
            )
    _printable("agent", status.agent)
    if status.sensors is not msgspec.UNSET:
        for name, reason in status.sensors.faults.items():
            _printable("sensors.faults", name)
            _printable(f"sensors.faults.{name}", reason)
        # A fault the sensor gave no reason for is still a fault.
        found["sensors"]["faults"] = {
            name: reason or "faulty" for name, reason in status.sensors.faults.items()
        }
    if status.about is not msgspec.UNSET:
        _printable("about.name", status.about.name)
        if isinstance(status.about.timezone, str) and not _zone(status.about.timezone):
            raise ProtocolError(f"status: 'about.timezone' {_STATUS_RULES['timezone']}")
    return found


def _plausible(moment: float, now: float) -> bool:
    return EARLIEST <= moment <= now + STATUS_AHEAD_SECONDS


def _printable(where: str, value: object) -> None:
    if isinstance(value, str) and not value.isprintable():
        raise ProtocolError(f"status: '{where}' must not hold a control or formatting character")


@functools.lru_cache(maxsize=1024)  # a few zones, named in every status
def _zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:  # not found, not a key, or a path: not a zone either way
        return False
    return True
