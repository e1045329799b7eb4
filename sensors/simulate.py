"""Synthetic foot traffic on gpiozero's mock pins, for the demo and for trying things out.

Each visitor opens the door, walks through both beams and sets the PIR going; some leave
again later. The same seed gives the same day.
"""

from __future__ import annotations

import logging
import random
import threading

from spacekiosk.config import SpaceConfig

log = logging.getLogger(__name__)


class FootTraffic:
    """Drives mock pins the way people would; `speed` > 1 compresses time."""

    def __init__(
        self,
        config: SpaceConfig,
        factory,
        seed: int | None = None,
        speed: float = 1.0,
        mean_gap: float = 20.0,
    ):
        self.cfg = config.sensors
        self.factory = factory
        self.random = random.Random(seed)
        self.speed = speed
        self.mean_gap = mean_gap
        self.inside = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="foot-traffic", daemon=True)

    def prepare(self) -> None:
        """Put the pins at rest: door shut, beams clear, no motion."""
        if self.cfg.door:
            self._set(self.cfg.door.pin, self.cfg.door.pull_up, active=True)
        if self.cfg.counter:
            for pin in (self.cfg.counter.beam_a, self.cfg.counter.beam_b):
                self._set(pin, self.cfg.counter.pull_up, active=False)

    def start(self) -> None:
        self.prepare()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _sleep(self, seconds: float) -> bool:
        return self.stopping.wait(seconds / self.speed)

    def _set(self, pin: int, pull_up: bool, active: bool) -> None:
        # With a pull-up the device is active when the pin is pulled low.
        mock = self.factory.pin(pin)
        if active != pull_up:
            mock.drive_high()
        else:
            mock.drive_low()

    def next_visit(self) -> tuple[float, bool]:
        """Seconds until the next person, and whether they are leaving."""
        gap = self.random.expovariate(1 / self.mean_gap)
        return gap, self.inside > 0 and self.random.random() < 0.4

    def _run(self) -> None:
        while True:
            gap, leaving = self.next_visit()
            if self._sleep(gap):
                return
            self.walk(leaving)

    def walk(self, leaving: bool) -> None:
        """One person through the door, in or out."""
        door, counter = self.cfg.door, self.cfg.counter
        if door:
            self._set(door.pin, door.pull_up, active=False)
            self._sleep(0.6)
        if counter:
            first, second = (
                (counter.beam_b, counter.beam_a) if leaving else (counter.beam_a, counter.beam_b)
            )
            for pin, broken, pause in (
                (first, True, 0.15),
                (second, True, 0.2),
                (first, False, 0.15),
                (second, False, 0.3),
            ):
                self._set(pin, counter.pull_up, active=broken)
                self._sleep(pause)
        for motion in self.cfg.motion:
            self._set(motion.pin, motion.pull_up, active=True)
        if door:
            self._sleep(1.5)
            self._set(door.pin, door.pull_up, active=True)
        self._sleep(3)
        for motion in self.cfg.motion:
            self._set(motion.pin, motion.pull_up, active=False)
        self.inside += -1 if leaving else 1
