"""How often each address on the space's network may look names up.

The name lookup shows masked names of PIN holders to whoever types two letters, which a
person at the screen or on a phone does a handful of times per sign-in. A script on the
space's Wi-Fi trying every start of a name would do it thousands of times: past
`LOOKUPS_PER_MINUTE` an address gets nothing until its minute has passed. The kiosk's own
browser, on loopback, is never held back. In memory: the kiosk is one process, and a
restart forgets only a minute.
"""

from __future__ import annotations

import threading
import time
from collections import deque

LOOKUPS_PER_MINUTE = 30
LOOPBACK = ("127.0.0.1", "::1")
_MAX_ADDRESSES = 4096  # past this many, addresses with nothing in the window are forgotten


class Lookups:
    """A sliding window of lookups per address; thread-safe."""

    def __init__(self, limit: int = LOOKUPS_PER_MINUTE, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def allow(self, address: str | None, now: float | None = None) -> bool:
        """Whether `address` may look up now; counts the lookup if so."""
        if address in LOOPBACK:
            return True
        now = time.monotonic() if now is None else now
        key = address or "unknown"
        with self._lock:
            times = self._seen.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return False
            times.append(now)
            if len(self._seen) > _MAX_ADDRESSES:
                self._forget(now)
            return True

    def _forget(self, now: float) -> None:
        for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - self.window]:
            del self._seen[key]
