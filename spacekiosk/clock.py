"""Whether the system clock can be trusted: a Pi has no real-time clock.

At boot a Pi's clock reads 1970, or fake-hwclock's last save (which can be behind);
later systemd-timesyncd sets it, in one jump, and creates
/run/systemd/timesync/synchronized. A `Watch` hands a writer its times with a flag that
says whether they can be trusted, and tells it how to correct the untrusted ones once
the clock has been set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spacekiosk import BUILD_DATE

log = logging.getLogger(__name__)

TIMESYNC = Path("/run/systemd/timesync")
JUMP_SECONDS = 2.0  # a change of (wall - monotonic) beyond this is the clock being set


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


@dataclass(frozen=True)
class Correction:
    """Times a Watch handed out untrusted, from `start` to `end` (both included, on the old
    clock), are `offset` seconds off. `synced`: the clock they move to can be trusted;
    if not (it jumped but is not synchronized yet), they stay flagged after the move."""

    offset: float
    start: float
    end: float
    synced: bool


class Watch:
    """The wall clock, watched against the monotonic one for one writing process.

    `now()` gives the time to store and whether it can be trusted, and remembers the
    span of the untrusted times it gave. `check()`, called every few seconds, returns the
    Correction for them once the clock has jumped (by more than JUMP_SECONDS) or become
    trusted, else None. Between a jump and the check() that reports it, now() keeps
    giving old-clock times, flagged untrusted, so that the correction moves them too.

    A time is trusted unless `state()` says 'unsynchronized': 'unknown' (no timesyncd,
    as on a laptop or in CI) is trusted. Thread-safe.
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timesync: Path = TIMESYNC,
    ):
        self.wall, self.monotonic, self.timesync = wall, monotonic, timesync
        self._lock = threading.Lock()
        self._base = wall() - monotonic()  # wall - monotonic at creation or the last check
        self._span: tuple[float, float] | None = None  # untrusted times given, on that clock

    def _read(self) -> tuple[float, bool]:
        mono = self.monotonic()
        wall = self.wall()
        if abs(wall - mono - self._base) > JUMP_SECONDS:  # set since the last check()
            return mono + self._base, False
        return wall, state(wall, self.timesync) != "unsynchronized"

    def trusted(self) -> bool:
        """Whether a time taken now can be trusted."""
        with self._lock:
            return self._read()[1]

    def now(self) -> tuple[float, bool]:
        """The time to store now, and whether it can be trusted."""
        with self._lock:
            at, trusted = self._read()
            if not trusted:
                first, last = self._span or (at, at)
                self._span = (min(first, at), max(last, at))
            return at, trusted

    def check(self) -> Correction | None:
        """The correction due for the untrusted times given so far, if the clock has been
        set (it jumped) or can be trusted now; None otherwise."""
        with self._lock:
            mono = self.monotonic()
            wall = self.wall()
            jump = wall - mono - self._base  # new - old wall time for the same instant
            jumped = abs(jump) > JUMP_SECONDS
            offset = jump if jumped else 0.0  # below that, drift: absorbed into the base
            self._base = wall - mono
            trusted = state(wall, self.timesync) != "unsynchronized"
            if self._span is None:
                if jumped:
                    log.warning("the clock was set %+.1f s; the times before were trusted", jump)
                return None
            if not (jumped or trusted):
                return None
            start, end = self._span
            # Still untrusted after a jump: the moved times join the ones still to come.
            self._span = None if trusted else (start + offset, end + offset)
            return Correction(offset, start, end, trusted)
