"""Sensor health on gpiozero's MockFactory: stuck, blocked and flickering pins, the door
left open, and what spacekiosk.sensorstate reads back. Hours pass on an injected clock."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from conftest import SENSORS, wait_until, write_space_config
from gpiozero.pins.mock import MockFactory

from sensors import health
from sensors.daemon import EventWriter, Sensors
from spacekiosk import config
from spacekiosk import sensorstate as state
from spacekiosk.db import connect, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

PIR = "motion:main room"


class Clock:
    """A monotonic clock the test moves on: each reading is 10 ms after the last (the
    doorway needs edges at distinct times) and advance() jumps ahead."""

    def __init__(self):
        self.now = 1000.0
        self._lock = threading.Lock()  # read from the pins' threads and the check thread

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.01
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture
def factory():
    mock = MockFactory()
    yield mock
    mock.reset()


@pytest.fixture
def space(tmp_path, factory):
    """A space with every sensor on mock pins, the door shut, and a second connection to
    read the store with while the writer writes."""
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    clock = Clock()
    running = []

    def start() -> Sensors:
        sensors = Sensors(
            cfg, writer, pin_factory=factory, clock=clock, store=db, check_every=0.05
        ).__enter__()
        running.append(sensors)
        return sensors

    sensors = start()
    pins = SimpleNamespace(
        door=factory.pin(17), pir=factory.pin(27), a=factory.pin(22), b=factory.pin(23)
    )
    pins.door.drive_low()  # the pull-up leaves a mock pin high (open): start with it shut
    reader = connect(cfg.database.path)
    yield SimpleNamespace(
        cfg=cfg, db=reader, writer=writer, clock=clock, pins=pins, sensors=sensors, start=start
    )
    for s in running:
        s.__exit__(None, None, None)
    writer.stop()
    reader.close()
    db.close()


def rows(db, sensor: str, kind: str) -> list[tuple[float, str | None]]:
    return db.execute(
        "SELECT at, detail FROM sensor_events WHERE sensor = ? AND kind = ? ORDER BY id",
        [sensor, kind],
    ).fetchall()


def count(db, sensor: str, kind: str) -> int:
    return len(rows(db, sensor, kind))


def sensor_health(space, name: str) -> dict:
    return state.health(space.db, space.cfg, time.time())[name]


def settle(space) -> None:
    """Run one health check now, as the check thread would."""
    space.sensors.health.check()


def cross(first, second):
    first.drive_low()
    second.drive_low()
    first.drive_high()
    second.drive_high()


def test_every_sensor_starts_ok_and_the_door_shut(space):
    wait_until(lambda: count(space.db, "door", "close") == 1, what="the door shut")
    now = time.time()
    assert state.health(space.db, space.cfg, now) == {
        name: {"ok": True, "reason": None, "since": None}
        for name in ("door", PIR, "beam_a", "beam_b")
    }
    door = state.door(space.db, space.cfg, now)
    assert door["open"] is False and door["alert"] is False and door["since"] <= now


def test_a_pir_in_motion_for_hours_is_faulty_until_it_stops(space):
    space.pins.pir.drive_high()
    wait_until(lambda: count(space.db, PIR, "motion") == 1, what="motion")
    space.clock.advance(4 * 3600 - 60)
    settle(space)
    assert space.sensors.health.watches[PIR].fault is None  # a long busy afternoon: fine

    space.clock.advance(120)
    fault = wait_until(lambda: not sensor_health(space, PIR)["ok"] and sensor_health(space, PIR))
    assert "motion without a break for over 4 h" in fault["reason"]
    assert fault["since"] == rows(space.db, PIR, "fault")[0][0]

    space.pins.pir.drive_low()
    ok = wait_until(lambda: sensor_health(space, PIR)["ok"] and sensor_health(space, PIR))
    assert ok["reason"] is None and ok["since"] >= fault["since"]
    assert count(space.db, PIR, "still") == 1  # the change that ended it is real: stored
    assert count(space.db, PIR, "fault") == 1


def test_a_blocked_beam_is_faulty_but_a_lingering_walker_is_still_counted(space):
    a, b = space.pins.a, space.pins.b
    a.drive_low()  # someone stops in the outer beam to chat
    space.clock.advance(4 * 60)
    settle(space)
    assert space.sensors.health.watches["beam_a"].fault is None

    space.clock.advance(2 * 60)
    fault = wait_until(lambda: rows(space.db, "beam_a", "fault"), what="a blocked beam")
    assert "broken without a break for over 5 min" in fault[0][1]
    assert sensor_health(space, "beam_a")["ok"] is False
    assert sensor_health(space, "beam_b")["ok"] is True

    b.drive_low()  # ... and then walks on in: a blocked beam cannot invent a crossing,
    a.drive_high()  # so the counter kept listening
    b.drive_high()
    wait_until(lambda: count(space.db, "counter", "entry") == 1, what="the entry")
    wait_until(lambda: sensor_health(space, "beam_a")["ok"], what="beam A ok again")


def test_a_flickering_beam_counts_nothing_while_the_other_sensors_go_on(space):
    a, b = space.pins.a, space.pins.b
    edges = space.cfg.sensors.counter.flicker_edges
    for _ in range(edges):  # a failing receiver: far faster than anyone walks
        a.drive_low()
        a.drive_high()
    fault = wait_until(lambda: rows(space.db, "beam_a", "fault"), what="a flickering beam")
    assert f"flickering: {edges} changes within 5 s" == fault[0][1]

    for _ in range(3):  # people walk in while A still flickers; A looks like them
        a.drive_low()
        cross(a, b)
        a.drive_high()
    space.pins.door.drive_high()  # the door and the PIR are heard all along
    space.pins.pir.drive_high()
    space.pins.door.drive_low()
    wait_until(lambda: count(space.db, PIR, "motion") == 1, what="motion")
    wait_until(lambda: count(space.db, "door", "open") == 1, what="the door opening")
    assert sensor_health(space, "beam_b")["ok"] and sensor_health(space, "door")["ok"]
    assert count(space.db, "counter", "entry") == count(space.db, "counter", "exit") == 0
    assert sensor_health(space, "beam_a")["ok"] is False

    space.clock.advance(health.CALM_SECONDS + 1)
    wait_until(lambda: sensor_health(space, "beam_a")["ok"], what="beam A calm again")
    cross(a, b)
    wait_until(lambda: count(space.db, "counter", "entry") == 1, what="counting again")
    assert count(space.db, "counter", "exit") == 0


def test_a_flickering_door_is_faulty_and_its_noise_is_not_stored(space):
    door = space.pins.door
    edges = space.cfg.sensors.door.flicker_edges
    for _ in range(200):  # a loose wire: 400 changes
        door.drive_high()
        door.drive_low()
    door.drive_high()  # it settles, open
    fault = wait_until(lambda: rows(space.db, "door", "fault"), what="a flickering door")
    assert fault[0][1].startswith("flickering")
    assert count(space.db, "door", "open") <= edges // 2  # what came before it was caught
    assert not state.door(space.db, space.cfg, time.time())["open"]  # the noise's last word

    space.clock.advance(health.CALM_SECONDS + 1)
    wait_until(lambda: sensor_health(space, "door")["ok"], what="the door ok again")
    # Once trusted again, the stored state is the door's own: open.
    wait_until(lambda: state.door(space.db, space.cfg, time.time())["open"], what="open")


def test_a_door_open_too_long_raises_one_alert_until_it_shuts(space):
    door = space.pins.door
    door.drive_high()
    wait_until(lambda: count(space.db, "door", "open") == 1, what="the door opening")
    space.clock.advance(14 * 60)
    settle(space)
    assert not state.door(space.db, space.cfg, time.time())["alert"]

    space.clock.advance(2 * 60)
    alert = wait_until(lambda: rows(space.db, "door", "alert"), what="the alert")
    assert alert[0][1] == "open for over 15 min"
    now = time.time()
    opened = rows(space.db, "door", "open")[0][0]
    assert state.door(space.db, space.cfg, now) == {"open": True, "since": opened, "alert": True}
    assert sensor_health(space, "door")["ok"]  # an open door is not a broken sensor

    space.clock.advance(60 * 60)
    settle(space)
    door.drive_low()
    wait_until(lambda: not state.door(space.db, space.cfg, time.time())["open"], what="shut")
    assert count(space.db, "door", "alert") == 1
    door.drive_high()  # a new opening starts without an alert
    wait_until(lambda: count(space.db, "door", "open") == 2, what="the door opening again")
    assert state.door(space.db, space.cfg, time.time())["alert"] is False


def test_a_door_open_for_a_day_is_a_fault(space):
    space.pins.door.drive_high()
    space.clock.advance(24 * 3600 + 1)
    fault = wait_until(lambda: rows(space.db, "door", "fault"), what="a door open for a day")
    assert "a cut wire or a magnet that fell off" in fault[0][1]
    space.pins.door.drive_low()
    wait_until(lambda: sensor_health(space, "door")["ok"], what="the door ok again")


def test_a_restart_keeps_a_fault_and_catches_up_with_the_door(space):
    space.pins.a.drive_low()
    space.clock.advance(6 * 60)
    wait_until(lambda: rows(space.db, "beam_a", "fault"), what="a blocked beam")
    wait_until(lambda: count(space.db, "door", "close") == 1, what="the door shut")
    space.sensors.__exit__(None, None, None)

    space.pins.door.drive_high()  # opened while the daemon was down
    restarted = space.start()
    space.pins.a.drive_low()  # still blocked (reopening the mock pin pulled it up)
    wait_until(lambda: count(space.db, "door", "open") == 1, what="the door caught up")
    space.clock.advance(health.CALM_SECONDS + 1)
    restarted.health.check()
    assert not sensor_health(space, "beam_a")["ok"]  # still blocked: still faulty
    assert count(space.db, "beam_a", "fault") == 1  # and not reported twice

    space.pins.a.drive_high()
    wait_until(lambda: sensor_health(space, "beam_a")["ok"], what="beam A ok again")


def flicker(name: str, seconds: float) -> tuple[list[bool], list[tuple]]:
    """Feed one sensor flicker_edges changes spread evenly over `seconds`; what
    Health.edge() answered to each, and what it reported."""
    cfg = config.Sensors(
        door=config.Door(pin=17),
        motion=(config.Motion(pin=27),),
        counter=config.Counter(beam_a=22, beam_b=23),
    )
    watch = next(w for w in health.watches(cfg) if w.name == name)
    n = watch.flicker_edges
    times = iter([0.0] + [i * seconds / (n - 1) for i in range(n)])
    reported: list[tuple] = []
    monitor = health.Health(lambda *event: reported.append(event), clock=lambda: next(times))
    monitor.add(watch, active=False)
    return [monitor.edge(name, i % 2 == 0) for i in range(n)], reported


def test_the_daemon_watches_every_sensor_under_the_name_its_health_is_read_by():
    """The daemon writes health under its watches' names; the kiosk and the agent read it
    under the core's names. A sensor the two name differently would read as always ok."""
    for sensors in (
        config.Sensors(
            door=config.Door(pin=17),
            motion=(config.Motion(pin=27), config.Motion(pin=5, location="hall")),
            counter=config.Counter(beam_a=22, beam_b=23),
        ),
        config.Sensors(motion=(config.Motion(pin=27, location="kitchen"),)),
        config.Sensors(),
    ):
        assert [w.name for w in health.watches(sensors)] == state.sensor_names(sensors)


@pytest.mark.parametrize("name", ["door", PIR, "beam_a", "beam_b"])
def test_flicker_edges_within_five_seconds_is_a_flicker_and_slower_is_not(name):
    trusted, reported = flicker(name, 5.0)
    n = len(trusted)
    assert trusted == [True] * (n - 1) + [False]
    assert reported == [(name, "fault", f"flickering: {n} changes within 5 s")]
    trusted, reported = flicker(name, 5.2)
    assert all(trusted) and reported == []


def test_no_door_sensor_no_door_state(tmp_path):
    extra = '[[sensors.motion]]\npin = 27\nlocation = "hall"\n'
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=extra))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    assert state.door(db, cfg, time.time()) is None
    assert list(state.health(db, cfg, time.time())) == ["motion:hall"]
