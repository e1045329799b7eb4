"""The collector's web side: the central team's page and JSON API."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from flask import Flask, Response, abort, g, jsonify, render_template, request

from spacekiosk.config import CollectorConfig
from sync import protocol
from sync.collector import store
from sync.collector.ingest import take_usage


def create_app(config: CollectorConfig, ingest=None) -> Flask:
    """The page and API; `ingest` (when running) lets /healthz say if MQTT is up."""
    app = Flask(__name__)
    app.config["COLLECTOR"] = config
    local = threading.local()

    @app.before_request
    def attach_db():
        if getattr(local, "db", None) is None:
            local.db = store.connect(config.central)
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

    def space_of_token() -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        space = store.token_space(g.db, token.strip()) if scheme.lower() == "bearer" else None
        if space is None:
            abort(401, "send the space's token as 'Authorization: Bearer <token>'")
        return space

    def body() -> bytes:
        if (request.content_length or 0) > protocol.MAX_WIRE_BYTES:
            abort(413, f"a batch may be at most {protocol.MAX_WIRE_BYTES} bytes")
        return request.get_data(cache=False)

    @app.post("/api/v1/ingest")
    def ingest_api():
        """The HTTPS route for a space whose MQTT port is blocked: the same batch, the
        same validation and upsert; the answer is the ack MQTT would have carried."""
        space = space_of_token()
        payload = body()
        try:
            ack = take_usage(g.db, space, payload)
        except protocol.ProtocolError as exc:
            store.reject(g.db, request.path + " " + space, str(exc))
            abort(400, str(exc))
        return Response(ack, mimetype="application/octet-stream")

    @app.post("/api/v1/status")
    def status_api():
        space = space_of_token()
        try:
            status = protocol.read_status(body())
        except protocol.ProtocolError as exc:
            store.reject(g.db, request.path + " " + space, str(exc))
            abort(400, str(exc))
        store.commit_status(g.db, space, status)
        return jsonify({"ok": True})

    @app.get("/healthz")
    def healthz():
        g.db.execute("SELECT 1").fetchone()
        broker = ingest is not None and ingest.connected.is_set()
        return jsonify({"ok": True, "broker": "connected" if broker else "disconnected"})

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
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
