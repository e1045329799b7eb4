"""Opening a SQLite store the same way from every process, and migrating it forward.

Every process opens the file with WAL, an explicit busy timeout and foreign keys, and
runs the numbered migrations it knows under an exclusive lock, so whichever service
starts first brings the schema up to date and the others find it done.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

from sqlite_utils import Database

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000

Migration = Callable[[Database], None]


class StoreError(Exception):
    """The database cannot be used: too new, unreadable, or not a database at all."""


def connect(
    path: Path | str,
    *,
    synchronous: str = "FULL",
    readonly: bool = False,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> Database:
    """A connection with the house pragmas, for a store already migrated by open_store().

    `synchronous="FULL"` is for processes that tell a person "done" (a commit survives a
    power cut); "NORMAL" is enough where the source can resend.
    """
    path = Path(path)
    uri = f"file:{path}?mode=ro" if readonly else str(path)
    try:
        conn = sqlite3.connect(
            uri,
            uri=readonly,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the database: {exc}") from None
    db = Database(conn)
    db.write_lock = _write_lock(path)
    return db


def open_store(
    path: Path | str, migrations: Sequence[Migration], *, synchronous: str = "FULL"
) -> Database:
    """Open (creating if needed) the SQLite file at `path` and bring its schema up to date."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {path.parent}: {exc.strerror}") from None
    db = connect(path, synchronous=synchronous)
    try:
        migrate(db, migrations, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path}: cannot open the database: {exc}") from None
    except StoreError:
        db.close()
        raise
    return db


def check_version(db: Database, migrations: Sequence[Migration], path: Path) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StoreError(
            f"{path} has schema version {version}, but this spacekiosk knows only up to "
            f"{len(migrations)}: it was written by a newer release. Upgrade spacekiosk "
            "(or restore a backup made by this release); the file was left untouched."
        )
    return version


def migrate(db: Database, migrations: Sequence[Migration], path: Path) -> int:
    """Apply the migrations the file has not seen yet; each one in its own transaction."""
    with write(db):
        version = check_version(db, migrations, path)
    while version < len(migrations):
        with write(db):
            # Another process may have migrated while this one waited for the lock.
            version = check_version(db, migrations, path)
            if version >= len(migrations):
                break
            step = migrations[version]
            log.info("migrating %s to schema version %d (%s)", path, version + 1, step.__name__)
            step(db)
            version += 1
            db.execute(f"PRAGMA user_version = {version}")
    return version


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    """One lock per file and process. SQLite lets one writer in at a time anyway; threads
    that queue here are woken the moment it is free, where SQLite's busy handler would
    have them sleep and poll (up to 100 ms a turn), which is what long tails are made of."""
    key = str(Path(path).resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def write(db: Database) -> Iterator[Database]:
    """One write transaction, taken with BEGIN IMMEDIATE so a read-then-write never
    hits SQLITE_BUSY half-way through (the busy timeout applies to the BEGIN).

    Inside another write() (as in a group commit) it is a savepoint: an error undoes
    this part alone, and the outer transaction decides when everything is committed.
    """
    conn = db.conn
    if conn.in_transaction:
        yield from _savepoint(conn, db)
        return
    lock = getattr(db, "write_lock", None) or contextlib.nullcontext()
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")


def _savepoint(conn: sqlite3.Connection, db: Database) -> Iterator[Database]:
    conn.execute("SAVEPOINT part")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK TO part")
            conn.execute("RELEASE part")
        raise
    else:
        conn.execute("RELEASE part")


class GroupWriter:
    """One thread that runs a process's writes, committing whatever has queued up
    together: under load many sign-ins share one fsync, and each caller still returns
    only after its own change is on disk.

    A job is `fn(db, *args)`; its own write() blocks become savepoints, so one job's
    refusal (a wrong PIN, say) undoes that job alone. A database error fails the
    whole group, and then no caller is told its change was saved.
    """

    BATCH = 64

    def __init__(
        self, path: Path | str, busy_timeout_ms: int = BUSY_TIMEOUT_MS, synchronous: str = "FULL"
    ):
        self.db = connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self.timeout = busy_timeout_ms / 1000 + 30
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
        self.thread.start()

    def run(self, fn: Callable, *args, **kwargs):
        """Run `fn(db, *args, **kwargs)` in the next group; return once it is committed."""
        done: Future = Future()
        self.jobs.put((fn, args, kwargs, done))
        try:
            return done.result(self.timeout)
        except TimeoutError:
            raise sqlite3.OperationalError("the writer did not finish in time") from None

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=self.timeout)
        self.db.close()

    def _run(self) -> None:
        while (first := self.jobs.get()) is not None:
            group = [first]
            while len(group) < self.BATCH:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)  # finish this group, then stop
                    break
                group.append(job)
            self._commit(group)

    def _commit(self, group: list) -> None:
        outcomes = []
        try:
            with write(self.db):
                for fn, args, kwargs, _done in group:
                    try:
                        outcomes.append((True, fn(self.db, *args, **kwargs)))
                    except sqlite3.Error:
                        raise  # the file is in trouble: the whole group fails
                    except Exception as exc:
                        outcomes.append((False, exc))
        except Exception as exc:
            for *_job, done in group:
                done.set_exception(exc)
            return
        for (ok, value), (*_job, done) in zip(outcomes, group, strict=True):
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)


@contextlib.contextmanager
def read(db: Database) -> Iterator[Database]:
    """A consistent snapshot for several reads; kept short so checkpoints can run."""
    conn = db.conn
    conn.execute("BEGIN")
    try:
        yield db
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
