"""Housekeeping in the kiosk process (the visits' one writer): visits still open when the
space closes are signed out and marked as such (closed_by 'closing'; see
`visits.auto_close_time`: at the first closing after the visit began, and a visit begun
after the day's last closing, or on a closed day, at the end of its local day, not days
later at the next opening's closing), personal data past its retention
period is erased, times taken before the clock was set are corrected once it is, and
raw rows the hourly counts no longer need are deleted.

- **Erased means gone from the files.** This connection zeroes what it deletes
  (`PRAGMA secure_delete`), and after an erasure the write-ahead log is checkpointed and
  cut to nothing (`db.scrub`), retried each check while readers hold it back; and once
  an hour anyway, for the admin pages' erasures.
- **Old raw rows go, never while the counts need them.** Sensor events older than
  `retention.sensor_events_days`, and erased visitors whose last visit is older than
  `retention.visits_days` (with their nameless visits), are deleted once an hour, but
  only before `hourly.needed_from()`: an hour not yet delivered, or one the sync agent
  may still recompute, keeps everything it is counted from. The latest event of each
  sensor and kind stays whatever its age: the door's state and each sensor's health read
  back from it. The sensors daemon only ever adds events; deleting old ones is done here.
  Deleting goes in batches, so a sign-in waits at most one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from kiosk import visits
from spacekiosk import hourly, settings
from spacekiosk.clock import Watch
from spacekiosk.config import SpaceConfig
from spacekiosk.db import connect, scrub, write

log = logging.getLogger(__name__)

CHECK_SECONDS = 60
CLOCK_SECONDS = 5.0  # how often to ask whether the clock has been set
PRUNE_SECONDS = 3600  # how often to look for raw rows the counts no longer need
PRUNE_BATCH = 2000  # rows per transaction
PRUNE_TURN_SECONDS = 2.0  # deleting per check; years of old events take a few checks
# Between batches: a lock let go is not handed over, and this thread would take it again
# before a sign-in waiting for it woke up.
PRUNE_PAUSE_SECONDS = 0.02
DAY = 86400


def run(
    config: SpaceConfig,
    stopping: threading.Event,
    clock: Watch | None = None,
    tick: float = CLOCK_SECONDS,
) -> threading.Thread:
    """Check once a minute, in a thread of the kiosk process (the visits' one writer);
    with `clock` (the Watch the sign-ins are stamped with), check it every `tick` seconds.
    The minutes and hours are the clock's: a test that moves its Watch moves them too."""
    db = connect(config.database.path, busy_timeout_ms=config.database.busy_timeout_ms)
    db.execute("PRAGMA secure_delete = ON")  # whatever the SQLite build's default
    # Visits above this id are this process's own: the only ones its clock can correct.
    after_id = db.execute("SELECT coalesce(max(id), 0) FROM visits").fetchone()[0]
    monotonic = clock.monotonic if clock else time.monotonic

    def loop():
        due = _Due()
        try:
            while True:
                try:
                    if clock and (corrected := visits.correct_clock(db, clock, after_id)):
                        fix, moved = corrected
                        log.info(
                            "the clock was set: %d visit(s) taken before moved by %+.1f s%s",
                            moved,
                            fix.offset,
                            "" if fix.synced else " (the clock is still not synchronized)",
                        )
                    if monotonic() >= due.check:
                        due.check = monotonic() + CHECK_SECONDS
                        # The hours and retention in effect: an admin may have changed them.
                        _housekeep(db, settings.effective(db, config), clock, due, monotonic())
                except Exception:
                    log.exception("housekeeping failed; will retry")
                if stopping.wait(tick if clock else CHECK_SECONDS):
                    return
        finally:
            db.close()

    thread = threading.Thread(target=loop, name="closing-time", daemon=True)
    thread.start()
    return thread


@dataclass
class _Due:
    """What the loop has still to do, and when (on its monotonic clock)."""

    check: float = 0.0
    prune: float = 0.0
    scrub: bool = False  # an erasure's old pages may still be in the write-ahead log


def _housekeep(db, config: SpaceConfig, clock: Watch | None, due: _Due, mono: float) -> None:
    # The time comes from the clock's watch: should the clock jump right after the
    # correction, it is still on the clock the stored times are on.
    now = clock.now()[0] if clock else time.time()
    if closed := visits.close_at_closing(db, config.space, now=now):
        log.info("signed out %d visit(s) left open at closing time", closed)
    if erased := visits.erase_expired(db, config.retention.days, now=now):
        log.info("erased the names of %d visitor(s) past %d days", erased, config.retention.days)
        due.scrub = True
    if mono >= due.prune:
        gone = prune(db, config, now)
        # Left unfinished (years of events at the first run): go on at the next check.
        due.prune = mono + (PRUNE_SECONDS if gone.done else 0)
        if gone.events or gone.visitors:
            log.info(
                "deleted %d sensor event(s) and %d erased visitor(s) with %d visit(s) that "
                "the hourly counts no longer need",
                gone.events,
                gone.visitors,
                gone.visits,
            )
        # Hourly, whatever was deleted: the log gives the space back, and an admin's
        # erasure whose own scrub readers held back leaves it within the hour.
        due.scrub = True
    if due.scrub:
        due.scrub = not scrub(db)


@dataclass(frozen=True)
class Pruned:
    events: int = 0
    visitors: int = 0
    visits: int = 0
    done: bool = True  # False: more is due, the turn ran out


def prune(db, config: SpaceConfig, now: float, turn: float = PRUNE_TURN_SECONDS) -> Pruned:
    """Delete, in batches for at most `turn` seconds, the raw rows past their keeping
    period that the hourly counts no longer need (see the module's docstring)."""
    needed = hourly.needed_from(db, config, now)
    if needed is None:
        return Pruned()  # no hour has been counted yet: everything is still needed
    keep = config.retention
    events_before = min(now - keep.sensor_events_days * DAY, needed)
    visits_before = min(now - keep.visits_days * DAY, needed)
    deadline = time.monotonic() + turn
    events = visitors = gone_visits = 0
    while True:
        batch = _old_events(db, events_before)
        events += batch
        if batch < PRUNE_BATCH:
            break
        if time.monotonic() >= deadline:
            return Pruned(events, visitors, gone_visits, done=False)
        time.sleep(PRUNE_PAUSE_SECONDS)
    while True:
        people, batch = _old_visitors(db, visits_before)
        visitors, gone_visits = visitors + people, gone_visits + batch
        if people < PRUNE_BATCH:
            return Pruned(events, visitors, gone_visits)
        if time.monotonic() >= deadline:
            return Pruned(events, visitors, gone_visits, done=False)
        time.sleep(PRUNE_PAUSE_SECONDS)


def _old_events(db, before: float) -> int:
    """Delete one batch of sensor events older than `before`, each but the latest of its
    sensor and kind. Returns how many went."""
    with write(db):
        return db.execute(
            """DELETE FROM sensor_events WHERE id IN (
                 SELECT e.id FROM sensor_events e WHERE e.at < :before
                 AND EXISTS (SELECT 1 FROM sensor_events n WHERE n.sensor = e.sensor
                             AND n.kind = e.kind AND n.at >= e.at
                             AND (n.at > e.at OR n.id > e.id))
                 ORDER BY e.at LIMIT :batch)""",
            {"before": before, "batch": PRUNE_BATCH},
        ).rowcount


def _old_visitors(db, before: float) -> tuple[int, int]:
    """Delete one batch of erased visitors (nameless already) first seen before `before`
    and with no visit at or after it, and their visits; a visit a roll-call lists stays,
    and so does its visitor. Returns how many visitors and visits went."""
    with write(db):
        ids = [
            visitor_id
            for (visitor_id,) in db.execute(
                """SELECT id FROM visitors WHERE handle IS NULL AND created_at < :before
                   AND id NOT IN (
                       SELECT visitor_id FROM visits WHERE signed_in_at >= :before
                       UNION ALL SELECT visitor_id FROM visits WHERE signed_out_at >= :before
                       UNION ALL SELECT visitor_id FROM visits WHERE signed_out_at IS NULL
                       UNION ALL SELECT v.visitor_id FROM roll_call_people r
                                 JOIN visits v ON v.id = r.visit_id)
                   LIMIT :batch""",
                {"before": before, "batch": PRUNE_BATCH},
            )
        ]
        if not ids:
            return 0, 0
        marks = ", ".join("?" * len(ids))
        gone = db.execute(
            f"DELETE FROM visits WHERE signed_in_at < ? AND visitor_id IN ({marks})",  # noqa: S608
            [before, *ids],
        ).rowcount
        db.execute(f"DELETE FROM visitors WHERE id IN ({marks})", ids)  # noqa: S608
    return len(ids), gone
