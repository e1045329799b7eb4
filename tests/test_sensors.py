"""The sensors on gpiozero's MockFactory: real edge callbacks, real SQLite writes."""

from __future__ import annotations

import itertools

import pytest
from conftest import SENSORS, wait_until, write_space_config
from gpiozero.pins.mock import MockFactory

from sensors.daemon import EventWriter, Sensors
from sensors.devices import Beam, DoorContact, PeopleCounter
from sensors.simulate import FootTraffic
from spacekiosk import config
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS


@pytest.fixture
def factory():
    mock = MockFactory()
    yield mock
    mock.reset()


def test_the_door_contact_reports_open_and_shut(factory):
    events = []
    door = DoorContact(17, bounce_time=None, pin_factory=factory)
    door.when_opened = lambda: events.append("open")
    door.when_closed = lambda: events.append("closed")
    pin = factory.pin(17)
    pin.drive_low()  # contact closed against GND: shut
    assert not door.is_open
    pin.drive_high()
    assert door.is_open
    pin.drive_low()
    assert events == ["closed", "open", "closed"]


def walking_pace():
    """A clock for mock pins driven back to back: each edge 50 ms after the last, as
    a person walking through the doorway would make them."""
    ticks = itertools.count(0, 0.05)
    return lambda: next(ticks)


@pytest.fixture
def counter(factory):
    seen = []
    a = Beam(22, pin_factory=factory)
    b = Beam(23, pin_factory=factory)
    people = PeopleCounter(a, b, lambda kind, detail: seen.append(kind), clock=walking_pace())
    yield factory.pin(22), factory.pin(23), seen
    people.close()


def cross(first, second):
    first.drive_low()
    second.drive_low()
    first.drive_high()
    second.drive_high()


def test_a_then_b_is_an_entry_and_b_then_a_an_exit(counter):
    a, b, seen = counter
    cross(a, b)
    cross(b, a)
    assert seen == ["entry", "exit"]


def test_turning_back_and_lingering(counter):
    a, b, seen = counter
    a.drive_low()
    a.drive_high()  # stepped in, stepped back out
    a.drive_low()
    b.drive_low()
    b.drive_high()
    b.drive_low()  # dithering between the beams
    a.drive_high()
    b.drive_high()
    assert seen == ["turned_back", "entry"]


def test_the_writer_commits_every_event_and_flushes_on_stop(tmp_path, factory):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    with Sensors(cfg, writer, pin_factory=factory, clock=walking_pace()):
        door, a, b = factory.pin(17), factory.pin(22), factory.pin(23)
        door.drive_low()  # the pull-up leaves a mock pin high (open): start with it shut
        for _ in range(50):
            door.drive_high()
            cross(a, b)
            door.drive_low()
        writer.stop()  # as on SIGTERM: everything queued is written before exit
    counts = dict(db.execute("SELECT kind, count(*) FROM sensor_events GROUP BY kind"))
    assert counts["entry"] == 50 and counts["open"] == 50 and counts["close"] == 51


def test_simulated_traffic_is_reproducible_from_a_seed(tmp_path, factory):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))

    def day(seed):
        sim = FootTraffic(cfg, factory, seed=seed)
        return [sim.next_move() for _ in range(30)]

    assert day(7) == day(7)
    assert day(7) != day(8)


def test_a_simulated_walk_is_counted_by_the_real_sensors(tmp_path, factory):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    writer = EventWriter(db)
    writer.start()
    with Sensors(cfg, writer, pin_factory=factory):
        sim = FootTraffic(cfg, factory, seed=7, speed=10)  # PIR samples at 10 Hz
        sim.prepare()
        for leaving in (False, False, True):
            sim.walk(leaving)
        writer.stop()
    kinds = dict(db.execute("SELECT kind, count(*) FROM sensor_events GROUP BY kind"))
    assert kinds["entry"] == 2 and kinds["exit"] == 1
    assert kinds["open"] == 3 and kinds["close"] == 4  # shut at rest, then once per walk
    assert kinds["motion"] == 3


def test_the_daemon_runs_simulated_and_stops_on_sigterm(tmp_path, services):
    toml = write_space_config(tmp_path, broker_port=1, extra=SENSORS)
    daemon = services(
        "sensors", "--simulate", "--seed", "3", "--speed", "20", "--config", str(toml)
    )
    db = open_store(tmp_path / "space.db", SPACE_MIGRATIONS)
    wait_until(
        lambda: (
            db.execute("SELECT count(*) FROM sensor_events WHERE kind = 'entry'").fetchone()[0] >= 2
        ),
        timeout=60,
        what="simulated entries",
    )
    assert daemon.stop() == 0
    assert "sensors stopped" in daemon.output()
