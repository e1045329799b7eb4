"""`spacekiosk watch`: the broker's traffic decoded, and a payload it cannot read named."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import PASSWORDS, ROOT, SPACE, publisher, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from spacekiosk import protocol
from spacekiosk.protocol import Bucket
from spacekiosk.watch import describe

WATCHER = "collector-2"  # a collector's login of its own: the tap's stays the tap's


def watch_command(broker, password, *extra: str) -> list[str]:
    """`spacekiosk watch` on the test's broker, as the watcher's login."""
    return [
        sys.executable,
        "-m",
        "spacekiosk",
        "watch",
        "--broker",
        f"mqtt://127.0.0.1:{broker.port}",
        "--username",
        WATCHER,
        "--password-file",
        str(password),
        *extra,
    ]


def test_it_prints_a_batch_a_status_and_garbage_decoded(tmp_path, broker, tap):
    password = tmp_path / "watch-password"
    password.write_text(PASSWORDS[WATCHER] + "\n")
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            watch_command(broker, password, "--count", "3"),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
        )
    try:

        def subscribed():
            if proc.poll() is not None:
                raise AssertionError(f"watch exited {proc.returncode}: {err.read_text()}")
            return "watching spacekiosk/#" in err.read_text()

        wait_until(subscribed, what="the watcher's subscription")
        hour = int(time.time()) // 3600 * 3600 - 3600
        batch = protocol.usage_message(
            SPACE,
            [
                Bucket(hour, 1, {"signins": 2, "by_purpose": {"cowork": 2}}),
                Bucket(hour - 3600, 3, {"entries": 5, "occupied_minutes": 40}),
            ],
        )
        assert batch[:1] != b"{"  # compressed, as the demo's mosquitto_sub shows it
        client = publisher(broker.port)
        try:
            for kind, payload in (
                ("usage", batch),
                ("status", protocol.status_message(online=True, backlog=4, clock="synchronized")),
                ("digest", b"\x78\x9c garbage"),
            ):
                client.publish(protocol.topic(SPACE, kind), payload, qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        assert proc.wait(30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The tap saw the same three payloads go by: the watcher took nobody's place.
    wait_until(lambda: len(tap.payloads) == 3, what="the tap's three payloads")
    usage_topic = f"spacekiosk/v1/{SPACE}/usage"
    *decoded, garbage = out.read_text().splitlines()
    assert decoded == [
        f"{usage_topic}: usage {SPACE} {protocol.hour_iso(hour)} v1 by_purpose=cowork:2 signins=2",
        f"{usage_topic}: usage {SPACE} {protocol.hour_iso(hour - 3600)} v3 entries=5 "
        "occupied_minutes=40",
        f"spacekiosk/v1/{SPACE}/status: status of {SPACE}: online=yes backlog=4 clock=synchronized",
    ]
    # zlib's own words follow the reason; they differ from one zlib to another.
    assert garbage.startswith(
        f"spacekiosk/v1/{SPACE}/digest: not readable (neither JSON nor zlib data ("
    )


def test_it_exits_1_when_the_broker_refuses_the_login(tmp_path, broker):
    password = tmp_path / "wrong"
    password.write_text("not the password\n")
    result = subprocess.run(
        watch_command(broker, password),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "refused the login 'collector-2'" in result.stderr


def test_an_ack_and_a_digest_read_as_what_they_say():
    day = int(time.time()) // 86400 * 86400 - 86400
    ack = protocol.ack_message([Bucket(day, 2, {}), Bucket(day - 86400, 1, {}, 24)], [day])
    assert describe("spacekiosk/v1/lab/ack", ack) == [
        f"spacekiosk/v1/lab/ack: ack to lab: committed {protocol.hour_iso(day)} v2, "
        f"{protocol.day_iso(day - 86400)} (day) v1; resend {protocol.day_iso(day)}"
    ]
    digest = protocol.digest_message("lab", [[protocol.day_iso(day), 3, 255]])
    assert describe("spacekiosk/v1/lab/digest", digest) == [
        f"spacekiosk/v1/lab/digest: digest of lab: {protocol.day_iso(day)} 3 units (crc32 000000ff)"
    ]


def test_what_is_not_the_protocol_is_named_not_readable():
    assert describe("elsewhere/x", b"{}") == [
        "elsewhere/x: not readable (not a protocol v1 topic: 'elsewhere/x')"
    ]
    assert describe("spacekiosk/v1/lab/usage", b"") == [
        "spacekiosk/v1/lab/usage: not readable (empty payload)"
    ]
    batch = protocol.usage_message("other", [Bucket(int(time.time()) // 3600 * 3600, 1, {})])
    (line,) = describe("spacekiosk/v1/lab/usage", batch)
    assert "not readable (payload names space 'other'" in line


def test_ctrl_c_ends_it_with_0(tmp_path, broker):
    password = tmp_path / "watch-password"
    password.write_text(PASSWORDS[WATCHER] + "\n")
    err = tmp_path / "watch.err"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            watch_command(broker, password),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )
    try:
        wait_until(lambda: "watching" in err.read_text(), what="the watcher's subscription")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- anything a stranger puts on the broker ---

KINDS = st.sampled_from(["usage", "status", "ack", "digest", "other", ""])
TOPICS = st.one_of(
    st.builds(lambda space, kind: f"spacekiosk/v1/{space}/{kind}", st.text(max_size=20), KINDS),
    st.text(max_size=60),
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.builds(  # a real batch, then cut or bit-flipped
        lambda n, cut: protocol.usage_message(SPACE, [Bucket(1_790_000_000, 1, {"signins": n})])[
            :cut
        ],
        st.integers(0, 10_000),
        st.integers(0, 400),
    ),
    st.builds(lambda text: text.encode(), st.text(max_size=200)),
)


@settings(max_examples=3000, deadline=None)
@given(topic=TOPICS, payload=PAYLOADS)
def test_whatever_arrives_is_one_printable_line_or_more_never_a_crash(topic, payload):
    lines = describe(topic, payload)
    assert lines, "every message is said"
    for line in lines:
        assert line.isprintable(), line  # no control character reaches the terminal
