"""The space's config in effect for a request: the file's, with what the local admins
saved on the settings page (spacekiosk/settings.py). Every page reads it here, never
`app.config["SPACE"]` (the file's alone), so a saved change shows on the next page load."""

from __future__ import annotations

import sqlite3

from flask import current_app, g

from spacekiosk import settings
from spacekiosk.config import SpaceConfig


def config() -> SpaceConfig:
    """The config in effect, read once per request (one page sees one config)."""
    if "space_config" not in g:
        base = current_app.config["SPACE"]
        db = g.get("db")
        try:
            g.space_config = settings.effective(db, base) if db is not None else base
        except sqlite3.Error as exc:
            # A store that cannot be read now (it may be what the error page is about)
            # still leaves the file's settings to show the page with.
            current_app.logger.warning("settings unreadable, the file's apply: %s", exc)
            g.space_config = base
    return g.space_config
