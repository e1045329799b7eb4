"""The central team's commands: spaces' credentials, the page's logins, the API's tokens.

Each function prints what a person needs and returns the exit code; bad input raises
Refused with a message that says what to do instead. What they write goes through the
modules that own it: a space's HTTPS token through store.py, logins, API tokens and a
space's name through accounts.py, its broker login into Mosquitto's password file
through logins.py (last, inside the store's transaction: if it fails, the store keeps
nothing of the change).
"""

from __future__ import annotations

import getpass
import socket
import sys
from datetime import UTC, datetime

from collector import accounts, store
from collector.logins import (
    Credentials,
    LoginError,
    PasswordFile,
    instructions,
    new_password,
    new_token,
    reload_broker,
)
from spacekiosk.config import CollectorConfig, broker_address, is_collector_login
from spacekiosk.service import EX_CONFIG, EX_DATAERR

EX_USAGE = 64  # sysexits.h: the command was used wrongly


class Refused(Exception):
    """The command cannot do this; `code` is its exit status."""

    def __init__(self, message: str, code: int = EX_DATAERR):
        super().__init__(message)
        self.code = code


def _space(space: str) -> str:
    try:
        return accounts.check_space_id(space)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def _logins(cfg: CollectorConfig) -> PasswordFile:
    return PasswordFile(cfg.central.mqtt_password_file)


def _login_users(logins: PasswordFile) -> set[str]:
    try:
        return logins.users()
    except LoginError as exc:
        missing = not logins.path.exists()
        raise Refused(
            f"central.mqtt_password_file: {exc}" if missing else str(exc),
            EX_CONFIG if missing else 1,
        ) from None


def _connect(cfg: CollectorConfig):
    # synchronous=FULL: this tells a person "done".
    return store.connect(cfg.central, "ingest")


def _credentials(cfg: CollectorConfig, space: str) -> Credentials:
    if cfg.central.public_broker:
        host, port, tls = broker_address(cfg.central.public_broker)
    else:
        host, port, tls = socket.getfqdn(), 8883, True
        print(
            f"note: central.public_broker is not set, so the snippet names this server "
            f"{host!r}; set it if the spaces reach the broker by another name",
            file=sys.stderr,
        )
    return Credentials(
        space=space,
        password=new_password(),
        token=new_token(),
        host=host,
        port=port,
        tls=tls,
        http_url=cfg.central.public_url,
    )


def _reload(pid_file: str | None) -> int | None:
    if pid_file is None:
        return None
    try:
        return reload_broker(pid_file)
    except LoginError as exc:
        print(f"warning: {exc}; reload the broker yourself", file=sys.stderr)
        return None


# --- spaces ---


def space_add(
    cfg: CollectorConfig,
    space: str,
    name: str | None = None,
    capacity: int | None = None,
    pid_file: str | None = None,
) -> int:
    """A broker login and an HTTPS token for a new space; prints its config and secrets."""
    space = _space(space)
    logins = _logins(cfg)
    db = _connect(cfg)
    if space in _login_users(logins) or accounts.has_token(db, space):
        raise Refused(
            f"space {space} has credentials already; `spacekiosk space rotate {space}` "
            "gives it new ones"
        )
    creds = _credentials(cfg, space)
    if capacity is None:  # keep what the central team may have entered on the page
        capacity = (accounts.space_info(db, space) or {}).get("capacity")
    try:
        with store.transaction(db):
            accounts.set_space_info(db, space, name, capacity)
            store.set_token(db, space, creds.token)
            logins.set(space, creds.password)  # last: any failure above leaves no login
    except ValueError as exc:
        raise Refused(str(exc)) from None
    except LoginError as exc:
        raise Refused(str(exc), 1) from None
    print(instructions(creds, "added", _reload(pid_file)))
    return 0


def space_rotate(cfg: CollectorConfig, space: str, pid_file: str | None = None) -> int:
    """New secrets for a space; the old ones stop working once the broker reloads."""
    space = _space(space)
    logins = _logins(cfg)
    db = _connect(cfg)
    if space not in _login_users(logins) and not accounts.has_token(db, space):
        raise Refused(f"space {space} has no credentials; add it with `spacekiosk space add`")
    creds = _credentials(cfg, space)
    try:
        with store.transaction(db):
            store.set_token(db, space, creds.token)
            logins.set(space, creds.password)
    except LoginError as exc:
        raise Refused(str(exc), 1) from None
    print(instructions(creds, "rotated", _reload(pid_file)))
    return 0


def space_remove(cfg: CollectorConfig, space: str, pid_file: str | None = None) -> int:
    """Delete a space's login, token, name and capacity; keep everything it sent."""
    space = _space(space)
    logins = _logins(cfg)
    _login_users(logins)  # a missing or unreadable file is said so first
    db = _connect(cfg)
    try:
        with store.transaction(db):
            removed = accounts.remove_space(db, space)
            removed = logins.remove(space) or removed
            if not removed:
                raise Refused(f"no space {space} has a login, a token or a name here")
    except LoginError as exc:
        raise Refused(str(exc), 1) from None
    hours = db.execute("SELECT count(*) FROM usage WHERE space = ?", [space]).fetchone()[0]
    print(
        f"Space {space}: broker login and HTTPS token removed. Its {hours} bucket(s) of "
        "usage stay in the store."
    )
    reloaded = _reload(pid_file)
    if reloaded is not None:
        print(f"The broker (pid {reloaded}) was told to reread its password file.")
    else:
        print("Make the broker reread its password file: systemctl reload mosquitto")
    return 0


def space_list(cfg: CollectorConfig) -> int:
    """Every space: its name and capacity, whether it can log in, when it was last heard."""
    logins = _logins(cfg)
    try:
        users: set[str] | None = logins.users()
    except LoginError as exc:
        print(f"note: {exc}", file=sys.stderr)
        users = None
    spaces = {s["id"]: s for s in accounts.list_spaces(_connect(cfg))}
    for space in users or ():
        if not is_collector_login(space):
            spaces.setdefault(space, {"id": space, "token": False, "hours": 0})
    row = "{:<32}  {:<24}  {:>8}  {:<5}  {:<5}  {:<16}  {:>6}"
    print(row.format("space", "name", "capacity", "login", "token", "last seen (UTC)", "hours"))
    for s in sorted(spaces.values(), key=lambda s: s["id"]):
        login = "?" if users is None else ("yes" if s["id"] in users else "no")
        seen = s.get("last_seen")
        print(
            row.format(
                s["id"],
                (s.get("name") or "")[:24],
                s.get("capacity") or "",
                login,
                "yes" if s["token"] else "no",
                datetime.fromtimestamp(seen, UTC).strftime("%Y-%m-%d %H:%M") if seen else "never",
                s["hours"],
            )
        )
    return 0


# --- the page's logins and the API's tokens ---


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        # getpass would read a script's stdin as if typed, or die on its end: say how instead.
        raise Refused(
            "no terminal to ask for the password; pipe it in instead: "
            "printf '%s\\n' \"$PASSWORD\" | spacekiosk user add NAME --password-stdin",
            EX_USAGE,
        )
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise Refused("the two passwords differ; nothing changed")
    return first


def user_add(cfg: CollectorConfig, name: str, from_stdin: bool, replace: bool) -> int:
    """A login for the central page (or, with replace, a new password for one)."""
    db = _connect(cfg)
    if name in accounts.users(db) and not replace:
        raise Refused(f"user {name} exists; pass --replace to set a new password")
    try:
        new = accounts.add_user(db, name, _password(from_stdin))
    except ValueError as exc:
        raise Refused(str(exc)) from None
    print(f"user {name} {'added' if new else 'has a new password, and is logged out everywhere'}")
    return 0


def user_remove(cfg: CollectorConfig, name: str) -> int:
    if not accounts.remove_user(_connect(cfg), name):
        raise Refused(f"there is no user {name}")
    print(f"user {name} removed, and logged out everywhere")
    return 0


def token_add(cfg: CollectorConfig, name: str, replace: bool) -> int:
    """A bearer token for the JSON API: on stdout alone (for scripts), explained on stderr."""
    db = _connect(cfg)
    if name in accounts.api_tokens(db) and not replace:
        raise Refused(f"an API token named {name} exists; pass --replace to make a new one")
    try:
        token = accounts.add_api_token(db, name)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    print(
        f"API token {name!r} follows, shown this once (only its hash is kept). Send it as "
        "'Authorization: Bearer <token>'.",
        file=sys.stderr,
    )
    print(token)
    return 0


def token_remove(cfg: CollectorConfig, name: str) -> int:
    if not accounts.remove_api_token(_connect(cfg), name):
        raise Refused(f"there is no API token named {name}")
    print(f"API token {name} revoked")
    return 0
