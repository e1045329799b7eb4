"""The local admins' way in: `spacekiosk admin`, the login from a phone or laptop, the
long press and PIN on the kiosk's screen, sessions the server ends, CSRF, the throttle,
who reaches /admin at all, and the audit log."""

from __future__ import annotations

import collections
import os
import pty
import select
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from admin import NAME, PASSWORD, PIN, csrf_token, log_in, make_admin
from conftest import ROOT, http_ready, screenshot, visitor_form, write_space_config
from playwright.sync_api import expect

import kiosk
from kiosk import admins
from spacekiosk import config

LAN = "192.168.1.30"
OUTSIDE = "203.0.113.7"


@pytest.fixture
def toml(tmp_path):
    return write_space_config(tmp_path / "space", broker_port=1, extra="[kiosk]\nidle_seconds = 10")


@pytest.fixture
def app(toml):
    app = kiosk.create_app(config.load(toml), {"TESTING": True})
    make_admin(app.config["SPACE"].database.path)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def rows(app, sql: str, *args):
    with sqlite3.connect(app.config["SPACE"].database.path) as conn:
        return conn.execute(sql, args).fetchall()


def sessions_of(app, name: str = NAME) -> int:
    return rows(app, "SELECT count(*) FROM sessions WHERE user_name = ?", name)[0][0]


def spacekiosk(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacekiosk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


# --- spacekiosk admin ---


def test_admin_add_list_remove_on_the_command_line(toml, tmp_path):
    password, pin = tmp_path / "password", tmp_path / "pin"
    password.write_text(PASSWORD + "\n")
    pin.write_text("97531\n")
    files = ("--password-file", str(password), "--pin-file", str(pin), "--config", str(toml))
    added = spacekiosk("admin", "add", "grace", *files)
    assert added.returncode == 0 and "admin grace added" in added.stdout, added.stderr
    again = spacekiosk("admin", "add", "grace", *files)
    assert again.returncode == 65 and "--replace" in again.stderr
    listed = spacekiosk("admin", "list", "--config", str(toml))
    assert listed.returncode == 0 and listed.stdout.split() == ["grace"]
    db = config.load(toml).database.path
    with sqlite3.connect(db) as conn:
        ((hashed, pin_hashed),) = conn.execute("SELECT password_hash, pin_hash FROM admins")
    assert hashed.startswith("scrypt:") and pin_hashed.startswith("scrypt:")
    assert PASSWORD not in hashed and "97531" not in pin_hashed
    removed = spacekiosk("admin", "remove", "grace", "--config", str(toml))
    assert removed.returncode == 0 and "removed" in removed.stdout
    gone = spacekiosk("admin", "remove", "grace", "--config", str(toml))
    assert gone.returncode == 65 and "there is no admin grace" in gone.stderr
    assert spacekiosk("admin", "list", "--config", str(toml)).stdout.startswith("no admins")
    with sqlite3.connect(db) as conn:
        logged = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert logged == ["admin added", "admin removed"]


@pytest.mark.parametrize(
    ("name", "password", "pin", "says"),
    [
        ("bad name", PASSWORD, "1234", "cannot be used"),
        ("grace", "short", "1234", "at least 10 characters"),
        ("grace", PASSWORD, "12", "4 to 8 digits"),
        ("grace", PASSWORD, "12ab", "4 to 8 digits"),
        ("grace", PASSWORD, "123456789", "4 to 8 digits"),
    ],
)
def test_bad_input_is_refused_with_a_reason(toml, tmp_path, name, password, pin, says):
    (tmp_path / "password").write_text(password)
    (tmp_path / "pin").write_text(pin)
    result = spacekiosk(
        "admin", "add", name, "--config", str(toml),
        "--password-file", str(tmp_path / "password"), "--pin-file", str(tmp_path / "pin"),
    )  # fmt: skip
    assert result.returncode == 65 and says in result.stderr, result.stderr
    assert not spacekiosk("admin", "list", "--config", str(toml)).stdout.startswith("grace")


def at_terminal(args: list[str], answers: list[tuple[bytes, str]]) -> tuple[int, str]:
    """Run `spacekiosk ARGS` on a terminal of its own, typing each answer after its prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its own, as a person's would be
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "spacekiosk", *args])  # noqa: S606
    seen = b""

    def read_until(text: bytes | None) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while text is None or text not in seen:
            ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
            assert ready, f"no {text!r} from spacekiosk: {seen!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child is gone: the terminal is closed
                chunk = b""
            if not chunk:
                assert text is None, f"spacekiosk ended before {text!r}: {seen!r}"
                return
            seen += chunk

    for prompt, answer in answers:
        read_until(prompt)
        seen = seen.replace(prompt, b"", 1)  # the next prompt may be the same words
        os.write(fd, answer.encode() + b"\n")
    read_until(None)
    os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), seen.decode(errors="replace")


def test_admin_add_asks_twice_at_the_terminal(toml):
    typed = [(b"password: ", PASSWORD), (b"again: ", PASSWORD), (b"PIN: ", "1357")]
    code, out = at_terminal(
        ["admin", "add", "grace", "--config", str(toml)], [*typed, (b"again: ", "1357")]
    )
    assert code == 0 and "admin grace added" in out, out
    assert PASSWORD not in out and "1357" not in out  # nothing typed is echoed
    code, out = at_terminal(
        ["admin", "add", "hopper", "--config", str(toml)],
        [(b"password: ", PASSWORD), (b"again: ", PASSWORD + "!")],
    )
    assert code == 65 and "differ" in out
    listed = spacekiosk("admin", "list", "--config", str(toml)).stdout.split()
    assert listed == ["grace"]


# --- logging in, and out ---


def test_a_login_opens_the_pages_and_the_cookie_is_the_admin_pages_alone(client):
    first = client.get("/admin/audit")
    assert first.status_code == 302
    assert first.headers["Location"] == "/admin/login?next=/admin/audit"
    form = client.get("/admin/login")
    (cookie,) = form.headers.getlist("Set-Cookie")  # the form's own, for its token
    assert cookie.startswith("spacekiosk_admin_form=") and "Path=/admin" in cookie
    answer = client.post(
        "/admin/login",
        data={"name": NAME, "password": PASSWORD, "csrf_token": csrf_token(client),
              "next": "/admin/audit"},
    )  # fmt: skip
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/audit"
    (cookie,) = answer.headers.getlist("Set-Cookie")
    assert cookie.startswith("spacekiosk_admin=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/admin"):
        assert part in cookie
    page = client.get("/admin/audit")
    assert page.status_code == 200 and "logged in" in page.text and NAME in page.text


def test_a_wrong_password_or_name_is_refused(client):
    for name, password in ((NAME, "not the password"), ("nobody", PASSWORD)):
        answer = client.post(
            "/admin/login",
            data={"name": name, "password": password, "csrf_token": csrf_token(client)},
        )
        assert answer.status_code == 401 and "Wrong name or password" in answer.text
    assert client.get("/admin/").status_code == 302


def test_a_login_goes_back_only_to_an_admin_page(client):
    for target in ("//evil.example/", "https://evil.example/admin", "/sign-in", "/admin\\x"):
        answer = client.post(
            "/admin/login",
            data={"name": NAME, "password": PASSWORD, "csrf_token": csrf_token(client),
                  "next": target},
        )  # fmt: skip
        assert answer.headers["Location"] == "/admin/", target


def test_logging_out_ends_the_session_on_the_server(app, client):
    log_in(client)
    copied = client.get_cookie("spacekiosk_admin", path="/admin").value
    thief = app.test_client()
    thief.set_cookie("spacekiosk_admin", copied, path="/admin")
    assert thief.get("/admin/audit").status_code == 200
    out = client.post("/admin/logout", data={"csrf_token": csrf_token(client, "/admin/audit")})
    assert out.status_code == 302 and out.headers["Location"] == "/admin/login"
    assert thief.get("/admin/audit").status_code == 302  # the old cookie, replayed
    assert sessions_of(app) == 0


def test_a_removed_admin_or_a_new_password_ends_every_session(app, toml, tmp_path):
    laptops = [log_in(app.test_client()) for _ in range(2)]
    assert [laptop.get("/admin/audit").status_code for laptop in laptops] == [200, 200]
    (tmp_path / "password").write_text("another long password")
    (tmp_path / "pin").write_text("8642")
    replaced = spacekiosk(
        "admin", "add", NAME, "--replace", "--config", str(toml),
        "--password-file", str(tmp_path / "password"), "--pin-file", str(tmp_path / "pin"),
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    assert [laptop.get("/admin/audit").status_code for laptop in laptops] == [302, 302]
    laptop = log_in(laptops[0], password="another long password")
    assert laptop.get("/admin/audit").status_code == 200
    assert spacekiosk("admin", "remove", NAME, "--config", str(toml)).returncode == 0
    assert laptop.get("/admin/audit").status_code == 302
    assert sessions_of(app) == 0


# --- CSRF ---


def test_a_post_without_its_token_is_refused(app, client):
    refused = client.post("/admin/login", data={"name": NAME, "password": PASSWORD})
    assert refused.status_code == 400
    other = app.test_client()  # a token from another browser's form
    stolen = client.post(
        "/admin/login",
        data={"name": NAME, "password": PASSWORD, "csrf_token": csrf_token(other)},
    )
    assert stolen.status_code == 400 and client.get("/admin/").status_code == 302
    log_in(client)
    assert client.post("/admin/logout").status_code == 400
    assert client.post("/admin/logout", data={"csrf_token": "x" * 40}).status_code == 400
    assert client.get("/admin/audit").status_code == 200  # still logged in


def test_the_collector_refuses_a_post_without_its_token_too(tmp_path):
    from conftest import write_collector_config

    from collector import accounts, store
    from collector.web import create_app

    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    accounts.add_user(db, "central", PASSWORD)
    db.close()
    collector = create_app(cfg).test_client()
    form = collector.get("/login").text
    assert (
        collector.post("/login", data={"name": "central", "password": PASSWORD}).status_code == 400
    )
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    logged = collector.post(
        "/login", data={"name": "central", "password": PASSWORD, "csrf_token": token}
    )
    assert logged.status_code == 302
    assert collector.post("/logout").status_code == 400
    assert collector.get("/").status_code == 200


# --- the throttle ---


def test_parallel_wrong_passwords_from_one_address_are_all_counted(toml, services):
    make_admin(config.load(toml).database.path)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    browser = requests.Session()
    token = csrf_token(browser, url + "admin/login", timeout=10)
    cookies = browser.cookies.get_dict()
    start = threading.Barrier(30)

    def guess(i: int) -> int:
        start.wait()
        form = {"name": NAME, "password": f"guess {i}", "csrf_token": token}
        return requests.post(
            url + "admin/login", data=form, cookies=cookies, timeout=60
        ).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = collections.Counter(pool.map(guess, range(30)))
    assert codes[401] + codes[429] == 30 and codes[401] <= admins.PASSWORD_TRIES.tries, codes
    with sqlite3.connect(config.load(toml).database.path) as conn:
        assert conn.execute("SELECT tries FROM login_tries").fetchall() == [(30,)]
    right = {"name": NAME, "password": PASSWORD, "csrf_token": token}
    held = requests.post(
        url + "admin/login", data=right, cookies=cookies, allow_redirects=False, timeout=60
    )
    assert held.status_code == 429 and int(held.headers["Retry-After"]) > 0


def test_wrong_pins_on_the_screen_are_held_back(client):
    def pin(digits: str):
        token = csrf_token(client, f"/admin/screen/{NAME}")
        return client.post(f"/admin/screen/{NAME}", data={"pin": digits, "csrf_token": token})

    assert [pin("0000").status_code for _ in range(admins.PIN_TRIES.tries)] == [401] * 5
    assert pin(PIN).status_code == 429  # even the right one, for now
    assert client.get("/admin/").status_code == 302


# --- who reaches /admin ---


def test_only_the_screen_and_the_space_s_networks_reach_the_admin_pages(client):
    outside = {"REMOTE_ADDR": OUTSIDE}
    for path in ("/admin/", "/admin/login", "/admin/screen", "/admin/no-such-page"):
        assert client.get(path, environ_base=outside).status_code == 404, path
    lan = {"REMOTE_ADDR": LAN}
    assert client.get("/admin/login", environ_base=lan).status_code == 200
    assert client.get("/admin/", environ_base=lan).status_code == 302
    # The PIN pages are the kiosk's own screen's: never tried from the network.
    assert client.get("/admin/screen", environ_base=lan).status_code == 404
    assert client.get(f"/admin/screen/{NAME}", environ_base=lan).status_code == 404
    assert client.get("/admin/screen").status_code == 200
    assert client.get("/admin/screen/nobody").status_code == 404


def test_a_space_narrows_who_reaches_the_admin_pages_to_its_own_network(tmp_path):
    extra = '[kiosk]\nadmin_networks = ["192.168.1.0/24", "10.1.2.3"]'
    toml = write_space_config(tmp_path / "space", broker_port=1, extra=extra)
    client = kiosk.create_app(config.load(toml), {"TESTING": True}).test_client()
    for address, status in (
        ("192.168.1.30", 200),  # the space's Wi-Fi
        ("10.1.2.3", 200),  # one address, named alone
        ("10.1.2.4", 404),  # private, but not the space's
        ("192.168.2.30", 404),
        (OUTSIDE, 404),
        ("127.0.0.1", 200),  # the kiosk's own screen, always
    ):
        got = client.get("/admin/login", environ_base={"REMOTE_ADDR": address}).status_code
        assert got == status, address


def test_a_network_that_is_not_one_is_named_in_the_config(tmp_path):
    extra = '[kiosk]\nadmin_networks = ["192.168.1.0/24", "the wifi"]'
    toml = write_space_config(tmp_path / "space", broker_port=1, extra=extra)
    with pytest.raises(config.ConfigError) as refused:
        config.load(toml)
    assert "kiosk.admin_networks" in refused.value.report()
    assert "'the wifi' is not a network" in refused.value.report()


def test_visitors_still_get_no_session_cookie(client):
    for path in ("/", "/sign-in", "/sign-out", "/healthz", "/api/v1/status"):
        answer = client.get(path)
        assert answer.status_code == 200 and "Set-Cookie" not in answer.headers, path
    signed_in = client.post("/sign-in/new", data=visitor_form("Ada Visitor"))
    assert signed_in.status_code == 201 and "Set-Cookie" not in signed_in.headers
    # Not even an admin's cookie reaches the visitor pages: it is kept to /admin.
    log_in(client)
    assert client.get("/").request.headers.get("Cookie") is None


def test_a_screen_session_ends_when_left_alone(app, client):
    token = csrf_token(client, f"/admin/screen/{NAME}")
    answer = client.post(f"/admin/screen/{NAME}", data={"pin": PIN, "csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/"
    ((ends,),) = rows(app, "SELECT expires_at FROM sessions")
    assert ends - time.time() <= 10  # kiosk.idle_seconds, not twelve hours
    assert client.get("/admin/audit").status_code == 200
    rows(app, "UPDATE sessions SET expires_at = ?", time.time() - 1)  # ten seconds on
    assert client.get("/admin/audit").status_code == 302


def test_the_audit_log_is_read_only_and_shows_what_it_holds_as_text(app, client):
    from kiosk.admin import audit
    from spacekiosk.db import connect

    db = connect(app.config["SPACE"].database.path)
    audit(db, "settings changed", "<script>alert(1)</script>", admin="grace")
    log_in(client)
    page = client.get("/admin/audit").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "grace" in page and "settings changed" in page
    methods = {
        method
        for rule in app.url_map.iter_rules()
        if rule.endpoint == "admin.audit"
        for method in rule.methods
    }
    assert methods <= {"GET", "HEAD", "OPTIONS"}


def test_the_navigation_links_only_pages_that_exist(app, client):
    log_in(client)
    page = client.get("/admin/audit").text
    nav = page.split('class="admin-nav"')[1].split("</nav>")[0]
    assert 'href="/admin/audit"' in nav and 'aria-current="page"' in nav
    for endpoint, rule in (("admin.history", "/admin/history"), ("admin.health", "/admin/health")):
        assert (f'href="{rule}"' in nav) == (endpoint in app.view_functions)


# --- in Chromium ---


@pytest.fixture
def kiosk_url(toml, services):
    make_admin(config.load(toml).database.path)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    http_ready(url + "healthz", services("kiosk", "--config", str(toml)))
    return url


def test_logging_in_with_a_password_on_a_phone(browser, kiosk_url, screenshots):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, locale="en-GB"
    )
    page = context.new_page()
    try:
        page.goto(kiosk_url + "admin/audit")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        page.get_by_label("Name").fill(NAME)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").tap()
        expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        assert page.url == kiosk_url + "admin/audit"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        expect(page.locator(".admin-nav")).to_contain_text("Audit log")
        page.get_by_role("button", name="Log out").tap()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        page.goto(kiosk_url + "admin/audit")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    finally:
        context.close()


def hold(page, locator, until: str) -> None:
    """Put a finger on `locator` and keep it there until the page goes to `until`."""
    box = locator.bounding_box()
    point = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    touch = page.context.new_cdp_session(page)
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]})
    page.wait_for_url(until, timeout=10_000)
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def test_the_long_press_and_pin_on_the_kiosk_screen_then_back_to_welcome(
    kiosk_url, touch_page, screenshots
):
    page = touch_page
    page.goto(kiosk_url + "admin/login")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, screenshots / "admin-login.png")
    page.goto(kiosk_url)
    started = time.monotonic()
    hold(page, page.locator(".bar .space-name"), "**/admin/screen")
    assert time.monotonic() - started >= 3  # a passer-by's tap does not get here
    page.get_by_role("link", name=NAME).tap()
    expect(page.locator("#keyboard")).to_be_visible()  # the kiosk's own keypad
    for digit in PIN:
        page.locator("#keyboard").get_by_role("button", name=digit, exact=True).tap()
    page.locator("#keyboard").get_by_role("button", name="Done", exact=True).tap()
    page.wait_for_url(kiosk_url + "admin/")
    expect(page.locator(".admin-bar .who")).to_have_text(NAME)
    cookie = next(c for c in page.context.cookies() if c["name"] == "spacekiosk_admin")
    # Left alone for kiosk.idle_seconds, the screen logs out and goes back to Welcome.
    page.wait_for_url(kiosk_url, timeout=30_000)
    replay = requests.get(
        kiosk_url + "admin/",
        cookies={"spacekiosk_admin": cookie["value"]},
        allow_redirects=False,
        timeout=10,
    )
    assert replay.status_code == 302 and "/admin/login" in replay.headers["Location"]
