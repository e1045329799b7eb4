"""/healthz: whether the collector reaches its store and its MQTT side is up. Anyone may
ask (it tells no figure), and it writes nothing."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    g.db.execute("SELECT 1").fetchone()
    ingest = current_app.extensions["ingest"]  # None when the app runs without MQTT
    broker = ingest is not None and ingest.connected.is_set()
    committer = ingest is not None and ingest.committer.alive()
    return jsonify(
        {
            "ok": True,
            "broker": "connected" if broker else "disconnected",
            "committer": "running" if committer else "stopped",
            "committer_restarts": ingest.restarts if ingest is not None else 0,
            "committed": ingest.committed if ingest is not None else 0,
        }
    )


@bp.get("/favicon.ico")
def favicon():
    """The project's mark for a browser's tab, where browsers look for it unasked."""
    return current_app.send_static_file("logo.svg"), {"Content-Type": "image/svg+xml"}
