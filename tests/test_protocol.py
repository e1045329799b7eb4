"""Wire protocol v1: what goes out round-trips; what comes in malformed is refused."""

from __future__ import annotations

import contextlib
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync import protocol
from sync.protocol import Bucket, ProtocolError

HOUR = 1795622400  # 2026-11-25T16:00:00Z


def test_a_batch_round_trips_compressed():
    buckets = [
        Bucket(HOUR + i * 3600, 1 + i % 3, {"signins": i, "door_openings": 2 * i})
        for i in range(48)
    ]
    payload = protocol.usage_message("nairobi", buckets)
    assert payload[:1] != b"{"  # 48 hours compress well
    assert len(payload) < len(json.dumps([b.to_wire() for b in buckets]))
    assert protocol.read_usage(payload, "nairobi") == buckets


def test_a_tiny_message_stays_plain_json():
    payload = protocol.usage_message("nairobi", [Bucket(HOUR, 1, {})])
    assert payload.startswith(b"{")
    assert protocol.read_usage(payload, "nairobi") == [Bucket(HOUR, 1, {})]


def test_acks_round_trip():
    buckets = [Bucket(HOUR, 3, {"signins": 1}), Bucket(HOUR + 3600, 1, {})]
    assert protocol.read_ack(protocol.ack_message(buckets)) == [(HOUR, 3), (HOUR + 3600, 1)]


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
        (raw({**GOOD, "buckets": [{"start": "2026-11-25T16:30:00Z", "version": 1}]}), "an hour"),
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
        (b"{" + b" " * (protocol.MAX_WIRE_BYTES + 1), "over"),
        (zlib.compress(b"{" + b" " * (protocol.MAX_JSON_BYTES + 10)), "inflates to more"),
    ],
)
def test_malformed_usage_is_refused_with_a_reason(payload, words):
    with pytest.raises(ProtocolError, match=words):
        protocol.read_usage(payload, "nairobi")


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


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_errors(payload):
    with contextlib.suppress(ProtocolError):
        protocol.read_usage(payload, "nairobi")


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
            protocol.read_usage(payload, "nairobi")
