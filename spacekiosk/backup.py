"""Backups of a SQLite store, taken while the services run, and putting one back.

A backup is an online copy made with SQLite's backup API in one step: one read
transaction, so it is the store as it was at one moment, with every commit made before
that moment, and writers carry on meanwhile (WAL readers never block them). The live
store is opened read-only and never written. The copy is written beside its final
name, checked (`PRAGMA quick_check`), fsynced, renamed into place and its folder
fsynced, so a folder only ever holds whole backups; the oldest are then removed down to
`keep`. A folder that is absent (a USB stick not plugged in), not writable or full is a
`BackupError` with a message that says so and an exit status; nothing half-written is
left behind.

A restore checks the file first (integrity, that it is a spacekiosk store of the right
kind, a schema this release knows), copies it beside the store and checks the copy, then
refuses while anything has the store open: SQLite itself says so, since leaving WAL mode
needs the file to itself. Only then is the current store renamed aside with the date,
and the copy renamed into its place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Exit statuses, from sysexits.h, so a script or a unit can tell the failures apart.
EX_DATAERR = 65  # the backup file is not one this release can put back
EX_NOINPUT = 66  # the file (or the store to back up) does not exist
EX_UNAVAILABLE = 69  # the store is not a file (PostgreSQL): pg_dump is the tool
EX_CANTCREAT = 73  # the folder is absent, not writable or full
EX_TEMPFAIL = 75  # the services have the store open: stop them and try again

STAMP = "%Y%m%dT%H%M%SZ"
_STAMP_RE = r"\d{8}T\d{6}Z"
PI_UNITS = (
    "spacekiosk-kiosk.service",
    "spacekiosk-sensors.service",
    "spacekiosk-sync.service",
)


class BackupError(Exception):
    """A backup or restore that did not happen; `code` is the exit status to give."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Kind:
    """What a store of one kind must hold: the space's, or the central collector's."""

    label: str  # in the backup's name: the space id, or "central"
    migrations: Sequence[Callable]  # this release's steps: their count is its schema
    tables: frozenset[str]  # tables every such store has had since its first version

    def name(self, when: float) -> str:
        return f"spacekiosk-{self.label}-{time.strftime(STAMP, time.gmtime(when))}.db"

    def pattern(self) -> re.Pattern:
        return re.compile(rf"spacekiosk-{re.escape(self.label)}-{_STAMP_RE}\.db")


SPACE_TABLES = frozenset({"visitors", "visits", "sensor_events", "buckets", "outbox"})
CENTRAL_TABLES = frozenset({"spaces", "usage", "rejects"})


@dataclass(frozen=True)
class Made:
    path: Path
    bytes: int
    removed: list[Path]
    same_disk: bool  # the folder is on the store's own file system


# --- backup ---


def backup(store: Path, folder: Path, kind: Kind, keep: int, now: float | None = None) -> Made:
    """Copy the live `store` into `folder` as a new dated backup; keep the newest `keep`."""
    now = time.time() if now is None else now
    if not store.is_file():
        raise BackupError(f"there is no store at {store}: nothing to back up", EX_NOINPUT)
    _check_folder(folder)
    final = folder / kind.name(now)
    part = folder / f".{final.name}.part"
    _remove_leftovers(folder, kind)
    try:
        source = sqlite3.connect(_uri(store, "mode=ro"), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the store {store}: {exc}", EX_NOINPUT) from None
    try:
        need = _store_bytes(source)
        free = _free_bytes(folder)
        if free < need:
            raise _full(folder, free, need)
        _copy(source, part, folder, need)
    finally:
        source.close()
        _own_like(store)
    try:
        _fsync(part)
        os.replace(part, final)
        _fsync_dir(folder)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise _cannot_write(folder, exc, need) from None
    removed = rotate(folder, kind, keep)
    same = _device(folder) == _device(store.parent)
    return Made(final, final.stat().st_size, removed, same)


def _check_folder(folder: Path) -> None:
    """The folder must be there already: it is never created, so that a USB stick that
    is not mounted fills no empty mount point on the SD card."""
    if not folder.exists():
        raise BackupError(
            f"the backup folder {folder} does not exist: if it is on a USB stick, plug the "
            f"stick in and mount it; the folder is never created here (create it once "
            f"with `mkdir -p {folder}` and give it to the spacekiosk user)",
            EX_CANTCREAT,
        )
    if not folder.is_dir():
        raise BackupError(f"the backup folder {folder} is not a folder", EX_CANTCREAT)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BackupError(
            f"the backup folder {folder} is not writable by this user (uid {os.getuid()}); "
            "give it to the user the backups run as (spacekiosk)",
            EX_CANTCREAT,
        )


def _copy(source: sqlite3.Connection, part: Path, folder: Path, need: int) -> None:
    """The backup API in one step (one consistent snapshot), then a rollback-journal
    header, so the backup is one self-contained file, and a quick check of the copy."""
    part.unlink(missing_ok=True)
    target = None
    try:
        # Visitors' names are in it: the user's alone, whatever the umask.
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        target = sqlite3.connect(part, isolation_level=None)
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
        (verdict,) = target.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(
                f"the live store fails SQLite's check ({verdict}); the older backups were "
                "kept, and this one was not written",
                EX_DATAERR,
            )
        target.close()
    except (sqlite3.Error, OSError) as exc:
        if target is not None:
            with contextlib.suppress(sqlite3.Error):
                target.close()
        part.unlink(missing_ok=True)
        raise _cannot_write(folder, exc, need) from None
    except BaseException:
        if target is not None:
            target.close()
        part.unlink(missing_ok=True)
        raise


def rotate(folder: Path, kind: Kind, keep: int) -> list[Path]:
    """Remove this kind's backups beyond the newest `keep`; never any other file."""
    pattern = kind.pattern()
    ours = sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name))
    gone = ours[: max(len(ours) - keep, 0)]
    for path in gone:
        path.unlink(missing_ok=True)
    if gone:
        _fsync_dir(folder)
    return gone


def _remove_leftovers(folder: Path, kind: Kind) -> None:
    """A backup cut short (power lost, killed) leaves its .part file: remove it."""
    pattern = re.compile(rf"\.{kind.pattern().pattern}\.part")
    for path in folder.iterdir():
        if pattern.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _uri(path: Path, query: str) -> str:
    """A file: URI for SQLite, whatever characters the path holds."""
    return f"{path.absolute().as_uri()}?{query}"


def _own_like(store: Path) -> None:
    """Opening a WAL store, even read-only, makes its -wal and -shm files when no one had
    it open. Run as root (by hand, the services stopped), they would be root's, and the
    services' user could not open the store again: give them the store's owner."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        owner = os.stat(store)
        for suffix in ("-wal", "-shm"):
            path = f"{store}{suffix}"
            if os.path.exists(path) and os.stat(path).st_uid != owner.st_uid:
                os.chown(path, owner.st_uid, owner.st_gid)


def _store_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def _free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def _full(folder: Path, free: int, need: int) -> BackupError:
    return BackupError(
        f"not enough space in {folder}: {_size(free)} free, and the backup needs about "
        f"{_size(need)}; free some space (or lower [backup] keep), or use a larger stick. "
        "The older backups and the live store were not touched.",
        EX_CANTCREAT,
    )


def _cannot_write(folder: Path, exc: BaseException, need: int) -> BackupError:
    if isinstance(exc, BackupError):
        return exc
    text = str(exc)
    if "disk is full" in text or getattr(exc, "errno", None) == 28:  # ENOSPC
        return _full(folder, _free_bytes(folder), need)
    return BackupError(
        f"cannot write the backup in {folder}: {text}; the live store was not touched",
        EX_CANTCREAT,
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- restore ---


@dataclass(frozen=True)
class Checked:
    version: int
    visits: int | None  # for the message: how many visits the backup holds (space stores)


def check(path: Path, kind: Kind) -> Checked:
    """Whether `path` is a whole spacekiosk store of `kind` that this release can open;
    a BackupError (EX_NOINPUT, EX_DATAERR) saying what is wrong if not. Read-only."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file", EX_NOINPUT)
    with path.open("rb") as f:
        header = f.read(16)
    if header != b"SQLite format 3\x00":
        raise BackupError(f"{path} is not a SQLite database (nor a backup of one)", EX_DATAERR)
    try:
        conn = sqlite3.connect(_uri(path, "mode=ro&immutable=1"), uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} cannot be opened: {exc}", EX_DATAERR) from None
    try:
        (verdict,) = conn.execute("PRAGMA integrity_check(1)").fetchone()
        if verdict != "ok":
            raise BackupError(
                f"{path} is damaged (SQLite's integrity check: {verdict}); it cannot be "
                "restored: take an older backup",
                EX_DATAERR,
            )
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        counted = "visits" in tables and "visits" in kind.tables
        visits = conn.execute("SELECT count(*) FROM visits").fetchone()[0] if counted else None
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"{path} is damaged or not a database ({exc}); it cannot be restored", EX_DATAERR
        ) from None
    finally:
        conn.close()
    missing = kind.tables - tables
    if version < 1 or missing:
        raise BackupError(
            f"{path} is a SQLite database but not a spacekiosk {_what(kind)} store "
            f"(it lacks {', '.join(sorted(missing)) or 'a schema version'}); nothing changed",
            EX_DATAERR,
        )
    if version > len(kind.migrations):
        raise BackupError(
            f"{path} has schema version {version}, but this spacekiosk knows only up to "
            f"{len(kind.migrations)}: it was made by a newer release. Upgrade spacekiosk "
            "first, then restore it; nothing changed",
            EX_DATAERR,
        )
    return Checked(version, visits)


def _what(kind: Kind) -> str:
    return "central" if kind.tables == CENTRAL_TABLES else "space"


@dataclass(frozen=True)
class Restored:
    checked: Checked
    aside: Path | None  # where the store that was live now is (None: there was none)


def restore(
    path: Path,
    store: Path,
    kind: Kind,
    *,
    units: Sequence[str] = (),
    now: float | None = None,
) -> Restored:
    """Put the backup at `path` in place of `store`, keeping the current one aside as
    `<store>.before-restore-<UTC date>`. Refused, with nothing changed, if the backup
    fails a check or if a service has the store open (`units` running, or an open
    connection that SQLite reports)."""
    now = time.time() if now is None else now
    check(path, kind)
    running = [unit for unit in units if _active(unit)]
    if running:
        raise _in_use(store, ", ".join(running))
    store.parent.mkdir(parents=True, exist_ok=True)
    part = store.with_name(f".{store.name}.restore.part")
    try:
        shutil.copyfile(path, part)
        _fsync(part)
        copied = check(part, kind)  # what goes in place is what was checked
    except OSError as exc:
        part.unlink(missing_ok=True)
        if getattr(exc, "errno", None) == 28:
            raise BackupError(
                f"not enough space beside {store} for the restored copy "
                f"({_size(path.stat().st_size)}); nothing changed",
                EX_CANTCREAT,
            ) from None
        raise BackupError(f"cannot copy {path} beside {store}: {exc}; nothing changed",
                          EX_CANTCREAT) from None  # fmt: skip
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    try:
        aside = _set_aside(store, now)
        _match_owner(part, store if aside is None else aside, store.parent)
        try:
            os.replace(part, store)
        except OSError as exc:
            if aside is not None:
                os.replace(aside, store)  # the store goes back where it was
            raise BackupError(f"cannot put the backup in place of {store}: {exc}; nothing "
                              "changed", EX_CANTCREAT) from None  # fmt: skip
        _fsync_dir(store.parent)
    finally:
        part.unlink(missing_ok=True)
    return Restored(copied, aside)


def _set_aside(store: Path, now: float) -> Path | None:
    """Take the live store to one file, alone, and rename it aside. Leaving WAL mode
    needs the file to itself: while any process has it open, SQLite answers "locked"."""
    if not store.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        return None
    aside = store.with_name(f"{store.name}.before-restore-{time.strftime(STAMP, time.gmtime(now))}")
    conn = sqlite3.connect(store, isolation_level=None, timeout=0)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _in_use(store, "") from None
            mode = None  # damaged: what a restore is for; it goes aside as it is
        except sqlite3.DatabaseError:
            mode = None
        if mode == "delete":
            conn.execute("BEGIN EXCLUSIVE")  # nobody writes it between here and the rename
            try:
                os.replace(store, aside)
            finally:
                conn.execute("ROLLBACK")
            return aside
        if mode is not None:
            raise _in_use(store, "")
    finally:
        conn.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{store}{suffix}", f"{aside}{suffix}")
    return aside


def _in_use(store: Path, units: str) -> BackupError:
    who = f"{units} running" if units else "another process has it open"
    return BackupError(
        f"{store} is in use ({who}): stop the services first "
        "(`sudo systemctl stop spacekiosk.target spacekiosk-backup.timer`), restore, then "
        "start them again (`sudo systemctl start spacekiosk.target`); nothing changed",
        EX_TEMPFAIL,
    )


def _active(unit: str) -> bool:
    """Whether systemd says `unit` is running; False where there is no systemd."""
    systemctl = shutil.which("systemctl")
    if not systemctl:
        return False
    try:
        done = subprocess.run(
            [systemctl, "is-active", "--quiet", unit], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _match_owner(path: Path, like: Path, folder: Path) -> None:
    """A restore run as root must leave a file the services' user can write: give the
    copy the owner and mode of the store it replaces (or of the store's folder)."""
    try:
        st = os.stat(like) if like.exists() else os.stat(folder)
        if os.geteuid() == 0:
            os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, 0o600 if not like.exists() else st.st_mode & 0o777)
    except OSError:
        pass
