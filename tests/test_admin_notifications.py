"""The admins' Notifications page: targets added, changed and removed through the pages;
refusals are 4xx with their message, never a 500; a saved URL's token is never shown back
nor written to the audit log; allowing personal data is warned about and audited; "send a
test" reaches a real HTTP receiver started here and shows its answer, and a receiver that
is down shows the failure; no form, however hostile, stores anything out of bounds."""

from __future__ import annotations

import html
import json
import logging
import queue
import socket
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from admin import csrf_token, log_in, make_admin
from axe import violations
from conftest import ErrorLog, http_ready, write_space_config
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from playwright.sync_api import expect
from werkzeug.datastructures import MultiDict

from kiosk import create_app
from kiosk.admin import notifications
from spacekiosk import config, notices
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

PAGE = "/admin/notifications"
TOKEN = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TELEGRAM = f"tgram://123456789:{TOKEN}/987654"


def rows(app, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(app.config["SPACE"].database.path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.fixture
def app(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1)
    app = create_app(config.load(toml), {"TESTING": True})
    make_admin(app.config["SPACE"].database.path)
    return app


@pytest.fixture
def client(app):
    client = app.test_client()
    log_in(client)
    return client


def post(client, path: str, form: dict | MultiDict):
    data = MultiDict(form)
    data["csrf_token"] = csrf_token(client, PAGE)
    return client.post(path, data=data)


def target_form(**changes) -> MultiDict:
    form = MultiDict({"name": "Space chat", "url": TELEGRAM, "language": "en", "enabled": "yes"})
    form.setlist("events", [notices.OPENED, notices.CLOSED])
    for key, value in changes.items():
        if isinstance(value, list):
            form.setlist(key, value)
        elif value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def targets(app) -> list[tuple]:
    return rows(
        app, "SELECT id, name, url, events, language, personal, enabled FROM notify_targets"
    )


def audit_of(app) -> list[tuple[str, str]]:
    return rows(app, "SELECT action, detail FROM audit_log WHERE action LIKE 'notification%'")


# --- add, change, remove ---


def test_a_target_is_added_changed_and_removed(app, client):
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "No targets yet" in page.text
    assert 'href="/admin/notifications"' in page.text  # in the navigation
    for example in ("tgram://", "matrixs://", "discord://", "slack://", "mailtos://", "ntfys://"):
        assert example in page.text

    answer = post(client, PAGE, target_form())
    assert answer.status_code == 302
    ((target_id, name, url, events, language, personal, enabled),) = targets(app)
    assert (name, url, json.loads(events), language, personal, enabled) == (
        "Space chat", TELEGRAM, [notices.OPENED, notices.CLOSED], "en", 0, 1
    )  # fmt: skip
    page = client.get(answer.headers["Location"])
    assert "The target was added." in page.text
    assert "Space chat" in page.text and "Nothing waiting." in page.text

    # Changed without typing the URL again: the saved one stays.
    edit = client.get(f"{PAGE}/{target_id}")
    assert edit.status_code == 200 and "Change the target" in edit.text
    assert TOKEN not in edit.text
    form = target_form(name="Space chat (el)", url="", language="el", enabled=None)
    form.setlist("events", [notices.DOOR_OPEN, notices.EVACUATION])
    answer = post(client, f"{PAGE}/{target_id}", form)
    assert answer.status_code == 302
    assert targets(app) == [
        (target_id, "Space chat (el)", TELEGRAM,
         json.dumps([notices.DOOR_OPEN, notices.EVACUATION]), "el", 0, 0)
    ]  # fmt: skip
    assert "The target was changed." in client.get(answer.headers["Location"]).text

    # A new URL replaces it.
    answer = post(client, f"{PAGE}/{target_id}", target_form(url="ntfys://ntfy.sh/our-space"))
    assert answer.status_code == 302
    assert targets(app)[0][2] == "ntfys://ntfy.sh/our-space"

    answer = post(client, f"{PAGE}/{target_id}/delete", {})
    assert answer.status_code == 302
    assert targets(app) == []
    assert "The target was removed." in client.get(answer.headers["Location"]).text
    assert [a for a, _d in audit_of(app)] == [
        "notification target added",
        "notification target changed",
        "notification target changed",
        "notification target removed",
    ]


def test_the_outbox_of_each_target_is_shown(app, client):
    post(client, PAGE, target_form())
    ((target_id, *_rest),) = targets(app)
    db = open_store(app.config["SPACE"].database.path, SPACE_MIGRATIONS)
    try:
        for n, sent in enumerate([1_700_000_000.0, None, None]):
            db.execute(
                "INSERT INTO notify_outbox (target_id, kind, key, title, body, happened_at,"
                " created_at, due_at, sent_at, answer) VALUES (?, 'door_open', ?, 't', 'b',"
                " ?, ?, ?, ?, ?)",
                [target_id, f"k{n}", 1_700_000_000 + n, 1_700_000_000 + n, 0, sent, "200 OK"],
            )
        db.conn.commit()
    finally:
        db.close()
    page = client.get(PAGE).text
    assert "2 messages waiting, the oldest since" in page
    assert "Last sent" in page


# --- refusals ---

REFUSALS = {
    "a scheme Apprise does not know": ({"url": "ftp://example.org/x"}, "does not know ftp://"),
    "no scheme": ({"url": "example.org"}, "starts with its service"),
    "a control character": ({"url": "json://example.org/\x07x"}, "control character"),
    "a bidi control in the name": ({"name": "chat\u202e"}, "control character"),
    "too long": ({"url": "jsons://example.org/" + "a" * 2000}, "at most 2000 characters"),
    "unreadable": ({"url": "tgram://bottoken/chat_id"}, "Apprise cannot read this URL"),
    "an unknown event": ({"events": [notices.OPENED, "alien_landing"]}, "among the events"),
    "a language the space lacks": ({"language": "zz"}, "space's languages"),
    "no name": ({"name": "  "}, "Give the target a name"),
    "no URL": ({"url": ""}, "Paste the target's Apprise URL"),
}


@pytest.mark.parametrize("which", REFUSALS)
def test_a_refused_form_is_a_4xx_with_its_message_and_stores_nothing(app, client, which):
    changes, message = REFUSALS[which]
    answer = post(client, PAGE, target_form(**changes))
    assert answer.status_code == 400, answer.text[:300]
    assert message in html.unescape(answer.text)
    assert 'role="alert"' in answer.text
    assert targets(app) == []


def test_a_forged_target_id_is_a_404_with_its_message(app, client):
    post(client, PAGE, target_form())
    before = targets(app)
    for path in (f"{PAGE}/999", f"{PAGE}/999/delete", f"{PAGE}/999/test",
                 f"{PAGE}/99999999999999999999999", f"{PAGE}/0"):  # fmt: skip
        answer = post(client, path, target_form(name="Forged"))
        assert answer.status_code == 404, (path, answer.status_code)
        assert "removed meanwhile" in answer.text
        assert client.get(path.removesuffix("/delete").removesuffix("/test")).status_code == 404
    assert post(client, f"{PAGE}/abc", target_form()).status_code == 404
    assert targets(app) == before


def test_a_form_without_its_csrf_token_changes_nothing(app, client):
    assert client.post(PAGE, data=target_form()).status_code == 400
    assert targets(app) == []


# --- the token, personal data ---


def test_the_token_is_masked_on_the_page_and_absent_from_the_audit_log(app, client):
    secret_json = "json://127.0.0.1:8765/hook?token=Sup3rSecretValue"
    post(client, PAGE, target_form())
    post(client, PAGE, target_form(name="Webhook", url=secret_json))
    post(client, PAGE, target_form(name="Matrix", url="matrixs://bot:Pa55word99@matrix.org/#r"))
    assert len(targets(app)) == 3
    page = client.get(PAGE).text
    for secret in (TOKEN, "123456789", "Sup3rSecretValue", "Pa55word99", "/hook?"):
        assert secret not in page, secret
    assert "tgram://•••" in page
    assert "json://127.0.0.1:8765/•••" in page
    assert "matrixs://matrix.org/•••" in page
    for target_id, *_rest in targets(app):
        edit = client.get(f"{PAGE}/{target_id}").text
        assert TOKEN not in edit and "Sup3rSecretValue" not in edit and "Pa55word99" not in edit
    logged = " ".join(f"{a} {d}" for a, d in rows(app, "SELECT action, detail FROM audit_log"))
    for secret in (TOKEN, "Sup3rSecretValue", "Pa55word99"):
        assert secret not in logged
    assert "Webhook · json://127.0.0.1:8765/•••" in logged


def test_personal_data_is_off_by_default_warned_about_and_audited(app, client):
    page = client.get(PAGE).text
    assert 'name="personal" value="yes" aria-describedby="personal-warning">' in page
    assert "visitors' names" in html.unescape(page)  # the warning beside the box
    post(client, PAGE, target_form())
    ((target_id, *_rest, personal, _enabled),) = targets(app)
    assert personal == 0
    assert not [a for a, _d in audit_of(app) if "personal" in a]

    answer = post(client, f"{PAGE}/{target_id}", target_form(url="", personal="yes"))
    assert answer.status_code == 302
    assert targets(app)[0][5] == 1
    shown = client.get(answer.headers["Location"]).text
    assert "Personal data is now allowed" in shown and 'role="alert"' in shown
    assert "Personal data allowed in its messages" in shown
    assert ("notification personal data allowed", "Space chat · tgram://•••") in audit_of(app)

    post(client, f"{PAGE}/{target_id}", target_form(url=""))
    assert targets(app)[0][5] == 0
    assert ("notification personal data withdrawn", "Space chat · tgram://•••") in audit_of(app)


def test_only_an_admin_reaches_the_page(app):
    anonymous = app.test_client()
    answer = anonymous.get(PAGE)
    assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]
    outside = anonymous.get(PAGE, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert outside.status_code == 404


# --- send a test, to a real HTTP receiver ---


class Receiver:
    """An HTTP server on a free port, standing in for a chat's webhook: it keeps what it
    was sent and answers with `status`."""

    def __init__(self, status: int = 200):
        self.received: queue.Queue = queue.Queue()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.put((self.path, json.loads(body or b"{}")))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_send_a_test_reaches_a_real_receiver_and_shows_its_answer(app, client, receiver):
    post(client, PAGE, target_form(name="Webhook", url=f"json://127.0.0.1:{receiver.port}/"))
    ((target_id, *_rest),) = targets(app)
    answer = post(client, f"{PAGE}/{target_id}/test", {})
    assert answer.status_code == 302
    path, body = receiver.received.get(timeout=10)
    assert path == "/"
    assert body.get("title") or body.get("message")
    assert receiver.received.empty()  # one message, once
    page = client.get(answer.headers["Location"]).text
    assert "The test reached Webhook." in page
    ((last_answer, last_answer_at),) = rows(
        app, "SELECT last_answer, last_answer_at FROM notify_targets"
    )
    assert last_answer and last_answer_at
    assert last_answer in page
    assert "accepted" in last_answer
    assert [a for a, d in audit_of(app) if a == "notification test sent"] == [
        "notification test sent"
    ]


def test_a_receiver_that_refuses_the_test_shows_its_status(app, client):
    refusing = Receiver(status=503)
    try:
        post(client, PAGE, target_form(name="Busy", url=f"json://127.0.0.1:{refusing.port}/"))
        ((target_id, *_rest),) = targets(app)
        answer = post(client, f"{PAGE}/{target_id}/test", {})
        refusing.received.get(timeout=10)  # it arrived, and was refused
    finally:
        refusing.close()
    page = html.unescape(client.get(answer.headers["Location"]).text)
    assert "The test did not reach Busy." in page
    ((last_answer,),) = rows(app, "SELECT last_answer FROM notify_targets")
    assert "503" in last_answer and last_answer in page


def test_send_a_test_to_a_receiver_that_is_down_shows_the_failure(app, client):
    post(client, PAGE, target_form(name="Gone", url=f"json://127.0.0.1:{free_port()}/"))
    ((target_id, *_rest),) = targets(app)
    answer = post(client, f"{PAGE}/{target_id}/test", {})
    assert answer.status_code == 302
    page = client.get(answer.headers["Location"]).text
    assert "The test did not reach Gone." in page
    assert 'role="alert" id="test-result"' in page
    ((last_answer,),) = rows(app, "SELECT last_answer FROM notify_targets")
    assert last_answer


# --- hostile forms ---

NASTY = st.sampled_from(
    [
        "",
        " ",
        "yes",
        "\x00",
        "\u202e",
        "en",
        "el",
        "zz",
        *notices.KINDS,
        "opened",
        "alien_landing",
        TELEGRAM,
        "json://127.0.0.1:1/",
        "jsons://example.org/" + "a" * 1990,
        "jsons://example.org/" + "a" * 2000,
        "https://discord.com/api/webhooks/123/abcdef",
        "ftp://example.org",
        "json://",
        "x" * 5000,
        "<script>alert(1)</script>",
    ]
) | st.text(max_size=60)
FIELDS = ["name", "url", "events", "language", "enabled", "personal", "csrf_token", "other"]
PATHS = st.builds(
    str.format,
    st.sampled_from(["", "/{}", "/{}", "/{}/delete", "/{}", "/-1", "/x", "/99999999999999999999"]),
    st.integers(1, 8),
).map(lambda rest: PAGE + rest)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A kiosk as in production (errors rendered, not raised) and a logged-in admin."""
    folder = tmp_path_factory.mktemp("hostile-notifications")
    app = create_app(config.load(write_space_config(folder, broker_port=1)), {})
    make_admin(app.config["SPACE"].database.path)
    client = app.test_client()
    log_in(client)
    token = csrf_token(client, PAGE)
    log = ErrorLog()
    app.logger.addHandler(log)
    logging.getLogger().addHandler(log)
    yield app, client, token, log
    logging.getLogger().removeHandler(log)


GOOD_URLS = st.sampled_from(
    [
        TELEGRAM,
        "json://127.0.0.1:1/",
        "ntfys://ntfy.sh/our-space",
        "matrixs://bot:pass@matrix.org/#room",
        "https://discord.com/api/webhooks/123/abcdef",
        "",
    ]
)
FORMS = st.fixed_dictionaries(
    {
        "name": st.one_of(
            st.sampled_from(["Space chat", " Chat ", "x" * 100, "x" * 101]), st.text()
        ),
        "url": st.one_of(GOOD_URLS, GOOD_URLS, NASTY),
        "language": st.sampled_from(["en", "el", "en", "el", "zz", ""]),
        "enabled": st.sampled_from(["yes", "", "no"]),
        "personal": st.sampled_from(["yes", "", "on"]),
    }
)


@hypothesis_settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=PATHS,
    base=st.one_of(FORMS, FORMS, FORMS, st.none()),
    events=st.lists(st.sampled_from(notices.KINDS), max_size=12)
    | st.lists(st.sampled_from([*notices.KINDS, "alien_landing", ""]), max_size=12),
    fields=st.lists(st.tuples(st.sampled_from(FIELDS), NASTY), max_size=3),
    real_token=st.sampled_from([True, True, True, False]),
)
def test_no_form_however_hostile_gets_a_5xx_or_stores_out_of_bounds(
    hostile, path, base, events, fields, real_token
):
    form = MultiDict(base or {})
    form.setlist("events", events)
    for key, value in fields:
        form.add(key, value)
    app, client, token, log = hostile
    if real_token:
        form.setlist("csrf_token", [token])
    answer = client.post(path, data=form)
    event(f"{path}: {answer.status_code}")
    assert answer.status_code < 500, (path, fields, answer.text[:300])
    assert not log.bad, log.bad
    if answer.status_code >= 400 and real_token and path.count("/") > 2:
        assert 'role="alert"' in answer.text or answer.status_code == 404
    stored = targets(app)
    event(f"targets stored: {len(stored)}")
    assert len(stored) <= notifications.MAX_TARGETS
    keys = set(notifications.event_keys())
    for _id, name, url, events, language, personal, enabled in stored:
        assert 0 < len(name) <= notifications.MAX_NAME and name.isprintable()
        assert name == name.strip()
        assert 0 < len(url) <= notifications.MAX_URL and url.isprintable()
        assert not any(ch.isspace() for ch in url)
        assert notifications.readable(url)
        listed = json.loads(events)
        assert set(listed) <= keys and len(listed) == len(set(listed))
        assert language in ("en", "el")
        assert personal in (0, 1) and enabled in (0, 1)
    assert client.get(PAGE).status_code == 200


def test_the_kiosk_checks_and_sends_without_loading_apprise(app, client, receiver):
    """Apprise loads every plugin it has (paho-mqtt among them), which the kiosk never
    loads: the page asks it in a child process, as send_test sends."""
    post(client, PAGE, target_form(name="Webhook", url=f"json://127.0.0.1:{receiver.port}/"))
    ((target_id, *_rest),) = targets(app)
    post(client, f"{PAGE}/{target_id}/test", {})
    receiver.received.get(timeout=10)
    assert "apprise" not in sys.modules


# --- the page in a browser, with targets, at the three sizes ---

SIZES = {"800x480": (800, 480), "phone": (390, 844), "1280x800": (1280, 800)}


@pytest.mark.parametrize("size", SIZES)
def test_the_page_with_targets_passes_axe_and_fits(tmp_path, services, browser, size):
    toml = write_space_config(tmp_path, broker_port=1)
    cfg = config.load(toml)
    make_admin(cfg.database.path)
    url = f"http://127.0.0.1:{cfg.kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height}, has_touch=size == "phone", locale="en-GB"
    )
    page = context.new_page()
    log_in(page, url)
    page.goto(url + "admin/notifications")
    page.fill("#name", "Space chat on Telegram, the long name of it")
    page.fill("#url", TELEGRAM)
    page.get_by_label("The door was left open").check()
    page.get_by_label("Include personal data").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Add the target").click()
    expect(page.locator(".message[role=alert]")).to_contain_text("Personal data is now allowed")
    page.fill("#name", "Gone")
    page.fill("#url", f"json://127.0.0.1:{free_port()}/")
    with page.expect_navigation():
        page.get_by_role("button", name="Add the target").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Send a test to Gone").click()
    expect(page.locator("#test-result")).to_contain_text("The test did not reach Gone.")
    assert TOKEN not in page.content()
    assert_fits(page, "the list, after a failed test")

    page.fill("#name", "Bad")
    page.fill("#url", "ftp://example.org/")
    with page.expect_navigation():
        page.get_by_role("button", name="Add the target").click()
    expect(page.locator("#problem-url")).to_contain_text("Apprise does not know ftp://")
    assert_fits(page, "a refused form")

    page.get_by_role("link", name="Change Gone").click()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Change the target")).to_be_visible()
    assert_fits(page, "changing a target")
    context.close()


def assert_fits(page, what: str) -> None:
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), what
    found = violations(page)
    assert found == [], f"{what}:\n" + "\n".join(found)
