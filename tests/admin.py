"""Local admins for the tests: make one in a space's store, and log in as one.

from admin import make_admin, log_in
make_admin(app.config["SPACE"].database.path)          # ada, PASSWORD, PIN
client = app.test_client(); log_in(client)             # a Flask test client
log_in(page, base_url)                                 # a Playwright page
"""

from __future__ import annotations

import re
from pathlib import Path

from kiosk import admins
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

NAME = "ada"
PASSWORD = "a long admin password"
PIN = "246810"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_admin(db_or_path, name: str = NAME, password: str = PASSWORD, pin: str = PIN) -> str:
    """A local admin in the store (a path to the space's database, or an open one)."""
    if isinstance(db_or_path, str | Path):
        db = open_store(db_or_path, SPACE_MIGRATIONS)
        try:
            admins.add(db, name, password, pin)
        finally:
            db.close()
    else:
        admins.add(db_or_path, name, password, pin)
    return name


def csrf_token(client, path: str = "/admin/login", **options) -> str:
    """The CSRF token of the form on `path`, as the page carries it."""
    return CSRF.search(client.get(path, **options).text)[1]


def log_in(page_or_client, base_url: str = "", name: str = NAME, password: str = PASSWORD):
    """Log in through the login form: a Flask test client (`base_url` unused), or a
    Playwright page on the kiosk at `base_url` (ends on the admin's first page)."""
    if hasattr(page_or_client, "goto"):
        page = page_or_client
        page.goto(base_url.rstrip("/") + "/admin/login")
        page.fill("#name", name)
        page.fill("#password", password)
        page.click("button[type=submit].primary")
        page.wait_for_url(lambda url: "/admin/login" not in url)
        return page
    client = page_or_client
    answer = client.post(
        "/admin/login",
        data={"name": name, "password": password, "csrf_token": csrf_token(client)},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    return client
