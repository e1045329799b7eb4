"""The sensors daemon: gpiozero callbacks enqueue, one writer thread commits in batches."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from gpiozero import GPIOZeroError

from sensors.devices import Beam, DoorContact, PeopleCounter, motion_sensor
from spacekiosk.config import SpaceConfig
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.service import notify, watchdog_interval

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.5
BATCH_MAX = 500


@dataclass(frozen=True)
class Event:
    at: float
    sensor: str
    kind: str
    value: int | None = None


class EventWriter:
    """The only writer of sensor_events; callbacks hand it events through a queue."""

    def __init__(self, db):
        self.db = db
        self.queue: queue.Queue[Event | None] = queue.Queue()
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="sensor-writer", daemon=True)

    def put(self, sensor: str, kind: str, value: int | None = None) -> None:
        self.queue.put(Event(time.time(), sensor, kind, value))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Flush what is queued and stop; called on SIGTERM."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[Event] = []
            item = self.queue.get()
            deadline = time.monotonic() + BATCH_SECONDS
            while item is not None:
                batch.append(item)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
            done = item is None
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[Event]) -> None:
        try:
            with write(self.db):
                self.db.conn.executemany(
                    "INSERT INTO sensor_events (at, sensor, kind, value) VALUES (?, ?, ?, ?)",
                    [(e.at, e.sensor, e.kind, e.value) for e in batch],
                )
            self.written += len(batch)
        except Exception:
            log.exception("could not store %d sensor event(s)", len(batch))


class Sensors:
    """Every sensor the config names, wired to the writer; a context manager."""

    def __init__(
        self, config: SpaceConfig, writer: EventWriter, pin_factory=None, clock=time.monotonic
    ):
        cfg = config.sensors
        self.devices: list = []
        self.counter: PeopleCounter | None = None
        if cfg.door:
            door = DoorContact(
                cfg.door.pin,
                pull_up=cfg.door.pull_up,
                bounce_time=cfg.door.bounce_ms / 1000 or None,
                pin_factory=pin_factory,
            )
            door.when_opened = lambda: writer.put("door", "open")
            door.when_closed = lambda: writer.put("door", "close")
            self.devices.append(door)
        for m in cfg.motion:
            pir = motion_sensor(m.pin, pull_up=m.pull_up, pin_factory=pin_factory)
            name = f"motion:{m.location}"
            pir.when_motion = lambda name=name: writer.put(name, "motion")
            pir.when_no_motion = lambda name=name: writer.put(name, "still")
            self.devices.append(pir)
        if cfg.counter:
            bounce = cfg.counter.bounce_ms / 1000 or None
            a = Beam(
                cfg.counter.beam_a,
                pull_up=cfg.counter.pull_up,
                bounce_time=bounce,
                pin_factory=pin_factory,
            )
            b = Beam(
                cfg.counter.beam_b,
                pull_up=cfg.counter.pull_up,
                bounce_time=bounce,
                pin_factory=pin_factory,
            )
            self.counter = PeopleCounter(
                a, b, lambda kind, _: writer.put("counter", kind), clock=clock
            )
            self.devices += [a, b]

    def __enter__(self) -> Sensors:
        return self

    def __exit__(self, *exc) -> None:
        for device in self.devices:
            device.close()


def run(
    config: SpaceConfig,
    stopping: threading.Event,
    simulate: bool = False,
    seed: int | None = None,
    speed: float = 1.0,
) -> int:
    """Read the sensors until SIGTERM; with `simulate`, drive mock pins with foot traffic."""
    factory = None
    if simulate:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    db = open_store(config.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    simulator = None
    try:
        try:
            sensors = Sensors(config, writer, pin_factory=factory)
        except GPIOZeroError as exc:
            log.error(
                "cannot open the GPIO pins: %s. On a Raspberry Pi, install python3-lgpio "
                "and add the service user to the gpio group; elsewhere run "
                "`spacekiosk sensors --simulate`.",
                exc,
            )
            return 1
        with sensors:
            if simulate:
                from sensors.simulate import FootTraffic

                simulator = FootTraffic(config, factory, seed=seed, speed=speed)
                simulator.start()
            log.info("sensors running (%s)", "simulated" if simulate else "GPIO")
            notify("READY=1")
            watchdog = watchdog_interval()
            while not stopping.wait(watchdog or 3600):
                if writer.thread.is_alive():  # a dead writer must not look healthy
                    notify("WATCHDOG=1")
            notify("STOPPING=1")
            if simulator:
                simulator.stop()
    finally:
        writer.stop()
        db.close()
    log.info("sensors stopped; %d event(s) stored", writer.written)
    return 0
