"""Backups and restores, as `spacekiosk backup` and `spacekiosk restore` do them.

A backup taken while the real kiosk signs people in holds every sign-in the kiosk had
confirmed before the backup began, and passes SQLite's integrity check once restored;
the folder keeps the newest N; a stick that is absent or full is a clear message and a
non-zero exit, never a traceback, and leaves the live store as it was. A restore refuses
a damaged file, a SQLite file that is not a spacekiosk store, a newer schema, a missing
file and a store still in use, each with a clear message and nothing changed. The
commands run as a timer or a script would: as processes, with no terminal.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import (
    ROOT,
    SmallDisk,
    http_ready,
    visitor_form,
    wait_until,
    write_collector_config,
    write_space_config,
)

from spacekiosk import backup, config
from spacekiosk.broker import free_port
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS


def spacekiosk(*args: str) -> subprocess.CompletedProcess:
    """The command as a timer runs it: its own process, stdin not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "spacekiosk", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def fingerprint(store: Path) -> str:
    """The store and its log, byte for byte: what must not change when a command refuses.
    (An empty log and none are the same: SQLite makes one for any reader.)"""
    digest = hashlib.sha256()
    for suffix in ("", "-wal"):
        path = Path(f"{store}{suffix}")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


@pytest.fixture
def toml(tmp_path) -> Path:
    return write_space_config(tmp_path / "space", broker_port=free_port())


@pytest.fixture
def store(toml) -> Path:
    """A migrated store holding one visitor and one visit."""
    path = config.load(toml, secrets=False).database.path
    db = open_store(path, SPACE_MIGRATIONS)
    db.execute(
        "INSERT INTO visitors (id, name, name_key, created_at) VALUES (1, 'Ana P', 'ana p', 0)"
    )
    db.execute("INSERT INTO visits (visitor_id, signed_in_at, request_id) VALUES (1, 1, 'first')")
    db.close()
    return path


def request_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r for (r,) in conn.execute("SELECT request_id FROM visits") if r}
    finally:
        conn.close()


# --- a backup while the kiosk signs people in ---


class Visitors:
    """Visitors signing in on the real kiosk's first-visit form, one after the other in
    each of `workers` threads; `acked` holds the request ids the kiosk confirmed (201),
    in the order their answers arrived."""

    def __init__(self, url: str, workers: int = 3):
        self.url = url
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._visit) for _ in range(workers)]
        for thread in self.threads:
            thread.start()

    def _visit(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            form = visitor_form(f"Visitor {uuid.uuid4().hex[:8]}")
            answer = session.post(self.url + "sign-in/new", data=form, timeout=30)
            if answer.status_code == 201:
                with self.lock:
                    self.acked.append(form["request_id"])

    def confirmed(self) -> list[str]:
        with self.lock:
            return list(self.acked)

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_a_backup_taken_while_visitors_sign_in_holds_every_confirmed_visit(
    tmp_path, services, toml
):
    cfg = config.load(toml, secrets=False)
    kiosk = services("kiosk", "--config", str(toml))
    url = f"http://{cfg.kiosk.listen[0]}:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", kiosk)
    folder = tmp_path / "stick"
    folder.mkdir()
    visitors = Visitors(url)
    try:
        wait_until(lambda: len(visitors.confirmed()) >= 30, 60, what="30 sign-ins")
        before = visitors.confirmed()  # every answer received before the backup began
        result = spacekiosk("backup", "--config", str(toml), "--to", str(folder))
        during = len(visitors.confirmed()) - len(before)
        wait_until(lambda: len(visitors.confirmed()) >= len(before) + during + 10, 60,
                   what="sign-ins after the backup")  # fmt: skip
    finally:
        visitors.end()
    assert result.returncode == 0, result.stderr
    no_traceback(result)
    (made,) = folder.iterdir()
    assert made.name.startswith(f"spacekiosk-{cfg.space.id}-") and made.suffix == ".db"
    assert made.stat().st_mode & 0o077 == 0, "a backup holds names: its owner's alone"
    print(f"{len(before)} confirmed before the backup, {during} while it ran")

    # Restoring is refused while the kiosk has the store open, and changes nothing.
    live = fingerprint(cfg.database.path)
    refused = spacekiosk("restore", str(made), "--config", str(toml))
    assert refused.returncode == backup.EX_TEMPFAIL, refused.stderr
    assert "in use" in refused.stderr and "systemctl stop" in refused.stderr
    no_traceback(refused)
    assert fingerprint(cfg.database.path) == live
    everything = request_ids(cfg.database.path)
    assert set(visitors.confirmed()) <= everything

    kiosk.stop()
    restored = spacekiosk("restore", str(made), "--config", str(toml))
    assert restored.returncode == 0, restored.stderr
    no_traceback(restored)
    assert "kept as" in restored.stdout
    conn = sqlite3.connect(cfg.database.path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(SPACE_MIGRATIONS),)
    conn.close()
    held = request_ids(cfg.database.path)
    assert set(before) <= held, f"{len(set(before) - held)} confirmed sign-ins are missing"
    assert held <= everything  # nothing that never was
    (aside,) = cfg.database.path.parent.glob("space.db.before-restore-*")
    assert request_ids(aside) == everything, "the store it replaced is kept whole"
    # The services start on the restored store as on any other.
    again = services("kiosk", "--config", str(toml))
    http_ready(url + "healthz", again)


# --- rotation, and folders that will not take a backup ---


def test_the_folder_keeps_the_newest_n_and_nothing_else_is_touched(tmp_path, store):
    folder = tmp_path / "stick"
    folder.mkdir()
    (folder / "holiday-photo.jpg").write_bytes(b"not ours")
    (folder / "spacekiosk-otherspace-20200101T000000Z.db").write_bytes(b"another space's")
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    start = time.time()
    for day in range(5):
        made = backup.backup(store, folder, kind, keep=3, now=start + day * 86400)
        assert made.path.exists()
    ours = sorted(p.name for p in folder.glob("spacekiosk-testspace-*.db"))
    assert ours == [kind.name(start + day * 86400) for day in (2, 3, 4)]
    assert (folder / "holiday-photo.jpg").exists()
    assert (folder / "spacekiosk-otherspace-20200101T000000Z.db").exists()
    assert not list(folder.glob(".*"))  # no half-written file left


def test_keep_comes_from_the_config_and_the_command_line_wins(tmp_path, store, toml):
    folder = tmp_path / "stick"
    folder.mkdir()
    with toml.open("a") as f:
        f.write(f'\n[backup]\nfolder = "{folder}"\nkeep = 2\n')
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    for day in range(3):  # three older backups
        backup.backup(store, folder, kind, keep=10, now=time.time() - (day + 1) * 86400)
    result = spacekiosk("backup", "--config", str(toml))
    assert result.returncode == 0, result.stderr
    assert len(list(folder.glob("spacekiosk-testspace-*.db"))) == 2
    assert "removed the old backup" in result.stdout
    result = spacekiosk("backup", "--config", str(toml), "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert len(list(folder.glob("spacekiosk-testspace-*.db"))) == 1


def test_a_stick_that_is_not_there_is_a_clear_error(tmp_path, store, toml):
    live = fingerprint(store)
    absent = tmp_path / "media" / "stick" / "spacekiosk"
    result = spacekiosk("backup", "--config", str(toml), "--to", str(absent))
    assert result.returncode == backup.EX_CANTCREAT
    assert f"the backup folder {absent} does not exist" in result.stderr
    assert "plug the stick in" in result.stderr
    no_traceback(result)
    assert not absent.exists(), "a missing folder is never created"
    assert fingerprint(store) == live


def test_a_full_stick_is_a_clear_error_and_keeps_the_older_backups(tmp_path, store, toml):
    live = fingerprint(store)
    with SmallDisk(tmp_path / "stick", 1 << 20) as disk:
        first = spacekiosk("backup", "--config", str(toml), "--to", str(disk.folder))
        assert first.returncode == 0, first.stderr
        disk.fill()
        result = spacekiosk("backup", "--config", str(toml), "--to", str(disk.folder))
        assert result.returncode == backup.EX_CANTCREAT, result.stderr
        assert f"not enough space in {disk.folder}" in result.stderr
        no_traceback(result)
        kept = sorted(p.name for p in disk.folder.iterdir())
        assert kept == sorted(["ballast", *[p.name for p in disk.folder.glob("spacekiosk-*")]])
        assert len(kept) == 2, "the older backup stays, and nothing half-written is left"
    assert fingerprint(store) == live


def test_a_store_larger_than_the_stick_is_a_clear_error(tmp_path, store):
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    grow = open_store(store, SPACE_MIGRATIONS)
    grow.execute("CREATE TABLE ballast (b BLOB)")
    grow.conn.executemany("INSERT INTO ballast VALUES (?)", [(b"\1" * 4000,)] * 400)
    grow.close()
    live = fingerprint(store)
    with SmallDisk(tmp_path / "stick", 1 << 20) as disk:
        with pytest.raises(backup.BackupError) as caught:
            backup.backup(store, disk.folder, kind, keep=3)
        assert list(disk.folder.iterdir()) == []
    assert caught.value.code == backup.EX_CANTCREAT
    assert "not enough space" in str(caught.value)
    assert fingerprint(store) == live


def test_a_postgresql_central_store_is_pointed_at_pg_dump(tmp_path):
    toml = write_collector_config(
        tmp_path, broker_port=free_port(), database_url="postgresql:///nowhere"
    )
    result = spacekiosk("backup", "--config", str(toml), "--to", str(tmp_path))
    assert result.returncode == backup.EX_UNAVAILABLE
    assert "pg_dump" in result.stderr and "pg_restore" in result.stderr
    no_traceback(result)


def test_the_central_sqlite_store_backs_up_and_restores(tmp_path):
    from collector.store import COLLECTOR_MIGRATIONS

    toml = write_collector_config(tmp_path, broker_port=free_port())
    path = config.load(toml, secrets=False).central.database
    db = open_store(path, COLLECTOR_MIGRATIONS)
    db.execute("INSERT INTO spaces (id, first_seen, last_seen) VALUES ('athens', 1, 2)")
    db.close()
    folder = tmp_path / "backups"
    folder.mkdir()
    result = spacekiosk("backup", "--config", str(toml), "--to", str(folder))
    assert result.returncode == 0, result.stderr
    (made,) = folder.glob("spacekiosk-central-*.db")
    # A central backup is not a space's store, and the other way round.
    space = write_space_config(tmp_path / "space", broker_port=free_port())
    wrong = spacekiosk("restore", str(made), "--config", str(space))
    assert wrong.returncode == backup.EX_DATAERR
    assert "not a spacekiosk space store" in wrong.stderr
    db = open_store(path, COLLECTOR_MIGRATIONS)
    db.execute("DELETE FROM spaces")
    db.close()
    result = spacekiosk("restore", str(made), "--config", str(toml))
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id FROM spaces").fetchall() == [("athens",)]
    conn.close()


# --- restore refuses what it cannot put back ---


def damaged(path: Path, folder: Path) -> Path:
    """A copy of a good backup with a page in the middle of its tables overwritten."""
    bad = folder / "damaged.db"
    data = bytearray(path.read_bytes())
    page = 4096
    for at in range(2 * page, len(data) - page, 3 * page):
        data[at + 8 : at + 400] = b"\xa5" * 392
    bad.write_bytes(bytes(data))
    return bad


def not_a_store(folder: Path) -> Path:
    other = folder / "recipes.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE recipes (name TEXT)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    return other


def newer(path: Path, folder: Path) -> Path:
    new = folder / "from-a-newer-release.db"
    new.write_bytes(path.read_bytes())
    conn = sqlite3.connect(new)
    conn.execute(f"PRAGMA user_version = {len(SPACE_MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    return new


@pytest.mark.parametrize(
    ("make", "code", "says"),
    [
        (damaged, backup.EX_DATAERR, "damaged"),
        (lambda path, folder: not_a_store(folder), backup.EX_DATAERR, "not a spacekiosk space"),
        (newer, backup.EX_DATAERR, "made by a newer release"),
        (lambda path, folder: folder / "no-such.db", backup.EX_NOINPUT, "no such file"),
        (lambda path, folder: ROOT / "README.md", backup.EX_DATAERR, "not a SQLite database"),
    ],
    ids=["damaged", "not-a-spacekiosk-store", "newer-schema", "missing", "not-sqlite"],
)
def test_restore_refuses_and_changes_nothing(tmp_path, store, toml, make, code, says):
    folder = tmp_path / "stick"
    folder.mkdir()
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    good = backup.backup(store, folder, kind, keep=3).path
    bad = make(good, folder)
    live = fingerprint(store)
    before = sorted(p.name for p in store.parent.iterdir())
    result = spacekiosk("restore", str(bad), "--config", str(toml))
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert result.stderr.startswith("spacekiosk restore: ")
    no_traceback(result)
    assert fingerprint(store) == live
    assert sorted(p.name for p in store.parent.iterdir()) == before


def test_restore_onto_a_pi_with_no_store_yet(tmp_path, store, toml):
    """A new SD card: the backup becomes the store, and there is nothing to keep aside."""
    folder = tmp_path / "stick"
    folder.mkdir()
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    made = backup.backup(store, folder, kind, keep=3).path
    for path in store.parent.glob("space.db*"):
        path.unlink()
    result = spacekiosk("restore", str(made), "--config", str(toml))
    assert result.returncode == 0, result.stderr
    assert request_ids(store) == {"first"}
    assert not list(store.parent.glob("*.before-restore-*"))


def test_folders_whose_names_hold_spaces_and_uri_characters(tmp_path):
    store = tmp_path / "data #2 ?x=y" / "space.db"
    db = open_store(store, SPACE_MIGRATIONS)
    db.execute("INSERT INTO visitors (id, name, name_key, created_at) VALUES (1, 'Zoë', 'zoë', 0)")
    db.close()
    folder = tmp_path / "USB stick #1 %20"
    folder.mkdir()
    kind = backup.Kind("testspace", SPACE_MIGRATIONS, backup.SPACE_TABLES)
    made = backup.backup(store, folder, kind, keep=3)
    done = backup.restore(made.path, store, kind)
    assert done.aside is not None and done.aside.exists()
    conn = sqlite3.connect(store)
    assert conn.execute("SELECT name FROM visitors").fetchall() == [("Zoë",)]
    conn.close()
