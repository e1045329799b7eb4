"""Whether the system clock can be trusted: a Pi has no real-time clock."""

from __future__ import annotations

import time
from pathlib import Path

from spacekiosk import BUILD_DATE

TIMESYNC = Path("/run/systemd/timesync")


def state(now: float | None = None, timesync: Path = TIMESYNC) -> str:
    """'synchronized', 'unsynchronized' or 'unknown' (no systemd-timesyncd to ask)."""
    now = time.time() if now is None else now
    if time.strftime("%Y-%m-%d", time.gmtime(now)) < BUILD_DATE:
        return "unsynchronized"
    if (timesync / "synchronized").exists():
        return "synchronized"
    if timesync.is_dir():
        return "unsynchronized"
    return "unknown"
