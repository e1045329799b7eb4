"""How the figures are counted: the definitions of spacekiosk/figures.py, for the local
admins, each under its key as an anchor; the History and Now pages link each figure's
label here (`define(key)` in the templates). Read-only, admins only, like every page
under /admin."""

from __future__ import annotations

from flask import render_template, url_for

from kiosk.admin import admin_required, bp
from spacekiosk import figures


@bp.app_template_global("define")
def define(key: str) -> str:
    """The address of a figure's definition; a key no figure has is an error, not a
    link to nowhere."""
    return url_for("admin.figure_definitions", _anchor=figures.get(key).key)


@bp.get("/figures")
@admin_required
def figure_definitions():
    return render_template("admin/figures.html", sections=figures.by_section())
