"""Whether the space is open now, and until when — from the opening hours and closed dates
of the config in effect (the file's, with what the local admins changed: see settings.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from spacekiosk.config import Event, Space, SpaceConfig

DAY = 86400


@dataclass(frozen=True)
class OpenState:
    is_open: bool
    change_at: datetime | None  # local time it closes (if open) or opens (if closed)
    all_day: bool = False  # open and not closing in the next 24 hours


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
    """Open or closed now, and when that changes. A span that runs into the next one (a
    day's "24:00" into the next day's "00:00", or past midnight) is one stretch: the
    space closes when the last of them ends, and a stretch that lasts another day or more
    is open all day."""
    # A span from yesterday may still be running; the week ahead is looked at as before.
    found = sorted({*spans(space, now - DAY), *spans(space, now)})
    for i, (opens, closes) in enumerate(found):
        if opens.timestamp() <= now < _end(closes):
            for later_opens, later_closes in found[i + 1 :]:
                if later_opens.timestamp() > _end(closes):
                    break
                closes = max(closes, later_closes, key=_end)
            if _end(closes) - now >= DAY:
                return OpenState(True, _at_end(closes), all_day=True)
            return OpenState(True, _at_end(closes))
        if now < opens.timestamp():
            return OpenState(False, opens)
    return OpenState(False, None)


def _end(closes: datetime) -> float:
    """When a span ends: "24:00" is kept as 23:59:59, and ends at the midnight after."""
    return closes.timestamp() + (1 if closes.time() == time(23, 59, 59) else 0)


def _at_end(closes: datetime) -> datetime:
    return datetime.fromtimestamp(_end(closes), closes.tzinfo)


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
