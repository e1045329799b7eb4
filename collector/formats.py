"""How the pages write times, shares and money: UTC always, and "—" for no figure."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from collector.periods import iso

NONE = "—"


def when(ts: float | None) -> str:
    """2026-11-25 16:03 UTC."""
    if not ts:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def day(ts: float | None) -> str:
    """25 Nov 2026."""
    return datetime.fromtimestamp(ts, UTC).strftime("%-d %b %Y") if ts else NONE


def ago(ts: float | None, now: float) -> str:
    """How long before `now`: "just now", "3 min ago", "5 h ago", "2 days ago"."""
    if not ts:
        return "never"
    seconds = now - ts
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def duration(seconds: float) -> str:
    """A length of time to the minute: "45 min", "12 h", "1 h 30 min", "3 days 12 h"."""
    minutes = max(0, round(seconds / 60))
    days, rest = divmod(minutes, 1440) if minutes >= 2 * 1440 else (0, minutes)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} days"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts) or "0 min"


def pct(value: float | None) -> str:
    """44 %, or a dash when there is nothing to divide by."""
    if value is None:
        return NONE
    return f"{value:.1%}" if 0 < value < 0.01 else f"{value:.0%}"


def decimal(value: float | None, places: int = 1) -> str:
    return NONE if value is None else f"{value:,.{places}f}"


def money(amount: float | None, currency: str | None) -> str:
    """1,250.00 KES; "mixed currencies" when they cannot be added."""
    if currency == "mixed":
        return "mixed currencies"
    if amount is None or not currency:
        return NONE
    return f"{amount:,.2f} {currency}"


def register(app: Flask) -> None:
    for name, fn in {
        "when": when,
        "day": day,
        "ago": ago,
        "duration": duration,
        "iso": iso,
        "pct": pct,
        "decimal": decimal,
        "money": money,
    }.items():
        app.add_template_filter(fn, name)
