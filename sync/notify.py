"""The space's notifier: it watches the store, queues a message per target when a watched
condition changes, and sends the queue through Apprise (docs/notifications.md).

It runs in a thread of the sync agent (`start`), on a connection of its own, and writes
only notify_outbox and notify_state; notify_targets is the kiosk's.

- `observe(db, cfg, now)` reads the read models (hours, sensorstate, syncstate, clock,
  the roll call) into one state per condition key, compares each with notify_state and
  queues a message for every enabled target that wants that kind of event.
- `deliver(db, now)` sends the rows that are due; a failed send (the link down, the
  service refusing) is tried again with exponential backoff, and a message that goes
  out late says when it happened.

Never a storm:
- hysteresis in the conditions themselves: the door is "left open" only after
  `sensors.door.open_alert_minutes`; the backlog only once its oldest hour waited
  `notifications.backlog_hours` (and at least two sends, or a metered link's contacts,
  and an hour); the disk at `notifications.disk_full_percent`;
- a condition's key is told at most once per `notifications.min_interval_minutes`
  (the evacuation excepted): a sensor that flaps fault/ok fifty times in that interval
  is told once, then its state at the interval's end if that differs from what was told;
- one queued row per (target, key): while a message waits, a newer change of the same
  condition replaces its text and counts in `repeats`, rather than adding a row.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from spacekiosk import clock, hours, notices, sensorstate, settings, syncstate
from spacekiosk.config import SpaceConfig
from spacekiosk.db import StoreError, open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS

log = logging.getLogger(__name__)

EVERY_SECONDS = 15  # how often the thread looks and sends
FIRST_RETRY = 30  # seconds before a failed send is tried again; doubles each time
MAX_RETRY = 3600  # and never waits longer than this
LATE_AFTER = 120  # a message sent this long after its event says when it happened
KEEP_SENT_DAYS = 30  # sent rows kept for the admin page, then deleted
MAX_PER_ROUND = 50  # rows one deliver() sends at most
QUIET = "ok"
# Every boot begins unsynchronised until timesyncd reaches a server: that is told only
# if it lasts this long after boot.
CLOCK_GRACE = 10 * 60  # the state of a condition nothing is wrong with


@dataclass
class Condition:
    """One watched condition as seen now: its state, the kind of event that state is
    told as (None: told by no message, e.g. the door shut again), when it began, and the
    facts a message may say (never a name)."""

    state: str
    kind: str | None
    since: float
    facts: dict = field(default_factory=dict)
    urgent: bool = False  # told at once, whatever the interval (an evacuation)


def _open_since(db: Database, cfg: SpaceConfig, now: float) -> float | None:
    """When the space opened, if it is open now: the opening hours say open and, with a
    door sensor, someone has opened the door since the span began (at the door's opening
    time); None if it is closed."""
    state = hours.state(cfg.space, now)
    if not state.is_open:
        return None
    # The stretch of opening spans running now: from the one that holds `now`, back
    # through any that ran into it (a day's "24:00" into the next day's "00:00").
    found = sorted(
        (o.timestamp(), c.timestamp() + 1) for o, c in hours.spans(cfg.space, now - hours.DAY)
    )
    start = now
    for opens, ends in reversed(found):
        if opens <= start < ends or (opens < start and ends >= start):
            start = opens
    start = min(start, now)
    if cfg.sensors.door is None:
        return start
    row = db.execute(
        "SELECT min(at) FROM sensor_events WHERE sensor = 'door' AND kind = 'open'"
        " AND at >= ? AND at <= ?",
        [start, now],
    ).fetchone()
    return row[0] if row and row[0] is not None else None


def _closed_at(cfg: SpaceConfig, now: float) -> float:
    """When the last opening span before `now` ended (`now` if none did in a day)."""
    ends = [
        c.timestamp() + (1 if c.time() == dtime(23, 59, 59) else 0)
        for _o, c in hours.spans(cfg.space, now - hours.DAY)
    ]
    return max((e for e in ends if e <= now), default=now)


def disk_percent(path: Path) -> int:
    """How full the disk holding `path` is, in per cent (0 if it cannot be read)."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return 0
    return round(100 * usage.used / usage.total) if usage.total else 0


def conditions(
    db: Database,
    cfg: SpaceConfig,
    now: float,
    *,
    clock_state: str | None = None,
    disk: int | None = None,
    uptime: float | None = None,
) -> dict[str, Condition]:
    """Every watched condition at `now`, by key. `clock_state`, `disk` and `uptime`
    default to the system's (clock.state(), the store's disk, the monotonic clock)."""
    found: dict[str, Condition] = {}
    space = notices.clip(cfg.space.name)

    opened = _open_since(db, cfg, now)
    if opened is not None:
        found["space"] = Condition("open", notices.OPENED, opened, {"space": space})
    else:
        found["space"] = Condition("closed", notices.CLOSED, _closed_at(cfg, now), {"space": space})

    door = sensorstate.door(db, cfg, now)
    if door is not None:
        limit = cfg.sensors.door.open_alert_minutes * 60
        since = door["since"]
        if door["open"] and since is not None and (door["alert"] or now - since >= limit):
            minutes = int((now - since) // 60)
            facts = {"space": space, "minutes": minutes, "since": since}
            found["door"] = Condition("left_open", notices.DOOR_OPEN, since, facts)
        else:
            found["door"] = Condition(QUIET, None, since or now)

    for name, health in sensorstate.health(db, cfg, now).items():
        since = health["since"] or now
        facts = {"space": space, "sensor": name, "reason": health["reason"] or ""}
        if health["ok"]:
            found[f"sensor:{name}"] = Condition(QUIET, notices.SENSOR_OK, since, facts)
        else:
            found[f"sensor:{name}"] = Condition("fault", notices.SENSOR_FAULT, since, facts)

    oldest = syncstate.health(db)["oldest_pending"]
    # Hours wait on the Pi for the next send (a metered link's for its next contact): only
    # a wait past two of those and an hour is a backlog, whatever backlog_hours says.
    waited = max(cfg.notifications.backlog_hours * 3600, 2 * cfg.sync.every_seconds + 3600)
    if oldest is not None and now - (oldest + 3600) >= waited:
        when = datetime.fromtimestamp(oldest, cfg.space.timezone).strftime("%Y-%m-%d %H:00")
        facts = {"space": space, "oldest": when}
        found["backlog"] = Condition("behind", notices.BACKLOG, oldest + 3600 + waited, facts)
    else:
        found["backlog"] = Condition(QUIET, None, now)

    state = clock.state(now) if clock_state is None else clock_state
    booted = time.monotonic() if uptime is None else uptime  # Linux: seconds since boot
    if state == "unsynchronized" and booted >= CLOCK_GRACE:
        found["clock"] = Condition("unsynchronized", notices.CLOCK, now, {"space": space})
    else:
        found["clock"] = Condition(QUIET, None, now)

    percent = disk_percent(Path(cfg.database.path).parent) if disk is None else disk
    if percent >= cfg.notifications.disk_full_percent:
        facts = {"space": space, "percent": percent}
        found["disk"] = Condition("full", notices.DISK, now, facts)
    else:
        found["disk"] = Condition(QUIET, None, now)

    row = db.execute("SELECT id, started_at FROM roll_calls WHERE ended_at IS NULL").fetchone()
    if row is not None:
        roll_call, started = row
        (count,) = db.execute(
            "SELECT count(*) FROM roll_call_people WHERE roll_call_id = ?", [roll_call]
        ).fetchone()
        facts = {"space": space, "count": count}
        found["evacuation"] = Condition(
            f"on:{roll_call}", notices.EVACUATION, started, facts, urgent=True
        )
    else:
        found["evacuation"] = Condition(QUIET, None, now)
    return found


def people(db: Database, started: float) -> list[str]:
    """Who was signed in when the evacuation that started at `started` began, as a
    personal target is told them: read at the moment of sending, and never stored in
    the outbox, so a visitor's erasure leaves no name behind in it."""
    rows = db.execute(
        "SELECT v.name FROM roll_calls r JOIN roll_call_people p ON p.roll_call_id = r.id"
        " JOIN visits s ON s.id = p.visit_id JOIN visitors v ON v.id = s.visitor_id"
        " WHERE r.started_at = ? ORDER BY v.name",
        [started],
    ).fetchall()
    return [_short(name) for (name,) in rows]


def _short(name: str) -> str:
    """A visitor as a personal target is told: first name and the last name's initial."""
    parts = name.split()
    if len(parts) < 2:
        return notices.clip(name, 40)
    return notices.clip(f"{parts[0]} {parts[-1][0]}.", 40)


def _targets(db: Database) -> list[dict]:
    """The enabled targets, their events read leniently (the kiosk's page writes them)."""
    found = []
    for tid, url, events, language, personal in db.execute(
        "SELECT id, url, events, language, personal FROM notify_targets WHERE enabled"
    ):
        try:
            wanted = json.loads(events)
        except (TypeError, ValueError):
            wanted = []
        if not isinstance(wanted, list):
            wanted = []
        found.append(
            {
                "id": tid,
                "url": url,
                "events": {e for e in wanted if isinstance(e, str)},
                "language": language if isinstance(language, str) else "",
                "personal": bool(personal),
            }
        )
    return found


def observe(
    db: Database,
    cfg: SpaceConfig,
    now: float,
    *,
    clock_state: str | None = None,
    disk: int | None = None,
    uptime: float | None = None,
) -> int:
    """Compare each watched condition with notify_state and queue what is to be told;
    returns the number of messages queued or updated."""
    seen = conditions(db, cfg, now, clock_state=clock_state, disk=disk, uptime=uptime)
    interval = cfg.notifications.min_interval_minutes * 60
    queued = 0
    with write(db):  # one transaction: the states and their messages together
        known = {
            row[0]: row[1:]
            for row in db.execute("SELECT key, state, told, told_at FROM notify_state")
        }
        targets = None
        for key, cond in seen.items():
            if key not in known:
                # First sight: what is wrong is told, what is fine (or open/closed) is not.
                told = "" if cond.state not in (QUIET, "open", "closed") else cond.state
                db.execute(
                    "INSERT INTO notify_state (key, state, changed_at, told) VALUES (?, ?, ?, ?)",
                    [key, cond.state, now, told],
                )
                told_at = None
            else:
                state, told, told_at = known[key]
                if state != cond.state:
                    db.execute(
                        "UPDATE notify_state SET state = ?, changed_at = ?, flaps = flaps + 1"
                        " WHERE key = ?",
                        [cond.state, now, key],
                    )
            if cond.state == told:
                continue
            if cond.kind is None:  # back to normal, which no message tells
                db.execute("UPDATE notify_state SET told = ? WHERE key = ?", [cond.state, key])
                continue
            if told == "" and cond.state == QUIET:
                continue
            if not cond.urgent and told_at is not None and now - told_at < interval:
                continue  # told lately: wait for the interval's end
            db.execute(
                "UPDATE notify_state SET told = ?, told_at = ? WHERE key = ?",
                [cond.state, now, key],
            )
            if targets is None:
                targets = _targets(db)
            queued += _queue(db, cfg, key, cond, targets, now)
        db.execute(
            "DELETE FROM notify_outbox WHERE sent_at IS NOT NULL AND sent_at < ?",
            [now - KEEP_SENT_DAYS * 86400],
        )
    return queued


def _queue(
    db: Database, cfg: SpaceConfig, key: str, cond: Condition, targets: list[dict], now: float
) -> int:
    queued = 0
    facts = dict(cond.facts)
    facts.setdefault("time", notices.local_time(cond.since, cfg.space.timezone))
    if "since" in facts:
        facts["time"] = notices.local_time(facts.pop("since"), cfg.space.timezone)
    for target in targets:
        if cond.kind not in target["events"]:
            continue
        lang = notices.language(target["language"] or cfg.space.languages[0])
        title, body = notices.message(cond.kind, lang, facts)
        waiting = db.execute(
            "SELECT id FROM notify_outbox WHERE target_id = ? AND key = ? AND sent_at IS NULL",
            [target["id"], key],
        ).fetchone()
        if waiting:
            db.execute(
                "UPDATE notify_outbox SET kind = ?, title = ?, body = ?, happened_at = ?,"
                " repeats = repeats + 1 WHERE id = ?",
                [cond.kind, title, body, cond.since, waiting[0]],
            )
        else:
            db.execute(
                "INSERT INTO notify_outbox (target_id, kind, key, title, body, happened_at,"
                " created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [target["id"], cond.kind, key, title, body, cond.since, now, now],
            )
        queued += 1
    return queued


def backoff(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed send."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)


def deliver(
    db: Database,
    now: float,
    *,
    zone: ZoneInfo | None = None,
    send: Callable[[str, str, str], tuple[bool, str]] = notices.send,
    stopping: threading.Event | None = None,
) -> int:
    """Send the messages that are due, oldest first per target; returns how many went.
    A target that fails is left for this round (its link is likely down): its row, and
    every row waiting behind it, comes due again after `backoff`. `zone`: the space's,
    for the time a late message says it happened (UTC if not given)."""
    zone = zone or ZoneInfo("UTC")
    rows = db.execute(
        "SELECT o.id, o.target_id, o.kind, o.title, o.body, o.happened_at, o.attempts,"
        " o.repeats, t.url, t.language, t.personal"
        " FROM notify_outbox o JOIN notify_targets t ON t.id = o.target_id"
        " WHERE o.sent_at IS NULL AND o.due_at <= ? AND t.enabled"
        " ORDER BY o.target_id, o.happened_at, o.id LIMIT ?",
        [now, MAX_PER_ROUND],
    ).fetchall()
    failed: set[int] = set()
    sent = 0
    for row in rows:
        oid, tid, kind, title, body, happened, attempts, repeats, url, language, personal = row
        if tid in failed or (stopping is not None and stopping.is_set()):
            continue
        lang = notices.language(language)
        if repeats:
            body += " " + notices.repeats(lang, repeats)
        if attempts or now - happened >= LATE_AFTER:
            when = datetime.fromtimestamp(happened, zone)
            stamp = when.strftime("%H:%M")
            if datetime.fromtimestamp(now, zone).date() - when.date() >= timedelta(days=1):
                stamp = when.strftime("%Y-%m-%d %H:%M")
            body += "\n" + notices.late(lang, stamp)
        told = body
        if personal and kind == notices.EVACUATION and (names := people(db, happened)):
            told = body + "\n" + notices.people(lang, names)  # sent, not stored
        ok, answer = send(url, title, told)
        with write(db):
            if ok:
                db.execute(
                    "UPDATE notify_outbox SET sent_at = ?, attempts = attempts + 1, body = ?,"
                    " answer = ? WHERE id = ?",
                    [now, body, answer, oid],
                )
                sent += 1
            else:
                failed.add(tid)
                retry = now + backoff(attempts + 1)
                db.execute(
                    "UPDATE notify_outbox SET attempts = attempts + 1, due_at = ?, answer = ?"
                    " WHERE id = ?",
                    [retry, answer, oid],
                )
                # The target's link is down: what waits behind this row waits with it.
                db.execute(
                    "UPDATE notify_outbox SET due_at = ? WHERE target_id = ? AND sent_at IS NULL"
                    " AND due_at < ?",
                    [retry, tid, retry],
                )
                log.warning("a notification could not be sent (it stays queued): %s", answer)
    return sent


def serve(config: SpaceConfig, stopping: threading.Event, every: float = EVERY_SECONDS) -> None:
    """The notifier's loop, until `stopping`: observe, then deliver, every `every` s.
    A store that cannot be opened or written (a full disk) only delays it; it never
    takes the agent down."""
    db = None
    try:
        while not stopping.is_set():
            try:
                if db is None:
                    db = open_store(config.database.path, SPACE_MIGRATIONS)
                cfg = settings.effective(db, config)
                observe(db, cfg, time.time())
                deliver(db, time.time(), zone=cfg.space.timezone, stopping=stopping)
            except (sqlite3.Error, StoreError) as exc:
                log.warning("the notifier could not use the store (it tries again): %s", exc)
            except Exception:  # a bug here must not stop the usage data's sync
                log.exception("the notifier failed; it tries again")
            stopping.wait(every)
    finally:
        if db is not None:
            db.close()


def start(config: SpaceConfig, stopping: threading.Event) -> threading.Thread:
    """Run `serve` in a daemon thread of the sync agent."""
    thread = threading.Thread(target=serve, args=(config, stopping), name="notify", daemon=True)
    thread.start()
    return thread
