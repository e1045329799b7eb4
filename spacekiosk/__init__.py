"""spacekiosk: what the kiosk, sensors and sync services share — config, store, command line."""

__version__ = "0.1.0"

# Hours before this date cannot be real: a Pi without a real-time clock that boots at
# 1970 (or at fake-hwclock's last save) must never publish them.
BUILD_DATE = "2026-11-01"
