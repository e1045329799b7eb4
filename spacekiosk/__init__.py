"""spacekiosk: the core the four services share (config, store, wire protocol, clock and
hours, read models, charts) and, in `cli` and `demo`, the command on top of them.

See docs/architecture.md for the layers; `lint-imports` checks them."""

from datetime import datetime

__version__ = "0.1.0"

# Hours before this date cannot be real: a Pi without a real-time clock that boots at
# 1970 (or at fake-hwclock's last save) must never publish them. It lies before any
# space ran this release, so a month-long backlog from a first install still counts.
BUILD_DATE = "2026-10-01"
EARLIEST = int(datetime.fromisoformat(f"{BUILD_DATE}T00:00:00+00:00").timestamp())
