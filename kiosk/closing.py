"""Housekeeping in the kiosk process (the visits' one writer): visits still open when the
space closes are signed out and marked as such, and personal data past its retention
period is erased."""

from __future__ import annotations

import logging
import threading

from kiosk import visits
from spacekiosk.config import SpaceConfig
from spacekiosk.db import connect

log = logging.getLogger(__name__)

CHECK_SECONDS = 60


def run(config: SpaceConfig, stopping: threading.Event) -> threading.Thread:
    """Check once a minute, in a thread of the kiosk process (the visits' one writer)."""

    def loop():
        db = connect(config.database.path, busy_timeout_ms=config.database.busy_timeout_ms)
        try:
            while True:
                try:
                    if closed := visits.close_at_closing(db, config.space):
                        log.info("signed out %d visit(s) left open at closing time", closed)
                    if erased := visits.erase_expired(db, config.retention.days):
                        log.info(
                            "erased the names of %d visitor(s) past %d days",
                            erased,
                            config.retention.days,
                        )
                except Exception:
                    log.exception("housekeeping failed; will retry in a minute")
                if stopping.wait(CHECK_SECONDS):
                    return
        finally:
            db.close()

    thread = threading.Thread(target=loop, name="closing-time", daemon=True)
    thread.start()
    return thread
