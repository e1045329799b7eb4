"""The space's local admins: a name, a password (for a laptop or phone on the space's
network) and a PIN (for the kiosk's own screen), each kept as a salted scrypt hash.
The only writer of `admins`, for `spacekiosk admin` and the pages alike; removing an
admin or giving a new password ends their sessions (spacekiosk/sessions.py)."""

from __future__ import annotations

import re
import time

from spacekiosk import passwords
from spacekiosk.db import write
from spacekiosk.sessions import Sessions, Throttle

PIN = re.compile(r"^[0-9]{4,8}\Z")
SESSION_HOURS = 12
# Sessions and failed tries in the Pi's store, for the admin pages and the command alike.
SESSIONS = Sessions(write, hours=SESSION_HOURS)
PASSWORD_TRIES = Throttle(write, tries=10)  # per address
PIN_TRIES = Throttle(write, tries=5)  # per screen: a PIN has few digits to guess


def check_pin(pin: str) -> str:
    if not isinstance(pin, str) or not PIN.match(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    return pin


def add(db, name: str, password: str, pin: str) -> bool:
    """Make a local admin, or give an existing one a new password and PIN (ending
    their sessions). Returns True if the admin is new."""
    passwords.check_name(name, "admin")
    passwords.check_password(password)
    check_pin(pin)
    hashed, pin_hashed = passwords.hash_secret(password), passwords.hash_secret(pin)
    with write(db):
        new = db.execute("SELECT 1 FROM admins WHERE name = ?", [name]).fetchone() is None
        db.execute(
            """INSERT INTO admins (name, password_hash, pin_hash, created_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
               pin_hash = excluded.pin_hash""",
            [name, hashed, pin_hashed, time.time()],
        )
        SESSIONS.end_all(db, name)  # a new password logs the admin out everywhere
    return new


def remove(db, name: str) -> bool:
    """Delete an admin and end their sessions; False if there was none."""
    with write(db):
        removed = db.execute("DELETE FROM admins WHERE name = ?", [name]).rowcount
        SESSIONS.end_all(db, name)
    return removed > 0


def names(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM admins ORDER BY name").fetchall()]


def exists(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM admins WHERE name = ?", [name]).fetchone() is not None


def check_password(db, name: str, password: str) -> bool:
    """Whether name and password match; an unknown name costs the same scrypt."""
    return passwords.matches(_hash(db, name, "password_hash"), password)


def check_pin_of(db, name: str, pin: str) -> bool:
    return passwords.matches(_hash(db, name, "pin_hash"), pin)


def _hash(db, name: str, column: str) -> str | None:
    if not passwords.is_name(name):
        return None
    row = db.execute(f"SELECT {column} FROM admins WHERE name = ?", [name]).fetchone()  # noqa: S608 (a column of ours)
    return row[0] if row else None
