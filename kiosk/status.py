"""Machine-readable status: what the space looks like now, for dashboards and monitors."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify

from kiosk import opening, visits
from sync import outbox

bp = Blueprint("status", __name__)


@bp.get("/api/v1/status")
def status():
    space = current_app.config["SPACE"].space
    return jsonify(
        {
            "space": space.id,
            "name": space.name,
            "open": opening.state(space, time.time()).is_open,
            "people_signed_in": len(visits.present(g.db)),
            "sync": outbox.health(g.db),
        }
    )


@bp.get("/healthz")
def healthz():
    g.db.execute("SELECT 1").fetchone()
    return jsonify({"ok": True})
