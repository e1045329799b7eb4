"""The space's sensors as gpiozero devices, named in the space's own terms."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gpiozero import DigitalInputDevice, MotionSensor

from sensors.doorway import Doorway

Report = Callable[[str, str], None]  # (kind, detail) -> None; must return at once


class DoorContact(DigitalInputDevice):
    """A reed switch: contact closed (active) means the door is shut."""

    def __init__(
        self, pin, *, pull_up: bool = True, bounce_time: float | None = 0.05, pin_factory=None
    ):
        super().__init__(pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory)

    @property
    def is_open(self) -> bool:
        return not self.is_active

    @property
    def when_opened(self):
        return self.when_deactivated

    @when_opened.setter
    def when_opened(self, value):
        self.when_deactivated = value

    @property
    def when_closed(self):
        return self.when_activated

    @when_closed.setter
    def when_closed(self, value):
        self.when_activated = value


class Beam(DigitalInputDevice):
    """One IR break-beam: the receiver pulls the pin low (active) while the beam is broken."""

    def __init__(
        self, pin, *, pull_up: bool = True, bounce_time: float | None = None, pin_factory=None
    ):
        super().__init__(pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory)

    @property
    def is_broken(self) -> bool:
        return self.is_active


class PeopleCounter:
    """Two beams across the doorway, read by edge callbacks (a brisk walker breaks a beam
    for less than a polling interval) and decoded by sensors.doorway.Doorway."""

    def __init__(self, beam_a: Beam, beam_b: Beam, on_crossing: Report, clock=time.monotonic):
        self.a, self.b = beam_a, beam_b
        self.clock = clock
        self.on_crossing = on_crossing
        self._lock = threading.Lock()
        self.doorway = Doorway()
        self.doorway.broken = {"a": beam_a.is_broken, "b": beam_b.is_broken}
        beam_a.when_activated = lambda: self._edge("a", True)
        beam_a.when_deactivated = lambda: self._edge("a", False)
        beam_b.when_activated = lambda: self._edge("b", True)
        beam_b.when_deactivated = lambda: self._edge("b", False)

    def _edge(self, beam: str, broken: bool) -> None:
        with self._lock:  # edges of the two pins may arrive on two threads
            outcomes = self.doorway.edge(beam, broken, self.clock())
        for outcome in outcomes:
            self.on_crossing(outcome, "")

    def close(self) -> None:
        self.a.close()
        self.b.close()


def motion_sensor(pin, *, pull_up: bool = False, pin_factory=None) -> MotionSensor:
    """A PIR sensor; its queue smooths the odd spurious sample."""
    return MotionSensor(pin, pull_up=pull_up, queue_len=1, sample_rate=10, pin_factory=pin_factory)
