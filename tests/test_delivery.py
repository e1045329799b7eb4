"""Faults on the way from a space to the collector: after each, the collector's totals
equal what really happened at the space — nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import requests
from conftest import (
    PASSWORDS,
    SPACE,
    sync_once,
    usage,
    wait_until,
    write_space_config,
)
from tcpproxy import TcpProxy

import spacekiosk
from collector import store
from kiosk import visits
from spacekiosk import config, protocol, syncstate
from spacekiosk.broker import free_port
from spacekiosk.db import connect, open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import outbox

HOUR = 3600
PURPOSES = ("cowork", "workshop", "meeting")


def seed(db, hours: int, per_hour: int = 1, first: int = 1, email: bool = False) -> Counter:
    """Visits in each of the `hours` whole hours before this one (ending `first` hours
    ago), signed out 20 minutes later. Returns the truth: sign-ins by hour."""
    now = time.time()
    truth: Counter = Counter()
    for back in range(first, first + hours):
        start = (int(now) // HOUR - back) * HOUR
        for i in range(per_hour):
            at = start + 60 + i * 7
            name = f"Visitor {back}-{i}"
            visitor = visits.NewVisitor(
                name,
                email=f"v{back}.{i}@example.org" if email else None,
                purpose=PURPOSES[(back + i) % len(PURPOSES)],
            )
            visit = visits.sign_in_new(db, visitor, "pin-key", now=at)
            visits.sign_out(db, visit.id, now=at + 1200)
            truth[start] += 1
    return truth


def received(url: str) -> Counter:
    """Sign-ins by hour at the collector; a rolled-up day counts under its start."""
    return Counter(
        {protocol.hour_epoch(b["start"]): b["signins"] for b in usage(url) if b.get("signins")}
    )


def totals_match(url: str, truth: Counter, by_day: bool = False):
    got = received(url)
    if by_day:
        got = Counter({day: n for day, n in _days(got).items()})
        truth = _days(truth)
    return got == truth and got


def _days(counts: Counter) -> Counter:
    days: Counter = Counter()
    for start, n in counts.items():
        days[start // 86400] += n
    return days


def status(tmp_path) -> dict:
    """The space's latest status as the collector stored it ({} before any)."""
    spaces = store.spaces(connect(tmp_path / "central" / "central.db"))
    return spaces[0]["status"] if spaces else {}


def backlog(db) -> int:
    return syncstate.health(db)["backlog"]


def refreshes(db, count: int) -> None:
    """Wait for `count` more refreshes of the running agent: each one, while it is
    connected, moves the end of its connection's row in link_log to the time it ran."""

    def last_note():
        return db.execute("SELECT id, end FROM link_log ORDER BY id DESC LIMIT 1").fetchone()

    seen = {last_note()}
    wait_until(
        lambda: seen.add(last_note()) or len(seen) > count, what=f"{count} refreshes of the agent"
    )


def space_config(tmp_path, port: int, sync: str = "", mqtt: str = "") -> tuple[Path, object]:
    toml = write_space_config(tmp_path / "space", broker_port=port, sync=sync, mqtt=mqtt)
    cfg = config.load(toml)
    return toml, open_store(cfg.database.path, SPACE_MIGRATIONS)


def test_a_long_outage_while_sign_ins_continue(tmp_path, broker, collector, services):
    """The running agent keeps queueing while the broker is away, then delivers it all."""
    toml, db = space_config(tmp_path, broker.port)
    truth = seed(db, 24, first=49)  # delivered before the outage
    agent = services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="the first day at the collector")

    broker.stop()
    truth += seed(db, 48, per_hour=2)  # two days of visits while the broker is down
    wait_until(lambda: backlog(db) >= 48, what="the outage's hours in the outbox")
    assert received(collector) != truth

    broker.start()  # the same broker again, so the fixture stops it at the end
    wait_until(lambda: totals_match(collector, truth), timeout=60, what="the outage's hours")
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain")
    assert agent.proc.poll() is None
    assert "disconnected from the broker" in agent.output()
    latest = wait_until(lambda: status(tmp_path).get("backlog") == 0 and status(tmp_path))
    assert latest["online"] is True and latest["agent"] == spacekiosk.__version__
    assert latest["clock"] in ("synchronized", "unknown") and latest["last_sync"] > 0
    assert latest["about"] == {"name": "Test Space", "capacity": 20, "timezone": "Europe/Athens"}


def test_the_agent_killed_between_publish_and_ack(tmp_path, broker, collector, services):
    """SIGKILL after the batch left but before its ack came back: it is sent again (or its
    ack is picked up from the persistent session) and counted once."""
    toml, db = space_config(tmp_path, broker.port)
    truth = seed(db, 30)
    collector_proc = services.started[0].proc
    os.kill(collector_proc.pid, signal.SIGSTOP)  # it receives nothing, acks nothing
    try:
        agent = services("sync", "--config", str(toml))
        wait_until(
            lambda: db.execute("SELECT max(attempts) FROM outbox").fetchone()[0],
            what="the agent to publish the batch",
        )
        agent.kill()  # SIGKILL: no clean shutdown, paho's memory is gone
    finally:
        os.kill(collector_proc.pid, signal.SIGCONT)
    assert backlog(db) > 0  # nothing was released without an ack
    wait_until(lambda: totals_match(collector, truth), what="the batch the agent published")
    # The broker saw the connection die and published the agent's last will.
    wait_until(lambda: status(tmp_path).get("online") is False, what="the space marked offline")
    assert status(tmp_path)["about"]["name"] == "Test Space"  # the will says who it is too

    again = services("sync", "--config", str(toml))
    wait_until(lambda: backlog(db) == 0, what="the outbox to drain after the restart")
    # Whatever it sent again, it sent before its outbox drained; any resend must change
    # nothing. A marker follows it: a visit in an hour the collector has none of, which
    # the agent sends on the same connection, after the rest, and the collector commits
    # in the order it arrives. Once the marker is there, so is any resend.
    marker = min(truth) - HOUR
    with write(db):  # in and out at once: no refresh sees the visit open
        visit = visits.sign_in_new(db, visits.NewVisitor("Marker"), "pin-key", now=marker + 60)
        visits.sign_out(db, visit.id, now=marker + 1260)
    truth[marker] += 1
    wait_until(lambda: received(collector)[marker], what="the marker hour at the collector")
    assert received(collector) == truth
    assert all(b["version"] == 1 for b in usage(collector))
    assert again.proc.poll() is None


def test_the_collectors_committer_killed_mid_stream(tmp_path, broker, collector, services):
    """The process that commits dies with batches in hand: the collector starts another,
    the spaces send again what was never acknowledged, and every hour counts once."""
    toml, db = space_config(tmp_path, broker.port, sync="batch_hours = 6")
    truth = seed(db, 240)
    parent = services.started[0]
    committer = committer_of(parent.proc.pid)
    services("sync", "--config", str(toml))
    wait_until(lambda: received(collector), what="the first batches at the collector")
    assert backlog(db) > 0, "the backlog drained before the committer could be killed"
    os.kill(committer, signal.SIGKILL)
    wait_until(lambda: backlog(db) == 0, timeout=90, what="the outbox to drain")
    wait_until(lambda: totals_match(collector, truth), what="every hour at the collector")
    assert all(b["version"] == 1 for b in usage(collector))
    assert parent.proc.poll() is None
    assert "the committer stopped" in parent.output()
    assert committer_of(parent.proc.pid) != committer
    health = requests.get(collector + "healthz", timeout=5).json()
    assert health["committer"] == "running" and health["committer_restarts"] == 1


def committer_of(pid: int) -> int:
    """The pid of a collector's committer process (multiprocessing's spawn), whichever
    of the collector's threads started it."""
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    for child in (child for task in tasks for child in task.read_text().split()):
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise AssertionError(f"collector {pid} has no committer process")


def test_the_connection_cut_mid_batch(tmp_path, broker, collector, services):
    """A link that drops in the middle of batches, again and again, loses nothing."""
    with TcpProxy(broker.port) as proxy:
        toml, db = space_config(tmp_path, proxy.port, sync="batch_hours = 6")
        truth = seed(db, 240)
        proxy.cut_after(600)  # somewhere inside the first few batches
        services("sync", "--config", str(toml))
        for cut in range(1, 4):
            wait_until(lambda c=cut: proxy.connections > c, what=f"a reconnect after cut {cut}")
            assert backlog(db), "the backlog drained before the link was cut three times"
            proxy.cut_after(600)
        wait_until(lambda: backlog(db) == 0, timeout=90, what="the outbox to drain")
        wait_until(lambda: totals_match(collector, truth), what="every hour at the collector")
        assert all(b["version"] == 1 for b in usage(collector))


def test_a_publish_the_acl_refuses_stays_pending(tmp_path, broker, collector, services):
    """Logged in as another space, the publish is refused (PUBACK 0x87): the rows must stay
    queued, not be taken as sent; with the right login they are delivered."""
    toml, db = space_config(tmp_path, broker.port, mqtt='username = "otherspace"')
    (tmp_path / "space" / "mqtt-password").write_text(PASSWORDS["otherspace"])
    truth = seed(db, 10)
    queued = None
    refused = sync_once(toml, timeout=4)
    assert refused.returncode == 75, refused.stdout + refused.stderr
    assert "refused a usage batch" in refused.stderr
    queued = backlog(db)
    assert queued >= 10
    assert db.execute("SELECT count(*) FROM buckets WHERE delivered_version > 0").fetchone() == (0,)
    assert usage(collector) == []

    toml.write_text(toml.read_text().replace('username = "otherspace"', ""))
    (tmp_path / "space" / "mqtt-password").write_text(PASSWORDS[SPACE])
    delivered = sync_once(toml)
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    assert f"all {queued} hour(s) delivered" in delivered.stdout
    assert totals_match(collector, truth)


def test_the_https_route_when_the_mqtt_port_is_blocked(tmp_path, broker, collector):
    central = tmp_path / "central" / "central.db"
    token = "t0k3n-" + "x" * 40
    store.set_token(connect(central), SPACE, token)
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "token").write_text("not-the-token\n")
    blocked = free_port()  # nothing listens: the MQTT port is blocked
    toml, db = space_config(
        tmp_path,
        blocked,
        sync=f'http_url = "{collector.rstrip("/")}"\ntoken_file = "token"\nhttp_after_seconds = 0',
    )
    truth = seed(db, 20)

    refused = sync_once(toml, timeout=4)
    assert refused.returncode == 75
    assert "refused a batch over HTTPS (401)" in refused.stderr
    assert backlog(db) >= 20 and usage(collector) == []

    (tmp_path / "space" / "token").write_text(token + "\n")
    sent = sync_once(toml)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "over HTTPS" in sent.stdout and "delivered" in sent.stdout
    assert totals_match(collector, truth)
    assert backlog(db) == 0
    (seen,) = store.spaces(connect(central))
    assert seen["status"]["online"] is True and seen["status"]["backlog"] == 0
    again = sync_once(toml)
    assert "0 hour(s) to deliver" in again.stdout


def test_the_ingest_endpoint_refuses_what_it_must(tmp_path, collector):
    central = tmp_path / "central" / "central.db"
    store.set_token(connect(central), SPACE, "right-token")
    url = collector + "api/v1/ingest"
    batch = protocol.usage_message(SPACE, [protocol.Bucket(1795622400, 1, {"signins": 2})])
    auth = {"Authorization": "Bearer right-token"}
    assert requests.post(url, data=batch, timeout=5).status_code == 401
    wrong = requests.post(url, data=batch, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    other = protocol.usage_message("otherspace", [protocol.Bucket(1795622400, 1, {"signins": 9})])
    refused = requests.post(url, data=other, headers=auth, timeout=5)
    assert refused.status_code == 400 and "otherspace" in refused.json()["error"]
    assert requests.post(url, data=b"\x00junk", headers=auth, timeout=5).status_code == 400
    huge = b"{" + b" " * protocol.MAX_WIRE_BYTES
    assert requests.post(url, data=huge, headers=auth, timeout=5).status_code == 413
    ok = requests.post(url, data=batch, headers=auth, timeout=5)
    assert ok.status_code == 200
    assert protocol.read_ack(ok.content).committed == [(1795622400, 1, 1)]
    assert usage(collector) == [{"start": "2026-11-25T16:00:00Z", "version": 1, "signins": 2}]


def test_a_month_offline_is_rolled_up_into_days_and_delivered(tmp_path, broker, collector):
    """30 days of backlog past the outbox's limit: old days go out as day buckets (their
    hours stay on the Pi), recent hours as hours; the totals are the same."""
    toml, db = space_config(
        tmp_path, broker.port, sync="max_outbox_hours = 48\nrecompute_days = 2\nbatch_hours = 100"
    )
    truth = seed(db, 30 * 24, per_hour=1)
    result = sync_once(toml, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("delivered ")]
    assert progress, result.stdout  # a person running it by hand sees it drain
    days = [b for b in usage(collector) if b.get("hours") == 24]
    assert len(days) >= 25
    assert all(b["start"].endswith("T00:00:00Z") for b in days)
    assert db.execute("SELECT count(*) FROM buckets").fetchone()[0] >= 30 * 24 - 1
    assert totals_match(collector, truth, by_day=True)
    assert backlog(db) == 0


def test_reconciliation_resends_what_the_collector_lacks(tmp_path, broker, collector, services):
    toml, db = space_config(tmp_path, broker.port)
    truth = seed(db, 72)
    agent = services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="three days at the collector")
    wait_until(lambda: "last_digest_at" in syncstate.state(db), what="the first digest")
    assert agent.stop() == 0

    lose_day(tmp_path / "central" / "central.db", min(truth) // 86400 * 86400 + 86400)
    assert received(collector) != truth

    outbox.set_state(db, last_digest_at=0)  # a week has passed
    services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="the lost day, sent again")


def test_reconciliation_over_https_when_the_mqtt_port_is_blocked(
    tmp_path, broker, collector, services
):
    """A space that only reaches the collector over HTTPS is reconciled there too."""
    central = tmp_path / "central" / "central.db"
    store.set_token(connect(central), SPACE, "t0k3n-" + "y" * 40)
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "token").write_text("t0k3n-" + "y" * 40 + "\n")
    toml, db = space_config(
        tmp_path,
        free_port(),  # nothing listens: the MQTT port is blocked
        sync=f'http_url = "{collector.rstrip("/")}"\ntoken_file = "token"\nhttp_after_seconds = 0',
    )
    truth = seed(db, 72)
    agent = services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="three days over HTTPS")
    wait_until(lambda: "last_digest_at" in syncstate.state(db), what="the first digest")
    assert agent.stop() == 0

    lost_day = min(truth) // 86400 * 86400 + 86400
    lose_day(central, lost_day)
    assert received(collector) != truth
    outbox.set_state(db, last_digest_at=0)  # a week has passed
    services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="the lost day, sent again")
    assert "asking again for 1 day(s)" in services.started[0].output()


def test_a_digest_over_https_needs_the_spaces_token_and_the_protocol(tmp_path, collector):
    store.set_token(connect(tmp_path / "central" / "central.db"), SPACE, "right-token")
    url = collector + "api/v1/digest"
    digest = protocol.digest_message(SPACE, [["2026-11-24", 3, 12345]])
    auth = {"Authorization": "Bearer right-token"}
    assert requests.post(url, data=digest, timeout=5).status_code == 401
    bad = requests.post(url, data=b"{not json", headers=auth, timeout=5)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    answer = requests.post(url, data=digest, headers=auth, timeout=5)
    assert answer.status_code == 200
    assert protocol.read_ack(answer.content).resend == [protocol.day_epoch("2026-11-24")]
    status = collector + "api/v1/status"
    bad = requests.post(status, data=b'{"v":1,"online":"yes"}', headers=auth, timeout=5)
    assert bad.status_code == 400 and "'online'" in bad.json()["error"]
    good = protocol.status_message(online=True, backlog=0)
    assert requests.post(status, data=good, headers=auth, timeout=5).status_code == 200
    (seen,) = store.spaces(connect(tmp_path / "central" / "central.db"))
    assert seen["status"]["online"] is True
    assert store.reject_count(connect(tmp_path / "central" / "central.db")) == 2


def lose_day(central: Path, day: int) -> None:
    """The central store loses a day (a restore from an older backup, say)."""
    db = connect(central)
    db.execute("DELETE FROM usage WHERE hour_start >= ? AND hour_start < ?", [day, day + 86400])
    db.conn.commit()


def test_no_name_or_email_in_anything_the_broker_carries(
    tmp_path, broker, collector, services, tap
):
    """A realistic run: visitors with names, e-mails, purposes and events; an outage; a
    digest. Every payload, compressed or not, is free of them."""
    toml, db = space_config(tmp_path, broker.port, sync="send_running_hour = true")
    truth = seed(db, 48, per_hour=3, email=True)
    visits.sign_in_new(db, visits.NewVisitor("Zoë Ñandú-Lee", email="zoe@example.net"), "k")
    services("sync", "--config", str(toml))
    wait_until(
        lambda: sum(received(collector).values()) == sum(truth.values()) + 1,
        what="every sign-in at the collector",
    )
    wait_until(lambda: any(t.endswith("/digest") for t, _ in tap.payloads), what="a digest")
    names = [row[0] for row in db.execute("SELECT name FROM visitors")]
    emails = [row[0] for row in db.execute("SELECT email FROM visitors WHERE email IS NOT NULL")]
    assert len(names) > 100 and len(emails) > 100
    texts = tap.texts()
    assert len(texts) == len(tap.payloads) >= 3
    assert any('"by_purpose"' in t for t in texts)
    for secret in [*names, *emails, "Zoë", "Ñandú"]:
        for (_topic, payload), text in zip(tap.payloads, texts, strict=True):
            assert secret not in text and secret.encode() not in payload


def test_finished_hours_wait_for_the_next_send_on_a_metered_link(
    tmp_path, broker, collector, services
):
    """With `send_every_minutes`, a change waits for the next send instead of costing a
    message of its own; `sync --once` run by hand sends it at once."""
    toml, db = space_config(tmp_path, broker.port, sync="send_every_minutes = 60")
    truth = seed(db, 5)
    agent = services("sync", "--config", str(toml))
    wait_until(lambda: totals_match(collector, truth), what="the first send")
    wait_until(lambda: backlog(db) == 0, what="its acks")

    # Typed in late, and never signed out: a new version of its hour and the later ones.
    (signed_in_at,) = db.execute("SELECT min(signed_in_at) FROM visits").fetchone()
    visits.sign_in_new(db, visits.NewVisitor("Late Entry"), "k", now=signed_in_at + 1800)
    truth[int(signed_in_at) // HOUR * HOUR] += 1
    wait_until(lambda: backlog(db) == 5, what="the changed hours in the outbox")
    refreshes(db, 3)  # of the running agent: it holds the hours back
    assert backlog(db) == 5 and received(collector) != truth
    assert agent.proc.poll() is None

    result = sync_once(toml)
    assert result.returncode == 0 and "all 5 hour(s) delivered" in result.stdout
    assert totals_match(collector, truth)
    assert max(b["version"] for b in usage(collector)) == 2
