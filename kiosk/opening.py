"""Whether the space is open now, and until when — from the opening hours in config."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spacekiosk.config import Event, Space, SpaceConfig


@dataclass(frozen=True)
class OpenState:
    is_open: bool
    change_at: datetime | None  # local time it closes (if open) or opens (if closed)


def state(space: Space, now: float) -> OpenState:
    zone = space.timezone
    local = datetime.fromtimestamp(now, UTC).astimezone(zone)
    for day in range(8):
        date = (local + timedelta(days=day)).date()
        for start, end in space.hours_on(date.weekday()):
            opens = datetime.combine(date, start, tzinfo=zone)
            closes = datetime.combine(date, end, tzinfo=zone)
            if opens <= local < closes:
                return OpenState(True, closes)
            if local < opens:
                return OpenState(False, opens)
    return OpenState(False, None)


def todays_event(config: SpaceConfig, now: float) -> Event | None:
    """The community event on today (local date), if the config lists one."""
    local = datetime.fromtimestamp(now, UTC).astimezone(config.space.timezone)
    today = local.date().isoformat()
    return next((e for e in config.events if e.date == today), None)
