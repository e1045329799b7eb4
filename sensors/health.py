"""Whether each sensor can be trusted: stuck, blocked or flickering pins, and a door
left open.

A sensor is **faulty** when it has been in its active state (a door open, a PIR in
motion, a beam broken) for longer than anything real keeps it there, or when its pin
changes faster than anything real can make it (FLICKER_SECONDS). It is **ok** again once
it lets go, or has been calm for CALM_SECONDS. Each change is reported once, as a
"fault" (with the reason) or an "ok" event; the door also reports an "alert" when it has
stood open too long.

Pin callbacks only call `Health.edge()`, which appends a time to a short deque; the
durations are checked by one thread that wakes every `check_every` seconds, so idle
sensors cost nothing. Durations come from a monotonic `clock` (the Pi's wall clock can
jump when it syncs): tests pass their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from spacekiosk import config
from spacekiosk.sensorstate import ALERT, BEAMS, FAULT, OK, motion_name

log = logging.getLogger(__name__)

FLICKER_SECONDS = 5.0  # a sensor's flicker_edges changes within this many seconds: flicker
CALM_SECONDS = 120.0  # without flicker for this long, a flickering sensor is ok again
CHECK_SECONDS = 15.0  # how often the stuck, blocked and open-door checks run

STUCK, FLICKER, EARLIER = "stuck", "flicker", "earlier"  # why a sensor is faulty

Report = Callable[[str, str, str | None], None]  # (sensor, kind, detail); must not block


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@dataclass
class Watch:
    """One sensor's recent behaviour, and the limits it is held to."""

    name: str
    stuck_after: float  # seconds in the active state before it counts as stuck
    stuck_reason: str
    flicker_edges: int
    alert_after: float | None = None  # seconds active before an "alert" (the door)
    alert_reason: str = ""
    active_since: float | None = None
    edges: deque = field(default_factory=deque)
    flickered_at: float | None = None
    alerted: bool = False
    fault: str | None = None  # the reason, while faulty
    cause: str | None = None  # STUCK, FLICKER or EARLIER (faulty before a restart)

    def __post_init__(self) -> None:
        self.edges = deque(maxlen=self.flicker_edges)

    def edge(self, active: bool, now: float) -> bool:
        """Note one change of the pin; True if that change makes it a flicker."""
        if not active:
            self.active_since, self.alerted = None, False
        elif self.active_since is None:
            self.active_since = now
        self.edges.append(now)
        if len(self.edges) == self.flicker_edges and now - self.edges[0] <= FLICKER_SECONDS:
            self.flickered_at = now
            return True
        return False

    def stuck(self, now: float) -> bool:
        return self.active_since is not None and now - self.active_since >= self.stuck_after

    def check(self, now: float) -> list[tuple[str, str | None]]:
        """The events due now: an alert, a fault or a recovery."""
        due: list[tuple[str, str | None]] = []
        if (
            self.alert_after is not None
            and self.active_since is not None
            and not self.alerted
            and now - self.active_since >= self.alert_after
        ):
            self.alerted = True
            due.append((ALERT, self.alert_reason))
        if self.fault is None and self.stuck(now):
            self.fault, self.cause = self.stuck_reason, STUCK
            due.append((FAULT, self.fault))
        elif self.fault is not None and self._recovered(now):
            self.fault = self.cause = None
            due.append((OK, None))
        return due

    def _recovered(self, now: float) -> bool:
        if self.stuck(now):
            return False
        if self.flickered_at is not None and now - self.flickered_at < CALM_SECONDS:
            return False
        # A fault from before a restart: its cause is not known, so the sensor must have
        # been calm for a while and be at rest.
        return self.cause != EARLIER or self.active_since is None


def watches(cfg: config.Sensors) -> list[Watch]:
    """A watch for each sensor the config names, under the name its events are stored as."""
    found = []
    if cfg.door:
        d = cfg.door
        found.append(
            Watch(
                "door",
                stuck_after=d.fault_open_hours * 3600,
                stuck_reason=(
                    f"open without a break for over {_span(d.fault_open_hours * 3600)}; "
                    "a cut wire or a magnet that fell off reads as open"
                ),
                flicker_edges=d.flicker_edges,
                alert_after=d.open_alert_minutes * 60,
                alert_reason=f"open for over {_span(d.open_alert_minutes * 60)}",
            )
        )
    for m in cfg.motion:
        found.append(
            Watch(
                motion_name(m),
                stuck_after=m.stuck_hours * 3600,
                stuck_reason=(
                    f"motion without a break for over {_span(m.stuck_hours * 3600)}; "
                    "stuck on, or aimed at a heater, a fan or a curtain"
                ),
                flicker_edges=m.flicker_edges,
            )
        )
    if cfg.counter:
        c = cfg.counter
        for beam in BEAMS:
            found.append(
                Watch(
                    beam,
                    stuck_after=c.blocked_minutes * 60,
                    stuck_reason=(
                        f"broken without a break for over {_span(c.blocked_minutes * 60)}; "
                        "blocked, or knocked out of line"
                    ),
                    flicker_edges=c.flicker_edges,
                )
            )
    return found


class Health:
    """Watches every sensor and reports faults, recoveries and alerts through `report`.

    A flickering sensor's own changes are noise: `on_trust(name, False)` is called (on
    the pin's thread) the moment it is caught flickering, and `on_trust(name, True)` (on
    the check thread) once it is ok again. A stuck or blocked sensor is still trusted:
    it makes no changes, and the one that ends the fault is real.
    """

    def __init__(
        self,
        report: Report,
        clock: Callable[[], float] = time.monotonic,
        check_every: float = CHECK_SECONDS,
        on_trust: Callable[[str, bool], None] | None = None,
    ):
        self.report = report
        self.clock = clock
        self.check_every = check_every
        self.on_trust = on_trust
        self.watches: dict[str, Watch] = {}
        self._lock = threading.Lock()  # pin threads and the check thread share the watches
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sensor-health", daemon=True)

    def add(
        self, watch: Watch, active: bool, fault: str | None = None, alerted: bool = False
    ) -> None:
        """Watch a sensor that is `active` now; `fault` is the reason it was faulty before
        a restart (it stays faulty until it behaves); `alerted`: its alert is already out."""
        now = self.clock()
        watch.active_since = now if active else None
        watch.alerted = alerted and active
        if fault is not None:
            watch.fault, watch.cause, watch.flickered_at = fault, EARLIER, now
        with self._lock:
            self.watches[watch.name] = watch

    def edge(self, name: str, active: bool) -> bool:
        """A pin changed (called from its callback, so kept short). Returns False while the
        sensor is flickering: its own events are then not worth storing."""
        now = self.clock()
        with self._lock:
            watch = self.watches[name]
            fault = None
            if watch.edge(active, now) and watch.cause != FLICKER:
                fault = f"flickering: {watch.flicker_edges} changes within "
                fault += _span(FLICKER_SECONDS)
                watch.fault, watch.cause = fault, FLICKER
            trusted = watch.cause != FLICKER
        if fault:
            self._announce(name, FAULT, fault)
            if self.on_trust:
                self.on_trust(name, False)
        return trusted

    def check(self) -> None:
        """Raise the faults and alerts that are due, and clear the faults that are over."""
        now = self.clock()
        due = []
        with self._lock:
            for watch in self.watches.values():
                flickered = watch.cause == FLICKER
                due += [(watch.name, kind, detail, flickered) for kind, detail in watch.check(now)]
        for name, kind, detail, flickered in due:
            self._announce(name, kind, detail)
            if kind == OK and flickered and self.on_trust:
                self.on_trust(name, True)

    def _announce(self, name: str, kind: str, detail: str | None) -> None:
        if kind == FAULT:
            log.warning("sensor %s is faulty: %s", name, detail)
        elif kind == OK:
            log.info("sensor %s is ok again", name)
        self.report(name, kind, detail)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.check_every):
            try:
                self.check()
            except Exception:  # a bad check must not end the checks for every sensor
                log.exception("the sensor health check failed")
