"""Synthetic foot traffic on gpiozero's mock pins, for the demo and for trying things out.

A day in the space, the same day again from the same seed: nobody while it is closed, a
quiet morning, a busier afternoon, a rush before an evening event (the config's
`[[events]]` of the day, else a made-up meetup on Tuesday and Thursday evenings), and
everyone gone before closing time. Some come in pairs, one right behind the other through
the beams; some step into the doorway and turn back.

`arrivals_per_hour()` says how busy the door is at a local time; FootTraffic turns it into
a plan of moves (`next_move()`) and walks each one through the mock pins: the door, both
beams, the PIR sensors. A config with no opening hours at all (a test's or a bench's) gets
steady traffic around the clock instead: someone at the door every `mean_gap` seconds.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime

from spacekiosk.config import Space, SpaceConfig

log = logging.getLogger(__name__)

# Arrivals per hour as a share of the space's capacity, by local time of day.
NIGHT = 0.03  # before 08:00 and from 22:00, for a space open then
MORNING = 0.08  # 08:00-12:00
AFTERNOON = 0.20  # 12:00-17:00
EVENING = 0.12  # 17:00-22:00
RUSH = 0.60  # added from 45 minutes before an event starts until 15 minutes after
RUSH_BEFORE, RUSH_AFTER = timedelta(minutes=45), timedelta(minutes=15)
MEETUP_DAYS = (1, 3)  # Tuesday and Thursday: an evening meetup when no event is listed
MEETUP = (dtime(18, 30), dtime(21, 0))
# Arrivals thin out over the last hour before closing and stop 15 minutes before it.
TAPER, LAST_CALL = timedelta(hours=1), timedelta(minutes=15)
# Of the people arriving: a pair one right behind the other, or one who turns back.
PAIR, TURN_BACK = 0.12, 0.05
PAIR_LEAVES_TOGETHER = 0.6
STAY_MEDIAN, STAY_SPREAD, STAY_MIN = 70 * 60.0, 0.6, 10 * 60.0  # seconds, lognormal
HORIZON = 8 * 86400.0  # seconds of simulated time searched for the next arrival

IN, OUT, PAIR_IN, PAIR_OUT, TURNS_BACK = "in", "out", "pair in", "pair out", "turns back"


def arrivals_per_hour(config: SpaceConfig, local: datetime, steady: float = 90.0) -> float:
    """How many people arrive in an hour at the aware time `local`, in the space's time
    zone: none while the space is closed. With no opening hours in the config at all,
    `steady` an hour around the clock."""
    space = config.space
    if not space.opening_hours:
        return steady
    local = local.astimezone(space.timezone)
    if not is_open(space, local):
        return 0.0
    hour = local.hour
    if hour < 8 or hour >= 22:
        share = NIGHT
    elif hour < 12:
        share = MORNING
    elif hour < 17:
        share = AFTERNOON
    else:
        share = EVENING
    if any(start - RUSH_BEFORE <= local < start + RUSH_AFTER for start, _ in peaks(config, local)):
        share += RUSH
    closes = closing_time(space, local)
    if closes is not None:
        left = timedelta(seconds=closes.timestamp() - local.timestamp())
        share *= min(max((left - LAST_CALL) / (TAPER - LAST_CALL), 0.0), 1.0)
    return share * space.capacity


def peaks(config: SpaceConfig, local: datetime) -> list[tuple[datetime, datetime]]:
    """The day's events as (start, end) local times: the config's, else a meetup on
    MEETUP_DAYS."""
    zone, day = config.space.timezone, local.date()
    spans = [s for e in config.events if e.date == day.isoformat() for s in e.hours]
    if not spans and day.weekday() in MEETUP_DAYS:
        spans = [MEETUP]
    return [_span(day, start, end, zone) for start, end in spans]


def _span(day: date, start: dtime, end: dtime, zone) -> tuple[datetime, datetime]:
    # The config writes 24:00 as 23:59:59; here it is the next midnight.
    opens = datetime.combine(day, start, tzinfo=zone)
    if end == dtime(23, 59, 59):
        return opens, datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=zone)
    return opens, datetime.combine(day, end, tzinfo=zone)


def _spans_on(space: Space, day: date) -> list[tuple[datetime, datetime]]:
    return [_span(day, s, e, space.timezone) for s, e in space.hours_on(day.weekday())]


def is_open(space: Space, local: datetime) -> bool:
    return any(s <= local < e for s, e in _spans_on(space, local.date()))


def closing_time(space: Space, local: datetime) -> datetime | None:
    """When the space, open at `local`, closes; a span that ends where the next begins
    (at midnight, say) runs on. None when it stays open for a week on end."""
    end = next(e for s, e in _spans_on(space, local.date()) if s <= local < e)
    for _ in range(8):
        follows = next((e for s, e in _spans_on(space, end.date()) if s == end), None)
        if follows is None:
            return end
        end = follows
    return None


@dataclass(frozen=True)
class Move:
    """Someone at the door, `offset` seconds of simulated time after the traffic began."""

    offset: float
    kind: str  # IN, OUT, PAIR_IN, PAIR_OUT or TURNS_BACK

    @property
    def leaving(self) -> bool:
        return self.kind in (OUT, PAIR_OUT)


class FootTraffic:
    """Drives mock pins the way people would; `speed` > 1 compresses time.

    The plan starts at `start_at` (default: now) and depends on nothing but the config,
    `seed` and `start_at`. `mean_gap` (seconds between people at the door) only applies
    to a config without opening hours; a config with them gets the day shaped above.
    """

    def __init__(
        self,
        config: SpaceConfig,
        factory,
        seed: int | None = None,
        speed: float = 1.0,
        mean_gap: float = 20.0,
        start_at: datetime | None = None,
    ):
        if mean_gap <= 0 or speed <= 0:
            raise ValueError("mean_gap and speed must be positive")
        self.config = config
        self.cfg = config.sensors
        self.factory = factory
        self.random = random.Random(seed)
        self.speed = speed
        self.mean_gap = mean_gap
        self.start_at = (start_at or datetime.now(UTC)).astimezone(UTC)
        self.inside = 0  # as walked through the pins
        self.clock = 0.0  # simulated seconds since start_at, at the last move planned
        self._arrival: float | None = None  # the next arrival's offset, once drawn
        self._departures: list[tuple[float, int, str]] = []  # a heap of (offset, n, kind)
        self._planned = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="foot-traffic", daemon=True)

    # --- the plan ---

    def local(self, offset: float) -> datetime:
        """The space's local time `offset` simulated seconds after the start."""
        return (self.start_at + timedelta(seconds=offset)).astimezone(self.config.space.timezone)

    def rate(self, offset: float) -> float:
        """Arrivals per hour at `offset`."""
        return arrivals_per_hour(self.config, self.local(offset), steady=1800 / self.mean_gap)

    def _busiest(self) -> float:
        if not self.config.space.opening_hours:
            return 1800 / self.mean_gap
        return (max(NIGHT, MORNING, AFTERNOON, EVENING) + RUSH) * self.config.space.capacity

    def _draw_arrival(self, since: float) -> float:
        """The next arrival after `since` (thinning a Poisson process at the busiest rate);
        math.inf if nobody comes within HORIZON."""
        busiest = self._busiest()
        t = since
        while busiest > 0:
            t += self.random.expovariate(busiest / 3600)
            if t - since > HORIZON:
                break
            if self.random.random() * busiest < self.rate(t):
                return t
        return math.inf

    def _stay(self, offset: float) -> float:
        """How long someone arriving at `offset` stays, in seconds."""
        space = self.config.space
        if not space.opening_hours:  # steady traffic: about half the capacity inside
            return self.random.expovariate(self.rate(offset) / 1800 / space.capacity)
        local = self.local(offset)
        stay = max(self.random.lognormvariate(math.log(STAY_MEDIAN), STAY_SPREAD), STAY_MIN)
        for start, end in peaks(self.config, local):
            if start - RUSH_BEFORE <= local < start + RUSH_AFTER:  # came for the event
                stay = end.timestamp() - local.timestamp() + self.random.uniform(-600, 1200)
                stay = max(stay, STAY_MIN)
        closes = closing_time(space, local)
        if closes is not None:  # everyone leaves before closing, most in the last 25 min
            room = closes.timestamp() - local.timestamp()
            stay = min(stay, room - self.random.uniform(0.1, 1.0) * min(25 * 60, room / 2))
        return stay

    def _leaves(self, offset: float, kind: str) -> None:
        self._planned += 1
        heapq.heappush(self._departures, (offset, self._planned, kind))

    def next_move(self) -> Move | None:
        """The next move of the plan; None (and the plan skips HORIZON ahead) when nobody
        comes or goes within HORIZON."""
        if self._arrival is None:
            self._arrival = self._draw_arrival(self.clock)
        departs = self._departures[0][0] if self._departures else math.inf
        if math.isinf(self._arrival) and math.isinf(departs):
            self._arrival = None
            self.clock += HORIZON
            return None
        if departs <= self._arrival:
            offset, _, kind = heapq.heappop(self._departures)
            self.clock = offset
            return Move(offset, kind)
        offset, self._arrival = self._arrival, None
        self.clock = offset
        roll = self.random.random()
        if roll < TURN_BACK:
            return Move(offset, TURNS_BACK)
        if roll < TURN_BACK + PAIR:
            first, second = offset + self._stay(offset), offset + self._stay(offset)
            if self.random.random() < PAIR_LEAVES_TOGETHER:
                self._leaves(first, PAIR_OUT)
            else:
                self._leaves(first, OUT)
                self._leaves(second, OUT)
            return Move(offset, PAIR_IN)
        self._leaves(offset + self._stay(offset), OUT)
        return Move(offset, IN)

    # --- the pins ---

    def prepare(self) -> None:
        """Put the pins at rest: door shut, beams clear, no motion."""
        if self.cfg.door:
            self._set(self.cfg.door.pin, self.cfg.door.pull_up, active=True)
        if self.cfg.counter:
            for pin in (self.cfg.counter.beam_a, self.cfg.counter.beam_b):
                self._set(pin, self.cfg.counter.pull_up, active=False)

    def start(self) -> None:
        self.prepare()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _sleep(self, seconds: float) -> bool:
        return self.stopping.wait(seconds / self.speed)

    def _set(self, pin: int, pull_up: bool, active: bool) -> None:
        # With a pull-up the device is active when the pin is pulled low.
        mock = self.factory.pin(pin)
        if active != pull_up:
            mock.drive_high()
        else:
            mock.drive_low()

    def _run(self) -> None:
        began = time.monotonic()
        while True:
            move = self.next_move()
            wait = self.clock / self.speed - (time.monotonic() - began)
            if self.stopping.wait(max(wait, 0)):
                return
            if move is not None:
                self.perform(move)

    def perform(self, move: Move) -> None:
        log.debug("%s: %s", self.local(move.offset).strftime("%a %H:%M"), move.kind)
        self.walk(
            move.leaving, pair=move.kind in (PAIR_IN, PAIR_OUT), turns_back=move.kind == TURNS_BACK
        )

    def walk(self, leaving: bool, *, pair: bool = False, turns_back: bool = False) -> None:
        """One person through the door, in or out; or two, one right behind the other;
        or one who steps into the doorway, reaches the inner beam and goes back out."""
        door, counter = self.cfg.door, self.cfg.counter
        if door:
            self._set(door.pin, door.pull_up, active=False)
            self._sleep(0.6)
        if counter:
            o, i = (counter.beam_b, counter.beam_a) if leaving else (counter.beam_a, counter.beam_b)
            if turns_back:  # A+ B+ B- A-
                steps = [(o, True, 0.15), (i, True, 0.4), (i, False, 0.3), (o, False, 0.3)]
            elif pair:  # A+ B+ A- A+ B- B+ A- B-: the second steps on A as the first leaves it
                steps = [(o, True, 0.15), (i, True, 0.15), (o, False, 0.1), (o, True, 0.15)]
                steps += [(i, False, 0.1), (i, True, 0.15), (o, False, 0.15), (i, False, 0.3)]
            else:  # A+ B+ A- B-
                steps = [(o, True, 0.15), (i, True, 0.2), (o, False, 0.15), (i, False, 0.3)]
            for pin, broken, pause in steps:
                self._set(pin, counter.pull_up, active=broken)
                self._sleep(pause)
        moving = self.cfg.motion if not turns_back else ()
        for motion in moving:
            self._set(motion.pin, motion.pull_up, active=True)
        if door:
            self._sleep(1.0 if turns_back else 2.0 if pair else 1.5)
            self._set(door.pin, door.pull_up, active=True)
        if moving:
            self._sleep(3)
        for motion in moving:
            self._set(motion.pin, motion.pull_up, active=False)
        if not turns_back:
            self.inside += (-1 if leaving else 1) * (2 if pair else 1)
