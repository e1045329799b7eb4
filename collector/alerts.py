"""The central team's alerts: a space silent, its backlog growing, its clock not
synchronised, a sensor faulty, its messages refused — each judged from what this
collector received and stored, never from a space's own word that it is in touch.

One writer: the evaluator (`Evaluator`, a thread of the collector's main process, the one
serving MQTT and the page) judges every space every `[alerts] every_seconds`, and alone
writes the tables `alerts` (each space's conditions as last judged), `alert_events` (the
history: fired, cleared) and `alert_outbox` (one row per event and target, until sent).

Hysteresis, so that nothing flaps: a condition fires once it has held for its time
(`clock_hours`, `sensor_hours`; the others carry their time in them: silent for
`silent_hours` — a metered space, for two of its contact intervals and an hour if that
is longer —, an hour unsent for `backlog_hours`, refusals within the last hour), and
clears once it has been gone for `clear_minutes` without a break — a silent space at
its next contact. While an alert is firing, its condition coming and going sends
nothing. Several collectors sharing a store judge one at a time (a write transaction,
and in PostgreSQL an advisory lock), so each event is written once.

Messages go through Apprise to every `[alerts] targets` URL; a target that fails is
tried again later (30 s, doubling, at most hourly) until it takes the message. They
name a space's id, the condition and times: the centre holds no personal data at all.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from collector import reading, store
from collector.formats import duration
from collector.pg import PgDatabase
from spacekiosk import protocol
from spacekiosk.config import Alerts, CollectorConfig
from spacekiosk.db import StoreError

log = logging.getLogger(__name__)

HOUR = 3600
LOCK = 0x5EC1_A1E7  # pg_advisory_xact_lock key: one collector judges at a time
FIRST_RETRY = 30.0  # seconds before a failed message is tried again, doubling
LAST_RETRY = 3600.0
CLAIM = 300.0  # a message being sent is not picked up again for this long

KINDS = {
    "silent": "silent",
    "backlog": "backlog growing",
    "clock": "clock not synchronised",
    "sensor": "sensor faulty",
    "refused": "messages refused",
}


@dataclass(frozen=True)
class Alert:
    """One of a space's alerts, as the page and the API show it."""

    space: str
    kind: str
    state: str  # "firing", or "pending" (its condition holds, not yet long enough)
    since: float  # when it fired, or when its condition was first seen
    detail: str

    @property
    def title(self) -> str:
        return KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Event:
    space: str
    kind: str
    event: str  # "fired" or "cleared"
    at: float
    detail: str

    @property
    def title(self) -> str:
        return KINDS.get(self.kind, self.kind)


# --- judging ---


def conditions(db, settings: Alerts, now: float) -> dict[tuple[str, str], str]:
    """{(space, kind): what is wrong} for every condition that holds now."""
    found: dict[tuple[str, str], str] = {}
    heard = store.contacts(db)
    for space in reading.spaces(db, now):
        sid, status = space["id"], space["status"]
        contact = heard.get(sid, (None, None))[0] or space["first_seen"]
        if contact is not None and now - contact >= silent_after(status, settings):
            found[sid, "silent"] = f"no message received since {_iso(contact)}" + _schedule(status)
        pending = status.get("oldest_pending")
        if status.get("backlog") and pending:
            oldest = protocol.hour_epoch(pending)
            if now - oldest >= settings.backlog_hours * HOUR:
                found[sid, "backlog"] = (
                    f"{status['backlog']} hour(s) not delivered, the oldest from {pending}"
                )
        if status.get("clock") == "unsynchronized":
            found[sid, "clock"] = "its status says its clock is not synchronised"
        faults = (status.get("sensors") or {}).get("faults") or {}
        if faults:
            found[sid, "sensor"] = "faulty: " + ", ".join(sorted(faults))
    known = {sid for sid, _kind in found} | set(heard)
    for space, count in refused(db, now - HOUR).items():
        if space in known and count > settings.rejects_per_hour:
            found[space, "refused"] = f"{count} messages refused in the last hour"
    return found


def silent_after(status: dict, settings: Alerts) -> float:
    """Seconds without a message before a space is silent: `silent_hours`; for a metered
    space, which makes contact only every `contact_every`, not before it is late too
    (two of its intervals and an hour)."""
    every = reading.contact_every(status)
    return max(settings.silent_hours * HOUR, reading.late_after(every) if every else 0)


def _schedule(status: dict) -> str:
    every = reading.contact_every(status)
    return f" (it makes contact every {duration(every)})" if every else ""


def refused(db, since: float) -> dict[str, int]:
    """{space: messages refused since `since`}, by the space each topic names."""
    out: dict[str, int] = {}
    rows = db.execute(
        "SELECT topic, count(*) FROM rejects WHERE at >= ? GROUP BY topic", [since]
    ).fetchall()
    for topic, count in rows:
        space = _topic_space(topic)
        if space:
            out[space] = out.get(space, 0) + count
    return out


def _topic_space(topic: str) -> str | None:
    """The space a refused message's topic names: spacekiosk/v1/ID/KIND over MQTT,
    "/api/v1/KIND ID" over HTTPS."""
    if " " in topic:
        return topic.rsplit(" ", 1)[1] or None
    parts = topic.split("/")
    if topic.startswith(protocol.PREFIX + "/") and len(parts) >= 4:
        return parts[2] or None
    return None


def _holds_for(kind: str, settings: Alerts) -> float:
    """How long a condition must hold before it fires (beyond what it carries itself)."""
    return {"clock": settings.clock_hours * HOUR, "sensor": settings.sensor_hours * HOUR}.get(
        kind, 0.0
    )


def evaluate(db, settings: Alerts, now: float | None = None) -> list[Event]:
    """Judge every space once: fire what has held long enough, clear what has been gone
    long enough, and queue a message per event and target. The events written."""
    now = time.time() if now is None else now
    targets = [_target_key(url) for url in settings.targets]
    events: list[Event] = []
    with store.transaction(db):
        if isinstance(db, PgDatabase):
            db.execute("SELECT pg_advisory_xact_lock(?)", [LOCK])
        held = conditions(db, settings, now)
        state = {
            (space, kind): (since, clear_since, fired_at, detail)
            for space, kind, since, clear_since, fired_at, detail in db.execute(
                "SELECT space, kind, since, clear_since, fired_at, detail FROM alerts"
            ).fetchall()
        }
        for key in sorted(held.keys() | state.keys()):
            since, clear_since, fired_at, detail = state.get(key, (None, None, None, ""))
            detail = held.get(key, detail)
            if key in held:
                since, clear_since = since or now, None
                if fired_at is None and now - since >= _holds_for(key[1], settings):
                    fired_at = now
                    events.append(Event(*key, "fired", now, detail))
            else:
                since = None
                if fired_at is not None:
                    clear_since = clear_since or now
                    if key[1] == "silent" or now - clear_since >= settings.clear_minutes * 60:
                        events.append(Event(*key, "cleared", now, detail))
                        fired_at = clear_since = None
            row = (since, clear_since, fired_at, detail)
            if row == state.get(key):
                continue
            if since is None and fired_at is None:
                db.execute("DELETE FROM alerts WHERE space = ? AND kind = ?", list(key))
            else:
                db.execute(
                    """INSERT INTO alerts (space, kind, since, clear_since, fired_at, detail)
                       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (space, kind) DO UPDATE SET
                       since = excluded.since, clear_since = excluded.clear_since,
                       fired_at = excluded.fired_at, detail = excluded.detail""",
                    [*key, *row],
                )
        for e in events:
            event_id = db.execute(
                """INSERT INTO alert_events (space, kind, event, at, detail)
                   VALUES (?, ?, ?, ?, ?) RETURNING id""",
                [e.space, e.kind, e.event, e.at, e.detail],
            ).fetchone()[0]
            for target in targets:
                db.execute(
                    "INSERT INTO alert_outbox (event_id, target, next_try) VALUES (?, ?, ?)",
                    [event_id, target, now],
                )
    for e in events:
        log.warning("alert %s: space %s, %s (%s)", e.event, e.space, e.title, e.detail)
    return events


# --- sending ---


def _target_key(url: str) -> str:
    """How the outbox names a target: its URL may hold a token, the store never does."""
    return hashlib.sha256(url.encode()).hexdigest()


def message(event: Event) -> tuple[str, str]:
    """(title, body) of an event's message: ids, conditions and times, nothing personal."""
    verb = "ALERT" if event.event == "fired" else "Cleared"
    title = f"{verb}: {event.space} — {event.title}"
    body = (
        f"Space {event.space}: {event.title} — {event.event} at {_iso(event.at)} "
        f"(judged by the central collector). {event.detail}."
    )
    return title, body


def deliver(db, settings: Alerts, now: float | None = None) -> int:
    """Send every message that is due, each to its target; a failure is tried again
    later. How many were sent."""
    now = time.time() if now is None else now
    urls = {_target_key(url): url for url in settings.targets}
    due = db.execute(
        """SELECT o.event_id, o.target, o.tries, e.space, e.kind, e.event, e.at, e.detail
           FROM alert_outbox o JOIN alert_events e ON e.id = o.event_id
           WHERE o.sent_at IS NULL AND o.next_try <= ? ORDER BY o.event_id LIMIT 100""",
        [now],
    ).fetchall()
    sent = 0
    for event_id, target, tries, *fields in due:
        with store.transaction(db):  # claim it: another collector leaves it alone
            claimed = db.execute(
                """UPDATE alert_outbox SET next_try = ? WHERE event_id = ? AND target = ?
                   AND sent_at IS NULL AND next_try <= ?""",
                [now + CLAIM, event_id, target, now],
            ).rowcount
        if not claimed:
            continue
        url = urls.get(target)
        if url is None:  # a target taken out of central.toml since: nothing to send to
            outcome = ("sent_at = ?, error = ?", [now, "target no longer configured"])
        elif _send(url, *message(Event(*fields))):
            outcome = ("sent_at = ?, tries = tries + 1, error = ''", [now])
            sent += 1
        else:
            wait = min(FIRST_RETRY * 2**tries, LAST_RETRY)
            outcome = ("next_try = ?, tries = tries + 1, error = ?", [now + wait, "not taken"])
        with store.transaction(db):
            db.execute(
                f"UPDATE alert_outbox SET {outcome[0]} WHERE event_id = ? AND target = ?",  # noqa: S608
                [*outcome[1], event_id, target],
            )
    return sent


def _send(url: str, title: str, body: str) -> bool:
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        log.error("alerts: a target is not a URL Apprise knows; check [alerts] targets")
        return False
    try:
        return bool(sender.notify(title=title, body=body))
    except Exception:  # a target's plugin failing is a message not sent, not a crash
        log.exception("alerts: a target failed")
        return False


# --- reading, for the page and the API ---


def current(db, space: str | None = None) -> dict[str, list[Alert]]:
    """{space: its alerts firing, and those whose condition holds but not yet long
    enough}, firing first."""
    sql = "SELECT space, kind, since, fired_at, detail FROM alerts"
    rows = db.execute(sql + (" WHERE space = ?" if space else ""), [space] if space else [])
    out: dict[str, list[Alert]] = {}
    for sid, kind, since, fired_at, detail in rows.fetchall():
        if fired_at is not None:
            out.setdefault(sid, []).append(Alert(sid, kind, "firing", fired_at, detail))
        elif since is not None:
            out.setdefault(sid, []).append(Alert(sid, kind, "pending", since, detail))
    for alerts in out.values():
        alerts.sort(key=lambda a: (a.state != "firing", a.kind))
    return out


def history(db, space: str, limit: int = 50) -> list[Event]:
    """A space's last `limit` events, newest first."""
    rows = db.execute(
        """SELECT space, kind, event, at, detail FROM alert_events WHERE space = ?
           ORDER BY at DESC, id DESC LIMIT ?""",
        [space, limit],
    ).fetchall()
    return [Event(*row) for row in rows]


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


# --- running ---


class Evaluator:
    """The one writer of the alerts: a thread that judges and sends every
    `every_seconds`, on a store connection of its own."""

    def __init__(self, config: CollectorConfig):
        self.config = config
        self.stopping = threading.Event()
        self.rounds = 0  # judged so far (for /healthz and the tests)
        self.thread = threading.Thread(target=self._run, name="alerts", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        settings, db = self.config.alerts, None
        while not self.stopping.is_set():
            try:
                if db is None or not store.alive(db):
                    db = store.connect(self.config.central)
                evaluate(db, settings)
                deliver(db, settings)
                self.rounds += 1
            except StoreError as exc:
                log.error("alerts: %s", exc)
                db = None
            except Exception:  # an alert not judged this round must not end the thread
                log.exception("alerts: could not judge the spaces this round")
            self.stopping.wait(settings.every_seconds)
        if db is not None:
            db.close()
