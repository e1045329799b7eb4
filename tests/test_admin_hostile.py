"""What a stranger on the space's network, or a careless admin, can send the admin pages'
login, PIN screen, sign-outs and evacuation: thousands of hostile forms and path parts
get a 4xx or a page, never a 500 or a logged traceback, and the store stays whole."""

from __future__ import annotations

import logging
import sqlite3
from urllib.parse import quote

import pytest
from admin import csrf_token, log_in, make_admin
from conftest import ErrorLog, visitor_form, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk import create_app
from spacekiosk import config

LAN = {"REMOTE_ADDR": "192.168.1.50"}  # a phone on the space's Wi-Fi, not logged in
NASTY = ["", " ", "\x00", "\u202eevil", "\u200b", "\ufffd", "%", "'", '"', "<b>", "a" * 5000,
         "99999999999999999999", "-1", "0" * 24, "F" * 24, "../..", "%2e%2e", "ada", "1234",
         "a\nb", "👩🏽‍💻"]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(NASTY), st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One kiosk as in production (errors rendered, not raised), people signed in, an
    admin logged in from the kiosk's screen and a stranger's client on the LAN."""
    folder = tmp_path_factory.mktemp("hostile-admin")
    cfg = config.load(write_space_config(folder, broker_port=1))
    app = create_app(cfg, {})
    make_admin(cfg.database.path)
    admin = app.test_client()
    for name in ("Ana Pérez", "Lin Mei", "عمر خالد"):
        assert admin.post("/sign-in/new", data=visitor_form(name, "1234")).status_code == 201
    log_in(admin)
    admin.token = csrf_token(admin, "/admin/")
    stranger = app.test_client()
    stranger.token = csrf_token(stranger, "/admin/login", environ_base=LAN)
    log = ErrorLog()
    logging.getLogger().addHandler(log)
    app.logger.addHandler(log)
    yield app, admin, stranger, log
    logging.getLogger().removeHandler(log)
    db = sqlite3.connect(cfg.database.path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM admins").fetchone() == (1,)
    finally:
        db.close()
    log_in(app.test_client())  # the admin still gets in


def _part(draw, db, sql: str) -> str:
    """A real handle or id from the store, or anything at all; drawn the same way
    whatever the store holds, so Hypothesis can replay it."""
    real = [row[0] for row in db.execute(sql)]
    use_real, pick = draw(st.booleans()), draw(st.integers(0, 1000))
    other = draw(st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), TEXT))
    value = real[pick % len(real)] if use_real and real else other
    return quote(str(value), safe="") or "x"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_logins_pins_sign_outs_and_evacuations_never_get_a_500(hostile, data):
    app, admin, stranger, log = hostile
    db = sqlite3.connect(app.config["SPACE"].database.path)
    try:
        visit = _part(data.draw, db, "SELECT handle FROM visits")
        person = _part(data.draw, db, "SELECT handle FROM visitors WHERE handle IS NOT NULL")
        call = _part(data.draw, db, "SELECT id FROM roll_calls")
    finally:
        db.close()
    name = quote(data.draw(TEXT), safe="") or "x"
    form = {
        "name": data.draw(TEXT),
        "password": data.draw(TEXT),
        "pin": data.draw(TEXT),
        "up_to": data.draw(st.one_of(TEXT, st.integers(-(2**70), 2**70).map(str))),
        "confirm": data.draw(st.sampled_from(["", "yes", "no"])),
        "next": data.draw(st.one_of(TEXT, st.sampled_from(["/admin/", "//evil.example/"]))),
    }
    client, method, path = data.draw(
        st.sampled_from(
            [
                (stranger, "POST", "/admin/login"),
                (admin, "POST", f"/admin/screen/{name}"),
                (admin, "GET", f"/admin/screen/{name}"),
                (admin, "POST", f"/admin/sign-out/{visit}"),
                (admin, "POST", "/admin/sign-out-all"),
                (admin, "GET", "/admin/sign-out-all"),
                (admin, "POST", "/admin/evacuation/start"),
                (admin, "POST", f"/admin/evacuation/{call}/safe/{person}"),
                (admin, "POST", f"/admin/evacuation/{call}/end"),
                (admin, "GET", "/admin/evacuation"),
                (admin, "GET", "/admin/roll-call"),
            ]
        )
    )
    form["csrf_token"] = data.draw(st.sampled_from([client.token, client.token, "", "forged"]))
    environ = LAN if client is stranger else {}
    if method == "POST":
        answer = client.post(path, data=form, environ_base=environ)
    else:
        answer = client.get(path, query_string={"next": form["next"]}, environ_base=environ)
    assert answer.status_code < 500, (method, path, answer.status_code)
    if answer.status_code in (301, 302, 303):
        assert not answer.headers["Location"].startswith("//"), answer.headers["Location"]
    assert log.bad == [], log.bad
