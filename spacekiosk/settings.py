"""The settings the local admins change on the kiosk's pages, layered over the config file.

One source of truth for each setting. For those in EDITABLE (opening hours and closed
dates, languages, purposes, capacity, the kiosk's idle and confirmation times, the
guidelines' text and version, retention, the SpaceAPI contact and location, the
community events) it is the database: the file gives their starting values, and a value
saved on the pages wins until it is saved back to the file's. Everything else (pins,
broker, paths, secrets) is the file's alone, and the file is never written by a web
process: it lives in /etc, root's.

A stored value can never make a config the file could not: effective() and save() build
the file's config back into the dict TOML reads (as_toml), put the stored values in it,
and run the file's own checker on the whole (config.from_data). A stored value that no
longer passes (a newer release checks more) is left out, and `check-config` says so.

Written by the kiosk's admin pages alone, through save(); read by every service through
effective(), which costs one read of settings_version while nothing changed.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from spacekiosk import config as configuration
from spacekiosk.config import ConfigError, Problem, SpaceConfig
from spacekiosk.db import StoreError, connect, write

# The settings an admin may change on the pages: each a key of the config file.
EDITABLE = (
    "space.opening_hours",
    "space.closed_dates",
    "space.languages",
    "space.capacity",
    "kiosk.purposes",
    "kiosk.idle_seconds",
    "kiosk.confirm_seconds",
    "kiosk.guidelines",
    "kiosk.guidelines_version",
    *(f"retention.{f.name}" for f in dataclasses.fields(configuration.Retention)),
    *(f"spaceapi.{f.name}" for f in dataclasses.fields(configuration.SpaceApi)),
    "events",
)
MAX_ADMIN_CHARS = 80  # an admin's name, as recorded with a change
_CACHED = 8  # layered configs kept per process: one per config a service holds, and a few


class SettingsError(Exception):
    """A change refused, with every problem the checker found (paths as in the file)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Stored:
    """A setting as an admin saved it: its value (as TOML reads it), when and by whom."""

    key: str
    value: Any
    changed_at: float
    changed_by: str


@dataclass(frozen=True)
class Changed:
    """One setting a save changed: its value in effect before and after."""

    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Layered:
    """The config in effect, the stored settings it was built from, and the ones left out."""

    config: SpaceConfig
    version: int
    stored: dict[str, Stored]
    ignored: dict[str, list[Problem]]


# --- the file's config, as TOML reads it ---


def as_toml(obj: Any) -> Any:
    """A config (or a part of one) as TOML reads it, the dict config.from_data takes back:
    each value turned back into the text or number the file would hold."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("internal") or value is None:
                continue
            out[f.name] = _raw(value, f.metadata.get("check"))
        return out
    return _raw(obj, None)


def _raw(value: Any, check: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return as_toml(value)
    if check is configuration.opening_hours:
        if isinstance(value, dict):
            return {day: hours_text(spans) for day, spans in value.items()}
        return hours_text(value)
    if check is configuration.listen_address:
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(value, ZoneInfo):
        return value.key
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_raw(item, check) for item in value]
    if isinstance(value, dict):
        return {key: _raw(item, check) for key, item in value.items()}
    return value


def hours_text(spans: tuple[tuple[dtime, dtime], ...]) -> str:
    """Opening spans as the file writes them: "09:00-13:00, 14:00-24:00", or "closed"."""
    if not spans:
        return "closed"
    return ", ".join(f"{_clock(start)}-{_clock(end)}" for start, end in spans)


def _clock(at: dtime) -> str:
    return "24:00" if at == dtime(23, 59, 59) else at.strftime("%H:%M")


def value_at(data: Any, key: str) -> Any:
    """The value at a dotted key of a TOML-shaped dict; None where there is none."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _put(data: dict, key: str, value: Any) -> None:
    *tables, last = key.split(".")
    for part in tables:
        data = data.setdefault(part, {})
    if value is None:  # an optional setting left out: its default applies
        data.pop(last, None)
    else:
        data[last] = value


def layer(base: SpaceConfig, values: Mapping[str, Any]) -> SpaceConfig:
    """The file's config with `values` (dotted key -> value as TOML reads it) in place of
    its own, checked whole by the file's checker; SettingsError lists what it refused."""
    data = as_toml(base)
    for key, value in values.items():
        _put(data, key, value)
    try:
        built = configuration.from_data(data, base.source, secrets=False)
    except ConfigError as exc:
        raise SettingsError(exc.problems) from None
    assert isinstance(built, SpaceConfig)
    return built


def owns(key: str, path: str) -> bool:
    """Whether a problem found at `path` (as the checker names it) is about setting `key`:
    the key itself, a part of it ("space.opening_hours.mon", "events[2].date"), or a
    check of the table that holds it ("spaceapi": lat without lon)."""
    return (
        path == key
        or path.startswith((key + ".", key + "["))
        or key.startswith(path + ".")
        or path == ""
    )


def _usable(base: SpaceConfig, stored: dict[str, Stored]) -> tuple[SpaceConfig, dict]:
    """The config with every stored value that passes; those that do not are left out,
    with their problems."""
    values = {key: row.value for key, row in stored.items() if key in EDITABLE}
    ignored = {
        key: [Problem(key, "cannot be changed on the pages; the file's value applies")]
        for key in stored
        if key not in EDITABLE
    }
    while True:
        try:
            return layer(base, values), ignored
        except SettingsError as exc:
            dropped = False
            for key in list(values):
                problems = [p for p in exc.problems if owns(key, p.path)]
                if problems:
                    ignored[key] = problems
                    del values[key]
                    dropped = True
            if not dropped:  # not the stored values' doing: keep to the file's config
                return base, ignored | {key: exc.problems for key in values}


# --- reading: the config in effect, cached on the version ---

_cache: dict[tuple[int, str], tuple[SpaceConfig, Layered]] = {}
_cache_lock = threading.Lock()


def _stamp(db: Database) -> tuple[int, str] | None:
    """(version, stamp) of the stored settings; None for a store from before them."""
    try:
        row = db.execute("SELECT version, stamp FROM settings_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return (row[0], row[1]) if row else None


def read(db: Database, base: SpaceConfig) -> Layered:
    """The config in effect, with what it was built from (for check-config and the page)."""
    stamp = _stamp(db)
    if stamp is None or stamp[0] == 0:  # nothing was ever saved: the file's, as it is
        return Layered(base, 0, {}, {})
    key = (id(base), stamp[1])
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] is base:  # is: an id can be reused once base is gone
        return hit[1]
    # The version and the rows in one statement: one snapshot, never a mix of two saves.
    rows = db.execute(
        "SELECT v.version, v.stamp, s.key, s.value, s.changed_at, s.changed_by "
        "FROM settings_version v LEFT JOIN settings s"
    ).fetchall()
    version, stamp_now = rows[0][0], rows[0][1]
    stored = {r[2]: Stored(r[2], json.loads(r[3]), r[4], r[5]) for r in rows if r[2] is not None}
    config, ignored = _usable(base, stored)
    layered = Layered(config, version, stored, ignored)
    with _cache_lock:
        if len(_cache) >= _CACHED:
            _cache.pop(next(iter(_cache)))
        _cache[(id(base), stamp_now)] = (base, layered)
    return layered


def effective(db: Database, base: SpaceConfig) -> SpaceConfig:
    """The config in effect now: the file's (`base`), with the settings the local admins
    saved on the pages. Cheap to call on every request or loop: one read while nothing
    changed."""
    return read(db, base).config


# --- writing ---


def save(
    db: Database,
    base: SpaceConfig,
    changes: Mapping[str, Any],
    admin: str,
    now: float | None = None,
) -> list[Changed]:
    """Save settings an admin changed (dotted key -> value as TOML reads it), all or none.

    The whole config is checked first, with the file's checker; a refusal raises
    SettingsError naming each problem. A value equal to the file's removes the stored one
    (the file governs that setting again). Returns what really changed, old and new, for
    the audit log; the version moves on only if something did. Inside a caller's write()
    it is part of that transaction (so the audit entry commits with it).
    """
    refused = [
        Problem(key, "cannot be changed on the pages; it is set in the config file")
        for key in changes
        if key not in EDITABLE
    ]
    changes = {key: value for key, value in changes.items() if key in EDITABLE}
    admin = admin.strip()[:MAX_ADMIN_CHARS] or "?"
    now = time.time() if now is None else now
    with write(db):
        before = _layered_now(db, base)
        current = {k: s.value for k, s in before.stored.items() if k not in before.ignored}
        try:
            after = layer(base, {**current, **changes})
        except SettingsError as exc:
            refused += exc.problems
        if refused:
            raise SettingsError(refused)
        file_toml, before_toml, after_toml = as_toml(base), as_toml(before.config), as_toml(after)
        changed = []
        for key in changes:
            old, new = value_at(before_toml, key), value_at(after_toml, key)
            if old == new:
                continue
            if new == value_at(file_toml, key):
                db.execute("DELETE FROM settings WHERE key = ?", [key])
            else:
                db.execute(
                    "INSERT INTO settings (key, value, changed_at, changed_by) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                    "value = excluded.value, changed_at = excluded.changed_at, "
                    "changed_by = excluded.changed_by",
                    [key, json.dumps(new, ensure_ascii=False), now, admin],
                )
            changed.append(Changed(key, old, new))
        if changed:
            db.execute(
                "UPDATE settings_version SET version = version + 1, stamp = ?",
                [secrets.token_hex(8)],
            )
    return changed


def _layered_now(db: Database, base: SpaceConfig) -> Layered:
    # Inside the write transaction: what is stored now, whatever a cache last saw.
    rows = db.execute("SELECT key, value, changed_at, changed_by FROM settings").fetchall()
    stored = {r[0]: Stored(r[0], json.loads(r[1]), r[2], r[3]) for r in rows}
    config, ignored = _usable(base, stored)
    return Layered(config, 0, stored, ignored)


# --- what is in effect, for `spacekiosk check-config` ---


def report(path: Path, base: SpaceConfig) -> list[str]:
    """Lines saying which settings the admins changed in the store at `path` (when, by
    whom, and the file's value beside), and which stored ones are left out and why."""
    if not path.exists():
        return [f"{path}: no database yet; the file's settings are in effect"]
    try:
        db = connect(path, readonly=True)
    except StoreError as exc:
        return [f"{path}: cannot read the settings ({exc}); the services would say so"]
    try:
        layered = read(db, base)
    except sqlite3.Error as exc:
        return [f"{path}: cannot read the settings ({exc}); the services would say so"]
    finally:
        db.close()
    used = {k: s for k, s in layered.stored.items() if k not in layered.ignored}
    if not layered.stored:
        return [f"{path}: no settings changed on the admin pages; the file's are in effect"]
    lines = []
    if used:
        lines.append(
            f"{path}: in effect instead of the file's (changed on the admin pages, "
            f"settings version {layered.version}):"
        )
        file_toml, now_toml = as_toml(base), as_toml(layered.config)
        for key in sorted(used):
            stored = used[key]
            at = datetime.fromtimestamp(stored.changed_at, base.space.timezone)
            lines.append(f"  {key} = {_shown(value_at(now_toml, key))}")
            lines.append(
                f"      by {stored.changed_by}, {at:%Y-%m-%d %H:%M}; "
                f"the file: {_shown(value_at(file_toml, key))}"
            )
    for key, problems in sorted(layered.ignored.items()):
        lines.append(f"  left out, the file's value applies: {key}")
        lines += [f"      {problem}" for problem in problems[:3]]
    return lines


def _shown(value: Any, most: int = 72) -> str:
    if value is None:
        return "(not set)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= most else text[: most - 1] + "…"
