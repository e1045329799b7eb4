"""Run `spacekiosk` with a wall clock that is wrong, as a Pi's can be: what libfaketime
does, in a dozen lines. `python tests/fakeclock.py FILE ARGS...` runs `spacekiosk ARGS`
with time.time() off by the seconds written in FILE (read again as it changes, so a
test can set the clock while the service runs). The monotonic clock runs on untouched,
as it does when timesyncd or a person sets the clock."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path


def shift_wall_clock(path: Path) -> None:
    real, monotonic = time.time, time.monotonic
    lock = threading.Lock()
    seen = {"at": -1.0, "offset": 0.0}

    def shifted() -> float:
        with lock:
            if monotonic() - seen["at"] > 0.05:  # read the file at most 20 times a second
                seen["at"] = monotonic()
                with contextlib.suppress(OSError, ValueError):  # being written: keep the last
                    seen["offset"] = float(path.read_text() or 0)
            return real() + seen["offset"]

    time.time = shifted


if __name__ == "__main__":
    shift_wall_clock(Path(sys.argv[1]))
    from spacekiosk.cli import main  # imported after: its modules take the shifted clock

    sys.exit(main(sys.argv[2:]))
