"""The kiosk: visitor screens, the status API and (later) admin pages, as a Flask app."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from pathlib import Path

from flask import Flask, g, render_template

from spacekiosk.config import SpaceConfig
from spacekiosk.db import StoreError, connect, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS


def create_app(config: SpaceConfig, test_config: dict | None = None) -> Flask:
    """Build the kiosk app for one space; the schema is migrated here, once, at start."""
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY=_secret_key(config.database.path),
        MAX_CONTENT_LENGTH=64 * 1024,
        SPACE=config,
    )
    if test_config:
        app.config.update(test_config)
    open_store(config.database.path, SPACE_MIGRATIONS).close()
    _per_thread_store(app, config.database.path, config.database.busy_timeout_ms)

    from kiosk import status, visitor

    app.register_blueprint(visitor.bp)
    app.register_blueprint(status.bp)

    @app.context_processor
    def space_context():
        return {"space": config.space, "idle_seconds": config.kiosk.idle_seconds}

    @app.errorhandler(sqlite3.OperationalError)
    def store_unavailable(exc):
        # A locked or full database: say so plainly; nothing was confirmed to anyone.
        app.logger.error("database unavailable: %s", exc)
        return render_template(
            "visitor/error.html",
            status=503,
            message="We could not save that just now. Please try again, or tell a volunteer.",
        ), 503

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def client_error(exc):
        return render_template(
            "visitor/error.html", status=exc.code, message=exc.description
        ), exc.code

    return app


def _per_thread_store(app: Flask, path: Path, busy_timeout_ms: int) -> None:
    """One SQLite connection per server thread: a connection must not be shared by two
    transactions at once, and opening one per request would cost more than the request."""
    local = threading.local()

    @app.before_request
    def attach_db():
        if getattr(local, "db", None) is None:
            local.db = connect(path, synchronous="FULL", busy_timeout_ms=busy_timeout_ms)
        g.db = local.db


def _secret_key(db_path: Path) -> str:
    """A per-install secret kept beside the database, created on first start."""
    key_file = db_path.parent / "kiosk-secret"
    try:
        return key_file.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key)
        return key
    except FileExistsError:
        return key_file.read_text().strip()
    except OSError as exc:
        raise StoreError(f"cannot write {key_file}: {exc.strerror}") from None
