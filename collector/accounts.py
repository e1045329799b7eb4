"""What the central team enters and who may read: page logins, API tokens, each space's
name and capacity, and its monthly cost. The only writer of those tables (`users`,
`api_tokens`, `space_info`, `costs`), for the pages and the `spacekiosk` commands alike;
removing a space also deletes its HTTPS token (`tokens`, store.py's), and removing a
login ends its sessions (through sessions.py).

Secrets are kept only as hashes: passwords with salted scrypt (spacekiosk/passwords.py,
shared with the kiosk's admins), API tokens — 256 random bits — as SHA-256.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
import unicodedata
from decimal import Decimal

from collector import sessions, store
from spacekiosk import passwords
from spacekiosk.config import SPACE_ID, is_collector_login

MIN_PASSWORD = passwords.MIN_PASSWORD
USER_NAME = passwords.LOGIN_NAME
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
# A month's cost: up to a trillion, with at most 4 decimals; ASCII digits and a point only.
AMOUNT = re.compile(r"^[0-9]{1,12}(\.[0-9]{0,4})?\Z")
MAX_AMOUNT = 1e12


def check_space_id(space: str) -> str:
    """The space id, or ValueError saying what a space id looks like."""
    if isinstance(space, str) and is_collector_login(space):
        raise ValueError(f"{space!r} is kept for the collectors' own broker logins, not a space id")
    if not isinstance(space, str) or not SPACE_ID.match(space):
        raise ValueError(
            f"{space!r} is not a space id: use 2-32 lowercase letters, digits and dashes, "
            "starting with a letter or digit (e.g. 'nairobi')"
        )
    return space


def _check_name(name: str, what: str) -> str:
    return passwords.check_name(name, what)


def visible(text: str) -> bool:
    """No control, formatting (bidi overrides too), unassigned or line-breaking
    characters: what a page or a spreadsheet would show as something else, or not at all."""
    return not any(unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" for c in text)


# --- the page's logins ---


def add_user(db, name: str, password: str) -> bool:
    """Create a login for the central page, or set its password if it exists.
    Returns True if the user is new."""
    _check_name(name, "user")
    hashed = passwords.hash_secret(passwords.check_password(password))
    with store.transaction(db):
        new = not user_exists(db, name)
        db.execute(
            """INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash""",
            [name, hashed, time.time()],
        )
        sessions.end_all(db, name)  # a new password logs the user out everywhere
    return new


def check_user(db, name: str, password: str) -> bool:
    """Whether the name and password match. An unknown name costs the same scrypt as a
    wrong password, so the answer's timing does not tell which names exist."""
    row = (
        passwords.is_name(name)
        and db.execute("SELECT password_hash FROM users WHERE name = ?", [name]).fetchone()
    )
    return passwords.matches(row[0] if row else None, password)


def user_exists(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM users WHERE name = ?", [name]).fetchone() is not None


def remove_user(db, name: str) -> bool:
    """Delete a login and end its sessions; False if there was none."""
    with store.transaction(db):
        cursor = db.execute("DELETE FROM users WHERE name = ?", [name])
        sessions.end_all(db, name)
    return cursor.rowcount > 0


def users(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM users ORDER BY name").fetchall()]


# --- the API's tokens ---


def add_api_token(db, name: str) -> str:
    """A new bearer token for the JSON API, named for who uses it (replacing that name's
    earlier token). Returned this once; only its SHA-256 is kept."""
    _check_name(name, "token")
    token = secrets.token_urlsafe(32)
    with store.transaction(db):
        db.execute(
            """INSERT INTO api_tokens (name, token_sha256, created_at) VALUES (?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256,
               created_at = excluded.created_at""",
            [name, _sha256(token), time.time()],
        )
    return token


def api_token_user(db, token: str) -> str | None:
    """The name of the API token, if it is one."""
    if not token:
        return None
    row = db.execute(
        "SELECT name FROM api_tokens WHERE token_sha256 = ?", [_sha256(token)]
    ).fetchone()
    return row[0] if row else None


def remove_api_token(db, name: str) -> bool:
    """Revoke a named API token; False if there was none."""
    with store.transaction(db):
        cursor = db.execute("DELETE FROM api_tokens WHERE name = ?", [name])
    return cursor.rowcount > 0


def api_tokens(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM api_tokens ORDER BY name").fetchall()]


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- the spaces ---


def set_space_info(db, space: str, name: str | None = None, capacity: int | None = None) -> None:
    """A space's name and capacity (None: not known), as the central team knows them.
    A name left None keeps the one entered before, or is the space's id."""
    check_space_id(space)
    if name is not None and not 1 <= len(name.strip()) <= 80:
        raise ValueError("a space's name is 1 to 80 characters")
    if name is not None and not visible(name):
        raise ValueError("a space's name may not hold control or invisible formatting characters")
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 10000
    ):
        raise ValueError(f"capacity {capacity!r} must be a whole number of people, 1-10000")
    with store.transaction(db):
        db.execute(
            """INSERT INTO space_info (space, name, capacity, added_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (space) DO UPDATE SET
                   name = coalesce(?, space_info.name), capacity = excluded.capacity""",
            [space, (name or space).strip(), capacity, time.time(), name and name.strip()],
        )


def space_info(db, space: str) -> dict | None:
    row = db.execute(
        "SELECT name, capacity, added_at FROM space_info WHERE space = ?", [space]
    ).fetchone()
    return {"name": row[0], "capacity": row[1], "added_at": row[2]} if row else None


def has_token(db, space: str) -> bool:
    """Whether the space has a token for the HTTPS route."""
    return db.execute("SELECT 1 FROM tokens WHERE space = ?", [space]).fetchone() is not None


def remove_space(db, space: str) -> bool:
    """Forget a space's HTTPS token and its name and capacity. Its usage, status and
    costs stay: stats are never thrown away. False if there was nothing to remove."""
    with store.transaction(db):
        removed = db.execute("DELETE FROM tokens WHERE space = ?", [space]).rowcount
        removed += db.execute("DELETE FROM space_info WHERE space = ?", [space]).rowcount
    return removed > 0


def list_spaces(db) -> list[dict]:
    """Every space the store knows of — entered, holding a token, or heard from — with
    what is known about each, by id."""
    ids = sorted(
        {r[0] for r in db.execute("SELECT space FROM space_info").fetchall()}
        | {r[0] for r in db.execute("SELECT space FROM tokens").fetchall()}
        | {r[0] for r in db.execute("SELECT id FROM spaces").fetchall()}
    )
    seen = {s["id"]: s for s in store.spaces(db)}
    tokens = {r[0] for r in db.execute("SELECT space FROM tokens").fetchall()}
    out = []
    for space in ids:
        info = space_info(db, space) or {}
        heard = seen.get(space, {})
        out.append(
            {
                "id": space,
                "name": info.get("name"),
                "capacity": info.get("capacity"),
                "token": space in tokens,
                "last_seen": heard.get("last_seen"),
                "hours": heard.get("hours", 0),
            }
        )
    return out


# --- what a space costs ---


def set_cost(db, space: str, month: str, amount, currency: str) -> None:
    """A space's cost for a month ('YYYY-MM'), in a currency (ISO 4217, e.g. 'KES'),
    replacing what was entered for that month. `amount` is a number or a numeric string."""
    check_space_id(space)
    m = MONTH.match(month) if isinstance(month, str) else None
    if not m or not 2000 <= int(m[1]) <= 2100:
        raise ValueError(f"month {month!r} must be written YYYY-MM, e.g. '2026-11'")
    value = _amount(amount)
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if not CURRENCY.match(code):
        raise ValueError(
            f"currency {currency!r} must be a three-letter ISO 4217 code, e.g. 'KES' or 'EUR'"
        )
    with store.transaction(db):
        db.execute(
            """INSERT INTO costs (space, month, amount, currency) VALUES (?, ?, ?, ?)
               ON CONFLICT (space, month) DO UPDATE SET amount = excluded.amount,
               currency = excluded.currency""",
            [space, month, value, code],
        )


def _amount(amount) -> float:
    bad = ValueError(
        f"amount {amount!r} must be a number of at least 0, written like 1250.50 "
        "(a point before the cents, no thousands separators)"
    )
    if isinstance(amount, bool):
        raise bad
    if isinstance(amount, str):
        # "1,250" is a thousand in one country and one and a quarter in another, and
        # Decimal would take "1_000", "1e300" or Arabic-Indic digits: all refused.
        if not AMOUNT.match(amount.strip()):
            raise bad
        amount = Decimal(amount.strip())
    if not isinstance(amount, int | float | Decimal):
        raise bad
    value = float(amount)
    if not math.isfinite(value) or not 0 <= value < MAX_AMOUNT:
        raise bad
    return value
