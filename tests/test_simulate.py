"""Simulated foot traffic: a day shaped by the opening hours and events, the same day from
the same seed, and walks through real mock pins counted by the real sensors."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from conftest import SENSORS, wait_until, write_space_config
from gpiozero.pins.mock import MockFactory

from sensors import simulate
from sensors.daemon import EventWriter, Sensors
from sensors.simulate import (
    IN,
    OUT,
    PAIR_IN,
    PAIR_OUT,
    TURNS_BACK,
    FootTraffic,
    Move,
    arrivals_per_hour,
)
from spacekiosk import config
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

HOURS = """
[space.opening_hours]
mon = "10:00-21:00"
tue = "10:00-21:00"
wed = "10:00-14:00, 16:00-21:00"
thu = "10:00-21:00"
fri = "10:00-22:00"
sat = "11:00-18:00"
sun = "closed"

[[events]]
name = "App day"
date = "2026-03-13"
hours = "18:00-23:00"
"""

AROUND_THE_CLOCK = "[space.opening_hours]\n" + "".join(
    f'{day} = "00:00-24:00"\n' for day in config.WEEKDAYS
)


MONDAY = (2026, 3, 9)  # the event above is on that week's Friday
PEOPLE = {IN: 1, PAIR_IN: 2, OUT: -1, PAIR_OUT: -2, TURNS_BACK: 0}


@pytest.fixture
def space(tmp_path):
    return config.load(write_space_config(tmp_path, broker_port=1, extra=HOURS + SENSORS))


def at(cfg, day: int, hour: int, minute: int = 0) -> datetime:
    """Local time in the space, `day` days after MONDAY."""
    monday = datetime(*MONDAY, tzinfo=cfg.space.timezone)
    return monday + timedelta(days=day, hours=hour, minutes=minute)


def plan(cfg, seed: int, days: int) -> list[tuple[datetime, str]]:
    sim = FootTraffic(cfg, None, seed=seed, start_at=at(cfg, 0, 0))
    moves = []
    while sim.clock < days * 86400:
        move = sim.next_move()
        assert move is not None
        moves.append((sim.local(move.offset), move.kind))
    return moves


def is_open(cfg, local: datetime) -> bool:
    return any(s <= local.time() < e for s, e in cfg.space.hours_on(local.weekday()))


def test_the_same_seed_gives_the_same_plan(space):
    week = plan(space, seed=5, days=7)
    assert week == plan(space, seed=5, days=7)
    assert week != plan(space, seed=6, days=7)
    kinds = {kind for _, kind in week}
    assert kinds == {IN, OUT, PAIR_IN, PAIR_OUT, TURNS_BACK}


def test_nobody_comes_or_stays_outside_opening_hours(space):
    moves = plan(space, seed=11, days=28)
    assert len(moves) > 500
    inside = 0
    for (local, kind), (following, _) in itertools.pairwise(moves):
        assert is_open(space, local), f"{kind} at {local:%a %H:%M}, while closed"
        inside += PEOPLE[kind]
        assert inside >= 0
        closed_between = any(
            not is_open(space, local + timedelta(minutes=m))
            for m in range(1, int((following - local).total_seconds() // 60) + 1)
        )
        if closed_between:  # the space closed before the next move: everyone had left
            assert inside == 0, f"{inside} still inside at closing after {local:%a %H:%M}"
    for local in (at(space, 6, 12), at(space, 0, 9, 59), at(space, 2, 15), at(space, 5, 18)):
        assert arrivals_per_hour(space, local) == 0


def test_arrivals_thin_out_before_closing(space):
    rate = [arrivals_per_hour(space, at(space, 0, 20, minute)) for minute in (0, 30, 50)]
    assert rate[0] > rate[1] > rate[2] == 0  # closes at 21:00


def test_a_quiet_morning_a_busier_afternoon_and_the_evening_event_busiest(space):
    friday = 4
    morning = arrivals_per_hour(space, at(space, friday, 10, 30))
    afternoon = arrivals_per_hour(space, at(space, friday, 14, 30))
    rush = arrivals_per_hour(space, at(space, friday, 17, 30))  # the event starts at 18:00
    assert 0 < morning < afternoon < rush
    # With no event listed, Tuesday evening has a meetup and Monday evening does not.
    assert arrivals_per_hour(space, at(space, 1, 18, 15)) > 2 * arrivals_per_hour(
        space, at(space, 0, 18, 15)
    )
    # The planned day agrees: the hour before the event brings more people than the morning.
    moves = plan(space, seed=3, days=5)

    def arrivals(start: datetime, end: datetime) -> int:
        return sum(PEOPLE[kind] for local, kind in moves if start <= local < end and kind != OUT)

    event_hour = arrivals(at(space, friday, 17, 15), at(space, friday, 18, 15))
    assert event_hour > arrivals(at(space, friday, 10), at(space, friday, 12))


def test_event_goers_leave_when_the_event_ends_or_at_closing(space):
    """The event runs until 23:00, but the space closes at 22:00."""
    moves = plan(space, seed=4, days=5)
    friday = [(local, kind) for local, kind in moves if local.date() == at(space, 4, 0).date()]
    assert all(local < at(space, 4, 22) for local, _ in friday)
    last_half_hour = [kind for local, kind in friday if local >= at(space, 4, 21, 30)]
    assert last_half_hour.count(OUT) + last_half_hour.count(PAIR_OUT) >= 5


def test_a_space_open_around_the_clock_has_people_at_night(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=AROUND_THE_CLOCK))
    assert arrivals_per_hour(cfg, at(cfg, 2, 3)) > 0
    assert arrivals_per_hour(cfg, at(cfg, 2, 23, 59)) == arrivals_per_hour(cfg, at(cfg, 2, 23))
    night = [kind for local, kind in plan(cfg, seed=1, days=7) if local.hour < 6]
    assert night.count(IN) > 0


def test_without_opening_hours_traffic_is_steady(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1))
    rates = {arrivals_per_hour(cfg, at(cfg, 6, hour), steady=42) for hour in range(24)}
    assert rates == {42}
    sim = FootTraffic(cfg, None, seed=2, mean_gap=20)
    moves = [sim.next_move() for _ in range(2000)]
    assert None not in moves
    assert 15 < moves[-1].offset / len(moves) < 25  # the mean gap between people


def test_a_space_that_never_opens_has_no_traffic(tmp_path):
    closed = "[space.opening_hours]\n" + "".join(f'{d} = "closed"\n' for d in config.WEEKDAYS)
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=closed))
    sim = FootTraffic(cfg, None, seed=2)
    assert sim.next_move() is None
    assert sim.clock == simulate.HORIZON


def walking_pace():
    """Each mock edge 50 ms after the last, whatever the wall clock says."""
    ticks = itertools.count(0, 0.05)
    return lambda: next(ticks)


@pytest.fixture
def sensors(space):
    factory = MockFactory()
    db = open_store(space.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    try:
        with Sensors(space, writer, pin_factory=factory, clock=walking_pace()):
            yield factory, db
            writer.stop()
    finally:
        factory.reset()


def stored(db) -> dict[str, int]:
    return dict(db.execute("SELECT kind, count(*) FROM sensor_events GROUP BY kind"))


def test_each_kind_of_walk_is_counted_by_the_real_sensors(space, sensors):
    factory, db = sensors
    sim = FootTraffic(space, factory, seed=7, speed=20)  # PIR samples at 10 Hz
    sim.prepare()
    for kind in (IN, PAIR_IN, TURNS_BACK, OUT, IN, PAIR_OUT):
        sim.perform(Move(0.0, kind))
    expected = {"entry": 4, "exit": 3, "turned_back": 1, "open": 6, "close": 7}
    wait_until(
        lambda: all(stored(db).get(k) == n for k, n in expected.items()),
        timeout=10,
        what=f"{expected} in sensor_events",
    )
    assert sim.inside == 1
    assert stored(db).get("motion", 0) >= 1  # a turn-back never reaches the room


def test_the_running_simulator_and_the_sensors_agree_on_who_is_inside(tmp_path):
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    factory = MockFactory()
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    try:
        with Sensors(cfg, writer, pin_factory=factory, clock=walking_pace()):
            sim = FootTraffic(cfg, factory, seed=9, speed=500)
            sim.start()
            wait_until(
                lambda: stored(db).get("exit", 0) >= 5, timeout=30, what="five people to leave"
            )
            sim.stop()
            assert not sim.thread.is_alive()
            writer.stop()
    finally:
        factory.reset()
    counts = stored(db)
    assert counts["entry"] - counts["exit"] == sim.inside
    assert counts["open"] == counts["close"] - 1  # shut at rest, then once per walk
