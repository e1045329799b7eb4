"""The store: migrations that only add, a refusal to touch a newer file, safe concurrency."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, SmallDisk, wait_until, write_collector_config, write_space_config

from spacekiosk import config
from spacekiosk.db import (
    JOURNAL_LIMIT,
    PAGE_SIZE,
    WAL_BYTES,
    GroupWriter,
    StoreError,
    StoreHealth,
    connect,
    is_full,
    migrate,
    open_store,
    write,
)
from spacekiosk.migrations import SPACE_MIGRATIONS

TABLES = {"visitors", "visits", "sensor_events", "buckets", "outbox", "sync_state"}


def test_a_new_store_has_every_table_wal_and_the_latest_version(tmp_path):
    db = open_store(tmp_path / "space.db", SPACE_MIGRATIONS)
    assert set(db.table_names()) >= TABLES
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(SPACE_MIGRATIONS)


def test_reopening_keeps_the_data(tmp_path):
    path = tmp_path / "space.db"
    db = open_store(path, SPACE_MIGRATIONS)
    with write(db):
        db["visitors"].insert({"name": "Wanjiru", "name_key": "wanjiru", "created_at": 1.0})
    db.close()
    again = open_store(path, SPACE_MIGRATIONS)
    assert again.execute("SELECT name FROM visitors").fetchall() == [("Wanjiru",)]


def test_a_later_migration_runs_once_and_keeps_rows(tmp_path):
    path = tmp_path / "space.db"
    open_store(path, SPACE_MIGRATIONS).close()
    calls = []

    def m099_add_note(db):
        calls.append(1)
        db.execute("ALTER TABLE visitors ADD COLUMN note TEXT")

    db = open_store(path, [*SPACE_MIGRATIONS, m099_add_note])
    assert "note" in db["visitors"].columns_dict
    assert migrate(db, [*SPACE_MIGRATIONS, m099_add_note], path) == len(SPACE_MIGRATIONS) + 1
    assert calls == [1]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "space.db"
    open_store(path, SPACE_MIGRATIONS).close()

    def m002_broken(db):
        db.execute("ALTER TABLE visitors ADD COLUMN half_done TEXT")
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(StoreError):
        open_store(path, [*SPACE_MIGRATIONS, m002_broken])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(SPACE_MIGRATIONS)
    assert "half_done" not in [r[1] for r in db.execute("PRAGMA table_info(visitors)")]


def test_a_newer_database_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "space.db"
    open_store(path, SPACE_MIGRATIONS).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(SPACE_MIGRATIONS) + 5}")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer release"):
        open_store(path, SPACE_MIGRATIONS)
    assert path.read_bytes() == before


def test_a_service_on_a_newer_database_exits_with_a_clear_message(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1)
    open_store(tmp_path / "space.db", SPACE_MIGRATIONS).close()
    raw = sqlite3.connect(tmp_path / "space.db")
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "sync", "--once", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "schema version 99" in result.stderr and "Upgrade spacekiosk" in result.stderr


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "space.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(path, SPACE_MIGRATIONS)


def test_processes_starting_together_migrate_once(tmp_path):
    path = tmp_path / "space.db"
    code = (
        "import sys; from spacekiosk.db import open_store; "
        "from spacekiosk.migrations import SPACE_MIGRATIONS; "
        "open_store(sys.argv[1], SPACE_MIGRATIONS).close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(SPACE_MIGRATIONS)


def test_every_connection_bounds_its_wal(tmp_path):
    db = open_store(tmp_path / "space.db", SPACE_MIGRATIONS)
    assert db.execute("PRAGMA journal_size_limit").fetchone()[0] == JOURNAL_LIMIT
    pages = db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert pages * db.execute("PRAGMA page_size").fetchone()[0] == WAL_BYTES


def test_a_new_space_store_has_small_pages_and_the_central_store_sqlites_own(tmp_path):
    """Each page a commit changed is written whole, to the WAL and at the checkpoint
    again: the Pi's small pages are what keep a sign-in's bytes on the SD card down
    (bench/sdwear.py). The central store keeps SQLite's default."""
    from collector.store import connect as central_store

    space = open_store(tmp_path / "space.db", SPACE_MIGRATIONS)
    assert space.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 1024
    space.close()
    toml = write_collector_config(tmp_path / "central", broker_port=1883)
    central = central_store(config.load(toml, secrets=False).central)
    assert central.execute("PRAGMA page_size").fetchone()[0] == 4096
    central.close()


def test_a_writer_on_a_full_disk_recovers_by_itself_once_space_is_back(tmp_path, caplog):
    """A 1 MB file system filled to the last byte: writes fail with the store's health
    saying "full" (logged once); once the ballast goes, the idle writer gives the WAL
    back and finds room without anyone writing, and the next write goes through."""
    with SmallDisk(tmp_path / "disk", 1 << 20) as disk:
        path = disk.folder / "space.db"
        open_store(path, SPACE_MIGRATIONS).close()
        writer = GroupWriter(path, service="the test's writer")

        def visitor(db, name):
            db.execute(
                "INSERT INTO visitors (name, name_key, created_at) VALUES (?, ?, 0)", [name, name]
            )

        writer.run(visitor, "Before")
        disk.fill()
        failures = 0
        for i in range(40):  # now and then one fits, in what a truncated WAL gave back
            try:
                writer.run(visitor, f"Full {i} " + "x" * 60)
            except sqlite3.OperationalError as exc:
                assert is_full(exc)
                assert writer.health.state == "full"
                failures += 1
        assert failures >= 20
        assert caplog.text.count("is full") == 1  # once, not once per attempt
        with contextlib.suppress(sqlite3.OperationalError):
            for i in range(40):  # end on a failure: then only the idle writer can see room
                writer.run(visitor, f"Last {i} " + "x" * 60)
        assert writer.health.state == "full"
        disk.free()
        # The idle writer looks again within its longest backoff, however long the spell.
        wait_until(lambda: writer.health.state == "ok", StoreHealth.MAX_BACKOFF + 15,
                   what="the idle writer to find room")  # fmt: skip
        writer.run(visitor, "After")
        db = connect(path)
        names = [n for (n,) in db.execute("SELECT name FROM visitors")]
        assert names[0] == "Before" and names[-1] == "After"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        writer.close()
