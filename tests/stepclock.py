"""Run `spacekiosk sync` on a clock the test moves: time.time() and time.monotonic() both
off by the seconds written in FILE (read again as it changes). Both move together, as
time passing does, so the agent can be walked through a week in seconds without seeing
its clock being set (tests/fakeclock.py moves the wall clock alone: a clock being set).

    python tests/stepclock.py FILE ARGS...   runs `spacekiosk ARGS`

The MQTT client, threading and queue keep the real monotonic clock (they are imported
first): their keep-alives and timeouts are about the real socket, not the week."""

from __future__ import annotations

import contextlib
import queue  # noqa: F401  (imported before the clocks move: see above)
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client  # noqa: F401  (likewise)


def step_clocks(path: Path) -> None:
    """The wall clock off by the file's seconds, the monotonic clock moved as much as
    the file's seconds changed since the start. A new offset is taken up only where the
    sync agent's loop reads the monotonic clock (the top and bottom of each turn), never
    between two readings that belong together (a wall time and a monotonic one), which
    would look like the clock being set."""
    real_time, real_monotonic = time.time, time.monotonic
    lock = threading.Lock()
    first = _read(path, 0.0)
    state = {"read_at": -1.0, "pending": first, "offset": first}

    def pending() -> float:
        now = real_monotonic()
        if now - state["read_at"] > 0.02:  # at most 50 reads a second
            state["read_at"] = now
            state["pending"] = _read(path, state["pending"])
        return state["pending"]

    def monotonic() -> float:
        with lock:
            caller = sys._getframe(1)
            if caller.f_code.co_name == "run" and caller.f_globals.get("__name__") == "sync.agent":
                state["offset"] = pending()
            # From where it stood: a monotonic clock never reads below zero.
            return real_monotonic() + state["offset"] - first

    def wall() -> float:
        with lock:
            return real_time() + state["offset"]

    time.time = wall
    time.monotonic = monotonic


def _read(path: Path, last: float) -> float:
    with contextlib.suppress(OSError, ValueError):  # being written: keep the last
        return float(path.read_text() or last)
    return last


if __name__ == "__main__":
    step_clocks(Path(sys.argv[1]))
    from spacekiosk.cli import main  # imported after: its modules take the moved clocks

    sys.exit(main(sys.argv[2:]))
