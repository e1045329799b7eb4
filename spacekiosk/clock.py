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

from spacekiosk import BUILD_DATE, EARLIEST

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

    def params(self, after_id: int) -> dict[str, float | int]:
        """The named parameters of an UPDATE that moves the flagged times it covers, in
        rows after `after_id` (those of the process that took them)."""
        return {
            "start": self.start,
            "end": self.end,
            "offset": self.offset,
            "synced": int(self.synced),
            "after_id": after_id,
        }


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


def boot_id() -> str:
    """This boot's id: a monotonic reading means something only within the boot it is of."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Reckoning:
    """The latest time this Pi can vouch for — what decides that an hour is over.

    - A wall clock that can be trusted (`state()` is not 'unsynchronized') and runs with
      the monotonic clock is the time; it is the anchor, kept as (wall - monotonic) with
      the boot it belongs to, so that the agent started again in the same boot keeps it.
    - A wall clock that jumps *ahead* of the anchor carried forward by the monotonic clock
      (by more than JUMP_SECONDS) is believed only once timesyncd vouches for it: it
      touches its `synchronized` file on every synchronisation, so a touch later than the
      reckoned time was made on the new clock. Until then the time is the anchor carried
      forward, whatever the wall clock says (set by hand, a wrong real-time clock).
    - A clock that jumps back is believed at once: the earlier time is the safe one.
    - With no anchor in this boot and a clock that cannot be trusted, the time is the last
      trusted reading on record (from any boot), or the build date on a first boot:
      nothing later is known to have happened.

    So the time it gives is never ahead of the true time by more than the last trusted
    reading was. `record` is what to keep for the next start; `changed` says it moved.
    Thread-safe.
    """

    def __init__(
        self,
        record: dict | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timesync: Path = TIMESYNC,
        boot: str | None = None,
    ):
        self.wall, self.monotonic, self.timesync = wall, monotonic, timesync
        self.boot = boot_id() if boot is None else boot
        record = record or {}
        same_boot = record.get("boot") == self.boot and self.boot != ""
        self._offset: float | None = record.get("offset") if same_boot else None
        self._floor: float | None = record.get("at")
        self._lock = threading.Lock()
        self._doubting = False  # the clock is ahead of the reckoning, and said so
        self.changed = False

    @property
    def record(self) -> dict:
        with self._lock:
            return {"boot": self.boot, "offset": self._offset, "at": self._floor}

    def now(self) -> float:
        with self._lock:
            wall, mono = self.wall(), self.monotonic()
            trusted = state(wall, self.timesync) != "unsynchronized"
            if self._offset is not None:
                reckoned = mono + self._offset
                if wall - reckoned > JUMP_SECONDS and not self._vouched(reckoned):
                    if not self._doubting:
                        self._doubting = True
                        log.warning(
                            "the clock reads %+.0f s ahead of its last trusted reading; "
                            "hours are judged over by that reading, carried forward, "
                            "until timesyncd vouches for the clock",
                            wall - reckoned,
                        )
                    return reckoned
                self._doubting = False
                if not trusted:
                    return min(wall, reckoned)
            elif not trusted:
                return min(wall, self._floor or EARLIEST)
            if self._offset is None or abs(wall - mono - self._offset) > JUMP_SECONDS:
                log.info("hours are judged over by the wall clock, as of %s", _iso(wall))
                self._floor, self.changed = wall, True
            self._offset = wall - mono  # small drift is followed without a record
            return wall

    def _vouched(self, reckoned: float) -> bool:
        try:
            return (self.timesync / "synchronized").stat().st_mtime > reckoned
        except OSError:
            return False


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
