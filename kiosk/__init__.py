"""The kiosk: visitor screens and the status API, as a Flask app."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from pathlib import Path

from flask import Flask, current_app, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
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
    _per_thread_store(app, config.database.path, config.database.busy_timeout_ms)
    # Its `health` says whether sign-ins reach the disk: /healthz and the status show it.
    app.extensions["writer"] = GroupWriter(
        config.database.path, busy_timeout_ms=config.database.busy_timeout_ms, service="the kiosk"
    )
    # Sign-ins and housekeeping share one: it knows which times were taken before the
    # clock was set (a test passes its own, with a clock it moves).
    app.extensions["clock"] = app.config.get("CLOCK") or Watch()

    from kiosk import status, visitor

    app.register_blueprint(visitor.bp)
    app.register_blueprint(status.bp)
    app.session_interface = _NoSessions()
    app.jinja_env.globals["assets"] = _assets(app)
    app.context_processor(_page_context)
    app.register_error_handler(sqlite3.OperationalError, _store_unavailable)
    for code in (400, 404, 405, 413):
        app.register_error_handler(code, _client_error)
    app.after_request(_no_store)
    return app


def _settings(config: SpaceConfig) -> dict:
    return {
        # The key behind PIN hashes. There is no SECRET_KEY: the kiosk keeps no session,
        # so nothing a visitor typed can linger in a cookie.
        "PIN_KEY": _secret_key(config.database.path),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "SPACE": config,
        "BABEL_TRANSLATION_DIRECTORIES": str(TRANSLATIONS),
        "BABEL_DEFAULT_TIMEZONE": config.space.timezone.key,
    }


def _timezone() -> str:
    return current_app.config["SPACE"].space.timezone.key


def _assets(app: Flask) -> dict[str, str]:
    """Versioned asset URLs, built once: browsers may cache them until the next release."""
    return {
        name: f"{app.static_url_path}/{name}?v={__version__}" for name in ("kiosk.css", "kiosk.js")
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


class _NoSessions(SecureCookieSessionInterface):
    """The kiosk keeps no session at all; skipping the cookie saves a chunk of every request."""

    def open_session(self, app, request):
        return self.null_session_class()

    def save_session(self, app, session, response):
        return None


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
