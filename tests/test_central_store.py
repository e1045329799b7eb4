"""The central store behaves the same in SQLite and in PostgreSQL (a real server), and a
collector on either commits what a space's agent sends; several collectors share it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest
import requests
from central import bucket_rows, commit_usage
from conftest import (
    PASSWORDS,
    ROOT,
    SPACE,
    free_port,
    http_ready,
    publisher,
    usage,
    wait_until,
    write_collector_config,
    write_space_config,
)

from collector import accounts, reports, store
from kiosk import visits
from spacekiosk import config, protocol
from spacekiosk.db import StoreError, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.protocol import Bucket

HOUR = 1795622400  # 2026-11-25T16:00:00Z
DAY = HOUR - 16 * 3600


@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A collector config and its opened store, on each backend."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    cfg = config.load(write_collector_config(tmp_path, broker_port=1, database_url=url))
    db = store.connect(cfg.central, "ingest")
    yield cfg, db
    db.close()


def test_the_highest_version_wins_whatever_the_order(central):
    _cfg, db = central
    for version, signins in ((2, 5), (1, 3), (3, 7), (2, 5)):
        commit_usage(db, "nairobi", [Bucket(HOUR, version, {"signins": signins})])
    commit_usage(db, "nairobi", [Bucket(DAY - 86400, 1, {"signins": 40}, hours=24)])
    got = store.usage(db, "nairobi")
    assert got == [
        Bucket(DAY - 86400, 1, {"signins": 40}, 24),
        Bucket(HOUR, 3, {"signins": 7}),
    ]


def test_buckets_are_stored_alike_from_the_wire_or_from_code():
    bucket = Bucket(HOUR, 2, {"signins": 3, "by_purpose": {"work": 2, "art": 1}, "exits": 1})
    wire = protocol.read_hours(protocol.usage_message("nairobi", [bucket]), "nairobi")
    assert store.wire_rows("nairobi", wire) == bucket_rows("nairobi", [bucket])
    counts = bucket_rows("nairobi", [bucket])[0][4]
    assert counts == '{"by_purpose":{"art":1,"work":2},"exits":1,"signins":3}'


def test_versions_of_one_hour_in_one_batch_leave_the_highest(central):
    """One transaction may carry a bucket more than once (a resend beside its update)."""
    _cfg, db = central
    versions = [Bucket(HOUR, v, {"signins": v}) for v in (2, 1, 3, 2)]
    store.commit(db, usage=bucket_rows("nairobi", versions))
    store.commit(db, usage=bucket_rows("nairobi", versions[:2]))  # older: no change
    assert store.usage(db, "nairobi") == [Bucket(HOUR, 3, {"signins": 3})]


def test_a_batch_of_messages_commits_together(central):
    _cfg, db = central
    store.commit(
        db,
        usage=[
            *bucket_rows("athens", [Bucket(HOUR, 1, {"signins": 2}), Bucket(HOUR + 3600, 1, {})]),
            *bucket_rows("madrid", [Bucket(HOUR, 1, {"signins": 4, "by_purpose": {"cowork": 4}})]),
        ],
        statuses=[("athens", {"v": 1, "online": True, "backlog": 0})],
        rejects=[("spacekiosk/v1/athens/usage", "not JSON")],
        now=HOUR + 7200,
    )
    spaces = {s["id"]: s for s in store.spaces(db)}
    assert set(spaces) == {"athens", "madrid"}
    assert spaces["athens"]["status"]["online"] is True and spaces["athens"]["hours"] == 2
    assert spaces["madrid"]["last_seen"] == HOUR + 7200
    assert store.usage(db, "madrid")[0].counts["by_purpose"] == {"cowork": 4}
    assert store.reject_count(db) == 1


def test_a_space_names_itself_until_the_central_team_says_otherwise(central):
    _cfg, db = central
    about = {"name": "Taipei Hackerspace", "capacity": 40, "timezone": "Asia/Taipei"}
    store.commit_status(db, "taipei", {"v": 1, "online": True, "about": about})
    store.commit_status(db, "taipei", {"v": 1, "online": False})  # its last will
    (space,) = reports.spaces(db)
    assert space.status["online"] is False
    assert (space.name, space.capacity) == ("Taipei Hackerspace", 40)
    accounts.set_space_info(db, "taipei", "Taipei (Songshan)", 35)
    (space,) = reports.spaces(db)
    assert (space.name, space.capacity) == ("Taipei (Songshan)", 35)


def test_digests_find_what_is_missing_or_different(central):
    _cfg, db = central
    commit_usage(db, "bogota", [Bucket(HOUR, 2, {}), Bucket(HOUR + 3600, 1, {})])
    units = [(HOUR, 1, 2), (HOUR + 3600, 1, 1)]
    claimed = {protocol.day_epoch(d): (n, crc) for d, n, crc in protocol.digest(units)}
    assert store.lacking(db, "bogota", claimed) == []
    more = [*units, (HOUR + 86400, 1, 1)]  # a day the collector never got
    claimed = {protocol.day_epoch(d): (n, crc) for d, n, crc in protocol.digest(more)}
    assert store.lacking(db, "bogota", claimed) == [DAY + 86400]
    newer = [(HOUR, 1, 3), (HOUR + 3600, 1, 1)]  # a version it lacks
    claimed = {protocol.day_epoch(d): (n, crc) for d, n, crc in protocol.digest(newer)}
    assert store.lacking(db, "bogota", claimed) == [DAY]


def test_tokens_name_their_space(central):
    _cfg, db = central
    store.set_token(db, "manila", "secret-one")
    store.set_token(db, "manila", "secret-two")  # rotated: the old one stops working
    assert store.token_space(db, "secret-two") == "manila"
    assert store.token_space(db, "secret-one") is None


def test_postgresql_gives_bi_tools_a_flat_view(pg_url, tmp_path):
    cfg = config.load(write_collector_config(tmp_path, broker_port=1, database_url=pg_url))
    db = store.connect(cfg.central)
    counts = {"signins": 3, "open_minutes": 60, "by_event": {"Repair café": 2}}
    commit_usage(db, "taipei", [Bucket(HOUR, 1, counts)])
    db.close()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT space, signins, exits, open_minutes, by_event->>'Repair café' FROM usage_flat"
        ).fetchone()
    assert row == ("taipei", 3, 0, 60, "2")


def test_a_second_collector_waits_for_the_schema_and_a_newer_one_is_refused(pg_url, tmp_path):
    cfg = config.load(write_collector_config(tmp_path, broker_port=1, database_url=pg_url))
    first, second = store.connect(cfg.central), store.connect(cfg.central)  # no error
    second.execute("INSERT INTO schema_version (version) VALUES (99)")
    first.close()
    second.close()
    with pytest.raises(StoreError, match="newer than this collector"):
        store.connect(cfg.central)


def test_an_unreachable_postgresql_is_a_clear_message_not_a_traceback(tmp_path):
    url = f"postgresql://spacekiosk:s3cret@127.0.0.1:{free_port()}/central"
    toml = write_collector_config(tmp_path, broker_port=1, database_url=url)
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "collector", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "cannot open the PostgreSQL store at postgresql://127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_a_collector_on_postgresql_commits_what_the_agent_sends(tmp_path, broker, services, pg_url):
    toml = write_collector_config(
        tmp_path / "central", broker_port=broker.port, database_url=pg_url
    )
    url = f"http://127.0.0.1:{config.load(toml).central.listen[1]}/"
    http_ready(url + "healthz", services("collector", "--config", str(toml)))
    wait_until(lambda: subscribed(url), what="the collector's subscription")
    space = write_space_config(tmp_path / "space", broker_port=broker.port)
    db = open_store(config.load(space).database.path, SPACE_MIGRATIONS)
    now = time.time()
    for back in range(1, 13):
        visits.sign_in_new(db, visits.NewVisitor(f"V{back}"), "k", now=now - back * 3600)
    services("sync", "--config", str(space))
    wait_until(lambda: sum(b.get("signins", 0) for b in usage(url)) == 12, what="12 sign-ins in PG")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT sum(signins) FROM usage_flat").fetchone() == (12,)
        # The server drops every connection (a restart, a failover): nothing is lost.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    for back in range(13, 19):
        visits.sign_in_new(db, visits.NewVisitor(f"V{back}"), "k", now=now - back * 3600)

    def all_there():
        try:
            return sum(b.get("signins", 0) for b in usage(url)) == 18
        except (requests.RequestException, ValueError):
            return False  # the page's first try on a dropped connection says 503

    wait_until(all_there, timeout=60, what="the later sign-ins, after the drop")


def health(url: str) -> dict:
    return requests.get(url + "healthz", timeout=5).json()


def subscribed(url: str) -> bool:
    return health(url)["broker"] == "connected"


def shared_collectors(tmp_path, broker, services, database_url: str = ""):
    """Two collectors on one store, sharing the spaces' messages: (urls, services)."""
    urls, procs = [], []
    for n in (1, 2):
        folder = tmp_path / f"central-{n}"
        toml = write_collector_config(
            folder,
            broker_port=broker.port,
            database_url=database_url,
            central=f'client_id = "collector-{n}"\nshared = true',
        )
        if n == 2:  # the broker names clients after their logins: one login each
            toml.write_text(toml.read_text().replace('"collector"', '"collector-2"'))
            (folder / "collector-password").write_text(PASSWORDS["collector-2"])
        if not database_url and n == 2:  # one file for both: the same store
            text = toml.read_text().replace(
                'database = "central.db"', f'database = "{tmp_path / "central-1" / "central.db"}"'
            )
            toml.write_text(text)
        url = f"http://127.0.0.1:{config.load(toml).central.listen[1]}/"
        procs.append(services("collector", "--config", str(toml)))
        http_ready(url + "healthz", procs[-1])
        wait_until(lambda u=url: subscribed(u), what=f"collector {n}")
        urls.append(url)
    return urls, procs


MARK = 100  # hours in a marker batch: more than a collector can hold of the 40, each twice


def test_each_message_goes_to_one_of_the_shared_collectors(tmp_path, broker, services):
    """Were the subscription not shared, both would commit (and ack) every batch.

    After the 40 hours come markers of MARK hours, from the same client on the same topic
    at QoS 1, one at a time until each collector has committed one. The broker hands a
    collector its messages in the order they were published, and a collector commits
    them in the order they came: once its count holds a marker, it holds every delivery
    of the 40 the collector was given, a second one included."""
    urls, _procs = shared_collectors(tmp_path, broker, services)
    client = publisher(broker.port)

    def send(starts: list[int]) -> None:
        batch = protocol.usage_message(SPACE, [Bucket(s, 1, {"signins": 1}) for s in starts])
        client.publish(protocol.topic(SPACE, "usage"), batch, qos=1).wait_for_publish(5)

    def counted() -> list[tuple[int, int]]:
        """Each collector's committed buckets, as (markers, hours of the 40)."""
        return [divmod(health(url)["committed"], MARK) for url in urls]

    for n in range(40):
        send([HOUR - n * 3600])
    markers = 0
    while not all(marked for marked, _ in counted()):
        assert markers < 10, f"no marker reached one of the collectors: {counted()}"
        first = HOUR - (40 + markers * MARK) * 3600
        send([first - k * 3600 for k in range(MARK)])
        markers += 1
        wait_until(
            lambda m=markers: sum(marked for marked, _ in counted()) >= m,
            what=f"marker {markers} committed",
        )
    client.disconnect()
    client.loop_stop()
    taken = counted()
    assert sum(marked for marked, _ in taken) == markers, taken  # no marker twice
    hours = [of_the_40 for _, of_the_40 in taken]
    assert sum(hours) == 40 and min(hours) > 0, taken
    assert len(usage(urls[0])) == 40 + markers * MARK


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_collectors_share_the_spaces_and_survive_losing_one(
    tmp_path, broker, services, request, backend
):
    """MQTT 5 shared subscriptions on the broker the tests run (Debian's Mosquitto 2.0):
    each batch goes to one collector; when one is killed, what it had taken comes again
    from the space after the ack timeout, and the totals are still exact."""
    url_db = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    urls, procs = shared_collectors(tmp_path, broker, services, url_db)

    space = write_space_config(tmp_path / "space", broker_port=broker.port, sync="batch_hours = 2")
    db = open_store(config.load(space).database.path, SPACE_MIGRATIONS)
    now, truth = time.time(), Counter()
    for back in range(1, 201):
        at = (int(now) // 3600 - back) * 3600 + 60
        visits.sign_in_new(db, visits.NewVisitor(f"V{back}"), "k", now=at)
        truth[at - 60] += 1
    services("sync", "--config", str(space))
    wait_until(
        lambda: all(health(url)["committed"] for url in urls), what="both collectors at work"
    )
    os.kill(procs[1].proc.pid, signal.SIGKILL)  # one collector dies mid-stream
    procs[1].proc.wait()

    def totals():
        got = Counter(
            {
                protocol.hour_epoch(b["start"]): b["signins"]
                for b in usage(urls[0])
                if "signins" in b
            }
        )
        return got == truth

    wait_until(totals, timeout=90, what="every hour, exactly once, after losing a collector")
    assert all(b["version"] == 1 for b in usage(urls[0]))


# --- when the collector itself last heard from a space, and last had its usage ---


def heard(db, space: str) -> tuple:
    return store.contacts(db).get(space)


def test_contact_and_delivery_are_what_the_collector_received(central):
    """Usage is contact and delivery; a status saying online is contact; a last will is
    the broker speaking, and a retained copy is old news: neither is contact."""
    _cfg, db = central
    commit_usage(db, "athens", [Bucket(HOUR, 1, {"signins": 1})], now=HOUR + 3600)
    assert heard(db, "athens") == (HOUR + 3600, HOUR + 3600)
    store.commit(db, usage=bucket_rows("athens", [Bucket(HOUR, 1, {})]), now=HOUR + 3700)
    assert heard(db, "athens") == (HOUR + 3700, HOUR + 3700)  # a repeat is a delivery too
    store.commit_status(db, "athens", {"v": 1, "online": True}, now=HOUR + 4000)
    assert heard(db, "athens") == (HOUR + 4000, HOUR + 3700)
    store.commit_status(db, "athens", {"v": 1, "online": False}, now=HOUR + 5000)
    assert heard(db, "athens") == (HOUR + 4000, HOUR + 3700)
    status = ("athens", {"v": 1, "online": True})
    store.commit(db, statuses=[status], contacts=[], now=HOUR + 6000)  # a retained copy
    assert heard(db, "athens") == (HOUR + 4000, HOUR + 3700)
    store.commit(db, contacts=["athens"], now=HOUR + 7000)  # a digest
    assert heard(db, "athens") == (HOUR + 7000, HOUR + 3700)
    store.commit_status(db, "bogota", {"v": 1, "online": False}, now=HOUR)  # only its will
    assert heard(db, "bogota") == (None, None)
    assert {s["id"]: s["last_contact"] for s in store.spaces(db)}["athens"] == HOUR + 7000


def test_a_store_from_before_knows_when_each_space_last_delivered(tmp_path, pg_url):
    """An older store learns the last contact and delivery from its buckets' arrival."""
    old = store.COLLECTOR_MIGRATIONS[:3]
    db = open_store(tmp_path / "central.db", old)
    db.execute("INSERT INTO spaces (id, first_seen, last_seen) VALUES ('taipei', 1, 2)")
    for start, at in ((HOUR, HOUR + 60), (HOUR + 3600, HOUR + 9000)):
        db.execute(
            "INSERT INTO usage (space, hour_start, hours, version, counts, received_at)"
            " VALUES ('taipei', ?, 1, 1, '{}', ?)",
            [start, at],
        )
    db.conn.commit()
    db.close()
    db = open_store(tmp_path / "central.db", store.COLLECTOR_MIGRATIONS)
    assert heard(db, "taipei") == (HOUR + 9000, HOUR + 9000)
    db.close()
    from collector import pg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # a store at schema version 1
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in pg._M001:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO spaces (id, first_seen, last_seen) VALUES ('taipei', 1, 2)")
        conn.execute(
            "INSERT INTO usage (space, hour_start, hours, version, counts, received_at)"
            " VALUES ('taipei', %s, 1, 1, '{}', %s)",
            [HOUR, HOUR + 60],
        )
    db = pg.open_pg(pg_url)
    assert heard(db, "taipei") == (HOUR + 60, HOUR + 60)
    db.close()


def test_a_status_stored_before_checks_cannot_stop_a_commit(central):
    """A last will keeps the `about` the space said before; when what is stored is not a
    status at all, the will is stored alone and the batch with it commits."""
    _cfg, db = central
    for stored in ("not json", "[1, 2]", '{"about": 3}', '"x"'):
        store.commit_status(db, "lagos", {"v": 1, "online": True}, now=HOUR)
        db.execute("UPDATE spaces SET status = ? WHERE id = 'lagos'", [stored])
        store.commit(
            db,
            usage=bucket_rows("athens", [Bucket(HOUR, 1, {"signins": 2})]),
            statuses=[("lagos", {"v": 1, "online": False})],
        )
        assert {s["id"]: s["status"] for s in store.spaces(db)}["lagos"] == {
            "v": 1,
            "online": False,
        }
    assert store.usage(db, "athens") == [Bucket(HOUR, 1, {"signins": 2})]


def test_a_reason_that_quotes_a_payload_is_stored_plain(central):
    """NUL, control and bidi characters and lone surrogates in a topic or a reason are
    stored as their escapes: PostgreSQL refuses a NUL, and SQLite a lone surrogate."""
    _cfg, db = central
    hostile = "a\x00b\x1b[31m\u202e\ud800c" + "x" * 1000
    store.reject(db, "spacekiosk/v1/x\x00/usage", hostile)
    ((topic, reason),) = db.execute("SELECT topic, reason FROM rejects").fetchall()
    assert topic == "spacekiosk/v1/x\\x00/usage"
    assert reason.startswith("a\\x00b\\x1b[31m\\u202e\\ud800c") and len(reason) == 500
    assert reason.isprintable()
