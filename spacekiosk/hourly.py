"""The hourly counts as the sync agent stored them, and how far back they still need the
raw rows they are computed from. Read-only.

A read model: the sync agent writes `buckets`, `outbox` and `day_outbox`; the kiosk reads
them through here, for the admins' CSV of hourly counts and for its housekeeping, which
deletes old raw rows (sensor events, erased visitors' visits) only before `needed_from()`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from sqlite_utils import Database

from spacekiosk import occupancy
from spacekiosk.config import SpaceConfig

HOUR, DAY = 3600, 86400
# How far before an hour the agent reads to count it: the counter's running total starts
# from the last time the space was surely empty, and a PIR's or a fault's state is carried
# in from its last event, each looked for up to a week back.
LOOKBACK = occupancy.LOOKBACK_DAYS * DAY


def rows(db: Database, since: float, until: float) -> Iterator[tuple[int, dict]]:
    """(hour_start, counts) of every stored hour in [since, until), oldest first."""
    for hour, counts in db.execute(
        "SELECT hour_start, counts FROM buckets WHERE hour_start >= ? AND hour_start < ? "
        "ORDER BY hour_start",
        [since, until],
    ):
        yield hour, json.loads(counts)


def needed_from(db: Database, config: SpaceConfig, now: float) -> float | None:
    """The earliest time whose raw rows the hourly counts may still need, or None when
    nothing may go (the agent has stored no hour yet, so none is counted).

    Needed: everything the agent may still recompute (`sync.recompute_days` back from now,
    and from its newest stored hour, should it have stopped), everything from the oldest
    hour or day not yet delivered, and LOOKBACK before the earliest of those.
    """
    newest = db.execute("SELECT max(hour_start) FROM buckets").fetchone()[0]
    if newest is None:
        return None
    (unsent,) = db.execute(
        """SELECT min(start) FROM (
           SELECT min(hour_start) AS start FROM outbox
           UNION ALL SELECT min(day_start) FROM day_outbox WHERE delivered_version < version)"""
    ).fetchone()
    recompute = config.sync.recompute_days * DAY
    earliest = min(newest, now) - recompute
    if unsent is not None:
        earliest = min(earliest, unsent)
    return (earliest // HOUR) * HOUR - LOOKBACK
