"""Whether the space is open now, and until when — from the opening hours and closed dates
of the config in effect (the file's, with what the local admins changed: see settings.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spacekiosk.config import Event, Space, SpaceConfig


@dataclass(frozen=True)
class OpenState:
    is_open: bool
    change_at: datetime | None  # local time it closes (if open) or opens (if closed)


def spans(space: Space, since: float) -> Iterator[tuple[datetime, datetime]]:
    """Opening spans (local opens, local closes) from the day of `since` on, for a week."""
    zone = space.timezone
    local = datetime.fromtimestamp(since, UTC).astimezone(zone)
    for day in range(8):
        date = (local + timedelta(days=day)).date()
        for start, end in space.hours_on_date(date):
            yield (
                datetime.combine(date, start, tzinfo=zone),
                datetime.combine(date, end, tzinfo=zone),
            )


def open_intervals(space: Space, since: float, until: float) -> list[tuple[float, float]]:
    """When the space was open between since and until, as (opens, closes) UTC seconds."""
    found: set[tuple[float, float]] = set()
    start = since - 86400  # a span that began the day before may still be running
    while start < until:
        for opens, closes in spans(space, start):
            if opens.timestamp() < until and closes.timestamp() > since:
                found.add((max(opens.timestamp(), since), min(closes.timestamp(), until)))
        start += 7 * 86400
    return sorted(found)


def state(space: Space, now: float) -> OpenState:
    for opens, closes in spans(space, now):
        if opens.timestamp() <= now < closes.timestamp():
            return OpenState(True, closes)
        if now < opens.timestamp():
            return OpenState(False, opens)
    return OpenState(False, None)


def closing_time(space: Space, started: float) -> float | None:
    """When the opening span a visit began in ends (or the next one, if it began while
    the space was closed); None when the space has no opening hours at all."""
    return next((c.timestamp() for _o, c in spans(space, started) if c.timestamp() > started), None)


def todays_event(config: SpaceConfig, now: float) -> Event | None:
    """The community event on today (local date), if the config lists one; of several,
    the one on now or next, else the day's last."""
    local = datetime.fromtimestamp(now, UTC).astimezone(config.space.timezone)
    today = [e for e in upcoming(config, now) if e.date == local.date().isoformat()]
    clock = local.time()
    return next((e for e in today if not e.hours or e.hours[-1][1] > clock), None) or (
        today[-1] if today else None
    )


def upcoming(config: SpaceConfig, now: float) -> list[Event]:
    """Today's events (local date) and those after, by day and starting time."""
    today = datetime.fromtimestamp(now, UTC).astimezone(config.space.timezone).date().isoformat()
    return sorted((e for e in config.events if e.date >= today), key=_event_order)


def _event_order(event: Event) -> tuple:
    return (event.date, event.hours[0][0] if event.hours else datetime.min.time(), event.name)
