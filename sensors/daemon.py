"""The sensors daemon: gpiozero callbacks enqueue, one writer thread commits in batches.

A store that refuses writes (a full disk) stops nothing: the writer keeps the batch and
what arrives meanwhile in memory, says so once (log and systemd status), tries again
with backoff, and commits it all once there is space. Only a stop while the disk is
still full loses what is held, and says how much.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gpiozero import GPIOZeroError

from sensors import health
from sensors.devices import Beam, DoorContact, PeopleCounter, motion_sensor
from sensors.doorway import Doorway
from sensors.health import Health
from spacekiosk import clock, sensorstate, settings
from spacekiosk.config import SpaceConfig
from spacekiosk.db import StoreHealth, connect, open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.service import notify, status, watchdog_interval

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.5
BATCH_MAX = 500
CLOCK_SECONDS = 5.0  # how often the main loop asks whether the clock has been set
_MORE = object()  # a batch ended by its size or its time, not by a correction or the end


@dataclass(frozen=True)
class Event:
    at: float
    sensor: str
    kind: str
    value: int | None = None
    detail: str | None = None
    synced: bool = True  # False: taken before the clock was set


class EventWriter:
    """The only writer of sensor_events; callbacks hand it events through a queue.

    Events taken while the clock cannot be trusted are stored with clock_synced = 0;
    once `check_clock()` learns by how much the clock was off, the writer moves them, in
    one transaction, and marks them synced. Only this process's rows are moved: its
    clock window may overlap times stored by an earlier boot.
    """

    def __init__(self, db, clock_watch: clock.Watch | None = None, path=None):
        self.db = db
        self.store = StoreHealth(path or "the store", "the sensors daemon")
        self._stopping = threading.Event()  # no more waiting for space: the last try
        self.clock_watch = clock_watch or clock.Watch()
        self.after_id = db.execute("SELECT coalesce(max(id), 0) FROM sensor_events").fetchone()[0]
        self.queue: queue.Queue[Event | clock.Correction | None] = queue.Queue()
        self.written = 0
        self._stamping = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="sensor-writer", daemon=True)

    def put(
        self, sensor: str, kind: str, value: int | None = None, detail: str | None = None
    ) -> None:
        with self._stamping:  # a time and its place in the queue together: see check_clock()
            at, synced = self.clock_watch.now()
            self.queue.put(Event(at, sensor, kind, value, detail, synced))

    def check_clock(self) -> None:
        """Queue a correction if the clock has been set: it lands behind every event taken
        on the old clock, so the writer moves them all."""
        with self._stamping:
            if correction := self.clock_watch.check():
                self.queue.put(correction)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Flush what is queued and stop; called on SIGTERM."""
        self._stopping.set()
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            batch: list[Event] = []
            item = self.queue.get()
            deadline = time.monotonic() + BATCH_SECONDS
            while isinstance(item, Event):
                batch.append(item)
                item = _MORE
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if item is None:
                return
            if isinstance(item, clock.Correction):
                self._correct(item)

    def _persist(self, change: Callable[[], object]) -> bool:
        """Run one write transaction; while the store refuses it (a full disk), hold on
        and try again with backoff — events arriving meanwhile wait in the queue. False
        if it never went through (the stop came first) or failed for another reason."""
        while True:
            try:
                with write(self.db):
                    change()
            except sqlite3.OperationalError as exc:
                first = not self.store.failures
                delay = self.store.failed(exc)
                if first:
                    status(f"cannot write the store ({self.store.state}); events held in memory")
                if self._stopping.is_set():
                    return False
                self._stopping.wait(delay)  # a stop ends the wait: one last try
                continue
            except Exception:
                log.exception("could not write sensor events")
                return False
            failing = self.store.failures
            self.store.ok()
            if failing:
                status("running")
            return True

    def _commit(self, batch: list[Event]) -> None:
        rows = [(e.at, e.sensor, e.kind, e.value, e.detail, int(e.synced)) for e in batch]
        if self._persist(
            lambda: self.db.conn.executemany(
                "INSERT INTO sensor_events (at, sensor, kind, value, detail, clock_synced) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        ):
            self.written += len(batch)
        else:
            log.error("%d sensor event(s) were not stored", len(batch))

    def _correct(self, fix: clock.Correction) -> None:
        moved = []
        if not self._persist(
            lambda: moved.append(
                self.db.conn.execute(
                    "UPDATE sensor_events SET at = at + ?, clock_synced = ? "
                    "WHERE clock_synced = 0 AND id > ? AND at BETWEEN ? AND ?",
                    [fix.offset, int(fix.synced), self.after_id, fix.start, fix.end],
                ).rowcount
            )
        ):
            log.error("could not correct the times of sensor events by %+.1f s", fix.offset)
            return
        moved = moved[-1]
        log.info(
            "the clock was set: %d sensor event(s) taken before moved by %+.1f s%s",
            moved,
            fix.offset,
            "" if fix.synced else " (the clock is still not synchronized)",
        )


class WatchedCounter(PeopleCounter):
    """The people counter, deaf while a beam flickers: a flickering beam's edges are noise
    that could add up to crossings nobody made. A blocked beam is still heard: with one
    beam held broken the doorway can miss people but never invent them."""

    def __init__(self, beam_a: Beam, beam_b: Beam, on_crossing, health: Health, clock):
        self.health = health
        self.deaf: set[str] = set()  # the beams caught flickering
        super().__init__(beam_a, beam_b, on_crossing, clock=clock)

    def _edge(self, beam: str, broken: bool) -> None:
        self.health.edge(f"beam_{beam}", broken)  # may call pause(); before taking the lock
        if not self.deaf:
            super()._edge(beam, broken)

    def pause(self, beam: str) -> None:
        with self._lock:
            self.deaf.add(beam)
            self.doorway = Doorway()  # whoever was between the beams is lost

    def resume(self, beam: str) -> None:
        with self._lock:
            self.deaf.discard(beam)
            if not self.deaf:  # start again from the beams as they are now
                self.doorway = Doorway(broken={"a": self.a.is_broken, "b": self.b.is_broken})


class Sensors:
    """Every sensor the config names, wired to the writer and watched by Health; a
    context manager (entering starts the health checks, leaving stops them and closes
    the pins).

    With `store`, what it recorded before is read first: a door or PIR that changed
    while the daemon was down is recorded once, as it is now, and a sensor that was
    faulty stays so until it behaves.
    """

    def __init__(
        self,
        config: SpaceConfig,
        writer: EventWriter,
        pin_factory=None,
        clock=time.monotonic,
        store=None,
        check_every: float = health.CHECK_SECONDS,
    ):
        cfg = config.sensors
        now = time.time()
        before = sensorstate.health(store, config, now) if store else {}
        door_before = sensorstate.door(store, config, now) if store else None
        self.recorded = sensorstate.recorded(store, config, now) if store else {}
        self.writer = writer
        self.devices: list = []
        self.counter: WatchedCounter | None = None
        self.current: dict[str, Callable[[], str]] = {}  # the door's and PIRs' state now
        self._lock = threading.Lock()
        self.health = Health(self._report, clock, check_every, on_trust=self._trust)
        watches = {w.name: w for w in health.watches(cfg)}

        def watch(name: str, active: bool, alerted: bool = False) -> None:
            earlier = before.get(name)
            fault = None if not earlier or earlier["ok"] else earlier["reason"] or "faulty"
            self.health.add(watches[name], active, fault=fault, alerted=alerted)

        if cfg.door:
            door = DoorContact(
                cfg.door.pin,
                pull_up=cfg.door.pull_up,
                bounce_time=cfg.door.bounce_ms / 1000 or None,
                pin_factory=pin_factory,
            )
            watch("door", door.is_open, alerted=bool(door_before and door_before["alert"]))
            door.when_opened = lambda: self._change("door", "open", True)
            door.when_closed = lambda: self._change("door", "close", False)
            self.current["door"] = lambda: "open" if door.is_open else "close"
            self.devices.append(door)
        for m in cfg.motion:
            pir = motion_sensor(m.pin, pull_up=m.pull_up, pin_factory=pin_factory)
            name = sensorstate.motion_name(m)
            watch(name, pir.motion_detected)
            pir.when_motion = lambda name=name: self._change(name, "motion", True)
            pir.when_no_motion = lambda name=name: self._change(name, "still", False)
            self.current[name] = lambda pir=pir: "motion" if pir.motion_detected else "still"
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
            watch("beam_a", a.is_broken)
            watch("beam_b", b.is_broken)
            self.counter = WatchedCounter(
                a, b, lambda kind, _: writer.put("counter", kind), self.health, clock
            )
            self.devices += [a, b]
        for name in self.current:
            if name in self.recorded:  # the store knows it: catch up with what changed
                self._record(name)

    def _change(self, name: str, kind: str, active: bool) -> None:
        """A door or PIR callback: tell Health, and store the change unless it is noise."""
        try:
            if self.health.edge(name, active):
                self._record(name, kind)
        except Exception:  # a sensor's trouble must not reach the pin library's thread
            log.exception("sensor %s: could not handle a change", name)

    def _record(self, name: str, kind: str | None = None) -> None:
        with self._lock:
            kind = kind or self.current[name]()
            if self.recorded.get(name) != kind:  # a repeat is no change: never store twice
                self.recorded[name] = kind
                self.writer.put(name, kind)

    def _report(self, name: str, kind: str, detail: str | None) -> None:
        self.writer.put(name, kind, detail=detail)

    def _trust(self, name: str, trusted: bool) -> None:
        if self.counter and name in ("beam_a", "beam_b"):
            (self.counter.resume if trusted else self.counter.pause)(name[-1])
        elif trusted and name in self.current:
            self._record(name)  # its last stored state may be a flicker's

    def __enter__(self) -> Sensors:
        self.health.start()
        return self

    def __exit__(self, *exc) -> None:
        self.health.stop()
        for device in self.devices:
            device.close()


def run(
    config: SpaceConfig,
    stopping: threading.Event,
    simulate: bool = False,
    seed: int | None = None,
    speed: float = 1.0,
) -> int:
    """Read the sensors until SIGTERM; with `simulate`, drive mock pins with foot traffic.

    The pins and the sensors' thresholds are the file's alone. The simulated foot traffic
    follows the opening hours, capacity and events in effect (the file's, with what the
    admins saved on the kiosk's pages): a change starts a new day's plan at once.
    """
    factory = None
    if simulate:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    db = open_store(config.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    # The main loop's own connection: the writer thread's is in a transaction at times.
    reader = connect(config.database.path, busy_timeout_ms=config.database.busy_timeout_ms)
    writer = EventWriter(db, path=config.database.path)
    writer.start()
    simulator = None
    try:
        try:
            if simulate:  # simulated time, so that health sees people, not a fast-forward
                sensors = Sensors(config, writer, factory, clock=lambda: time.monotonic() * speed)
            else:
                sensors = Sensors(config, writer, store=db)
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

                def traffic(cfg: SpaceConfig) -> FootTraffic:
                    started = FootTraffic(cfg, factory, seed=seed, speed=speed)
                    started.start()
                    return started

                simulator = traffic(settings.effective(reader, config))
            log.info("sensors running (%s)", "simulated" if simulate else "GPIO")
            notify("READY=1")
            every = min(watchdog_interval() or CLOCK_SECONDS, CLOCK_SECONDS)
            while not stopping.wait(every):
                writer.check_clock()
                if simulator and _plan_changed(simulator.config, reader, config):
                    log.info("the space's hours, capacity or events changed: new foot traffic")
                    simulator.stop()
                    simulator = traffic(settings.effective(reader, config))
                # a dead writer or health check must not look healthy
                if writer.thread.is_alive() and sensors.health.thread.is_alive():
                    notify("WATCHDOG=1")
            notify("STOPPING=1")
            if simulator:
                simulator.stop()
    finally:
        writer.stop()
        reader.close()
        db.close()
    log.info("sensors stopped; %d event(s) stored", writer.written)
    return 0


def _plan_changed(planned: SpaceConfig, reader, base: SpaceConfig) -> bool:
    """Whether what foot traffic is planned from differs from the config in effect."""
    try:
        now = settings.effective(reader, base)
    except sqlite3.Error as exc:  # the store is busy or full: keep the plan for now
        log.debug("cannot read the settings: %s", exc)
        return False
    return (now.space, now.events) != (planned.space, planned.events)
