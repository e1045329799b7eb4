"""Housekeeping in the kiosk process (the visits' one writer): visits still open when the
space closes are signed out and marked as such, personal data past its retention
period is erased, and times taken before the clock was set are corrected once it is."""

from __future__ import annotations

import logging
import threading
import time

from kiosk import visits
from spacekiosk import settings
from spacekiosk.clock import Watch
from spacekiosk.config import SpaceConfig
from spacekiosk.db import connect

log = logging.getLogger(__name__)

CHECK_SECONDS = 60
CLOCK_SECONDS = 5.0  # how often to ask whether the clock has been set


def run(
    config: SpaceConfig,
    stopping: threading.Event,
    clock: Watch | None = None,
    tick: float = CLOCK_SECONDS,
) -> threading.Thread:
    """Check once a minute, in a thread of the kiosk process (the visits' one writer);
    with `clock` (the Watch the sign-ins are stamped with), check it every `tick` seconds."""
    db = connect(config.database.path, busy_timeout_ms=config.database.busy_timeout_ms)
    # Visits above this id are this process's own: the only ones its clock can correct.
    after_id = db.execute("SELECT coalesce(max(id), 0) FROM visits").fetchone()[0]

    def loop():
        due = 0.0
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
                    if time.monotonic() >= due:
                        due = time.monotonic() + CHECK_SECONDS
                        # The hours and retention in effect: an admin may have changed them.
                        _housekeep(db, settings.effective(db, config), clock)
                except Exception:
                    log.exception("housekeeping failed; will retry")
                if stopping.wait(tick if clock else CHECK_SECONDS):
                    return
        finally:
            db.close()

    thread = threading.Thread(target=loop, name="closing-time", daemon=True)
    thread.start()
    return thread


def _housekeep(db, config: SpaceConfig, clock: Watch | None) -> None:
    # The time comes from the clock's watch: should the clock jump right after the
    # correction, it is still on the clock the stored times are on.
    now = clock.now()[0] if clock else None
    if closed := visits.close_at_closing(db, config.space, now=now):
        log.info("signed out %d visit(s) left open at closing time", closed)
    if erased := visits.erase_expired(db, config.retention.days, now=now):
        log.info("erased the names of %d visitor(s) past %d days", erased, config.retention.days)
