"""Opening a SQLite store the same way from every process, and migrating it forward.

Every process opens the file with WAL, an explicit busy timeout and foreign keys, and
runs the numbered migrations it knows under an exclusive lock, so whichever service
starts first brings the schema up to date and the others find it done.

A full disk is a state to ride out, not a crash: the WAL is bounded (it is checkpointed
once it holds WAL_BYTES and cut back to JOURNAL_LIMIT bytes), a write that fails for space
checkpoints and truncates the WAL at once (the only space SQLite can give back), and
`StoreHealth` lets a service say so once, back off, and notice when writes succeed again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000
# The WAL is checkpointed once it holds WAL_BYTES of pages (SQLite's default of 1000
# pages would let it grow to 4 MB of 4 KiB pages, more than a nearly full card has), and
# cut back to JOURNAL_LIMIT bytes after each checkpoint, so it never keeps hold of the
# space of a burst of writes.
WAL_BYTES = 1 << 20
JOURNAL_LIMIT = 1 << 20
# The page size of a store open_store() creates: every commit writes each page it
# changed whole into the WAL, and again into the file at the checkpoint. A sign-in
# changes a row and its index entries in a dozen b-trees, a hundred bytes each: in
# 1 KiB pages that is a quarter of the bytes the SD card is sent with SQLite's default
# 4 KiB (bench/sdwear.py). Rows and index entries here are small enough for it. A store
# made with other pages keeps them (docs/backups.md says how to convert one).
PAGE_SIZE = 1024
RECLAIM_BUSY_MS = 1000  # how long a checkpoint after a full disk waits for readers

Migration = Callable[[Database], None]


class StoreError(Exception):
    """The database cannot be used: too new, unreadable, or not a database at all."""


def connect(
    path: Path | str,
    *,
    synchronous: str = "FULL",
    readonly: bool = False,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    page_size: int | None = None,
) -> Database:
    """A connection with the house pragmas, for a store already migrated by open_store().

    `synchronous="FULL"` is for processes that tell a person "done" (a commit survives a
    power cut); "NORMAL" is enough where the source can resend. `page_size` applies only
    to a file that has no page yet (see PAGE_SIZE).
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
            if page_size:
                conn.execute(f"PRAGMA page_size = {int(page_size)}")  # before the first page
            _wal(conn, busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_LIMIT}")
            (size,) = conn.execute("PRAGMA page_size").fetchone()
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(WAL_BYTES // size, 1)}")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        # A deleted or rewritten row's bytes are zeroed, not left in the page's free space:
        # an erased visitor's name must leave the file (Debian's SQLite is built this way
        # already; a Python with its own SQLite may not be).
        conn.execute("PRAGMA secure_delete = ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the database: {exc}") from None
    db = Database(conn)
    db.write_lock = _write_lock(path)
    return db


def _wal(conn: sqlite3.Connection, patience: float) -> None:
    """Put the file in WAL mode. Switching needs a moment alone with the file, and SQLite
    answers "database is locked" at once, without its busy handler, when services start
    together and another is doing the same: try again until `patience` is spent."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def open_store(
    path: Path | str,
    migrations: Sequence[Migration],
    *,
    synchronous: str = "FULL",
    page_size: int | None = PAGE_SIZE,
) -> Database:
    """Open (creating if needed) the SQLite file at `path` and bring its schema up to date.
    A file it creates has pages of `page_size` bytes (None: SQLite's default)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {path.parent}: {exc.strerror}") from None
    db = connect(path, synchronous=synchronous, page_size=page_size)
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
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if is_full(exc):
                reclaim(conn)
            raise


def is_full(exc: BaseException) -> bool:
    """Whether a SQLite error means the file system holding the store has no space left."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == sqlite3.SQLITE_FULL
    return "database or disk is full" in str(exc)


def reclaim(conn: sqlite3.Connection) -> bool:
    """After a write failed for space: checkpoint and truncate the WAL, giving its bytes
    back to the file system. It succeeds only once the main file has room for the pages
    (so, often, only after space was freed); returns whether it did."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
    (busy,) = conn.execute("PRAGMA busy_timeout").fetchone()
    try:
        conn.execute(f"PRAGMA busy_timeout = {RECLAIM_BUSY_MS}")
        blocked, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not blocked
    except sqlite3.Error:
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {busy}")


class StoreHealth:
    """Whether a service's writes reach the store, for its status and its log.

    `failed()` after a write raised, `ok()` after one went through; `state` follows
    them ("ok", "full" for no space left, "error" for anything else). The log hears of
    a bad spell once: one warning at its start and one line once writes have gone
    through for QUIET_SECONDS — on a full disk, writes can succeed now and then (each
    truncated WAL gives a little space back), and that is still the same spell.
    `failed()` answers how long to wait before trying again (doubling up to
    MAX_BACKOFF). Thread-safe.
    """

    FIRST_BACKOFF = 0.5
    MAX_BACKOFF = 30.0
    QUIET_SECONDS = 60.0
    ROOM_BYTES = 256 * 1024  # free space that counts as "room again" when idle

    def __init__(self, path: Path | str, service: str):
        self.path = Path(path)
        self.service = service
        self.state = "ok"  # or "full" (no space left), or "error" (another write error)
        self.failures = 0  # since the last write that went through
        self._spell: tuple[float, float, int] | None = None  # began, last failure, failures
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> float:
        with self._lock:
            self.failures += 1
            self.state = "full" if is_full(exc) else "error"
            now = time.monotonic()
            if self._spell is None:
                self._spell = (now, now, 1)
                if self.state == "full":
                    log.warning(
                        "the disk holding %s is full: %s keeps running and tries again, "
                        "backing off, until there is space",
                        self.path,
                        self.service,
                    )
                else:
                    log.warning("%s cannot write to %s (%s); it will try again",
                                self.service, self.path, exc)  # fmt: skip
            else:
                self._spell = (self._spell[0], now, self._spell[2] + 1)
        return self.retry_in()

    def retry_in(self) -> float:
        """How long to wait before the next try, by how many tries failed in a row."""
        with self._lock:
            return min(self.FIRST_BACKOFF * 2 ** max(self.failures - 1, 0), self.MAX_BACKOFF)

    def room(self, conn: sqlite3.Connection) -> bool:
        """After a failure, with nothing to write: give the WAL back and see whether the
        file system now has room for writes (ROOM_BYTES free)."""
        if self.state == "full" and not reclaim(conn):
            return False
        try:
            free = os.statvfs(self.path.parent)
        except OSError:
            return False
        return free.f_bavail * free.f_frsize >= self.ROOM_BYTES

    def ok(self) -> None:
        with self._lock:
            self.state, self.failures = "ok", 0
            if self._spell and time.monotonic() - self._spell[1] >= self.QUIET_SECONDS:
                began, last, failures = self._spell
                log.warning(
                    "%s writes to %s again: %d write(s) failed over %.0f s",
                    self.service,
                    self.path,
                    failures,
                    last - began,
                )
                self._spell = None


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

    `health` says whether writes go through; while they fail (a full disk), the idle
    writer checks again with backoff, so the state clears once space is back even if
    nobody writes meanwhile.
    """

    BATCH = 64

    def __init__(
        self,
        path: Path | str,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        synchronous: str = "FULL",
        service: str = "the writer",
    ):
        self.db = connect(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self.health = StoreHealth(path, service)
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

    def _next(self):
        """The next job; while writes fail, wake now and then to see if they would not."""
        while True:
            if not self.health.failures:
                return self.jobs.get()
            try:
                return self.jobs.get(timeout=self.health.retry_in())
            except queue.Empty:
                if self.health.room(self.db.conn):
                    self.health.ok()

    def _run(self) -> None:
        while (first := self._next()) is not None:
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
            if isinstance(exc, sqlite3.Error):
                self.health.failed(exc)
            for *_job, done in group:
                done.set_exception(exc)
            return
        self.health.ok()
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


def scrub(db: Database, patience_ms: int = RECLAIM_BUSY_MS) -> bool:
    """Leave no old page image in the write-ahead log: a TRUNCATE checkpoint copies every
    page into the database file and cuts the log to zero bytes.

    After an erasure it is what makes the erased bytes gone from the files, not only
    from the rows: with `PRAGMA secure_delete` the new page images hold zeros where the
    name was, but the log still holds the pages as they were until it is cut. Readers in
    other processes can hold the checkpoint back, and writers wait while it waits for
    them: it gives them `patience_ms`, then says whether it finished (if not, call it
    again later)."""
    (busy,) = db.execute("PRAGMA busy_timeout").fetchone()
    # This process's writers queue on its lock meanwhile, as they do behind a write().
    with getattr(db, "write_lock", None) or contextlib.nullcontext():
        try:
            db.execute(f"PRAGMA busy_timeout = {int(patience_ms)}")
            blocked, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.execute(f"PRAGMA busy_timeout = {busy}")
    return not blocked


@dataclass(frozen=True)
class StoreSize:
    """How much of the disk the store takes: the file, its write-ahead log, and the free
    pages inside the file that new rows reuse before it grows again."""

    file_bytes: int
    wal_bytes: int
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes


def size(db: Database) -> StoreSize:
    """The store's size on disk, read without writing (for the Health page)."""
    path = db.execute("PRAGMA database_list").fetchone()[2]
    page = db.execute("PRAGMA page_size").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]

    def bytes_of(name: str) -> int:
        try:
            return os.stat(name).st_size
        except OSError:
            return 0

    return StoreSize(bytes_of(path), bytes_of(f"{path}-wal"), free * page)
