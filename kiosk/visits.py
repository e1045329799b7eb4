"""Visitors and visits: the only module that writes them (rule 1 of the design).

Every function commits before it returns, so a screen that says "Welcome" after calling
one is telling the truth. Errors carry a code the screens translate, not English text.

A name is not an identity: two people may share one, so a first visit always makes a new
visitor, and a returning visitor is reached by a random handle (never a row id anyone
could count through) and proven by their PIN, if they chose one.

A Pi has no real-time clock: given the process's `clock.Watch`, a sign-in or sign-out
taken before the clock was set is stored with clock_synced = 0, and `correct_clock()`
moves those times once the offset is known. Both read the clock inside the write
transaction, so SQLite's one writer at a time puts every old-clock time on disk before
the correction that moves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

from sqlite_utils import Database

from spacekiosk import hours
from spacekiosk.clock import Correction, Watch
from spacekiosk.config import Space
from spacekiosk.db import write

MAX_NAME = 80
MAX_EMAIL = 254
PIN_TRIES = 5  # wrong PINs in a row before a visitor's PIN rests
PIN_REST_SECONDS = 600
MAX_MATCHES = 6  # visitors a lookup shows at most
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_PIN = re.compile(r"[0-9]{4}")
_HANDLE = re.compile(r"[0-9a-f]{24}")
_REQUEST_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
# What no name or address holds: controls, format (bidi) characters, surrogates and
# private use; a joiner and an emoji variation selector are part of emoji.
_FORBIDDEN = ("Cc", "Cf", "Cs", "Co")
_ALLOWED_FORMAT = "\u200d\ufe0f"


class VisitError(Exception):
    """A sign-in or sign-out that cannot be done; `code` names the message to show."""

    def __init__(
        self, code: str, status: int = 400, since: float | None = None, handle: str | None = None
    ):
        super().__init__(code)
        self.code = code
        self.status = status
        self.since = since
        self.handle = handle  # already_in: the open visit's, for its sign-out button


@dataclass(frozen=True)
class Visit:
    id: int
    visitor_id: int
    name: str
    signed_in_at: float
    signed_out_at: float | None
    handle: str | None = None  # what the sign-out button carries

    @property
    def short_name(self) -> str:
        """First name and last initial: what the sign-out list shows to everyone."""
        return short_name(self.name)

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


@dataclass(frozen=True)
class Match:
    """A returning visitor as the lookup shows them: first name, the rest masked, and
    reached by their handle. `first_seen` tells apart people whose labels are the same."""

    handle: str
    label: str
    first_seen: float
    has_pin: bool


def short_name(name: str) -> str:
    parts = name.split()
    if len(parts) < 2:
        return name
    return f"{parts[0]} {parts[-1][0]}."


def masked(name: str) -> str:
    parts = name.split()
    if len(parts) < 2:
        return parts[0][:2] + "•" * max(len(parts[0]) - 2, 2)
    return f"{parts[0]} {parts[-1][0]}{'•' * 3}"


def _has_forbidden(text: str) -> bool:
    # U+FFFD stands where bytes that were not UTF-8 arrived: a mangled name, not a name.
    return "\ufffd" in text or any(
        unicodedata.category(ch) in _FORBIDDEN and ch not in _ALLOWED_FORMAT for ch in text
    )


def clean_name(raw: str) -> str:
    """The name as stored: NFC, single spaces; refuses what no name contains."""
    name = unicodedata.normalize("NFC", raw or "")
    if _has_forbidden(name):
        raise VisitError("control_characters")
    name = re.sub(r"\s+", " ", name).strip()
    if not name:
        raise VisitError("empty_name")
    if len(name) > MAX_NAME:
        raise VisitError("long_name")
    return name


def clean_email(raw: str) -> str | None:
    email = unicodedata.normalize("NFC", (raw or "").strip())
    if not email:
        return None
    if len(email) > MAX_EMAIL or _has_forbidden(email) or not _EMAIL.fullmatch(email):
        raise VisitError("bad_email")
    return email


def clean_pin(raw: str) -> str:
    if not _PIN.fullmatch(raw or ""):
        raise VisitError("bad_pin")
    return raw


def clean_request_id(raw: str | None) -> str | None:
    """A form's request id (its double-tap guard), or None for one no form of ours sent."""
    return raw if raw and _REQUEST_ID.fullmatch(raw) else None


def is_handle(raw: str) -> bool:
    return bool(_HANDLE.fullmatch(raw))


def new_handle() -> str:
    return secrets.token_hex(12)


def _key(name: str) -> str:
    return name.casefold()


def pin_hash(secret: str, salt: str, pin: str) -> str:
    """A keyed hash: with only 10,000 PINs, a slow hash would not stop a thief with the
    file, but the key (kept beside it, readable by the service alone) does, and it costs
    a sign-in microseconds instead of the tens of milliseconds a Pi spends on PBKDF2."""
    return hmac.new(secret.encode(), f"{salt}:{pin}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NewVisitor:
    """What the first-visit form collects."""

    name: str
    email: str | None = None
    purpose: str | None = None
    event: str | None = None
    pin: str | None = None
    guidelines_version: int = 1


def _replay(db: Database, request_id: str | None, same_as) -> Visit | None:
    """The visit this form already made (a double tap, a resent form), if any.

    A request id that made a visit for someone else is refused, not replayed: an old
    form's id must not show another visitor's name, nor sign anyone in.
    """
    if not request_id:
        return None
    row = db.conn.execute("SELECT id FROM visits WHERE request_id = ?", [request_id]).fetchone()
    if row is None:
        return None
    visit = get(db, row[0])
    if not same_as(visit):
        raise VisitError("bad_form")
    return visit


def _refuse_if_present(db: Database, visitor_id: int) -> None:
    row = db.conn.execute(
        "SELECT signed_in_at, handle FROM visits WHERE visitor_id = ? AND signed_out_at IS NULL",
        [visitor_id],
    ).fetchone()
    if row:
        raise VisitError("already_in", status=409, since=row[0], handle=row[1])


def _stamp(now: float | None, clock: Watch | None) -> tuple[float, bool]:
    """The time to store and whether it can be trusted; a `now` passed in is trusted."""
    if now is not None or clock is None:
        return (time.time() if now is None else now), True
    return clock.now()


def _open_visit(db, visitor_id, now, synced, purpose, event, via, request_id) -> int:
    # Plain SQL: sqlite-utils' insert() introspects the table on every call, which
    # costs more than the rest of a sign-in.
    return db.conn.execute(
        "INSERT INTO visits (visitor_id, signed_in_at, clock_synced, purpose, event, via, "
        "request_id, handle) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [visitor_id, now, int(synced), purpose, event, via, request_id or None, new_handle()],
    ).lastrowid


def sign_in_new(
    db: Database,
    visitor: NewVisitor,
    secret: str,
    via: str = "kiosk",
    request_id: str | None = None,
    now: float | None = None,
    clock: Watch | None = None,
) -> Visit:
    """A first visit: store a new visitor and open their visit in one transaction.

    A name already known is still a new person: two people can share a name, and a name
    proves nothing (a returning visitor signs in by handle and PIN instead).
    The same request_id twice (a double tap, a resent form) returns the first visit.
    """
    with write(db):
        now, synced = _stamp(now, clock)
        if replay := _replay(db, request_id, lambda v: v.name == visitor.name):
            return replay
        salt = secrets.token_hex(8)
        visitor_id = db.conn.execute(
            "INSERT INTO visitors (name, name_key, email, created_at, pin_salt, pin_hash, "
            "guidelines_version, handle) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                visitor.name,
                _key(visitor.name),
                visitor.email,
                now,
                salt if visitor.pin else None,
                pin_hash(secret, salt, visitor.pin) if visitor.pin else None,
                visitor.guidelines_version,
                new_handle(),
            ],
        ).lastrowid
        visit_id = _open_visit(
            db, visitor_id, now, synced, visitor.purpose, visitor.event, via, request_id
        )
    return Visit(visit_id, visitor_id, visitor.name, now, None)


def sign_in_returning(
    db: Database,
    visitor_id: int,
    pin: str | None,
    secret: str,
    guidelines_version: int,
    accepted: bool,
    via: str = "kiosk",
    request_id: str | None = None,
    now: float | None = None,
    clock: Watch | None = None,
    purpose: str | None = None,
    event: str | None = None,
) -> Visit:
    """A returning visitor, proven by their PIN (if they chose one), with why they came
    and today's event, as a first visit stores them (the caller checks both).

    After PIN_TRIES wrong PINs in a row the PIN rests for a while, so 10,000 guesses
    cannot be tried at the door. A resting PIN refuses every form, a replayed one too.
    """
    with write(db):
        now, synced = _stamp(now, clock)
        row = db.conn.execute(
            "SELECT pin_salt, pin_hash, pin_failures, pin_rest_until, guidelines_version "
            "FROM visitors WHERE id = ? AND handle IS NOT NULL",
            [visitor_id],
        ).fetchone()
        if row is None:
            raise VisitError("unknown_visitor", status=404)
        salt, stored, failures, rest_until, seen_version = row
        if rest_until and rest_until > now:
            raise VisitError("pin_resting", status=429, since=rest_until)
        if stored and not (pin and hmac.compare_digest(pin_hash(secret, salt, pin), stored)):
            # Counted and committed before the refusal, or a rollback would forget it.
            failures += 1
            rest = now + PIN_REST_SECONDS if failures >= PIN_TRIES else None
            db.conn.execute(
                "UPDATE visitors SET pin_failures = ?, pin_rest_until = ? WHERE id = ?",
                [0 if rest else failures, rest, visitor_id],
            )
            visit_id = None
        else:
            if replay := _replay(db, request_id, lambda v: v.visitor_id == visitor_id):
                return replay
            if (seen_version or 0) < guidelines_version and not accepted:
                raise VisitError("guidelines_changed", status=400)
            _refuse_if_present(db, visitor_id)
            db.conn.execute(
                "UPDATE visitors SET pin_failures = 0, pin_rest_until = NULL, "
                "guidelines_version = max(guidelines_version, ?) WHERE id = ?",
                [guidelines_version, visitor_id],
            )
            visit_id = _open_visit(db, visitor_id, now, synced, purpose, event, via, request_id)
    if visit_id is None:
        raise VisitError("wrong_pin", status=403)
    return get(db, visit_id)


def known(db: Database, name: str, limit: int = MAX_MATCHES) -> list[Match]:
    """Visitors with exactly this name (case and spacing aside), PIN or not, masked:
    the people a visitor who typed it may be."""
    rows = db.conn.execute(
        "SELECT handle, name, created_at, pin_hash IS NOT NULL FROM visitors "
        "WHERE name_key = ? AND handle IS NOT NULL ORDER BY id LIMIT ?",
        [_key(clean_name(name)), limit],
    ).fetchall()
    return [Match(handle, masked(name), at, bool(pin)) for handle, name, at, pin in rows]


def visitor_by_handle(db: Database, handle: str) -> dict | None:
    """A visitor as their PIN page needs them, or None for a handle no visitor has."""
    if not is_handle(handle):
        return None
    row = db.conn.execute(
        "SELECT id, name, pin_hash IS NOT NULL, coalesce(guidelines_version, 0) FROM visitors "
        "WHERE handle = ?",
        [handle],
    ).fetchone()
    if not row:
        return None
    return {
        "id": row[0],
        "handle": handle,
        "label": masked(row[1]),
        "has_pin": bool(row[2]),
        "guidelines_version": row[3],
        "last_purpose": last_purpose(db, row[0]),
    }


def last_purpose(db: Database, visitor_id: int) -> str | None:
    """Why this visitor came the last time they said: their PIN page offers it again, so a
    regular signs in with the same taps as ever."""
    row = db.conn.execute(
        "SELECT purpose FROM visits WHERE visitor_id = ? AND purpose IS NOT NULL "
        "ORDER BY signed_in_at DESC, id DESC LIMIT 1",
        [visitor_id],
    ).fetchone()
    return row[0] if row else None


def matches(db: Database, prefix: str, limit: int = MAX_MATCHES) -> list[Match]:
    """Returning visitors with a PIN whose name starts with `prefix` (at least 2 letters),
    shown masked, at most `limit`: nobody can read a list of everyone who ever came, and
    a visitor without a PIN is found only by typing their whole name."""
    key = _key(re.sub(r"\s+", " ", prefix or "").strip())
    if len(key) < 2:
        return []
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.conn.execute(
        "SELECT handle, name, created_at FROM visitors WHERE pin_hash IS NOT NULL "
        "AND handle IS NOT NULL AND name_key LIKE ? ESCAPE '\\' ORDER BY name_key, id LIMIT ?",
        [escaped + "%", min(limit, MAX_MATCHES)],
    ).fetchall()
    return [Match(handle, masked(name), at, True) for handle, name, at in rows]


def visit_by_handle(db: Database, handle: str) -> int | None:
    """The id of the visit a sign-out button names, or None."""
    if not is_handle(handle):
        return None
    row = db.conn.execute("SELECT id FROM visits WHERE handle = ?", [handle]).fetchone()
    return row[0] if row else None


def sign_out(
    db: Database, visit_id: int, now: float | None = None, clock: Watch | None = None
) -> Visit:
    """Close an open visit; signing out someone already out is refused, not repeated."""
    return _close(db, visit_id, "visitor", now, clock)


def _close(db: Database, visit_id: int, by: str, now: float | None, clock: Watch | None) -> Visit:
    with write(db):
        now, synced = _stamp(now, clock)
        visit = get(db, visit_id)
        if visit is None:
            raise VisitError("unknown_visit", status=404)
        if visit.signed_out_at is not None:
            raise VisitError("already_out", status=409, since=visit.signed_out_at)
        db.conn.execute(
            "UPDATE visits SET signed_out_at = ?, closed_by = ?, "
            "clock_synced = min(clock_synced, ?) WHERE id = ?",
            [now, by, int(synced), visit_id],
        )
    return get(db, visit_id)


def get(db: Database, visit_id: int) -> Visit | None:
    row = db.conn.execute(
        "SELECT v.id, v.visitor_id, coalesce(p.name, '?'), v.signed_in_at, v.signed_out_at, "
        "v.handle FROM visits v JOIN visitors p ON p.id = v.visitor_id WHERE v.id = ?",
        [visit_id],
    ).fetchone()
    return Visit(*row) if row else None


def present_count(db: Database) -> int:
    """How many are signed in now, without reading who."""
    return db.conn.execute("SELECT count(*) FROM visits WHERE signed_out_at IS NULL").fetchone()[0]


def present(db: Database) -> list[Visit]:
    """Everyone signed in now, earliest first."""
    rows = db.conn.execute(
        "SELECT v.id, v.visitor_id, coalesce(p.name, '?'), v.signed_in_at, v.signed_out_at, "
        "v.handle FROM visits v JOIN visitors p ON p.id = v.visitor_id "
        "WHERE v.signed_out_at IS NULL ORDER BY v.signed_in_at"
    ).fetchall()
    return [Visit(*row) for row in rows]


def recent_phone_sign_ins(db: Database, since: float) -> list[Visit]:
    """Visits opened from a phone since `since`, for the kiosk to greet."""
    rows = db.conn.execute(
        "SELECT v.id, v.visitor_id, coalesce(p.name, '?'), v.signed_in_at, v.signed_out_at "
        "FROM visits v JOIN visitors p ON p.id = v.visitor_id "
        "WHERE v.via = 'phone' AND v.signed_in_at > ? ORDER BY v.signed_in_at",
        [since],
    ).fetchall()
    return [Visit(*row) for row in rows]


def close_at_closing(db: Database, space: Space, now: float | None = None) -> int:
    """Sign out, as the kiosk (closed_by 'closing'), every visit still open past
    `auto_close_time()`; returns how many."""
    now = time.time() if now is None else now
    closed = 0
    with write(db):
        for visit_id, started in db.conn.execute(
            "SELECT id, signed_in_at FROM visits WHERE signed_out_at IS NULL"
        ).fetchall():
            close = auto_close_time(space, started)
            if close <= now:
                db.conn.execute(
                    "UPDATE visits SET signed_out_at = ?, closed_by = 'closing' WHERE id = ?",
                    [close, visit_id],
                )
                closed += 1
    return closed


def auto_close_time(space: Space, started: float) -> float:
    """When the kiosk closes a visit nobody signed out: at the first closing after it
    began, on the day it began; a visit begun after that day's last closing (or on a day
    the space is closed) at the end of its local day. Never later: a sign-in at 20:30 on
    a Saturday must not stay "in" through a closed Sunday until Monday's closing, on
    Monday's sign-out list, its roll-call and the sign-ins' occupancy. Opening spans
    never run past midnight ("24:00" is the latest), so the day's end bounds them all."""
    zone = space.timezone
    day = datetime.fromtimestamp(started, UTC).astimezone(zone).date()
    end_of_day = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=zone).timestamp()
    close = hours.closing_time(space, started)
    return end_of_day if close is None else min(close, end_of_day)


def correct_clock(db: Database, clock: Watch, after_id: int) -> tuple[Correction, int] | None:
    """If the clock has been set, move the untrusted sign-in and sign-out times of the
    visits this process opened (id > after_id) by the offset, in one transaction; returns
    the correction and how many visits it moved.

    A visit opened before the process started and signed out before the clock was set
    keeps clock_synced = 0: its times may be on an earlier boot's clock.
    """
    with write(db):  # see the module's docstring
        fix = clock.check()
        if fix is None:
            return None
        moved = db.conn.execute(
            "UPDATE visits SET "
            "signed_in_at = signed_in_at "
            "+ CASE WHEN signed_in_at BETWEEN :start AND :end THEN :offset ELSE 0 END, "
            "signed_out_at = signed_out_at "
            "+ CASE WHEN signed_out_at BETWEEN :start AND :end THEN :offset ELSE 0 END, "
            "clock_synced = :synced "
            "WHERE clock_synced = 0 AND id > :after_id "
            "AND (signed_in_at BETWEEN :start AND :end OR signed_out_at BETWEEN :start AND :end)",
            fix.params(after_id),
        ).rowcount
    return fix, moved


ERASED = "—"


def erase_expired(db: Database, retention_days: int, now: float | None = None) -> int:
    """Erase the name, e-mail and PIN of everyone whose last visit ended more than
    `retention_days` ago. Their visits stay, nameless, so the counts survive; their
    handle goes too, so no page reaches them again."""
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400
    with write(db):
        expired = [
            visitor_id
            for (visitor_id,) in db.conn.execute(
                "SELECT p.id FROM visitors p WHERE p.handle IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM visits v WHERE v.visitor_id = p.id "
                "AND coalesce(v.signed_out_at, v.signed_in_at) >= ?) "
                "AND p.created_at < ?",
                [cutoff, cutoff],
            )
        ]
        db.conn.executemany(
            "UPDATE visitors SET name = ?, name_key = 'erased:' || id, email = NULL, "
            "pin_salt = NULL, pin_hash = NULL, handle = NULL WHERE id = ?",
            [(ERASED, visitor_id) for visitor_id in expired],
        )
    return len(expired)


def sign_out_by_admin(
    db: Database, visit_id: int, now: float | None = None, clock: Watch | None = None
) -> Visit:
    """Close a visit its visitor forgot to close, for an admin (closed_by 'admin'); a
    visit already closed is refused, as a visitor's second sign-out is."""
    return _close(db, visit_id, "admin", now, clock)


def sign_out_everyone(
    db: Database, up_to: int, now: float | None = None, clock: Watch | None = None
) -> list[Visit]:
    """Close, for an admin, every open visit whose id is at most `up_to`: the ones the
    admin was shown and confirmed, not someone who signed in meanwhile. Returns them."""
    with write(db):
        now, synced = _stamp(now, clock)
        ids = [
            visit_id
            for (visit_id,) in db.conn.execute(
                "SELECT id FROM visits WHERE signed_out_at IS NULL AND id <= ? ORDER BY id",
                [up_to],
            )
        ]
        db.conn.executemany(
            "UPDATE visits SET signed_out_at = ?, closed_by = 'admin', "
            "clock_synced = min(clock_synced, ?) WHERE id = ?",
            [(now, int(synced), visit_id) for visit_id in ids],
        )
        return [get(db, visit_id) for visit_id in ids]
