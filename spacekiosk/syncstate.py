"""How sync stands, read from the store without writing: the backlog, the broker
connection and the last delivery.

A read model: the sync agent writes `outbox`, `day_outbox` and `sync_state`; the kiosk's
screens and status API and the agent's status message read them through here.
"""

from __future__ import annotations

import json

from sqlite_utils import Database


def state(db: Database) -> dict:
    return {
        key: json.loads(value) for key, value in db.execute("SELECT key, value FROM sync_state")
    }


def health(db: Database) -> dict:
    """What the kiosk and the status message say about sync, read without writing."""
    backlog, oldest = db.execute(
        """SELECT sum(n), min(start) FROM (
           SELECT count(*) AS n, min(hour_start) AS start FROM outbox
           UNION ALL SELECT 24 * count(*), min(day_start) FROM day_outbox
                     WHERE delivered_version < version)"""
    ).fetchone()
    known = state(db)
    broker = known.get("broker", "not started")
    if backlog == 0:
        summary = "Usage data is up to date."
        status = "idle"
    elif broker == "connected":
        summary = f"Sending usage data ({backlog} hours)."
        status = "sending"
    elif broker == "between contacts":  # a metered link: the hours wait for the next call
        summary = f"Usage data ({backlog} hours) goes with the next call to the central server."
        status = "scheduled"
    else:
        summary = f"Usage data is queued ({backlog} hours) until the network is back."
        status = "queued"
    return {
        "state": status,
        "backlog": backlog,
        "oldest_pending": oldest,
        "broker": broker,
        "last_delivery_at": known.get("last_delivery_at"),
        "next_contact_at": known.get("next_contact_at"),  # on a metered link
        "summary": summary,
    }
