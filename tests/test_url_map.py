"""Who may call what: every route of both apps, with every method, by every kind of caller.

The table is docs/security.md's, read from the page itself, so the two cannot drift: a
route in either app's URL map that the table does not list fails here, and so does a
listed route that is gone. Each route is then called anonymously, with a wrong bearer
token, with a space's HTTPS token, with an API token and with a page login (and, on the
kiosk, from loopback and from another address). Only the callers the table names may
get an answer; the others get 401 or the login page (collector) or 404 (kiosk), and
nobody gets a 5xx.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from admin import NAME, PIN, make_admin
from admin import PASSWORD as ADMIN_PASSWORD
from admin import csrf_token as admin_csrf
from admin import log_in as admin_log_in
from central import commit_usage
from conftest import LOGINS, ROOT, visitor_form, write_collector_config, write_space_config

import kiosk
from collector import accounts, store
from collector.web import create_app as collector_app
from spacekiosk import config, protocol
from spacekiosk.protocol import Bucket

DOC = ROOT / "docs" / "security.md"
ROW = re.compile(r"^\| (kiosk|collector) \| ([A-Z]+) \| `([^`]+)` \| (\w+) \|$")
WHO = {"anyone", "loopback", "space", "reader", "login", "network", "screen", "admin"}
LAN = "192.168.1.30"  # a phone, or anyone else, on the space's network
OUTSIDE = "203.0.113.7"  # an address on the internet, should the kiosk's port be forwarded
THIS_HOUR = int(time.time()) // 3600 * 3600
UNACCEPTED = ("PUT", "PATCH", "DELETE")


def table() -> dict[tuple[str, str, str], str]:
    """docs/security.md's table of routes: (app, method, rule) -> who may call it."""
    rows = {}
    for line in DOC.read_text().splitlines():
        if m := ROW.match(line):
            app, method, rule, who = m.groups()
            assert who in WHO, line
            assert (app, method, rule) not in rows, f"listed twice: {line}"
            rows[(app, method, rule)] = who
    assert rows, f"no table of routes in {DOC}"
    return rows


def url_map(app, name: str) -> set[tuple[str, str, str]]:
    return {
        (name, method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


@dataclass
class Call:
    """One caller: the address it comes from, its headers, a logged-in client or none."""

    name: str
    remote: str = "127.0.0.1"
    headers: dict = field(default_factory=dict)
    login: bool = False


# --- the kiosk ---


@pytest.fixture
def kiosk_app(tmp_path):
    toml = write_space_config(tmp_path / "space", broker_port=1883)
    app = kiosk.create_app(config.load(toml), {"TESTING": True})
    make_admin(app.config["SPACE"].database.path)
    return app


KIOSK_CALLERS = [
    Call("loopback"),
    Call("another address", LAN),
    Call("a wrong bearer token", LAN, {"Authorization": "Bearer wrong"}),
    Call("a space's token", LAN, {"Authorization": "Bearer " + "t" * 43}),
    Call("a page login's cookie", LAN, {"Cookie": "spacekiosk_collector=" + "s" * 43}),
    Call("an address outside", OUTSIDE),
    Call("a local admin", LAN, login=True),
]


def handles(app, name: str) -> tuple[str, str]:
    """A new visitor with a PIN, signed in: (their handle, their visit's handle)."""
    client = app.test_client()
    assert client.post("/sign-in/new", data=visitor_form(name, "2468")).status_code == 201
    db = app.config["SPACE"].database.path
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT p.handle, v.handle FROM visits v JOIN visitors p ON p.id = v.visitor_id "
            "ORDER BY v.id DESC LIMIT 1"
        ).fetchone()


def kiosk_request(app, rule: str, method: str, n: int) -> tuple[str, dict]:
    """A path for `rule` and a form that reaches the handler's work, not its refusal:
    a fresh visitor for each call, so that no call finds the last one's state."""
    visitor, visit = handles(app, f"Caller Number{n}")
    values = {"code": "el", "filename": "kiosk.css", "handle": visit, "name": NAME}
    data: dict = {}
    if rule.startswith(("/sign-in/returning/", "/admin/visitors/")):
        values["handle"] = visitor
    if rule == "/admin/login" and method == "POST":
        data = {"name": NAME, "password": ADMIN_PASSWORD}
    elif rule == "/admin/screen/<name>" and method == "POST":
        data = {"pin": PIN}
        data = {"pin": "2468"} if method == "POST" else {}
    elif rule == "/sign-in/new":
        data = visitor_form(f"Another Caller{n}")
    elif rule == "/sign-in" and method == "POST":
        data = {"name": f"Caller Number{n}"}
    path = re.sub(
        r"<([^:>]+:)?([^>]+)>", lambda m: values.get(m[2], "1" if m[1] == "int:" else "x"), rule
    )
    return path, data


def to_admin_login(status: int, location: str) -> bool:
    where = urlsplit(location)
    return status in (302, 303) and where.path == "/admin/login" and "next" in parse_qs(where.query)


def unmade(rule: str) -> bool:
    """Whether the path names something the walk does not make (an event, a roll-call):
    an admin may then get 404, which says nothing of who may call."""
    return re.search(r"<(?:[^:>]+:)?(?!handle>|name>)[^>]+>", rule) is not None


def test_the_kiosk_answers_whom_the_table_says(kiosk_app):
    rows = table()
    assert url_map(kiosk_app, "kiosk") == {k for k in rows if k[0] == "kiosk"}, (
        "the kiosk's routes and docs/security.md's table differ"
    )
    n = 0
    for (_app, method, rule), who in sorted(r for r in rows.items() if r[0][0] == "kiosk"):
        answers, locations = {}, {}
        for caller in KIOSK_CALLERS:
            n += 1
            path, data = kiosk_request(kiosk_app, rule, method, n)
            client = kiosk_app.test_client()
            environ = {"REMOTE_ADDR": caller.remote}
            if caller.login:
                admin_log_in(client)
            if method == "POST" and rule.startswith("/admin/") and caller.remote != OUTSIDE:
                # The form's own token, as the page it is on carries it.
                page = "/admin/audit" if caller.login else "/admin/login"
                data = data | {"csrf_token": admin_csrf(client, page, environ_base=environ)}
            for verb in (method, "HEAD") if method == "GET" else (method,):
                answer = client.open(
                    path, method=verb, data=data, headers=caller.headers, environ_base=environ
                )
                assert answer.status_code < 500, (verb, path, caller.name, answer.status_code)
                answers[(verb, caller.name)] = answer.status_code
                locations[(verb, caller.name)] = answer.headers.get("Location", "")
            for verb in (*UNACCEPTED, "OPTIONS"):
                other = client.open(path, method=verb, headers=caller.headers, environ_base=environ)
                # Refused, or for OPTIONS the methods it takes; never a page or data.
                assert other.status_code in (200, 404, 405), (verb, path, other.status_code)
                if other.status_code == 200:
                    assert verb == "OPTIONS" and not other.data, (verb, path)
        for (verb, name), status in answers.items():
            what = (rule, verb, name, status)
            if who == "anyone":
                assert status == answers[(verb, "loopback")] and status != 404, what
            elif who == "loopback":  # the kiosk's own browser, and no one else
                assert status == (200 if name == "loopback" else 404), what
            elif who == "screen":  # the same, for pages that may redirect
                assert (status != 404) == (name == "loopback"), what
            elif who == "network":  # the ways in and out, on the space's networks
                assert (status != 404) == (name != "an address outside"), what
            elif name == "a local admin":  # admin: answered, not sent to log in
                assert not to_admin_login(status, locations[(verb, name)]), what
                assert status not in (401, 403) and (status != 404 or unmade(rule)), what
            elif name == "an address outside":
                assert status == 404, what
            else:  # anyone else on the space's network is sent to log in
                assert to_admin_login(status, locations[(verb, name)]), what


# --- the collector ---

PASSWORD = LOGINS["central"]


@dataclass
class Central:
    app: object
    space_token: str
    api_token: str


@pytest.fixture
def central(tmp_path):
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    commit_usage(db, "athens", [Bucket(THIS_HOUR - 7200, 1, {"signins": 2})])
    space_token = "s" * 43
    store.set_token(db, "athens", space_token)
    accounts.add_user(db, "central", PASSWORD)
    api_token = accounts.add_api_token(db, "grafana")
    db.close()
    return Central(collector_app(cfg), space_token, api_token)


def csrf(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)[1]


def collector_callers(central: Central) -> list[Call]:
    return [
        Call("anonymous"),
        Call("a wrong bearer token", headers={"Authorization": "Bearer " + "w" * 43}),
        Call("a space's token", headers={"Authorization": f"Bearer {central.space_token}"}),
        Call("an API token", headers={"Authorization": f"Bearer {central.api_token}"}),
        Call("a page login", login=True),
    ]


# Who may call, by caller: what each kind in the table lets through.
ALLOWED = {
    "anyone": {"anonymous", "a wrong bearer token", "a space's token", "an API token",
               "a page login"},
    "space": {"a space's token"},
    "reader": {"an API token", "a page login"},
    "login": {"a page login"},
}  # fmt: skip


def collector_request(client, caller: Call, rule: str, method: str) -> tuple[str, dict | bytes]:
    """A path for `rule`, and a body that does the route's work for a caller it admits."""
    path = re.sub(
        r"<(?:[^:>]+:)?([^>]+)>",
        lambda m: {"space": "athens", "filename": "collector.css"}.get(m[1], "x"),
        rule,
    )
    if method != "POST":
        return path, {}
    batch = [Bucket(THIS_HOUR - 3600, 1, {"signins": 1})]
    bodies = {
        "/api/v1/ingest": protocol.usage_message("athens", batch),
        "/api/v1/digest": protocol.digest_message("athens", []),
        "/api/v1/status": protocol.status_message(online=True, agent="test"),
    }
    if rule in bodies:
        return path, bodies[rule]
    forms = {
        "/login": {"name": "central", "password": PASSWORD},
        "/spaces/<space>/info": {"name": "Athens", "capacity": "30"},
        "/spaces/<space>/cost": {"month": "2026-10", "amount": "100", "currency": "EUR"},
    }
    form = dict(forms.get(rule, {}))
    if caller.login:
        form["csrf_token"] = csrf(client, "/spaces/athens")
    elif rule == "/login":
        form["csrf_token"] = csrf(client, "/login")
    return path, form


def denied(answer) -> bool:
    """401/403, or the login page instead of what was asked for."""
    if answer.status_code in (401, 403):
        return True
    if answer.status_code in (302, 303):
        where = urlsplit(answer.headers["Location"])
        return where.path == "/login" and "next" in parse_qs(where.query)
    return False


def log_in(central: Central):
    client = central.app.test_client()
    answer = client.post(
        "/login",
        data={"name": "central", "password": PASSWORD, "csrf_token": csrf(client, "/login")},
    )
    assert answer.status_code == 302
    return client


def test_the_collector_answers_whom_the_table_says(central):
    rows = table()
    assert url_map(central.app, "collector") == {k for k in rows if k[0] == "collector"}, (
        "the collector's routes and docs/security.md's table differ"
    )
    for (_app, method, rule), who in sorted(r for r in rows.items() if r[0][0] == "collector"):
        for caller in collector_callers(central):
            verbs = (method, "HEAD") if method == "GET" else (method,)
            for verb in verbs:
                # A client of its own for each call: a logout or a login changes nothing else.
                client = log_in(central) if caller.login else central.app.test_client()
                path, body = collector_request(client, caller, rule, method)
                answer = client.open(path, method=verb, data=body, headers=caller.headers)
                what = (verb, path, caller.name, answer.status_code, answer.get_data()[:200])
                assert answer.status_code < 500, what
                if caller.name in ALLOWED[who]:
                    assert not denied(answer), what
                else:
                    assert denied(answer), what
            for verb in (*UNACCEPTED, "OPTIONS"):
                client = log_in(central) if caller.login else central.app.test_client()
                other = client.open(path, method=verb, headers=caller.headers)
                # Refused, or for OPTIONS the methods it takes; never a page or data.
                assert other.status_code < 500 and (
                    denied(other) or other.status_code in (200, 405)
                ), (verb, path, caller.name, other.status_code)
                if other.status_code == 200:
                    assert verb == "OPTIONS" and not other.get_data(), (verb, path)
