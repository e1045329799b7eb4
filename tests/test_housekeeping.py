"""The kiosk's housekeeping keeps the store from growing without bound: old raw sensor
events and erased visitors' nameless visits go, but only once the hourly counts no
longer need them, on a clock the test moves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SENSORS, wait_until, write_space_config

from kiosk import closing, people, visits
from spacekiosk import config, hourly, pilots, sensorstate
from spacekiosk.clock import Watch
from spacekiosk.db import connect, open_store, size, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync import buckets, outbox

DAY, HOUR = 86400, 3600
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC).timestamp()
START = NOW - 120 * DAY  # the space's first day in these tests
RETENTION = """
[retention]
sensor_events_days = 20
visits_days = 40
"""  # and names are erased after 90 days, the default


class MovedClock:
    """A wall clock and a monotonic one that the test moves on together, as time passes."""

    def __init__(self, at: float):
        self.at, self.mono = at, 1000.0
        self.lock = threading.Lock()

    def wall(self) -> float:
        with self.lock:
            return self.at

    def monotonic(self) -> float:
        with self.lock:
            return self.mono

    def move(self, seconds: float) -> None:
        with self.lock:
            self.at += seconds
            self.mono += seconds


@pytest.fixture
def space(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS + RETENTION))
    open_store(cfg.database.path, SPACE_MIGRATIONS).close()
    db = connect(cfg.database.path)
    yield cfg, db
    db.close()


def fill(db) -> None:
    """120 days of a small space: the door opens and shuts each day, the PIR sees motion,
    the counter counts two in and out; one visit a day by a returning regular, and three
    one-time visitors: Olga long ago, Nina lately, Erin lately but erased at her request."""
    rows = []
    for day in range(120):
        t = START + day * DAY + 9 * HOUR
        rows += [
            (t, "door", "open"),
            (t + 60, "door", "close"),
            (t + 120, "motion:main room", "motion"),
            (t + 900, "motion:main room", "still"),
            (t + 30, "counter", "entry"),
            (t + 40, "counter", "entry"),
            (t + 3 * HOUR, "counter", "exit"),
            (t + 3 * HOUR + 10, "counter", "exit"),
        ]
    rows.append((START + HOUR, "door", "fault"))  # the door's only health event: stays
    rows.append((START + 2 * HOUR, "door", "ok"))
    with write(db):
        db.conn.executemany("INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)", rows)
    regular = visits.sign_in_new(db, visits.NewVisitor("Rhea Regular"), "k", now=START + 10 * HOUR)
    visits.sign_out(db, regular.id, now=START + 12 * HOUR)
    for day in range(1, 120):
        at = START + day * DAY + 10 * HOUR
        visit = visits.sign_in_returning(db, regular.visitor_id, None, "k", 1, True, now=at)
        visits.sign_out(db, visit.id, now=at + 2 * HOUR)
    for name, day in (("Olga Old", 5), ("Nina Newer", 100), ("Erin Erased", 110)):
        at = START + day * DAY + 11 * HOUR
        visit = visits.sign_in_new(db, visits.NewVisitor(name), "k", now=at)
        visits.sign_out(db, visit.id, now=at + HOUR)
    erin = db.execute("SELECT id FROM visitors WHERE name = 'Erin Erased'").fetchone()[0]
    people.erase(db, erin, now=NOW - 9 * DAY)


def send_all(db, cfg, now: float, keep_unsent: tuple[int, ...] = ()) -> None:
    """What the sync agent does: count the hours (the oldest days rolled up, as the
    outbox is long), and the collector acknowledges them all but `keep_unsent`."""
    outbox.refresh(db, cfg, now)
    pending = db.execute(
        "SELECT hour_start, version, 1 FROM outbox UNION ALL "
        "SELECT day_start, version, 24 FROM day_outbox WHERE delivered_version < version"
    ).fetchall()
    acked = [
        (start, version, hours)
        for start, version, hours in pending
        if not any(start <= hour < start + hours * HOUR for hour in keep_unsent)
    ]
    outbox.delivered(db, acked, now)


def regular_visit(db, at: float) -> None:
    regular = db.execute("SELECT id FROM visitors WHERE name = 'Rhea Regular'").fetchone()[0]
    visit = visits.sign_in_returning(db, regular, None, "k", 1, True, now=at)
    visits.sign_out(db, visit.id, now=at + HOUR)


def names(db) -> list[str]:
    return [n for (n,) in db.execute("SELECT name FROM visitors ORDER BY id")]


def oldest_event(db) -> float:
    return db.execute(
        "SELECT min(at) FROM sensor_events WHERE kind NOT IN ('fault', 'ok')"
    ).fetchone()[0]


def recomputed(db, cfg, now: float) -> dict:
    """The hours the sync agent may still recompute, counted again from the raw rows."""
    since = buckets.hour_of(now - cfg.sync.recompute_days * DAY)
    return buckets.compute(db, since, buckets.hour_of(now), cfg, now)


def test_nothing_goes_before_the_agent_has_counted_anything(space):
    cfg, db = space
    fill(db)
    events = db.execute("SELECT count(*) FROM sensor_events").fetchone()[0]
    assert hourly.needed_from(db, cfg, NOW) is None
    assert closing.prune(db, cfg, NOW) == closing.Pruned()
    assert db.execute("SELECT count(*) FROM sensor_events").fetchone()[0] == events


def test_an_unsent_hour_keeps_what_it_is_counted_from(space):
    cfg, db = space
    fill(db)
    unsent = buckets.hour_of(START + 50 * DAY + 9 * HOUR)  # an hour the collector never acked
    send_all(db, cfg, NOW, keep_unsent=(unsent,))
    before = recomputed(db, cfg, NOW)
    gone = closing.prune(db, cfg, NOW)
    assert gone.done and gone.events > 0
    # Everything from a week before the unsent hour stays (its counter and PIRs look back
    # that far); before it, only the latest event of each sensor and kind.
    assert oldest_event(db) == START + 43 * DAY + 9 * HOUR
    assert db.execute(
        "SELECT count(*) FROM sensor_events WHERE at < ?", [unsent - 7 * DAY]
    ).fetchone()[0] == 2  # fmt: skip
    # The visits: Olga's and Erin's are past visits_days or erased, but only erased
    # visitors' visits ever go, and Erin's are recent.
    assert names(db) == ["Rhea Regular", "Olga Old", "Nina Newer", visits.ERASED]
    assert recomputed(db, cfg, NOW) == before


def test_sent_hours_free_what_is_past_its_keeping(space):
    cfg, db = space
    fill(db)
    send_all(db, cfg, NOW)
    door = sensorstate.door(db, cfg, NOW)
    health = sensorstate.health(db, cfg, NOW)
    before = recomputed(db, cfg, NOW)
    stored = list(hourly.rows(db, 0, NOW))
    gone = closing.prune(db, cfg, NOW)
    assert oldest_event(db) == START + 100 * DAY + 9 * HOUR  # 20 days kept
    # The door's health was recorded once, long ago: it still reads back the same.
    assert sensorstate.door(db, cfg, NOW) == door and sensorstate.health(db, cfg, NOW) == health
    assert recomputed(db, cfg, NOW) == before and list(hourly.rows(db, 0, NOW)) == stored
    assert gone.visitors == 0  # Erin's one visit was 9 days ago: within visits_days

    # Sixty days on, the regular still coming and everything sent: Erin's nameless visit
    # goes, with her row; so does Olga's, her name erased by then (past 90 days). Nina's
    # and the regular's visits stay: they still have their names.
    later = NOW + 60 * DAY
    regular_visit(db, later - DAY)
    assert visits.erase_expired(db, cfg.retention.days, now=later) == 1
    send_all(db, cfg, later)
    gone = closing.prune(db, cfg, later)
    assert (gone.visitors, gone.visits) == (2, 2)
    assert names(db) == ["Rhea Regular", "Nina Newer"]
    assert db.execute("SELECT count(*) FROM visits").fetchone()[0] == 121 + 1


def test_a_quiet_spell_keeps_what_the_agent_may_still_count(space):
    """With nothing counted lately (the agent stopped, or the space was shut), a week's
    recounting back from the newest stored hour stays, whatever the keeping periods say."""
    cfg, db = space
    fill(db)
    send_all(db, cfg, NOW)
    newest = db.execute("SELECT max(hour_start) FROM buckets").fetchone()[0]
    closing.prune(db, cfg, NOW + 100 * DAY)
    assert oldest_event(db) >= newest - 14 * DAY


def test_a_roll_call_keeps_the_visits_it_lists(space):
    cfg, db = space
    fill(db)
    erin_visit = db.execute(
        "SELECT v.id FROM visits v JOIN visitors p ON p.id = v.visitor_id WHERE p.handle IS NULL"
    ).fetchone()[0]
    db.execute("INSERT INTO roll_calls (id, started_at, started_by) VALUES (1, ?, 'ada')", [NOW])
    db.execute("INSERT INTO roll_call_people (roll_call_id, visit_id) VALUES (1, ?)", [erin_visit])
    later = NOW + 60 * DAY
    regular_visit(db, later - DAY)
    visits.erase_expired(db, cfg.retention.days, now=later)
    send_all(db, cfg, later)
    assert closing.prune(db, cfg, later).visitors == 1  # Olga went, Erin stays
    assert names(db) == ["Rhea Regular", "Nina Newer", visits.ERASED]
    assert db.execute("SELECT count(*) FROM visits WHERE id = ?", [erin_visit]).fetchone()[0] == 1


def flicker(db, events: int) -> None:
    """A PIR's flickering on day 3: many more events than one batch deletes."""
    with write(db):
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, 'motion:main room', ?)",
            [(START + 3 * DAY + i / 100, ("motion", "still")[i % 2]) for i in range(events)],
        )


def test_many_events_go_in_batches_and_turns(space):
    cfg, db = space
    fill(db)
    flicker(db, 5000)
    send_all(db, cfg, NOW)
    old = db.execute("SELECT count(*) FROM sensor_events WHERE at < ?", [NOW - 20 * DAY])
    old = old.fetchone()[0]
    first = closing.prune(db, cfg, NOW, turn=0)  # one batch, then the turn is over
    assert (first.events, first.done) == (closing.PRUNE_BATCH, False)
    rest = closing.prune(db, cfg, NOW)
    assert rest.done and first.events + rest.events == old - 2  # the door's fault and ok


def test_a_sign_in_slips_in_between_the_batches(space):
    """A sign-in in the kiosk process, while its housekeeping deletes a long backlog,
    waits for one batch at most, not for the whole backlog."""
    cfg, db = space
    fill(db)
    flicker(db, 60 * closing.PRUNE_BATCH)
    send_all(db, cfg, NOW)
    events = db.execute("SELECT count(*) FROM sensor_events").fetchone()[0]
    housekeeping = connect(cfg.database.path)
    pruned = []
    thread = threading.Thread(
        target=lambda: pruned.append(closing.prune(housekeeping, cfg, NOW, turn=60))
    )
    thread.start()
    try:
        wait_until(
            lambda: db.execute("SELECT count(*) FROM sensor_events").fetchone()[0] < events,
            what="the first batch deleted",
        )
        visits.sign_in_new(db, visits.NewVisitor("Quick Quinn"), "k")
        assert thread.is_alive() and not pruned  # in before the deleting was done
    finally:
        thread.join(30)
        housekeeping.close()
    assert pruned and pruned[0].done


def test_the_kiosk_deletes_when_its_clock_says_an_hour_passed(space, tmp_path):
    """The housekeeping thread as the kiosk runs it, on a Watch whose clock the test moves:
    at start the hours are all unsent and nothing goes; once the collector has them and an
    hour has passed, the old events go, and the store's size says so."""
    cfg, db = space
    fill(db)
    outbox.refresh(db, cfg, NOW)
    clock = MovedClock(NOW)
    watch = Watch(wall=clock.wall, monotonic=clock.monotonic, timesync=tmp_path / "none")
    stopping = threading.Event()
    events = db.execute("SELECT count(*) FROM sensor_events").fetchone()[0]
    wal = Path(f"{cfg.database.path}-wal")
    thread = closing.run(cfg, stopping, watch, tick=0.01)
    try:
        # Its first check erases Olga (past 90 days), and scrubs the log last.
        wait_until(lambda: "Olga Old" not in names(db), what="the first check's erasure")
        wait_until(lambda: wal.stat().st_size == 0, what="the log scrubbed after it")
        assert db.execute("SELECT count(*) FROM sensor_events").fetchone()[0] == events
        send_all(db, cfg, NOW)
        clock.move(HOUR)
        wait_until(lambda: oldest_event(db) >= NOW + HOUR - 20 * DAY, what="the old events deleted")
        wait_until(lambda: wal.stat().st_size == 0, what="the log cut back after deleting")
        assert size(db).free_bytes > 0  # the space is the store's again, for new rows
    finally:
        stopping.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def hours(tmp_path):
    """A space with the pilots' opening hours (Saturday 11:00-18:00, Sunday closed)."""
    table = "".join(f'{day} = "{span}"\n' for day, span in pilots.PILOT_HOURS.items())
    toml = write_space_config(
        tmp_path / "hours", broker_port=1, extra=f"[space.opening_hours]\n{table}"
    )
    cfg = config.load(toml)
    assert cfg.space.hours_on(6) == ()  # Sunday
    open_store(cfg.database.path, SPACE_MIGRATIONS).close()
    db = connect(cfg.database.path)
    yield cfg, db
    db.close()


def test_a_forgotten_sign_out_ends_with_its_day_not_at_the_next_opening(hours, tmp_path):
    """The kiosk's housekeeping thread, on a Watch the test moves, in the space's zone
    (Athens: Saturday 11:00-18:00, Sunday closed). A visit still open is signed out by the
    kiosk at the first closing after it began; one begun after the day's last closing, or
    on a closed day, at the end of its local day: never kept "in" through Sunday until
    Monday's closing, on Monday's sign-out list and roll-call."""
    cfg, db = hours
    zone = cfg.space.timezone

    def local(day: int, hour: int, minute: int = 0) -> float:  # 6 March 2027: a Saturday
        return datetime(2027, 3, day, hour, minute, tzinfo=zone).timestamp()

    early = visits.sign_in_new(db, visits.NewVisitor("Erik Early"), "k", now=local(6, 9))
    maker = visits.sign_in_new(db, visits.NewVisitor("Mona Maker"), "k", now=local(6, 16))
    late = visits.sign_in_new(db, visits.NewVisitor("Lena Late"), "k", now=local(6, 20, 30))
    clock = MovedClock(local(6, 20, 35))
    watch = Watch(wall=clock.wall, monotonic=clock.monotonic, timesync=tmp_path / "none")
    stopping = threading.Event()
    thread = closing.run(cfg, stopping, watch, tick=0.01)

    def closed(visit) -> tuple | None:
        return db.execute(
            "SELECT signed_out_at, closed_by FROM visits WHERE id = ? AND signed_out_at "
            "IS NOT NULL",
            [visit.id],
        ).fetchone()

    try:
        # Saturday evening: the two who came before closing are out at 18:00; Lena, in
        # after closing, is still in (an evening's work after hours is hers to end).
        wait_until(lambda: closed(early) and closed(maker), what="Saturday's closing")
        assert closed(early) == closed(maker) == (local(6, 18), "closing")
        assert closed(late) is None
        assert [v.name for v in visits.present(db)] == ["Lena Late"]
        # Midnight: her day is over, and so is her visit.
        clock.move(local(7, 0, 1) - clock.wall())
        wait_until(lambda: closed(late), what="the end of Saturday")
        assert closed(late) == (local(7, 0), "closing")
        assert visits.present(db) == [] and visits.present_count(db) == 0
        # Sunday, a closed day: a volunteer's sign-in ends with Sunday, not Monday 21:00.
        sunday = visits.sign_in_new(db, visits.NewVisitor("Sam Sunday"), "k", now=local(7, 13))
        assert visits.auto_close_time(cfg.space, local(7, 13)) == local(8, 0)
        clock.move(local(8, 0, 1) - clock.wall())
        wait_until(lambda: closed(sunday), what="the end of Sunday")
        assert closed(sunday) == (local(8, 0), "closing")
    finally:
        stopping.set()
        thread.join(10)
    assert not thread.is_alive()
    # On Monday, nobody from the weekend is on the sign-out list, and an hour's sign-ins
    # count them only while they were there.
    assert visits.present(db) == []


def test_auto_close_times_in_the_space_s_zone(hours):
    """The rule, for each kind of day: within an opening span, its closing; before the
    day's opening, that day's closing; after the day's last closing or on a closed date,
    the end of the local day, however long the day (a change of the clocks)."""
    cfg, _db = hours
    zone = cfg.space.timezone

    def local(day: int, hour: int, minute: int = 0) -> float:
        return datetime(2027, 3, day, hour, minute, tzinfo=zone).timestamp()

    rule = visits.auto_close_time
    assert rule(cfg.space, local(8, 12)) == local(8, 21)  # Monday 10:00-21:00
    assert rule(cfg.space, local(8, 7)) == local(8, 21)  # before it opens
    assert rule(cfg.space, local(8, 21, 30)) == local(9, 0)  # after it closed
    assert rule(cfg.space, local(12, 21, 59)) == local(12, 22)  # Friday's 22:00 closing
    assert rule(cfg.space, local(12, 22)) == local(13, 0)  # in at the closing: its day's end
    assert rule(cfg.space, local(7, 10)) == local(8, 0)  # Sunday: closed all day
    # The clocks go forward at 03:00 on 28 March: the day is 23 hours long.
    assert rule(cfg.space, datetime(2027, 3, 27, 20, tzinfo=zone).timestamp()) == (
        datetime(2027, 3, 28, 0, tzinfo=zone).timestamp()
    )
    assert rule(cfg.space, datetime(2027, 3, 28, 2, tzinfo=zone).timestamp()) == (
        datetime(2027, 3, 29, 0, tzinfo=zone).timestamp()
    )
