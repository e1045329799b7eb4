"""The doorway's state machine, edge by edge, and 10,000 crossings counted exactly."""

from __future__ import annotations

import random
import time

import pytest
from conftest import wait_until, write_space_config
from gpiozero.pins.mock import MockFactory

from sensors.daemon import EventWriter, Sensors
from sensors.doorway import AMBIGUOUS, ENTRY, EXIT, TURNED_BACK, Doorway
from spacekiosk import config
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS


def feed(steps: str, gap: float = 0.05) -> list[str]:
    """Run a sequence like "A+ B+ A- B-" (+ broken, - clear); edges `gap` seconds apart,
    or at once where two steps are joined with '&'."""
    door, out, now = Doorway(), [], 0.0
    for group in steps.split():
        for step in group.split("&"):
            out += door.edge(step[0].lower(), step[1] == "+", now)
            now += 0.001
        now += gap
    assert door.people == [] or door.broken != {"a": False, "b": False}
    return out


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ("A+ B+ A- B-", [ENTRY]),
        ("B+ A+ B- A-", [EXIT]),
        ("A+ A-", [TURNED_BACK]),  # stepped in, changed their mind
        ("A+ B+ B- A-", [TURNED_BACK]),  # reached B, went back out
        ("A+ B+ B- B+ B- B+ A- B-", [ENTRY]),  # lingering, dithering on B, then in
        ("A+ B+ A- A+ B- B+ A- B-", [ENTRY, ENTRY]),  # two people, one right behind
        ("B+ A+ B- B+ A- A+ B- A-", [EXIT, EXIT]),  # two leaving, one right behind
        ("A+&B+ A- B-", [ENTRY]),  # both beams at once, then leaves inside
        ("A+&B+ B- A-", [EXIT]),  # both beams at once, then leaves outside
        ("A+&B+ A-&B-", [AMBIGUOUS]),  # a trolley across both: no way to tell
        ("A+ A- A+ A- A+ B+ A- B-", [TURNED_BACK, TURNED_BACK, ENTRY]),  # a flickering beam
        ("B+ B- A+ B+ A- B-", [TURNED_BACK, ENTRY]),
    ],
)
def test_each_kind_of_crossing(steps, expected):
    assert feed(steps) == expected


def test_an_edge_lost_to_debouncing_never_makes_a_count():
    """lgpio drops pulses shorter than the bounce time: a repeated level is ignored."""
    door = Doorway()
    assert door.edge("a", True, 0.0) == []
    assert door.edge("a", True, 0.01) == []  # the clear between was swallowed
    assert door.edge("b", True, 0.05) == []
    assert door.edge("a", False, 0.1) == []
    assert door.edge("b", False, 0.15) == [ENTRY]


SENSORS = """
[sensors.counter]
beam_a = 22
beam_b = 23
bounce_ms = 0
"""


def test_ten_thousand_crossings_are_counted_exactly(tmp_path):
    """Entries, exits, pairs one behind the other and people who turn back, driven on
    mock pins far faster than 20 a second: every crossing lands in SQLite exactly once."""
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
    writer = EventWriter(db)
    writer.start()
    factory = MockFactory()
    ticks = iter(range(10**9))
    rng = random.Random(10_000)
    truth = {ENTRY: 0, EXIT: 0, TURNED_BACK: 0}
    patterns = {
        "in": ("A+ B+ A- B-", {ENTRY: 1}),
        "out": ("B+ A+ B- A-", {EXIT: 1}),
        "pair in": ("A+ B+ A- A+ B- B+ A- B-", {ENTRY: 2}),
        "pair out": ("B+ A+ B- B+ A- A+ B- A-", {EXIT: 2}),
        "back": ("A+ B+ B- A-", {TURNED_BACK: 1}),
    }
    try:
        with Sensors(cfg, writer, pin_factory=factory, clock=lambda: next(ticks) * 0.05):
            pins = {"A": factory.pin(22), "B": factory.pin(23)}
            started = time.monotonic()
            crossings = 0
            while crossings < 10_000:
                steps, counts = patterns[rng.choice(list(patterns))]
                for step in steps.split():
                    pin = pins[step[0]]
                    # the beams have pull-ups: broken pulls the pin low
                    pin.drive_low() if step[1] == "+" else pin.drive_high()
                for kind, n in counts.items():
                    truth[kind] += n
                crossings += sum(n for k, n in counts.items() if k != TURNED_BACK)
            rate = crossings / (time.monotonic() - started)
            writer.stop()
    finally:
        factory.reset()
    stored = dict(db.execute("SELECT kind, count(*) FROM sensor_events GROUP BY kind"))
    assert rate >= 20
    assert stored.get(ENTRY, 0) == truth[ENTRY]
    assert stored.get(EXIT, 0) == truth[EXIT]
    assert stored.get(TURNED_BACK, 0) == truth[TURNED_BACK]
    assert truth[ENTRY] + truth[EXIT] >= 10_000
    wait_until(lambda: not writer.thread.is_alive(), timeout=5, what="the writer to stop")
