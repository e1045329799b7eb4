"""The kiosk: visitor screens and the status API, as a Flask app."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from pathlib import Path

from flask import Flask, current_app, g, render_template, request
from flask_babel import Babel, format_datetime, format_time, get_locale

from kiosk import i18n, space
from spacekiosk import __version__
from spacekiosk.clock import Watch
from spacekiosk.config import SpaceConfig
from spacekiosk.db import GroupWriter, StoreError, connect, is_full, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

TRANSLATIONS = Path(__file__).parent / "translations"


def create_app(config: SpaceConfig, test_config: dict | None = None) -> Flask:
    """Build the kiosk app for one space; the schema is migrated here, once, at start."""
    app = Flask(__name__)
    app.config.from_mapping(_settings(config))
    if test_config:
        app.config.update(test_config)
    Babel(app, locale_selector=i18n.select_locale, timezone_selector=_timezone)
    open_store(config.database.path, SPACE_MIGRATIONS).close()
    app.extensions["store"] = PerThreadStore(config.database.path, config.database.busy_timeout_ms)
    app.before_request(_attach_db)
    # Its `health` says whether sign-ins reach the disk: /healthz and the status show it.
    app.extensions["writer"] = GroupWriter(
        config.database.path, busy_timeout_ms=config.database.busy_timeout_ms, service="the kiosk"
    )
    # Sign-ins and housekeeping share one: it knows which times were taken before the
    # clock was set (a test passes its own, with a clock it moves).
    app.extensions["clock"] = app.config.get("CLOCK") or Watch()

    from kiosk import admin, status, visitor

    app.register_blueprint(visitor.bp)
    app.register_blueprint(status.bp)
    # Sessions, Flask-Login and CSRF: a session only on /admin; visitors get no cookie.
    admin.init_app(app)
    # The visitor pages hold no login, so a forged post there gains nothing a direct one
    # would not; their forms carry the token all the same (docs/security.md).
    app.extensions["csrf"].exempt(visitor.bp)
    app.jinja_env.globals["assets"] = _assets(app)
    app.context_processor(_page_context)
    app.register_error_handler(sqlite3.OperationalError, _store_unavailable)
    for code in (400, 404, 405, 413):
        app.register_error_handler(code, _client_error)
    app.after_request(_no_store)
    return app


def _settings(config: SpaceConfig) -> dict:
    return {
        # The key behind PIN hashes. Visitors have no session, so nothing a visitor typed
        # can linger in a cookie; only /admin has one.
        # Admin sessions and forms are signed with a key derived from it (kiosk.admin).
        "PIN_KEY": _secret_key(config.database.path),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "SPACE": config,
        "BABEL_TRANSLATION_DIRECTORIES": str(TRANSLATIONS),
        "BABEL_DEFAULT_TIMEZONE": config.space.timezone.key,
        "ADMIN_NETWORKS": config.kiosk.admin_networks,
    }


def _timezone() -> str:
    return current_app.config["SPACE"].space.timezone.key


def _assets(app: Flask) -> dict[str, str]:
    """Versioned asset URLs, built once: browsers may cache them until the next release."""
    return {
        name: f"{app.static_url_path}/{name}?v={__version__}"
        for name in ("kiosk.css", "kiosk.js", "admin.css", "logo.svg")
    }


def _page_context() -> dict:
    config = space.config()  # with the settings the admins saved
    return {
        "space": config.space,
        "idle_seconds": config.kiosk.idle_seconds,
        "on_phone": request.cookies.get("device") == "phone",
        "locale_tag": str(get_locale()).replace("_", "-"),
        "format_time": format_time,
        "format_datetime": format_datetime,
    }


def _store_unavailable(exc: sqlite3.OperationalError):
    # A locked or full database: say so plainly; nothing was confirmed to anyone.
    # A write that failed is in the log once already (the writer's health), not
    # once per visitor who tried while the disk was full.
    if not (is_full(exc) or current_app.extensions["writer"].health.failures):
        current_app.logger.error("database unavailable: %s", exc)
    return render_template("visitor/error.html", status=503, message=i18n.MESSAGES["store"]), 503


def _client_error(exc):
    message = i18n.HTTP_MESSAGES.get(exc.code, i18n.HTTP_MESSAGES[400])
    return render_template("visitor/error.html", status=exc.code, message=message), exc.code


def _no_store(response):
    # Nothing a visitor typed may come back through the browser's cache or history.
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


class PerThreadStore:
    """One SQLite connection per server thread: a connection must not be shared by two
    transactions at once, and opening one per request would cost more than the request.
    Called, it gives this thread's (the admin sessions read it before any view runs)."""

    def __init__(self, path: Path, busy_timeout_ms: int):
        self.path, self.busy_timeout_ms = path, busy_timeout_ms
        self.local = threading.local()

    def __call__(self):
        if getattr(self.local, "db", None) is None:
            self.local.db = connect(
                self.path, synchronous="FULL", busy_timeout_ms=self.busy_timeout_ms
            )
        return self.local.db


def _attach_db():
    g.db = current_app.extensions["store"]()


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
