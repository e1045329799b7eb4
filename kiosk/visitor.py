"""The visitor screens: welcome, sign in, sign out, and the confirmation that follows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import Blueprint, current_app, g, render_template, request

from kiosk import visits
from sync import outbox

bp = Blueprint("visitor", __name__)


def local_time(ts: float) -> str:
    zone = current_app.config["SPACE"].space.timezone
    return datetime.fromtimestamp(ts, UTC).astimezone(zone).strftime("%H:%M")


def _welcome(status: int = 200, error: str | None = None, name: str = ""):
    return render_template(
        "visitor/welcome.html",
        present=visits.present(g.db),
        request_id=uuid.uuid4().hex,
        error=error,
        name=name,
        sync=outbox.health(g.db),
    ), status


@bp.get("/")
def welcome():
    return _welcome()


@bp.post("/sign-in")
def sign_in():
    raw = request.form.get("name", "")
    try:
        visit = visits.sign_in(g.db, raw, request.form.get("request_id") or None)
    except visits.VisitError as exc:
        if exc.since is not None:
            message = f"You have been signed in since {local_time(exc.since)}."
            return _welcome(exc.status, message)
        return _welcome(exc.status, exc.message, name=raw[: visits.MAX_NAME])
    return render_template("visitor/done.html", greeting="Welcome", visit=visit), 201


@bp.post("/sign-out/<int:visit_id>")
def sign_out(visit_id: int):
    try:
        visit = visits.sign_out(g.db, visit_id)
    except visits.VisitError as exc:
        if exc.since is not None:
            message = f"You were already signed out at {local_time(exc.since)}."
            return _welcome(exc.status, message)
        return _welcome(exc.status, exc.message)
    return render_template("visitor/done.html", greeting="Goodbye", visit=visit)
