"""The collector's web side: the central team's page and JSON API."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flask import Flask, abort, g, jsonify, render_template, request

from spacekiosk.config import CollectorConfig
from spacekiosk.db import connect
from sync import protocol
from sync.collector import store


def create_app(config: CollectorConfig, ingest=None) -> Flask:
    """The page and API; `ingest` (when running) lets /healthz say if MQTT is up."""
    app = Flask(__name__)
    app.config["COLLECTOR"] = config
    local = threading.local()

    @app.before_request
    def attach_db():
        if getattr(local, "db", None) is None:
            local.db = connect(config.central.database, synchronous="NORMAL")
        g.db = local.db

    @app.template_filter("when")
    def when(ts: float | None) -> str:
        if not ts:
            return "never"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")

    @app.get("/")
    def dashboard():
        spaces = store.spaces(g.db)
        recent = {s["id"]: store.usage(g.db, s["id"])[-24:] for s in spaces}
        return render_template(
            "dashboard.html",
            spaces=spaces,
            recent=recent,
            hour_iso=protocol.hour_iso,
            counts=protocol.COUNTS,
            rejects=store.reject_count(g.db),
        )

    @app.get("/api/v1/spaces")
    def spaces_api():
        return jsonify({"spaces": store.spaces(g.db)})

    @app.get("/api/v1/usage")
    def usage_api():
        space = request.args.get("space", "")
        if not space:
            abort(400, "give ?space=<id>")
        if not store.known(g.db, space):
            abort(404, f"no data from a space called {space!r}")
        try:
            since = _hour_arg("from")
            until = _hour_arg("to")
        except protocol.ProtocolError as exc:
            abort(400, str(exc))
        buckets = store.usage(g.db, space, since, until)
        return jsonify({"space": space, "buckets": [b.to_wire() for b in buckets]})

    @app.get("/healthz")
    def healthz():
        g.db.execute("SELECT 1").fetchone()
        broker = ingest is not None and ingest.connected.is_set()
        return jsonify({"ok": True, "broker": "connected" if broker else "disconnected"})

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def client_error(exc):
        return jsonify({"error": exc.description}), exc.code

    return app


def _hour_arg(name: str) -> int | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp())
    except ValueError:
        raise protocol.ProtocolError(
            f"'{name}' must be an ISO-8601 time such as 2026-11-25T16:00:00Z"
        ) from None
