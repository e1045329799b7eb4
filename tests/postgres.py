"""A real PostgreSQL for the tests: the one answering on 127.0.0.1:5432 (trust auth, as a
developer's machine or CI often has), else a throwaway cluster started with Debian's
initdb on a free port. Each test gets a database of its own.

SPACEKIOSK_TEST_POSTGRES=own always starts a throwaway cluster (to test that path).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

from spacekiosk.broker import free_port, wait_for_port

RUNNING = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of a PostgreSQL server's `postgres` database, for the whole session."""
    if os.environ.get("SPACEKIOSK_TEST_POSTGRES") != "own" and _answers(RUNNING):
        yield RUNNING
        return
    with _own_cluster() as url:
        yield url


@contextlib.contextmanager
def _own_cluster() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL answers and initdb is missing: scripts/setup test")
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="spacekiosk-pg-"))
    # PostgreSQL refuses to run as root; Debian's package made a postgres user for it.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "start")
    try:
        wait_for_port(port, timeout=30)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def database(server_url: str) -> Iterator[str]:
    """A fresh, empty database on the server; dropped afterwards."""
    name = f"spacekiosk_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
