"""Login names and secrets, checked and hashed the same way for the collector's users and
the Pi's local admins: salted scrypt in werkzeug's format (which names its parameters),
and a check that costs the same whether or not the name exists."""

from __future__ import annotations

import functools
import re
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

MIN_PASSWORD = 10
LOGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_name(name: str, what: str) -> str:
    """`name` if it is a login name, else ValueError saying what one looks like."""
    if not isinstance(name, str) or not LOGIN_NAME.match(name):
        raise ValueError(
            f"{name!r} cannot be used: {what} names are 1-64 letters, digits, '.', '_', "
            "'@' or '-', starting with a letter or digit"
        )
    return name


def is_name(name: object) -> bool:
    return isinstance(name, str) and LOGIN_NAME.match(name) is not None


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def hash_secret(secret: str) -> str:
    return generate_password_hash(secret, method="scrypt")


@functools.cache
def _decoy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(16))


def matches(stored: str | None, given: str) -> bool:
    """Whether `given` is the secret behind `stored`. With nothing stored (an unknown
    name) it costs the same scrypt, so the answer's timing does not tell which names
    exist; werkzeug compares the hashes in constant time."""
    if not isinstance(given, str):
        given = ""
    ok = check_password_hash(stored or _decoy_hash(), given)
    return ok and stored is not None
