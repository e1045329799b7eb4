"""Wire protocol v1: what goes out round-trips; what comes in malformed is refused."""

from __future__ import annotations

import contextlib
import json
import zlib

import pytest
from conftest import read_usage
from hypothesis import given
from hypothesis import strategies as st

from spacekiosk import protocol
from spacekiosk.protocol import Bucket, ProtocolError

HOUR = 1795622400  # 2026-11-25T16:00:00Z


def test_a_batch_round_trips_compressed():
    buckets = [
        Bucket(HOUR + i * 3600, 1 + i % 3, {"signins": i + 1, "door_openings": 2 * i + 1})
        for i in range(48)
    ]
    payload = protocol.usage_message("nairobi", buckets)
    assert payload[:1] != b"{"  # 48 hours compress well
    assert len(payload) < len(json.dumps([b.to_wire() for b in buckets]))
    assert read_usage(payload, "nairobi") == buckets


def test_a_tiny_message_stays_plain_json():
    payload = protocol.usage_message("nairobi", [Bucket(HOUR, 1, {})])
    assert payload.startswith(b"{")
    assert read_usage(payload, "nairobi") == [Bucket(HOUR, 1, {})]


def test_the_wire_bucket_knows_every_count_and_breakdown():
    fields = set(protocol.Hour.__struct_fields__) - {"start", "version", "hours"}
    assert fields == set(protocol.COUNTS) | set(protocol.BREAKDOWNS)
    assert list(protocol.Hour.__struct_fields__)[3:] == sorted(fields)


def test_a_count_of_zero_is_the_same_as_none():
    sent = Bucket(HOUR, 1, {"signins": 0, "exits": 2, "by_event": {}})
    (got,) = read_usage(protocol.usage_message("nairobi", [sent]), "nairobi")
    assert got.counts == {"exits": 2, "by_event": {}}


def test_acks_round_trip():
    day = HOUR - 16 * 3600
    buckets = [Bucket(HOUR, 3, {"signins": 1}), Bucket(day, 2, {}, hours=24)]
    ack = protocol.read_ack(protocol.ack_message(buckets, resend=[day - 86400]))
    assert ack.committed == [(HOUR, 3, 1), (day, 2, 24)]
    assert ack.resend == [day - 86400]


def test_the_collectors_ack_is_the_same_bytes_as_the_general_one():
    day = HOUR - 16 * 3600
    buckets = [Bucket(HOUR + i * 3600, 1 + i, {"signins": 1}) for i in range(6)]
    buckets.append(Bucket(day, 2, {}, hours=24))
    read = protocol.read_hours(protocol.usage_message("nairobi", buckets), "nairobi")
    assert [start for start, _ in read] == [b.start for b in buckets]
    assert protocol.hours_ack([hour for _, hour in read]) == protocol.ack_message(buckets)


def test_breakdowns_days_and_minutes_round_trip():
    day = HOUR - 16 * 3600
    buckets = [
        Bucket(HOUR, 1, {"signins": 3, "by_purpose": {"work": 2, "event": 1}, "open_minutes": 60}),
        Bucket(
            day, 1, {"signins": 30, "connected_minutes": 1440, "by_event": {"Repair café": 4}}, 24
        ),
    ]
    assert read_usage(protocol.usage_message("nairobi", buckets), "nairobi") == buckets


def test_counts_add_up_across_hours_and_peaks_take_the_maximum():
    total = {}
    protocol.add_counts(total, {"signins": 2, "occupancy_peak": 5, "by_purpose": {"work": 2}})
    protocol.add_counts(
        total, {"signins": 1, "occupancy_peak": 3, "by_purpose": {"work": 1, "x": 1}}
    )
    assert total == {"signins": 3, "occupancy_peak": 5, "by_purpose": {"work": 3, "x": 1}}


def test_a_digest_changes_when_any_unit_does():
    units = [(HOUR, 1, 2), (HOUR + 3600, 1, 1), (HOUR + 86400, 1, 1)]
    days = protocol.digest(units)
    assert [d[:2] for d in days] == [["2026-11-25", 2], ["2026-11-26", 1]]
    assert protocol.digest(list(reversed(units))) == days  # order does not matter
    assert protocol.digest([(HOUR, 1, 3), *units[1:]])[0] != days[0]  # a version does
    message = protocol.digest_message("nairobi", days)
    assert protocol.read_digest(message, "nairobi") == {
        protocol.day_epoch(day): (n, crc) for day, n, crc in days
    }
    with pytest.raises(ProtocolError, match="another space"):
        protocol.read_digest(message, "athens")


def raw(message) -> bytes:
    return json.dumps(message).encode()


GOOD = {
    "v": 1,
    "space": "nairobi",
    "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": 2}],
}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"", "empty payload"),
        (b"\x00\x01garbage", "neither JSON nor zlib"),
        (b"{not json", "not JSON"),
        (raw([1, 2]), "neither JSON"),
        (raw({**GOOD, "v": 2}), "unsupported protocol version"),
        (raw({**GOOD, "space": "athens"}), "names space 'athens'"),
        (raw({**GOOD, "buckets": []}), "list of 1 to"),
        (
            raw({**GOOD, "buckets": [{"start": "2026-11-25T16:30:00Z", "version": 1}]}),
            "must be an hour like",
        ),
        (raw({**GOOD, "buckets": [{"start": "2026-11-25T16:00:00Z\n", "version": 1}]}), "an hour"),
        (raw({**GOOD, "buckets": [{"start": "٢٠٢٦-11-25T16:00:00Z", "version": 1}]}), "an hour"),
        (raw({**GOOD, "buckets": [{"start": "2026-13-25T16:00:00Z", "version": 1}]}), "real date"),
        (raw({**GOOD, "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 0}]}), "positive"),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": -1}],
                }
            ),
            "non-negative",
        ),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": True}],
                }
            ),
            "non-negative",
        ),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "name": "Ana"}],
                }
            ),
            "unknown field",
        ),
        (
            raw({**GOOD, "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "hours": 2}]}),
            "1 or 24",
        ),
        (
            raw(
                {**GOOD, "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "hours": 24}]}
            ),
            "00:00Z",
        ),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [
                        {"start": "2026-11-25T16:00:00Z", "version": 1, "open_minutes": 61}
                    ],
                }
            ),
            "more minutes",
        ),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [
                        {"start": "2026-11-25T16:00:00Z", "version": 1, "by_purpose": {"": 1}}
                    ],
                }
            ),
            "labels",
        ),
        (
            raw(
                {
                    **GOOD,
                    "buckets": [{"start": "2026-11-25T16:00:00Z", "version": 1, "by_event": ["a"]}],
                }
            ),
            "labels",
        ),
        (b"{" + b" " * (protocol.MAX_WIRE_BYTES + 1), "over"),
        (zlib.compress(b"{" + b" " * (protocol.MAX_JSON_BYTES + 10)), "inflates to more"),
    ],
)
def test_malformed_usage_is_refused_with_a_reason(payload, words):
    with pytest.raises(ProtocolError, match=words):
        read_usage(payload, "nairobi")


@pytest.mark.parametrize(
    "name",
    [
        "spacekiosk/v1/nairobi",
        "spacekiosk/v2/nairobi/usage",
        "spacekiosk/v1/NAIROBI/usage",
        "other/v1/nairobi/usage",
    ],
)
def test_foreign_topics_are_refused(name):
    with pytest.raises(ProtocolError):
        protocol.parse_topic(name)


@pytest.mark.parametrize("where", ["buckets", "x", "about", "days", "committed"])
def test_json_nested_too_deeply_is_refused_not_a_crash(where):
    """452 compressed bytes nest 200,000 deep: enough to exhaust any parser's recursion."""
    deep = f'{{"v":1,"space":"nairobi","online":true,"{where}":'.encode()
    deep += b"[" * 200_000 + b"]" * 200_000 + b"}"
    payload = zlib.compress(deep, 9)
    assert len(payload) < 1000
    readers = [
        lambda p: read_usage(p, "nairobi"),
        protocol.read_status,
        lambda p: protocol.read_digest(p, "nairobi"),
        protocol.read_ack,
    ]
    for read in readers:
        with pytest.raises(ProtocolError):
            read(payload)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_errors(payload):
    with contextlib.suppress(ProtocolError):
        read_usage(payload, "nairobi")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_arbitrary_json_never_escapes_as_anything_but_protocol_errors(value):
    message = {"v": 1, "space": "nairobi", "buckets": value}
    for payload in (raw(message), zlib.compress(raw(message))):
        with contextlib.suppress(ProtocolError):
            read_usage(payload, "nairobi")


def test_a_status_may_say_what_the_space_is_and_nothing_odd():
    about = {"name": "Nairobi Makerspace", "capacity": 30, "timezone": "Africa/Nairobi"}
    status = protocol.read_status(protocol.status_message(online=True, about=about))
    assert status["about"] == about
    for bad in ({"name": ""}, {"capacity": -1}, {"timezone": 3}, ["x"], {"name": "x" * 81}):
        with pytest.raises(ProtocolError, match="about"):
            protocol.read_status(protocol.status_message(online=True, about=bad))


@pytest.mark.parametrize(
    ("start", "words"),
    [
        ("0001-01-01T00:00:00Z", "before 2026-10-01"),
        ("1970-01-01T00:00:00Z", "before 2026-10-01"),
        ("2026-09-30T23:00:00Z", "before 2026-10-01"),
        ("2100-01-01T00:00:00Z", "past the collector's clock"),
        ("9999-12-31T23:00:00Z", "past the collector's clock"),
    ],
)
def test_an_hour_no_space_can_have_counted_is_refused(start, words):
    batch = raw({"v": 1, "space": "nairobi", "buckets": [{"start": start, "version": 1}]})
    with pytest.raises(ProtocolError, match=words):
        protocol.read_hours(batch, "nairobi", now=HOUR)
    digest = protocol.digest_message("nairobi", [[start[:10], 1, 1]])
    with pytest.raises(ProtocolError, match=words):
        protocol.read_digest(digest, "nairobi", now=HOUR)


def test_an_hour_is_taken_once_it_has_begun_by_the_collectors_clock_give_or_take():
    """The running hour (`sync.send_running_hour`) and a Pi's clock a few minutes ahead
    are fine; an hour that begins more than SKEW_SECONDS from now is not."""
    batch = protocol.usage_message("nairobi", [Bucket(HOUR, 1, {"signins": 1})])
    for now in (HOUR - protocol.SKEW_SECONDS, HOUR, HOUR + 3599, HOUR + 86400 * 30):
        assert protocol.read_hours(batch, "nairobi", now=now)[0][0] == HOUR
    with pytest.raises(ProtocolError, match="more than 10 minutes past"):
        protocol.read_hours(batch, "nairobi", now=HOUR - protocol.SKEW_SECONDS - 1)
    day = protocol.usage_message("nairobi", [Bucket(HOUR - 16 * 3600, 1, {}, hours=24)])
    assert protocol.read_hours(day, "nairobi", now=HOUR)


def test_a_status_as_the_agent_sends_it_is_stored_as_sent_and_nothing_more():
    sent = {
        "online": True,
        "backlog": 3,
        "oldest_pending": "2026-11-25T13:00:00Z",
        "last_sync": HOUR + 10.5,
        "agent": "0.1.0",
        "clock": "unsynchronized",
        "store": "full",
        "sensors": {
            "faults": {"motion:hall": "in motion for 6 h", "door": None},
            "door_alert": True,
        },
        "about": {"name": "Ελληνικό Makerspace ☕", "capacity": None, "timezone": "Europe/Athens"},
    }
    found = protocol.read_status(protocol.status_message(**sent, later="a newer field"), HOUR)
    assert found == {"v": 1, **sent} | {
        "sensors": {
            "faults": {"motion:hall": "in motion for 6 h", "door": "faulty"},
            "door_alert": True,
        }
    }
    will = protocol.read_status(protocol.status_message(online=False, agent="0.1.0"), HOUR)
    assert will == {"v": 1, "online": False, "agent": "0.1.0"}  # nothing it did not say


def test_a_store_state_is_one_the_protocol_names():
    with pytest.raises(ProtocolError, match=r"^status: 'store' must be one of ok, full, error"):
        protocol.read_status(protocol.status_message(online=True, store="mostly fine"), HOUR)


def test_what_a_message_lacks_is_named_in_the_protocols_words():
    with pytest.raises(ProtocolError, match=r"^status: 'online' must be true or false"):
        protocol.read_status(b'{"v":1}')
    with pytest.raises(ProtocolError, match=r"^buckets\[0\].start must be an hour"):
        read_usage(raw({"v": 1, "space": "nairobi", "buckets": [{"version": 1}]}), "nairobi")
    with pytest.raises(ProtocolError, match=r"^digest: 'days' must be a list"):
        protocol.read_digest(b'{"v":1,"space":"nairobi"}', "nairobi")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"committed":[],"resend":' + b"1" * 5000 + b"}",
        b'{"v":1,"committed":"\xff"}',
        b'{"v":1,"committed":[' + b",".join([b'["2026-11-25T16:00:00Z",1]'] * 5001) + b"]}",
        b'{"v":1,"resend":["2026-11-25"' + b',"2026-11-25"' * 400 + b"]}",
    ],
)
def test_the_agents_reader_of_acks_refuses_what_is_not_an_ack(payload):
    with pytest.raises(ProtocolError):
        protocol.read_ack(payload)
