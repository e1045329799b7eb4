"""Closing time: visits still open when the space closes are signed out, marked as such."""

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
                except Exception:
                    log.exception("could not sign out visits at closing time; will retry")
                if stopping.wait(CHECK_SECONDS):
                    return
        finally:
            db.close()

    thread = threading.Thread(target=loop, name="closing-time", daemon=True)
    thread.start()
    return thread
