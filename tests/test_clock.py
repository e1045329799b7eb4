"""A Pi without a real-time clock: times taken before the clock was set are flagged, and
corrected once the offset is known. Clocks and the timesyncd folder are the test's own."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from conftest import SENSORS, visitor_form, wait_until, write_space_config
from gpiozero.pins.mock import MockFactory

from kiosk import closing, create_app
from sensors.daemon import EventWriter, Sensors
from spacekiosk import EARLIEST, config
from spacekiosk.clock import Correction, Reckoning, Watch
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

DAY = 86400
SAVED = datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()  # fake-hwclock's last save
LATE = 3 * DAY  # how far behind that is


class Clocks:
    """A wall clock and a monotonic one: tick() moves both, set() the wall alone (as
    timesyncd does). Read from pin callbacks and housekeeping threads."""

    def __init__(self, wall: float):
        self.mono = 500.0
        self.offset = wall - self.mono
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.mono

    def wall(self) -> float:
        with self._lock:
            return self.mono + self.offset

    def tick(self, seconds: float) -> None:
        with self._lock:
            self.mono += seconds

    def set(self, by: float) -> None:
        with self._lock:
            self.offset += by


@pytest.fixture
def timesync(tmp_path):
    """systemd-timesyncd's run folder, there but not synchronized yet."""
    folder = tmp_path / "timesync"
    folder.mkdir()
    return folder


def synchronize(clocks: Clocks, timesync, by: float) -> None:
    """What timesyncd does once it hears a server: set the clock, then say so."""
    clocks.set(by)
    (timesync / "synchronized").touch()


def watch(clocks: Clocks, timesync) -> Watch:
    return Watch(wall=clocks.wall, monotonic=clocks.monotonic, timesync=timesync)


# The Watch on its own


def test_a_clock_that_does_not_jump_needs_no_correction(tmp_path):
    clocks = Clocks(datetime(2026, 11, 25, 9, tzinfo=UTC).timestamp())
    w = watch(clocks, tmp_path / "no-timesyncd")
    for _ in range(3):
        clocks.tick(60)
        clocks.set(0.4)  # drift, not a jump
        assert w.now() == (clocks.wall(), True)
        assert w.check() is None


def test_without_timesyncd_the_clock_is_trusted_unless_it_reads_before_the_build(tmp_path):
    missing = tmp_path / "no-timesyncd"
    assert watch(Clocks(datetime(2026, 11, 25, tzinfo=UTC).timestamp()), missing).trusted()
    assert not watch(Clocks(0.0), missing).trusted()  # 1970: a Pi that booted without it


def test_timesyncd_setting_the_clock_corrects_what_was_taken_before(timesync):
    clocks = Clocks(SAVED)
    w = watch(clocks, timesync)
    assert not w.trusted()
    taken = []
    for _ in range(3):
        clocks.tick(10)
        taken.append(w.now())
    assert all(not trusted for _, trusted in taken)
    assert w.check() is None  # still waiting for a time server
    clocks.tick(10)
    synchronize(clocks, timesync, LATE)
    assert w.check() == Correction(LATE, taken[0][0], taken[-1][0], synced=True)
    assert w.now() == (clocks.wall(), True)
    assert w.check() is None  # corrected once


def test_times_taken_between_the_jump_and_the_check_stay_on_the_old_clock(timesync):
    clocks = Clocks(SAVED)
    w = watch(clocks, timesync)
    first, _ = w.now()
    clocks.tick(5)
    synchronize(clocks, timesync, LATE)
    late, trusted = w.now()  # not checked yet: still the old clock, to be moved
    assert (late, trusted) == (SAVED + 5, False)
    assert w.check() == Correction(LATE, first, late, synced=True)


def test_a_jump_before_the_clock_is_synchronized_moves_times_but_keeps_them_flagged(timesync):
    clocks = Clocks(SAVED)
    w = watch(clocks, timesync)
    first, _ = w.now()
    clocks.set(-DAY)  # the clock jumped, but nothing says it is right
    assert w.check() == Correction(-DAY, first, first, synced=False)
    clocks.tick(30)
    second, trusted = w.now()
    assert not trusted
    (timesync / "synchronized").touch()  # it was right after all: no second jump
    assert w.check() == Correction(0.0, first - DAY, second, synced=True)


def test_a_jump_with_nothing_untrusted_taken_corrects_nothing(tmp_path):
    clocks = Clocks(datetime(2026, 11, 25, tzinfo=UTC).timestamp())
    w = watch(clocks, tmp_path / "no-timesyncd")
    assert w.now()[1]
    clocks.set(3600)  # someone set a trusted clock by hand
    assert w.check() is None
    assert w.now() == (clocks.wall(), True)


# The sensors daemon's writer


@pytest.fixture
def factory():
    mock = MockFactory()
    yield mock
    mock.reset()


def walking_pace():
    ticks = itertools.count(0, 0.05)
    return lambda: next(ticks)


def sensor_rows(db, after_id: int = 0) -> list[tuple]:
    return db.execute(
        "SELECT id, at, clock_synced, kind FROM sensor_events WHERE id > ? ORDER BY id",
        [after_id],
    ).fetchall()


def boot(cfg, db, factory, clocks, timesync) -> tuple[EventWriter, Sensors]:
    """The sensors daemon starting, with the door shut and the store read for its state."""
    writer = EventWriter(db, watch(clocks, timesync))
    writer.start()
    sensors = Sensors(cfg, writer, pin_factory=factory, clock=walking_pace(), store=db)
    sensors.__enter__()
    factory.pin(17).drive_low()  # the pull-up leaves a mock pin high (open): shut it
    return writer, sensors


def open_and_shut(factory, clocks, times: int) -> None:
    door = factory.pin(17)
    for _ in range(times):
        clocks.tick(20)
        door.drive_high()
        clocks.tick(20)
        door.drive_low()


@pytest.mark.parametrize("booted_at", [SAVED, 30.0], ids=["fake-hwclock", "1970"])
def test_sensor_events_taken_before_the_clock_was_set_are_moved(
    tmp_path, factory, timesync, booted_at
):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    # An earlier boot that lost power before its clock was set: its times stay flagged.
    clocks = Clocks(booted_at)
    writer, sensors = boot(cfg, db, factory, clocks, timesync)
    open_and_shut(factory, clocks, 2)
    sensors.__exit__(None, None, None)
    writer.stop()
    earlier = sensor_rows(db)
    assert len(earlier) == 5 and {synced for _, _, synced, _ in earlier} == {0}

    # This boot starts from the same saved time, so its times overlap the earlier ones.
    clocks = Clocks(booted_at)
    writer, sensors = boot(cfg, db, factory, clocks, timesync)
    open_and_shut(factory, clocks, 3)
    # Found open (a mock pin's pull-up) against the stored "close", shut, 3 times in and out
    wait_until(lambda: len(sensor_rows(db, writer.after_id)) == 8, what="eight door events")
    before = sensor_rows(db, writer.after_id)
    assert {synced for _, _, synced, _ in before} == {0}
    assert min(at for _, at, _, _ in before) <= max(at for _, at, _, _ in earlier)

    clocks.tick(20)
    fixed = datetime(2026, 11, 25, 9, tzinfo=UTC).timestamp() - clocks.wall()
    synchronize(clocks, timesync, fixed)
    writer.check_clock()  # as the daemon's main loop does every few seconds
    open_and_shut(factory, clocks, 1)
    sensors.__exit__(None, None, None)
    writer.stop()

    after = sensor_rows(db, writer.after_id)
    assert [(i, at + fixed, 1, kind) for i, at, _, kind in before] == after[:8]
    assert [synced for _, _, synced, _ in after[8:]] == [1, 1]
    assert after[8][1] == clocks.wall() - 20  # taken on the new clock
    assert sensor_rows(db)[: len(earlier)] == earlier  # the earlier boot's: untouched
    db.close()


# The kiosk's visits


def kiosk_rows(path) -> dict[str, tuple]:
    db = sqlite3.connect(path)
    try:
        return {
            name: (signed_in, signed_out, synced)
            for name, signed_in, signed_out, synced in db.execute(
                "SELECT p.name, v.signed_in_at, v.signed_out_at, v.clock_synced "
                "FROM visits v JOIN visitors p ON p.id = v.visitor_id"
            )
        }
    finally:
        db.close()


def test_visits_taken_before_the_clock_was_set_are_moved(tmp_path, timesync):
    cfg = config.load(write_space_config(tmp_path, broker_port=1))
    path = cfg.database.path
    # An earlier boot: a visitor signed in before its clock was set, never corrected.
    clocks = Clocks(SAVED)
    earlier = create_app(cfg, {"TESTING": True, "CLOCK": watch(clocks, timesync)})
    clocks.tick(120)
    response = earlier.test_client().post("/sign-in/new", data=visitor_form("Ama Earlier"))
    assert response.status_code == 201
    ama = kiosk_rows(path)["Ama Earlier"]
    assert ama == (SAVED + 120, None, 0)

    # This boot starts from the same saved time, its housekeeping checking the clock.
    clocks = Clocks(SAVED)
    w = watch(clocks, timesync)
    app = create_app(cfg, {"TESTING": True, "CLOCK": w})
    stopping = threading.Event()
    housekeeping = closing.run(cfg, stopping, w, tick=0.02)
    try:
        kiosk = app.test_client()
        clocks.tick(60)
        assert kiosk.post("/sign-in/new", data=visitor_form("Bo Before")).status_code == 201
        clocks.tick(60)
        assert kiosk.post("/sign-in/new", data=visitor_form("Cy Before")).status_code == 201
        clocks.tick(60)
        handle = dict(sqlite3.connect(path).execute("SELECT id, handle FROM visits").fetchall())
        assert kiosk.post(f"/sign-out/{handle[2]}").status_code == 200  # Bo
        assert kiosk.post(f"/sign-out/{handle[1]}").status_code == 200  # Ama, an earlier boot's
        rows = kiosk_rows(path)
        assert rows["Bo Before"] == (SAVED + 60, SAVED + 180, 0)
        assert rows["Cy Before"] == (SAVED + 120, None, 0)

        clocks.tick(30)
        synchronize(clocks, timesync, LATE)
        wait_until(lambda: kiosk_rows(path)["Cy Before"][2] == 1, what="the correction")
        assert kiosk.post("/sign-in/new", data=visitor_form("Di After")).status_code == 201
    finally:
        stopping.set()
        housekeeping.join(timeout=10)

    rows = kiosk_rows(path)
    assert rows["Bo Before"] == (SAVED + 60 + LATE, SAVED + 180 + LATE, 1)
    assert rows["Cy Before"] == (SAVED + 120 + LATE, None, 1)
    assert rows["Di After"] == (clocks.wall(), None, 1)
    # The earlier boot's visit keeps its times (its sign-out is this boot's, untrusted).
    assert rows["Ama Earlier"] == (SAVED + 120, SAVED + 180, 0)


# Which hours are over: the time the Pi can vouch for


NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC).timestamp()


def reckoning(clocks: Clocks, timesync, record=None, boot="boot-1") -> Reckoning:
    return Reckoning(
        record, wall=clocks.wall, monotonic=clocks.monotonic, timesync=timesync, boot=boot
    )


def test_a_trusted_clock_is_the_time(tmp_path):
    clocks = Clocks(NOW)
    r = reckoning(clocks, tmp_path / "no-timesyncd")
    assert r.now() == NOW and r.changed
    clocks.tick(600)
    clocks.set(0.5)  # drift is followed
    assert r.now() == clocks.wall()


def test_a_clock_set_an_hour_ahead_is_not_believed_until_timesyncd_vouches(timesync):
    clocks = Clocks(NOW)
    (timesync / "synchronized").touch()
    os.utime(timesync / "synchronized", (NOW - 60, NOW - 60))  # its last sync, a minute ago
    r = reckoning(clocks, timesync)
    assert r.now() == NOW
    clocks.tick(60)
    clocks.set(3600)  # by hand, or a wrong real-time clock
    assert r.now() == NOW + 60  # the last trusted reading, carried forward
    clocks.tick(60)
    assert r.now() == NOW + 120
    # timesyncd hears a server that agrees: it touches its file, on the new clock
    os.utime(timesync / "synchronized", (clocks.wall(), clocks.wall()))
    assert r.now() == clocks.wall()


def test_a_clock_set_back_is_believed_at_once(tmp_path):
    clocks = Clocks(NOW)
    r = reckoning(clocks, tmp_path / "no-timesyncd")
    assert r.now() == NOW
    clocks.set(-3600)
    assert r.now() == NOW - 3600
    clocks.set(3600)  # and forward again, to where it was: ahead of the new anchor
    assert r.now() == NOW - 3600


def test_with_nothing_trusted_in_this_boot_the_last_trusted_reading_is_the_time(timesync):
    clocks = Clocks(NOW)
    (timesync / "synchronized").touch()
    first = reckoning(clocks, timesync)
    assert first.now() == NOW
    record = first.record
    # The next boot starts with fake-hwclock's time, ahead of it (a wrong real-time clock)
    (timesync / "synchronized").unlink()
    later = Clocks(NOW + 7200)
    r = reckoning(later, timesync, record, boot="boot-2")
    assert r.now() == NOW  # nothing later is known to have happened
    (timesync / "synchronized").touch()
    assert r.now() == later.wall()
    # A first boot knows nothing at all: no hour since the build date is known to be over.
    assert reckoning(Clocks(NOW), tmp_timesync(timesync)).now() == EARLIEST


def tmp_timesync(timesync):
    folder = timesync.parent / "timesync-new"
    folder.mkdir()
    return folder


def test_the_agent_started_again_in_the_same_boot_keeps_its_anchor(tmp_path):
    clocks = Clocks(NOW)
    first = reckoning(clocks, tmp_path / "no-timesyncd")
    assert first.now() == NOW
    clocks.tick(30)
    clocks.set(3600)  # set ahead while the agent was not running
    again = reckoning(clocks, tmp_path / "no-timesyncd", first.record)
    assert again.now() == NOW + 30
    other_boot = reckoning(clocks, tmp_path / "no-timesyncd", first.record, boot="boot-2")
    assert other_boot.now() == clocks.wall()  # a new boot, a clock that can be trusted
