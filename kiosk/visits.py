"""Visitors and visits: the only module that writes them (rule 1 of the design)."""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass

from sqlite_utils import Database

from spacekiosk.db import write

MAX_NAME = 80


class VisitError(Exception):
    """A sign-in or sign-out that cannot be done, with a message for the visitor."""

    def __init__(self, message: str, status: int = 400, since: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.since = since


@dataclass(frozen=True)
class Visit:
    id: int
    visitor_id: int
    name: str
    signed_in_at: float
    signed_out_at: float | None

    @property
    def short_name(self) -> str:
        """First name and last initial: what the sign-out list shows to everyone."""
        return short_name(self.name)


def short_name(name: str) -> str:
    parts = name.split()
    if len(parts) < 2:
        return name
    return f"{parts[0]} {parts[-1][0]}."


def clean_name(raw: str) -> str:
    """The name as stored: NFC, single spaces; refuses what no name contains."""
    name = unicodedata.normalize("NFC", raw or "")
    if any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") and ch not in "\u200d\ufe0f"
        for ch in name
    ):
        raise VisitError("A name cannot contain control characters.")
    name = re.sub(r"\s+", " ", name).strip()
    if not name:
        raise VisitError("Please enter your name.")
    if len(name) > MAX_NAME:
        raise VisitError(f"Please use at most {MAX_NAME} characters for your name.")
    return name


def _match_key(name: str) -> str:
    return name.casefold()


def sign_in(
    db: Database, raw_name: str, request_id: str | None = None, now: float | None = None
) -> Visit:
    """Record a sign-in and commit it before returning: only then may the screen say Welcome.

    The same request_id twice (a double tap, a resent form) returns the first visit.
    """
    name = clean_name(raw_name)
    now = time.time() if now is None else now
    with write(db):
        if request_id:
            row = db.execute(
                "SELECT v.id FROM visits v WHERE v.request_id = ?", [request_id]
            ).fetchone()
            if row:
                return get(db, row[0])
        visitor_id = _find_visitor(db, name)
        if visitor_id is None:
            visitor_id = (
                db["visitors"]
                .insert({"name": name, "name_key": _match_key(name), "created_at": now})
                .last_pk
            )
        else:
            open_visit = db.execute(
                "SELECT signed_in_at FROM visits WHERE visitor_id = ? AND signed_out_at IS NULL",
                [visitor_id],
            ).fetchone()
            if open_visit:
                raise VisitError("already signed in", status=409, since=open_visit[0])
        visit_id = (
            db["visits"]
            .insert(
                {
                    "visitor_id": visitor_id,
                    "signed_in_at": now,
                    "request_id": request_id or None,
                }
            )
            .last_pk
        )
    return Visit(visit_id, visitor_id, name, now, None)


def _find_visitor(db: Database, name: str) -> int | None:
    row = db.execute(
        "SELECT id FROM visitors WHERE name_key = ? ORDER BY id LIMIT 1", [_match_key(name)]
    ).fetchone()
    return row[0] if row else None


def sign_out(db: Database, visit_id: int, now: float | None = None) -> Visit:
    """Close an open visit; signing out someone already out is refused, not repeated."""
    now = time.time() if now is None else now
    with write(db):
        visit = get(db, visit_id)
        if visit is None:
            raise VisitError("We could not find that visit.", status=404)
        if visit.signed_out_at is not None:
            raise VisitError("already signed out", status=409, since=visit.signed_out_at)
        db.execute(
            "UPDATE visits SET signed_out_at = ?, closed_by = 'visitor' WHERE id = ?",
            [now, visit_id],
        )
    return Visit(visit.id, visit.visitor_id, visit.name, visit.signed_in_at, now)


def get(db: Database, visit_id: int) -> Visit | None:
    row = db.execute(
        "SELECT v.id, v.visitor_id, p.name, v.signed_in_at, v.signed_out_at "
        "FROM visits v JOIN visitors p ON p.id = v.visitor_id WHERE v.id = ?",
        [visit_id],
    ).fetchone()
    return Visit(*row) if row else None


def present(db: Database) -> list[Visit]:
    """Everyone signed in now, earliest first."""
    rows = db.execute(
        "SELECT v.id, v.visitor_id, p.name, v.signed_in_at, v.signed_out_at "
        "FROM visits v JOIN visitors p ON p.id = v.visitor_id "
        "WHERE v.signed_out_at IS NULL ORDER BY v.signed_in_at"
    ).fetchall()
    return [Visit(*row) for row in rows]
