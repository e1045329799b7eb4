"""Delivery through a real broker: queued while it is down, delivered once, versions win."""

from __future__ import annotations

import json
import re
import time
import zlib
from datetime import UTC, datetime

import pytest
import requests
from conftest import (
    SENSORS,
    SPACE,
    api_get,
    log_in,
    publisher,
    read_usage,
    sync_once,
    usage,
    wait_until,
    write_space_config,
)

from kiosk import visits
from spacekiosk import config, protocol
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.protocol import Bucket
from sync import outbox
from sync.buckets import compute


def test_a_backlog_from_an_outage_is_delivered_once(tmp_path, broker, collector):
    """The broker is down while visits happen; once it is back, everything arrives once."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    now = time.time()
    names = [f"Visitor {i}" for i in range(30)]
    for i, name in enumerate(names):  # one visit an hour over the 30 hours before this one
        visits.sign_in_new(db, visits.NewVisitor(name), "pin-key", now=now - (30 - i) * 3600)

    broker.stop()
    down = sync_once(toml, timeout=3)
    assert down.returncode == 75, down.stdout + down.stderr
    assert "could not reach the broker" in down.stdout and "stay queued" in down.stdout
    queued = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert queued >= 30  # every hour with a visit, and the hours the space was open

    broker.start()  # the same broker again, so the fixture stops it at the end
    wait_until(
        lambda: requests.get(collector + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector to reconnect",
    )
    delivering = time.time()
    up = sync_once(toml)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"all {queued} hour(s) delivered" in up.stdout
    buckets = usage(collector)
    assert sum(b.get("signins", 0) for b in buckets) == 30
    assert all(b["version"] == 1 for b in buckets)
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

    # Nothing is sent twice: a second run has only the hours that ended since (none, or
    # one when the clock passed an hour meanwhile), and the collector's counts stand.
    again = sync_once(toml)
    assert again.returncode == 0, again.stdout + again.stderr
    ended = int(time.time() // 3600) - int(delivering // 3600)
    assert int(re.search(r"(\d+) hour\(s\) to deliver", again.stdout)[1]) <= ended, again.stdout
    buckets = usage(collector)
    assert sum(b.get("signins", 0) for b in buckets) == 30
    assert all(b["version"] == 1 for b in buckets)

    # Late data: a sign-out in an hour already delivered makes that hour's version 2.
    last, signed_in_at = db.execute(
        "SELECT id, signed_in_at FROM visits ORDER BY id DESC LIMIT 1"
    ).fetchone()
    # A minute later, but within the hour it began in, whenever the test runs.
    visits.sign_out(db, last, now=min(signed_in_at + 60, signed_in_at // 3600 * 3600 + 3599))
    assert sync_once(toml).returncode == 0
    (latest,) = [b for b in usage(collector) if b.get("signins") and b["version"] == 2]
    assert latest["signouts"] == 1 and latest["signins"] == 1
    assert sum(b.get("signins", 0) for b in usage(collector)) == 30


def test_duplicates_and_reordering_leave_the_highest_version(broker, collector):
    client = publisher(broker.port)
    hour = 1795622400
    for version, signins in ((2, 5), (1, 3), (2, 5), (3, 7), (1, 3)):
        message = protocol.usage_message(SPACE, [Bucket(hour, version, {"signins": signins})])
        client.publish(protocol.topic(SPACE, "usage"), message, qos=1).wait_for_publish(5)
    wait_until(lambda: usage(collector) and usage(collector)[0]["version"] == 3, what="version 3")
    # The later, older versions, and one more, must change nothing. The sentinel hour is
    # published after them on the same connection: the broker hands them to the
    # collector in that order and it commits in the order they arrive, so once the
    # sentinel is there, they have all been read.
    client.publish(
        protocol.topic(SPACE, "usage"),
        protocol.usage_message(SPACE, [Bucket(hour, 1, {"signins": 1})]),
        qos=1,
    ).wait_for_publish(5)
    sentinel = protocol.usage_message(SPACE, [Bucket(hour + 3600, 1, {"signins": 1})])
    client.publish(protocol.topic(SPACE, "usage"), sentinel, qos=1).wait_for_publish(5)
    wait_until(lambda: len(usage(collector)) == 2, what="the sentinel hour")
    assert usage(collector)[0] == {"start": "2026-11-25T16:00:00Z", "version": 3, "signins": 7}
    client.disconnect()
    client.loop_stop()


def test_bad_payloads_are_rejected_counted_and_survived(broker, collector):
    client = publisher(broker.port)
    start = "2026-11-25T16:00:00Z"

    def batch(**fields) -> bytes:
        return json.dumps({"v": 1, "space": SPACE, **fields}).encode()

    bad = [
        b"",  # empty
        b"\x78\x9c garbage",  # not decompressible
        zlib.compress(b"{" + b" " * (protocol.MAX_JSON_BYTES + 1)),  # inflates too far
        b'{"v": 9}',  # unknown version
        batch(),  # missing buckets
        batch(buckets=[{"version": 1, "signins": 1}]),  # missing start
        batch(buckets=[{"start": start, "version": "1", "signins": 1}]),  # wrong type
        batch(buckets=[{"start": start, "version": 1, "signins": -2}]),  # out of range
        batch(buckets=[{"start": start, "version": 1, "visitor": "Ana"}]),  # unknown field
        protocol.usage_message("otherspace", [Bucket(1795622400, 1, {"signins": 1})]),
    ]
    for payload in bad:
        client.publish(protocol.topic(SPACE, "usage"), payload, qos=1).wait_for_publish(5)
    oversized = b"{" + b" " * protocol.MAX_WIRE_BYTES  # over the limit, within the broker's
    client.publish(protocol.topic(SPACE, "usage"), oversized, qos=1).wait_for_publish(5)
    bad.append(oversized)
    # A few hundred bytes that inflate to JSON nested 200,000 deep, on every topic read.
    nested = b"[" * 200_000 + b"]" * 200_000
    deep = zlib.compress(b'{"v":1,"space":"%s","buckets":%s}' % (SPACE.encode(), nested), 9)
    for kind in ("usage", "digest", "status"):
        client.publish(protocol.topic(SPACE, kind), deep, qos=1).wait_for_publish(5)
        bad.append(deep)
    good = protocol.usage_message(SPACE, [Bucket(1795622400, 1, {"signins": 4})])
    client.publish(protocol.topic(SPACE, "usage"), good, qos=1).wait_for_publish(5)
    wait_until(lambda: usage(collector), what="the good batch")
    assert usage(collector) == [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": 4}]
    page = log_in(collector).get(collector, timeout=5).text
    assert f"Rejected messages: {len(bad)}" in page
    client.disconnect()
    client.loop_stop()


def test_the_collector_api_refuses_bad_queries(collector):
    assert requests.get(collector + "api/v1/usage", timeout=5).status_code == 401  # no token
    assert api_get(collector, "api/v1/usage").status_code == 400  # neither space nor sums
    missing = api_get(collector, "api/v1/usage", space="nowhere")
    assert missing.status_code == 404 and "nowhere" in missing.json()["error"]


def test_an_hour_carries_every_count_and_nothing_personal(tmp_path):
    """One busy hour on a Wednesday (Athens, open 10:00-21:00 from 10:30), computed from a
    real store: each count the protocol lists, from the tables that hold its truth."""
    toml = write_space_config(tmp_path, broker_port=1, extra=SENSORS)
    toml.write_text(
        toml.read_text().replace(
            "capacity = 20\n", 'capacity = 20\n[space.opening_hours]\nwed = "10:30-21:00"\n'
        )
    )
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    hour = datetime(2026, 11, 25, 8, tzinfo=UTC).timestamp()  # 10:00 in Athens
    people = [("Ana", "cowork", None), ("Bo", "workshop", "Repair café"), ("Cy", "cowork", None)]
    for i, (name, purpose, event) in enumerate(people):
        visitor = visits.NewVisitor(name, email=f"{name}@example.org", purpose=purpose, event=event)
        visits.sign_in_new(db, visitor, "k", now=hour + 600 * (i + 1))
    with write(db):
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind, detail) VALUES (?, ?, ?, ?)",
            [
                (hour + 100, "door", "open", None),
                (hour + 110, "door", "close", None),
                *[(hour + 600 * (i + 1), "counter", "entry", None) for i in range(3)],
                (hour + 600, "motion:main room", "motion", None),
                (hour + 1800, "motion:main room", "still", None),
                (hour + 2400, "beam_a", "fault", "stuck"),
                (hour + 3000, "beam_a", "ok", None),
            ],
        )
    outbox.link_extend(db, outbox.link_start(db, hour - 600, True), hour + 900)
    outbox.link_extend(db, outbox.link_start(db, hour + 2700, True), hour + 4000)

    bucket = compute(db, int(hour), int(hour) + 3600, cfg, now=hour + 7200)[int(hour)]
    assert bucket == {
        "signins": 3,
        "unique_visitors": 3,
        "new_visitors": 3,
        "by_purpose": {"cowork": 2, "workshop": 1},
        "by_event": {"Repair café": 1},
        "door_openings": 1,
        "entries": 3,
        "motion_periods": 1,
        "occupied_minutes": 20,
        "occupancy_peak": 3,
        "person_minutes": 50 + 40 + 30,
        "open_person_minutes": 3 * 30,  # all three there from 10:30, when it opened
        **{f"first_in_{p}": 3 for p in ("day", "week", "month", "quarter", "year")},
        "open_minutes": 30,
        "connected_minutes": 15 + 15,
        "sensor_fault_minutes": 10,
    }
    wire = protocol.usage_message(SPACE, [Bucket(int(hour), 1, bucket)])
    assert read_usage(wire, SPACE)[0].counts == bucket
    for name, *_ in people:
        assert name.encode() not in zlib.decompress(wire) if wire[:1] != b"{" else wire


def test_hours_that_cannot_be_real_are_never_published(tmp_path):
    """Before the build date (a Pi booted at 1970), in the future (a clock that ran ahead),
    or the hour still running: none of them is computed, so none is sent."""
    cfg = config.load(write_space_config(tmp_path, broker_port=1))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    now = time.time()
    for at in (86400.0 * 3, now + 3 * 3600, now - 1):
        visits.sign_in_new(db, visits.NewVisitor(f"V {at}"), "k", now=at)
    assert compute(db, 0, int(now) + 86400, cfg, now=now) == {}
    later = compute(db, 0, int(now) + 86400, cfg, now=now + 3600)  # that hour is over now
    assert [b["signins"] for b in later.values()] == [1]


# Connected minutes, and which hours are over, on clocks that lie (real processes; their
# wall clock is set through tests/fakeclock.py as timesyncd or a person would set it)

HOUR = 3600


def link_rows(db) -> list[tuple]:
    return db.execute("SELECT id, start, end, clock_synced FROM link_log ORDER BY id").fetchall()


def connected_by_hour(db, cfg, since: float, until: float) -> dict[int, int]:
    """connected_minutes of every hour in [since, until), as the agent will send them."""
    start, end = int(since) // HOUR * HOUR, (int(until) // HOUR + 1) * HOUR
    hours = compute(db, start, end, cfg, now=end + HOUR)
    return {h: c["connected_minutes"] for h, c in hours.items() if "connected_minutes" in c}


def test_a_night_switched_off_and_a_boot_without_the_clock_add_no_connected_time(
    tmp_path, broker, notified
):
    """The agent is connected, then the Pi loses power. It boots eight hours later with
    its clock at 1970 (no real-time clock), and its agent connects before timesyncd has
    set the clock. That connection is recorded, flagged, and moved to the morning once
    the clock is set; the first one is never stretched across the night."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    cfg = config.load(toml)
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    first = notified("sync", "--config", str(toml), clock_file=clock)
    first.wait_for("READY=1")
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    wait_until(
        lambda: (rows := link_rows(db)) and rows[-1][2] - rows[-1][1] >= 2,
        what="two seconds of connection",
    )
    first.kill()  # the power cut
    (evening,) = link_rows(db)
    assert evening[3] == 1

    night = 8 * HOUR
    clock.write_text(str(86400 - time.time()))  # the next boot: 1970-01-02
    second = notified("sync", "--config", str(toml), clock_file=clock)
    second.wait_for("READY=1")
    wait_until(
        lambda: len(rows := link_rows(db)) == 2 and rows[1][2] - rows[1][1] >= 2,
        what="the connection made before the clock was set",
    )
    _, start, _, synced = link_rows(db)[1]
    assert synced == 0 and start < 2 * 86400  # recorded, on the clock as it was, flagged
    assert link_rows(db)[0] == evening

    set_at = time.time()
    clock.write_text(str(night))  # timesyncd sets the clock: it is the next morning
    wait_until(lambda: link_rows(db)[1][3] == 1, what="the connection's times corrected")
    moved = link_rows(db)[1]
    assert set_at + night - 30 <= moved[1] <= set_at + night  # connected this morning
    assert link_rows(db)[0] == evening  # the evening's interval was never stretched
    minutes = connected_by_hour(db, cfg, evening[1], moved[2])
    night_hours = range(int(evening[2]) // HOUR * HOUR + HOUR, int(moved[1]) // HOUR * HOUR, HOUR)
    assert len(night_hours) >= 6 and not any(minutes.get(h) for h in night_hours), minutes
    assert sum(minutes.values()) <= 2  # the seconds the two connections lasted
    assert "Traceback" not in first.output() + second.output()


def test_an_agent_started_again_never_extends_the_last_interval(tmp_path, broker, notified):
    """Killed (no "down"), then started again after a while: the gap is not connected."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    agent = notified("sync", "--config", str(toml))
    agent.wait_for("READY=1")
    wait_until(lambda: (rows := link_rows(db)) and rows[0][2] > rows[0][1], what="a connection")
    agent.kill()
    (killed,) = link_rows(db)
    gap_from = time.time()
    wait_until(lambda: time.time() - gap_from > 2, what="time to pass with no agent")
    notified("sync", "--config", str(toml)).wait_for("READY=1")
    wait_until(lambda: len(link_rows(db)) == 2, what="the second connection")
    first, second = link_rows(db)
    assert first == killed
    assert second[1] >= gap_from + 2  # nothing counted for the gap


def test_an_hour_fast_clock_never_sends_the_running_hour_as_over(
    tmp_path, broker, collector, notified
):
    """Finished hours go out as they end (send_every_minutes = 0) and the running one is
    held back; then the clock is set an hour ahead (by hand, or a wrong real-time
    clock), with the agent running and again across a restart: the running hour still
    waits, as it is not over."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    running = int(time.time()) // HOUR * HOUR
    visits.sign_in_new(db, visits.NewVisitor("Earlier Visitor"), "k", now=running - 1800)
    visits.sign_in_new(db, visits.NewVisitor("Now Visitor"), "k", now=time.time())
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    agent = notified("sync", "--config", str(toml), clock_file=clock)
    agent.wait_for("READY=1")
    earlier = protocol.hour_iso(running - HOUR)
    wait_until(lambda: any(b["start"] == earlier for b in usage(collector)), what="the last hour")

    def held_back(service) -> None:
        wait_until(lambda: "ahead of its last trusted reading" in service.output(), what="doubt")
        ahead = wait_until(lambda: [r for r in link_rows(db) if r[1] > time.time() + 1800])
        row = ahead[-1][0]
        wait_until(  # two more refreshes on the fast clock
            lambda: (
                db.execute("SELECT end - start FROM link_log WHERE id = ?", [row]).fetchone()[0]
                >= 2
            ),
            what="refreshes on the fast clock",
        )
        if int(time.time()) // HOUR * HOUR != running:
            pytest.skip("the hour ended while the test ran; run it again")
        hours = [h for (h,) in db.execute("SELECT hour_start FROM buckets")]
        assert running not in hours and running + HOUR not in hours
        assert protocol.hour_iso(running) not in [b["start"] for b in usage(collector)]

    clock.write_text("3600")
    held_back(agent)
    assert agent.stop() == 0
    again = notified("sync", "--config", str(toml), clock_file=clock)  # same boot, still fast
    again.wait_for("READY=1")
    held_back(again)
