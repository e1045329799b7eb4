"""Visitors as the local admins handle them: find one, read and export what is stored
about them, reset their PIN, merge two records of one person, erase them; and the visits
as a spreadsheet.

It writes `visitors` and `visits`, which the kiosk owns (kiosk/visits.py writes them for
the visitor screens), each action in one transaction; the admin pages run them on the
kiosk's one writer. An admin reaches a visitor by their handle, never by a row id.

**Erasure is for good.** A name, e-mail and PIN are overwritten in their row, and every
write here first sets `PRAGMA secure_delete`, so SQLite puts zeros where the old bytes
were (in the row's page, in the `visitors_name_key` index that holds the case-folded
name, and in any page it frees). The write-ahead log still holds the pages as they were
until `spacekiosk.db.scrub()` checkpoints it and cuts it to zero bytes: the pages call it
after every erasure. Visits stay, nameless, so every count stays right.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from kiosk import visits
from kiosk.visits import ERASED, VisitError
from spacekiosk.clock import Watch
from spacekiosk.db import write

MAX_FOUND = 30  # visitors a search shows at most
MAX_QUERY = visits.MAX_EMAIL
MIN_QUERY = 2
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run, not show


@dataclass(frozen=True)
class Person:
    """A visitor as an admin sees them, with what tells two of one name apart."""

    id: int
    handle: str
    name: str
    email: str | None
    first_seen: float
    has_pin: bool
    visits: int
    last_visit: float | None
    present: bool

    @property
    def email_domain(self) -> str | None:
        """The e-mail with its local part masked: enough to tell two people apart."""
        if not self.email:
            return None
        return "•••@" + self.email.rpartition("@")[2]


@dataclass(frozen=True)
class PastVisit:
    signed_in_at: float
    signed_out_at: float | None
    purpose: str | None
    event: str | None
    via: str
    closed_by: str | None
    clock_synced: bool


def clean_query(raw: str | None) -> str:
    """A search as typed: NFC, single spaces. Refuses what no name or address holds."""
    query = re.sub(r"\s+", " ", unicodedata.normalize("NFC", raw or "")).strip()
    if len(query) > MAX_QUERY or visits._has_forbidden(query):
        raise VisitError("bad_query")
    return query


_PERSON = """SELECT p.id, p.handle, p.name, p.email, p.created_at, p.pin_hash IS NOT NULL,
       (SELECT count(*) FROM visits v WHERE v.visitor_id = p.id),
       (SELECT max(v.signed_in_at) FROM visits v WHERE v.visitor_id = p.id),
       EXISTS (SELECT 1 FROM visits v WHERE v.visitor_id = p.id AND v.signed_out_at IS NULL)
       FROM visitors p"""


_FIND = (
    _PERSON + " WHERE p.id IN (SELECT id FROM visitors WHERE handle IS NOT NULL "  # noqa: S608
    "AND (name_key LIKE :like ESCAPE '\\' OR email LIKE :like ESCAPE '\\') "
    "ORDER BY name_key, id LIMIT :limit) ORDER BY p.name_key, p.id"
)


def find(db: Database, raw: str, limit: int = MAX_FOUND) -> tuple[list[Person], bool]:
    """Visitors whose name or e-mail holds the query (case aside), at most `limit`, by
    name; and whether there were more. Fewer than MIN_QUERY characters find nobody."""
    key = clean_query(raw).casefold()
    if len(key) < MIN_QUERY:
        return [], False
    like = "%" + key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = db.execute(_FIND, {"like": like, "limit": limit + 1}).fetchall()
    found = [_person(row) for row in rows]
    return found[:limit], len(found) > limit


def by_handle(db: Database, handle: str) -> Person | None:
    """The visitor a page's handle names; None for an erased one or a handle nobody has."""
    if not visits.is_handle(handle):
        return None
    row = db.execute(f"{_PERSON} WHERE p.handle = ?", [handle]).fetchone()
    return _person(row) if row else None


def same_name(db: Database, person: Person) -> list[Person]:
    """The other visitors of this name (case and spacing aside): records to merge, or
    people to tell apart."""
    rows = db.execute(
        f"{_PERSON} WHERE p.name_key = ? AND p.id != ? AND p.handle IS NOT NULL "
        "ORDER BY p.id LIMIT ?",
        [person.name.casefold(), person.id, MAX_FOUND],
    ).fetchall()
    return [_person(row) for row in rows]


def _person(row) -> Person:
    pid, handle, name, email, first, pin, count, last, present = row
    return Person(pid, handle, name, email, first, bool(pin), count, last, bool(present))


def visits_of(db: Database, person_id: int) -> list[PastVisit]:
    """A visitor's visits, latest first."""
    rows = db.execute(
        "SELECT signed_in_at, signed_out_at, purpose, event, via, closed_by, clock_synced "
        "FROM visits WHERE visitor_id = ? ORDER BY signed_in_at DESC, id DESC",
        [person_id],
    ).fetchall()
    return [PastVisit(*row[:6], bool(row[6])) for row in rows]


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def export(db: Database, person_id: int, space: str, now: float | None = None) -> dict:
    """Everything stored about a visitor, for them to take away (GDPR art. 15 and 20,
    Kenya's DPA s. 26, the Philippines' DPA s. 16). The PIN is stored only as a keyed
    hash, which says nothing to its owner and would help a thief: its presence is
    exported, not the hash."""
    row = db.execute(
        "SELECT name, email, created_at, pin_hash IS NOT NULL, pin_failures, pin_rest_until, "
        "guidelines_version FROM visitors WHERE id = ? AND handle IS NOT NULL",
        [person_id],
    ).fetchone()
    if row is None:
        raise VisitError("unknown_visitor", status=404)
    name, email, created, has_pin, failures, rest_until, guidelines = row
    return {
        "space": space,
        "exported_at": _iso(time.time() if now is None else now),
        "visitor": {
            "name": name,
            "email": email,
            "first_visit": _iso(created),
            "pin_set": bool(has_pin),
            "wrong_pins_in_a_row": failures,
            "pin_resting_until": _iso(rest_until),
            "guidelines_version_accepted": guidelines,
        },
        "visits": [
            {
                "signed_in_at": _iso(v.signed_in_at),
                "signed_out_at": _iso(v.signed_out_at),
                "purpose": v.purpose,
                "event": v.event,
                "signed_in_on": v.via,
                "closed_by": v.closed_by,
                "time_was_certain": v.clock_synced,
            }
            for v in visits_of(db, person_id)
        ],
        "shared": "Only counts per hour, with no names or e-mails, leave this kiosk.",
    }


def _stamp(now: float | None, clock: Watch | None) -> tuple[float, bool]:
    if now is not None or clock is None:
        return (time.time() if now is None else now), True
    return clock.now()


def _wipe(db: Database, person_id: int) -> int:
    """Overwrite a visitor's personal data in place (see the module's docstring)."""
    return db.execute(
        "UPDATE visitors SET name = ?, name_key = 'erased:' || id, email = NULL, "
        "pin_salt = NULL, pin_hash = NULL, pin_failures = 0, pin_rest_until = NULL, "
        "handle = NULL WHERE id = ? AND handle IS NOT NULL",
        [ERASED, person_id],
    ).rowcount


def _secure(db: Database) -> None:
    # Zeros where deleted bytes were, on this connection from now on (it can be set
    # inside a transaction; it applies to the pages written after it).
    db.execute("PRAGMA secure_delete = ON")


def erase(
    db: Database, person_id: int, now: float | None = None, clock: Watch | None = None
) -> int:
    """Erase a visitor's name, e-mail, PIN and handle; their visits stay, nameless.

    A visit still open is signed out now (by an admin): a nameless person cannot be
    found on the sign-out screen or the roll-call. Returns how many visits that closed.
    Call `spacekiosk.db.scrub()` afterwards to clear the write-ahead log.
    """
    with write(db):
        _secure(db)
        now, synced = _stamp(now, clock)
        closed = db.execute(
            "UPDATE visits SET signed_out_at = ?, closed_by = 'admin', "
            "clock_synced = min(clock_synced, ?) WHERE visitor_id = ? AND signed_out_at IS NULL",
            [now, int(synced), person_id],
        ).rowcount
        if not _wipe(db, person_id):
            raise VisitError("unknown_visitor", status=404)
    return closed


def reset_pin(db: Database, person_id: int, secret: str, pin: str | None) -> None:
    """Give a visitor a new PIN (or none: they then sign in by their whole name), and let
    them try again at once if wrong PINs had made theirs rest."""
    if pin is not None:
        pin = visits.clean_pin(pin)
    salt = secrets.token_hex(8) if pin else None
    with write(db):
        _secure(db)
        changed = db.execute(
            "UPDATE visitors SET pin_salt = ?, pin_hash = ?, pin_failures = 0, "
            "pin_rest_until = NULL WHERE id = ? AND handle IS NOT NULL",
            [salt, visits.pin_hash(secret, salt, pin) if pin else None, person_id],
        ).rowcount
        if not changed:
            raise VisitError("unknown_visitor", status=404)


def merge(db: Database, keep_id: int, other_id: int) -> int:
    """Two records of one person become one: the other's visits move to `keep_id`, which
    takes the earlier first visit, and the other's e-mail and PIN if it has none; the
    other record is erased. Refused while both are signed in (one visit must end first).
    Returns how many visits moved. Call `spacekiosk.db.scrub()` afterwards."""
    if keep_id == other_id:
        raise VisitError("same_visitor", status=409)
    with write(db):
        _secure(db)
        found = db.execute(
            "SELECT id, created_at, email, pin_salt, pin_hash, guidelines_version, "
            "EXISTS (SELECT 1 FROM visits v WHERE v.visitor_id = p.id "
            "AND v.signed_out_at IS NULL) FROM visitors p "
            "WHERE id IN (?, ?) AND handle IS NOT NULL",
            [keep_id, other_id],
        ).fetchall()
        rows = {row[0]: row for row in found}
        if len(rows) != 2:
            raise VisitError("unknown_visitor", status=404)
        keep, other = rows[keep_id], rows[other_id]
        if keep[6] and other[6]:
            raise VisitError("both_present", status=409)
        salt, pin = (keep[3], keep[4]) if keep[4] else (other[3], other[4])
        db.execute(
            "UPDATE visitors SET created_at = ?, email = ?, pin_salt = ?, pin_hash = ?, "
            "guidelines_version = ? WHERE id = ?",
            [min(keep[1], other[1]), keep[2] or other[2], salt, pin, max(keep[5], other[5]),
             keep_id],
        )  # fmt: skip
        moved = db.execute(
            "UPDATE visits SET visitor_id = ? WHERE visitor_id = ?", [keep_id, other_id]
        ).rowcount
        _wipe(db, other_id)
    return moved


# --- spreadsheets ---


def safe_cell(value: object) -> object:
    """A CSV cell a spreadsheet will show, not run (a leading = + - @, tab or CR would
    make it a formula): such a text gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def csv_text(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


VISITS_HEADER = ("signed_in", "signed_out", "name", "purpose", "event", "via", "closed_by")


def visit_rows(db: Database, since: float, until: float, zone: ZoneInfo) -> Iterator[tuple]:
    """The visits begun in [since, until), earliest first, with the visitor's name (empty
    for an erased one) and local times: what the CSV of visits holds."""

    def local(at: float | None) -> str:
        return "" if at is None else datetime.fromtimestamp(at, zone).strftime("%Y-%m-%d %H:%M")

    for row in db.execute(
        "SELECT v.signed_in_at, v.signed_out_at, CASE WHEN p.handle IS NULL THEN '' "
        "ELSE p.name END, v.purpose, v.event, v.via, v.closed_by FROM visits v "
        "JOIN visitors p ON p.id = v.visitor_id WHERE v.signed_in_at >= ? "
        "AND v.signed_in_at < ? ORDER BY v.signed_in_at, v.id",
        [since, until],
    ):
        yield (local(row[0]), local(row[1]), *(cell or "" for cell in row[2:]))
