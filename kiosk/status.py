"""Machine-readable status: what the space looks like now, for dashboards, monitors and
the hackerspace directory (SpaceAPI v15). Counts only: no names."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, jsonify, request, url_for

from kiosk import space as space_config
from spacekiosk import hours, occupancy, sensorstate, syncstate

bp = Blueprint("status", __name__)


def _now_state():
    cfg = space_config.config()  # with the settings the admins saved
    now = time.time()
    return cfg, now, hours.state(cfg.space, now), occupancy.estimate(g.db, cfg, now)


@bp.get("/api/v1/status")
def status():
    cfg, _now, open_state, people = _now_state()
    return jsonify(
        {
            "space": cfg.space.id,
            "name": cfg.space.name,
            "open": open_state.is_open,
            "capacity": cfg.space.capacity,
            "people": people.as_dict(),
            "people_signed_in": people.signed_in,
            "door": sensorstate.door(g.db, cfg, _now),
            "sensors": sensorstate.health(g.db, cfg, _now),
            "sync": syncstate.health(g.db),
            "store": current_app.extensions["writer"].health.state,
        }
    )


@bp.get("/spaceapi.json")
def spaceapi():
    """The space as a SpaceAPI v15 document, for the directory and the tools that read it."""
    cfg, now, open_state, people = _now_state()
    space = cfg.space
    base = (cfg.kiosk.public_url or request.url_root.rstrip("/")) + "/"
    document = {
        "api_compatibility": ["15"],
        "space": space.name,
        "logo": space.logo or base.rstrip("/") + url_for("static", filename="logo.svg"),
        "url": space.url or base,
        "contact": _contact(cfg.spaceapi),
        "location": _location(cfg.spaceapi, space),
        "state": {"open": open_state.is_open, "lastchange": int(_last_change(space, now))},
        "sensors": {
            "people_now_present": [
                {
                    "value": people.people,
                    "location": space.name,
                    "description": f"estimated from the {people.source}, "
                    f"{people.confidence} confidence; {people.signed_in} signed in",
                }
            ]
        },
    }
    response = jsonify(document)
    response.headers["Access-Control-Allow-Origin"] = "*"  # directories fetch it from anywhere
    response.headers["Cache-Control"] = "max-age=60"
    return response


def _contact(about) -> dict:
    """How to reach the space, as its admins gave it (only what they gave)."""
    return {k: v for k in ("email", "phone", "matrix", "mastodon") if (v := getattr(about, k))}


def _location(about, space) -> dict:
    found = {"timezone": space.timezone.key}
    if about.address:
        found["address"] = about.address
    if about.lat is not None and about.lon is not None:
        found |= {"lat": about.lat, "lon": about.lon}
    return found


def _last_change(space, now: float) -> float:
    """When the space last opened or closed by its opening hours (or now, if it never
    does), within the last two weeks: `hours.spans` gives eight days from the day it is
    given, so from a week back they reach today (from eight days back they stopped at
    yesterday, and a space that opened this morning said it last changed last night)."""
    last = None
    for back in (14, 7):
        for opens, closes in hours.spans(space, now - back * 86400):
            for moment in (opens.timestamp(), closes.timestamp()):
                if moment <= now and (last is None or moment > last):
                    last = moment
    return last if last is not None else now


@bp.get("/healthz")
def healthz():
    """200 while sign-ins can be saved; 503 while the store refuses them (a full disk)."""
    g.db.execute("SELECT 1").fetchone()
    store = current_app.extensions["writer"].health.state
    return jsonify({"ok": store == "ok", "store": store}), 200 if store == "ok" else 503


@bp.get("/favicon.ico")
def favicon():
    """The project's mark for a browser's tab, where browsers look for it unasked."""
    return current_app.send_static_file("logo.svg"), {"Content-Type": "image/svg+xml"}
