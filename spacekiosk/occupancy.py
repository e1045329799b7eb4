"""How many people are in the space: one estimate from the counter, sign-ins and motion.

Read-only: it reads what the sensors daemon and the kiosk wrote. The people counter is
the best source, but a counter drifts (a missed beam, two people as one), so its running
total starts again from zero at each **reset point**: the first moment, after the space
closed, that the door has been shut and nothing has moved for `QUIET_MINUTES` — the
space is empty then, whatever the total says. The total never goes below zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlite_utils import Database

from spacekiosk import EARLIEST, hours
from spacekiosk.config import SpaceConfig

QUIET_MINUTES = 30
LOOKBACK_DAYS = 7


@dataclass(frozen=True)
class Estimate:
    """People present now: the figure, where it comes from, and how far to trust it."""

    people: int
    source: str  # "counter", "signins" or "motion"
    confidence: str  # "high", "medium" or "low"
    signed_in: int
    counted: int | None  # the counter's figure, when there is a counter
    motion: bool | None  # motion in the last QUIET_MINUTES, when there are PIRs

    def as_dict(self) -> dict:
        return {
            "people": self.people,
            "source": self.source,
            "confidence": self.confidence,
            "signed_in": self.signed_in,
            "counted": self.counted,
            "motion": self.motion,
        }


def closed_periods(config: SpaceConfig, since: float, until: float) -> list[tuple[float, float]]:
    """(closes, next opens) for each time the space closed between since and until;
    a space without opening hours is one long closed period."""
    spans = []
    start = since - 86400  # the night before `since` may already be closed
    while start < until:
        found = [(o.timestamp(), c.timestamp()) for o, c in hours.spans(config.space, start)]
        spans += [s for s in found if s not in spans]
        start += 7 * 86400
    spans = sorted(s for s in spans if s[1] >= since - 86400 and s[0] <= until + 86400)
    if not spans:
        return [(since, until)]
    return [(spans[i][1], spans[i + 1][0]) for i in range(len(spans) - 1)] + [
        (spans[-1][1], until + 7 * 86400)
    ]


def reset_points(db: Database, config: SpaceConfig, since: float, until: float) -> list[float]:
    """Moments in [since, until] when the space was certainly empty (see the module's doc)."""
    quiet = QUIET_MINUTES * 60
    points = []
    for closes, opens in closed_periods(config, since, until):
        end = min(opens, until)
        if end - closes < quiet or end < since:
            continue
        door_open = _door_open_at(db, closes)
        moving = _moving_at(db, closes)  # people still there at closing keep the PIR busy
        last_activity = closes
        found = None
        for at, sensor, kind in db.execute(
            "SELECT at, sensor, kind FROM sensor_events WHERE at > ? AND at < ? "
            "AND kind IN ('open', 'close', 'motion', 'still', 'entry', 'exit') ORDER BY at",
            [closes, end],
        ):
            if not door_open and not moving and at - last_activity >= quiet:
                found = last_activity + quiet
                break
            if sensor == "door" and kind in ("open", "close"):
                door_open = kind == "open"
            elif kind == "motion":
                moving.add(sensor)
            elif kind == "still":
                moving.discard(sensor)
            last_activity = at
        if found is None and not door_open and not moving and end - last_activity >= quiet:
            found = last_activity + quiet
        if found is not None and since <= found <= until:
            points.append(found)
    return points


def _moving_at(db: Database, at: float) -> set[str]:
    """The PIR sensors seeing motion at `at`: those whose last word by then was "motion"
    (a "still" ends it, and so does a "fault": a PIR stuck in motion for hours is not
    taken for people, or the count would never start again from zero). A day back is
    enough: the sensors daemon reports a PIR in motion for `stuck_hours` as at fault."""
    return {
        sensor
        for sensor, kind, _at in db.execute(
            "SELECT sensor, kind, max(at) FROM sensor_events WHERE sensor LIKE 'motion%' "
            "AND kind IN ('motion', 'still', 'fault') AND at > ? AND at <= ? GROUP BY sensor",
            [at - 86400, at],
        )
        if kind == "motion"
    }


def _door_open_at(db: Database, at: float) -> bool:
    row = db.execute(
        "SELECT kind FROM sensor_events WHERE sensor = 'door' AND kind IN ('open', 'close') "
        "AND at <= ? ORDER BY at DESC LIMIT 1",
        [at],
    ).fetchone()
    return bool(row and row[0] == "open")


def counter_series(db: Database, config: SpaceConfig, since: float, until: float):
    """(time, people) steps of the counter's running total from `since` to `until`:
    never below zero, back to zero at each reset point. Starts from the last reset point
    before `since` (or up to a week before it)."""
    lookback = since - LOOKBACK_DAYS * 86400
    resets = reset_points(db, config, lookback, until)
    start = max([r for r in resets if r <= since], default=lookback)
    later_resets = sorted(r for r in resets if r > start)
    people = 0
    steps = [(start, 0)]
    for at, kind in db.execute(
        "SELECT at, kind FROM sensor_events WHERE sensor = 'counter' "
        "AND kind IN ('entry', 'exit') AND at > ? AND at <= ? AND clock_synced = 1 ORDER BY at",
        [start, until],
    ):
        while later_resets and later_resets[0] <= at:
            steps.append((later_resets.pop(0), 0))
            people = 0
        people = people + 1 if kind == "entry" else max(people - 1, 0)
        steps.append((at, people))
    for reset in later_resets:
        steps.append((reset, 0))
    return steps


def signed_in_series(db: Database, since: float, until: float):
    """(time, people) steps of how many were signed in, from the kiosk's visits."""
    changes = []
    for signed_in, signed_out in db.execute(
        "SELECT signed_in_at, signed_out_at FROM visits WHERE signed_in_at <= ? "
        "AND (signed_out_at IS NULL OR signed_out_at > ?) "
        "AND signed_in_at >= ? AND clock_synced = 1",  # times a wrong clock made are left out
        [until, since, EARLIEST],
    ):
        changes.append((max(signed_in, since), 1))
        if signed_out is not None and signed_out <= until:
            changes.append((signed_out, -1))
    people, steps = 0, [(since, 0)]
    for at, delta in sorted(changes):
        people += delta
        steps.append((at, people))
    return steps


def value_at(steps, at: float) -> int:
    value = 0
    for when, people in steps:
        if when > at:
            break
        value = people
    return value


def estimate(db: Database, config: SpaceConfig, now: float | None = None) -> Estimate:
    now = time.time() if now is None else now
    sensors = config.sensors
    signed_in = db.execute("SELECT count(*) FROM visits WHERE signed_out_at IS NULL").fetchone()[0]
    motion = None
    if sensors.motion:
        motion = (
            db.execute(
                "SELECT 1 FROM sensor_events WHERE sensor LIKE 'motion%' AND kind = 'motion' "
                "AND at > ? LIMIT 1",
                [now - QUIET_MINUTES * 60],
            ).fetchone()
            is not None
        )
    if sensors.counter:
        counted = value_at(counter_series(db, config, now, now), now)
        recent_reset = any(reset_points(db, config, now - 86400, now))
        confidence = "high" if recent_reset else "medium"
        return Estimate(counted, "counter", confidence, signed_in, counted, motion)
    if motion and signed_in == 0:
        return Estimate(1, "motion", "low", signed_in, None, motion)
    return Estimate(signed_in, "signins", "medium", signed_in, None, motion)


def hourly(steps, hour_start: float) -> tuple[int, int]:
    """Peak people and person-minutes (the time-weighted mean times 60) in an hour."""
    return between(steps, hour_start, hour_start + 3600)


def area(steps, start: float, end: float) -> float:
    """Person-seconds from `start` to `end`, from (time, people) steps."""
    current, last, total = value_at(steps, start), start, 0.0
    for at, people in steps:
        if at <= start:
            continue
        if at >= end:
            break
        total += current * (at - last)
        current, last = people, at
    return total + current * (end - last)


def between(steps, start: float, end: float) -> tuple[int, int]:
    """Peak people and person-minutes from `start` to `end`, from (time, people) steps."""
    current = value_at(steps, start)
    peak, area, last = current, 0.0, start
    for at, people in steps:
        if at <= start:
            continue
        if at >= end:
            break
        area += current * (at - last)
        current, last = people, at
        peak = max(peak, people)
    area += current * (end - last)
    return peak, round(area / 60)
