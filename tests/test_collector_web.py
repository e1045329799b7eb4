"""The central team's side of the collector: logins and tokens, the JSON API and CSV, the
reports, the cost form, and the pages in a real Chromium. Real SQLite files and the real
Flask app throughout; every expected figure below is worked out by hand from the buckets
the test commits."""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from central import commit_usage
from conftest import (
    LOGINS,
    add_user,
    http_ready,
    screenshot,
    wait_for_port,
    write_collector_config,
)
from playwright.sync_api import expect

from collector import accounts, periods, reports, sessions, store
from collector.web import create_app
from spacekiosk import config
from spacekiosk.protocol import Bucket
from spacekiosk.web import serve

PASSWORD = LOGINS["central"]


def at(text: str) -> int:
    """Seconds since the epoch of a UTC time like 2025-03-11T09:00."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def counts(signins: int, **more) -> dict:
    return {"signins": signins, **more}


# Athens, March 2025: two hours on Tuesday the 11th, a rolled-up Monday the 17th, and an
# hour on each side of the month that a March report must leave out.
ATHENS = [
    Bucket(at("2025-02-28T23:00"), 1, counts(50, by_purpose={"cowork": 50})),
    Bucket(
        at("2025-03-11T09:00"),
        2,
        counts(
            4,
            unique_visitors=4,
            new_visitors=1,
            returning_visitors=3,
            by_purpose={"cowork": 3, "workshop": 1},
            by_event={"Repair café": 2},
            occupied_minutes=45,
            open_minutes=60,
            person_minutes=150,
            occupancy_peak=5,
            connected_minutes=60,
        ),
    ),
    Bucket(
        at("2025-03-11T10:00"),
        1,
        counts(
            2,
            unique_visitors=2,
            returning_visitors=2,
            by_purpose={"cowork": 2},
            occupied_minutes=30,
            open_minutes=60,
            person_minutes=90,
            occupancy_peak=8,
            connected_minutes=60,
        ),
    ),
    Bucket(
        at("2025-03-17T00:00"),
        1,
        counts(
            10,
            unique_visitors=9,
            new_visitors=2,
            returning_visitors=7,
            by_purpose={"cowork": 6, "meeting": 4},
            by_event={"Coding club": 5},
            occupied_minutes=300,
            open_minutes=600,
            person_minutes=1200,
            occupancy_peak=7,
            connected_minutes=1440,
        ),
        hours=24,
    ),
    Bucket(at("2025-04-01T00:00"), 1, counts(99)),
]
# Nairobi first reports on 21 March at 14:00 (no capacity, no cost entered).
NAIROBI = [
    Bucket(
        at("2025-03-21T14:00"),
        1,
        counts(
            3,
            unique_visitors=3,
            new_visitors=3,
            by_purpose={"cowork": 1, "study": 2},
            occupied_minutes=20,
            open_minutes=60,
            person_minutes=60,
            occupancy_peak=3,
            connected_minutes=30,
        ),
    ),
    Bucket(
        at("2025-03-22T00:00"),
        1,
        counts(
            5,
            unique_visitors=5,
            returning_visitors=5,
            by_purpose={"study": 5},
            occupied_minutes=100,
            open_minutes=480,
            person_minutes=400,
            occupancy_peak=4,
            connected_minutes=1000,
        ),
        hours=24,
    ),
]
STATUS = {
    "v": 1,
    "online": True,
    "backlog": 3,
    "oldest_pending": "2025-03-31T21:00:00Z",
    "last_sync": at("2025-04-01T00:00"),
    "agent": "0.1.0",
    "clock": "synchronized",
    "sensors": {"faults": {"beam_a": "stuck"}, "door_alert": False},
}


@pytest.fixture
def central(tmp_path):
    """A collector config and its store, with Athens and Nairobi's March 2025 in it."""
    cfg = config.load(write_collector_config(tmp_path / "central", broker_port=1))
    db = store.connect(cfg.central)
    commit_usage(db, "athens", ATHENS, now=at("2025-04-01T00:10"))
    commit_usage(db, "nairobi", NAIROBI, now=at("2025-04-01T00:10"))
    store.commit_status(db, "athens", STATUS, now=at("2025-04-01T00:10"))
    accounts.set_space_info(db, "athens", "Athens Makerspace", 20)
    accounts.set_cost(db, "athens", "2025-03", 620, "EUR")
    accounts.add_user(db, "central", PASSWORD)
    yield cfg, db
    db.close()


@pytest.fixture
def client(central):
    return create_app(central[0]).test_client()


def csrf(client, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)[1]


def log_in(client, name: str = "central", password: str = PASSWORD):
    return client.post(
        "/login", data={"name": name, "password": password, "csrf_token": csrf(client)}
    )


@pytest.fixture
def user(client):
    """The test client, logged in."""
    assert log_in(client).status_code == 302
    return client


@pytest.fixture
def token(central):
    return accounts.add_api_token(central[1], "grafana")


# --- logins and tokens ---

READABLE = [
    "/",
    "/?space=athens",
    "/reports",
    "/reports?period=2025-03",
    "/reports/athens",
    "/spaces/athens",
    "/reports.csv?period=2025-03",
    "/api/v1/spaces",
    "/api/v1/usage?space=athens",
    "/api/v1/usage?granularity=day",
    "/api/v1/usage.csv?granularity=month",
    "/no-such-page",
]


@pytest.mark.parametrize("path", READABLE)
def test_nothing_is_readable_without_a_login(client, path):
    answer = client.get(path)
    if path.startswith("/api/") or ".csv" in path:
        assert answer.status_code == 401
        assert "Bearer" in answer.headers["WWW-Authenticate"]
        assert "log in" in answer.json["error"]
    else:
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith("/login?next=")
    assert b"Makerspace" not in answer.data and b"signins" not in answer.data


def test_only_the_health_check_answers_anyone(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json["ok"] is True
    icon = client.get("/favicon.ico")  # and the tab's icon, which browsers ask for unasked
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data.startswith(b"<svg")


def test_forms_refuse_anyone_not_logged_in(client, central):
    answer = client.post("/spaces/athens/cost", data={"month": "2025-03", "amount": "1"})
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert central[1].execute("SELECT amount FROM costs").fetchall() == [(620.0,)]


def test_a_login_opens_the_pages_and_a_logout_closes_them(client):
    answer = log_in(client)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "Athens Makerspace" in page.text
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert client.get("/").status_code == 302


def test_behind_https_the_cookie_travels_over_tls_only(tmp_path):
    toml = write_collector_config(
        tmp_path, broker_port=1, central='public_url = "https://collector.example.org"'
    )
    cfg = config.load(toml)
    db = store.connect(cfg.central)
    accounts.add_user(db, "central", PASSWORD)
    db.close()
    answer = log_in(create_app(cfg).test_client())
    assert answer.status_code == 302 and "Secure" in answer.headers["Set-Cookie"]


def test_a_login_goes_back_where_it_was_asked_for_and_only_there(client):
    token = csrf(client)
    back = client.post(
        "/login",
        data={"name": "central", "password": PASSWORD, "csrf_token": token, "next": "/reports"},
    )
    assert back.headers["Location"] == "/reports"
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    away = client.post(
        "/login",
        data={
            "name": "central",
            "password": PASSWORD,
            "csrf_token": csrf(client),
            "next": "//evil.example/",
        },
    )
    assert away.headers["Location"] == "/"


def test_a_wrong_password_or_name_is_refused(client):
    for name, password in (("central", "not the password"), ("nobody", PASSWORD)):
        answer = log_in(client, name, password)
        assert answer.status_code == 401 and "Wrong name or password" in answer.text
    assert client.get("/").status_code == 302


def test_a_login_form_without_its_csrf_token_is_refused(client):
    answer = client.post("/login", data={"name": "central", "password": PASSWORD})
    assert answer.status_code == 400 and "reload" in answer.text
    assert client.get("/").status_code == 302


def test_failed_logins_are_limited_per_address(client):
    for _ in range(10):
        assert log_in(client, password="guess again").status_code == 401
    blocked = log_in(client)  # even the right password, for now
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert "Too many failed logins" in blocked.text
    other = client.post(
        "/login",
        data={"name": "central", "password": PASSWORD, "csrf_token": csrf(client)},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    )
    assert other.status_code == 302  # another address is not held up


def guess_from(client, forwarded_for: str, address: str = "127.0.0.1"):
    return client.post(
        "/login",
        data={"name": "central", "password": "guess again", "csrf_token": csrf(client)},
        environ_base={"REMOTE_ADDR": address},
        headers={"X-Forwarded-For": forwarded_for},
    )


@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_proxy_each_caller_has_their_own_allowance(tmp_path, proxies):
    """nginx on the same host: every request comes from 127.0.0.1. With `proxies = 1`
    the proxy's X-Forwarded-For names the caller, so one guesser is not everyone's block;
    without it the header is anyone's to write and is not believed."""
    central = f"proxies = {proxies}"
    cfg = config.load(write_collector_config(tmp_path / "c", broker_port=1, central=central))
    db = store.connect(cfg.central)
    accounts.add_user(db, "central", PASSWORD)
    client = create_app(cfg).test_client()
    for _ in range(10):
        assert guess_from(client, "203.0.113.5").status_code == 401
    assert guess_from(client, "203.0.113.5").status_code == 429
    other = guess_from(client, "198.51.100.9")  # another caller, through the same proxy
    assert other.status_code == (401 if proxies else 429)
    # The header's writer cannot step out of a block: a forged hop before the proxy's is
    # not the one trusted.
    forged = guess_from(client, "192.0.2.1, 203.0.113.5")
    assert forged.status_code == 429
    db.close()


def test_a_removed_user_is_logged_out(user, central):
    assert user.get("/").status_code == 200
    accounts.remove_user(central[1], "central")
    assert user.get("/").status_code == 302


def test_an_api_token_reads_the_api_and_csv(client, token):
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/spaces", headers=headers).status_code == 200
    assert client.get("/reports.csv?period=2025-03", headers=headers).status_code == 200
    wrong = {"Authorization": "Bearer " + "x" * 43}
    assert client.get("/api/v1/spaces", headers=wrong).status_code == 401
    # A token reads; it does not fill in forms.
    posted = client.post("/spaces/athens/cost", headers=headers, data={"month": "2025-03"})
    assert posted.status_code == 302


def test_the_cookie_secret_is_made_once_readable_by_the_collector_alone(central):
    cfg, _db = central
    first = create_app(cfg).test_client()
    log_in(first)
    secret = cfg.central.database.parent / "collector-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    again = create_app(cfg).test_client()  # a restart: the same secret, the same sessions
    again.set_cookie("spacekiosk_collector", first.get_cookie("spacekiosk_collector").value)
    assert again.get("/").status_code == 200


# --- sessions kept on the server, the login throttle, the security headers ---


def test_a_copied_cookie_stops_working_at_logout(client, central):
    log_in(client)
    copied = client.get_cookie("spacekiosk_collector").value
    thief = create_app(central[0]).test_client()
    thief.set_cookie("spacekiosk_collector", copied)
    assert thief.get("/").status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert out.status_code == 302
    assert thief.get("/").status_code == 302  # the server ended it, not just the browser
    assert thief.get("/api/v1/spaces").status_code == 401
    assert sessions.count(central[1], "central") == 0


def test_the_cookie_holds_only_a_random_id_and_the_store_its_hash(client, central):
    log_in(client)
    cookie = client.get_cookie("spacekiosk_collector").value
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)  # 256 random bits, nothing else
    ((key, user, data),) = (
        central[1].execute("SELECT id_sha256, user_name, data FROM sessions").fetchall()
    )
    assert key == hashlib.sha256(cookie.encode()).hexdigest() and cookie not in key + data
    assert user == "central" and "central" not in cookie


def test_a_new_password_or_removal_ends_every_session_of_that_user(central):
    cfg, db = central
    laptops = [create_app(cfg).test_client() for _ in range(2)]
    for laptop in laptops:
        log_in(laptop)
        assert laptop.get("/").status_code == 200
    accounts.add_user(db, "central", "a brand new long password")  # `user add --replace`
    assert [laptop.get("/").status_code for laptop in laptops] == [302, 302]
    log_in(laptops[0], password="a brand new long password")
    assert laptops[0].get("/").status_code == 200
    accounts.remove_user(db, "central")  # `spacekiosk user remove`
    assert laptops[0].get("/").status_code == 302
    assert sessions.count(db, "central") == 0


def test_a_session_ends_after_its_hours(client, central):
    db = central[1]
    long_ago = time.time() - (sessions.SESSION_HOURS * 3600 + 1)
    token, _ends = sessions.begin(db, "central", {"csrf": "x" * 43}, now=long_ago)
    client.set_cookie("spacekiosk_collector", token)
    assert client.get("/").status_code == 302
    fresh, _ends = sessions.begin(db, "central", {"csrf": "x" * 43})
    client.set_cookie("spacekiosk_collector", fresh)
    assert client.get("/").status_code == 200
    # A new login sweeps out the sessions that have ended.
    assert (
        db.execute("SELECT count(*) FROM sessions WHERE expires_at < ?", [time.time()]).fetchone()[
            0
        ]
        == 0
    )


def test_logging_out_needs_the_forms_token(user, central):
    assert user.post("/logout").status_code == 400
    assert user.post("/logout", data={"csrf_token": "x" * 43}).status_code == 400
    assert user.get("/").status_code == 200  # still logged in


def test_a_login_form_from_another_page_is_refused(client, central):
    """The login form's token is bound to a cookie of its own: a token copied from
    another browser's form does not log this one in."""
    other = create_app(central[0]).test_client()
    token = csrf(other)
    answer = client.post(
        "/login", data={"name": "central", "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 400 and client.get("/").status_code == 302


def serve_collector(cfg):
    """The collector's web side on waitress in this process, as `spacekiosk collector`
    serves it: (its base URL, a function that stops it)."""
    stopping = threading.Event()
    thread = threading.Thread(
        target=serve, args=(create_app(cfg), cfg.central.listen, "collector", stopping)
    )
    thread.start()
    assert wait_for_port(cfg.central.listen[1])

    def stop():
        stopping.set()
        thread.join(20)

    return f"http://127.0.0.1:{cfg.central.listen[1]}/", stop


def test_sixty_wrong_passwords_at_once_get_at_most_ten_checked(central):
    """The failed-login count is taken in the same statement that checks it, before the
    password is looked at: however many arrive together, only the limit get checked."""
    url, stop = serve_collector(central[0])
    try:
        browser = requests.Session()
        token = re.search(
            r'name="csrf_token" value="([^"]+)"', browser.get(url + "login", timeout=10).text
        )[1]
        cookies = browser.cookies.get_dict()
        start = threading.Barrier(60)

        def guess(i: int) -> int:
            start.wait()
            form = {"name": "central", "password": f"guess {i}", "csrf_token": token}
            return requests.post(url + "login", data=form, cookies=cookies, timeout=60).status_code

        with ThreadPoolExecutor(60) as pool:
            codes = collections.Counter(pool.map(guess, range(60)))
        assert set(codes) <= {401, 429} and codes[401] + codes[429] == 60
        print(f"60 wrong passwords at once: {dict(codes)}")
        assert codes[401] <= sessions.TRIES, codes  # wrong passwords checked: at most 10
        right = {"name": "central", "password": PASSWORD, "csrf_token": token}
        held = requests.post(
            url + "login", data=right, cookies=cookies, allow_redirects=False, timeout=60
        )
        assert held.status_code == 429 and int(held.headers["Retry-After"]) > 0
    finally:
        stop()


PAGES_WITH_FIGURES = [
    "/",
    "/reports?period=2025-03",
    "/reports/athens?period=2025-03",
    "/spaces/athens",
]


def test_every_answer_carries_the_security_headers(user, client, token):
    answers = [user.get(path) for path in PAGES_WITH_FIGURES]
    answers += [user.get("/api/v1/spaces"), user.get("/api/v1/usage.csv?granularity=day")]
    answers += [user.get("/reports.csv?period=2025-03"), user.get("/no-such-page")]
    answers += [client.get("/"), client.get("/login"), client.get("/api/v1/spaces")]
    answers += [client.post("/login", data={}), client.get("/healthz")]
    answers += [client.get("/api/v1/spaces", headers={"Authorization": f"Bearer {token}"})]
    for answer in answers:
        headers = answer.headers
        where = (answer.request.path, answer.status_code)
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, where
        assert "script-src" not in policy  # the pages have no script, and say so
        assert headers["X-Content-Type-Options"] == "nosniff", where
        assert headers["Referrer-Policy"] == "no-referrer", where
        assert headers["Cache-Control"] == "no-store", where
    css = user.get("/static/collector.css")
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    assert css.headers.get("Cache-Control") != "no-store"  # the stylesheet may be kept


# --- the JSON API ---


def test_spaces_says_what_each_space_reported_and_what_was_entered(user):
    spaces = {s["id"]: s for s in user.get("/api/v1/spaces").json["spaces"]}
    assert set(spaces) == {"athens", "nairobi"}
    athens = spaces["athens"]
    said = {  # what the space reported and what was entered (the collector adds its own)
        "id": "athens",
        "name": "Athens Makerspace",
        "capacity": 20,
        "first_seen": "2025-04-01T00:10:00Z",
        "last_seen": "2025-04-01T00:10:00Z",
        "online": True,
        "backlog": 3,
        "oldest_pending": "2025-03-31T21:00:00Z",
        "last_sync": "2025-04-01T00:00:00Z",
        "agent": "0.1.0",
        "clock": "synchronized",
        "sensors": {"faults": {"beam_a": "stuck"}, "door_alert": False},
        "hours": 5,
    }
    assert {name: athens.get(name) for name in said} == said
    assert spaces["nairobi"]["name"] == "nairobi" and spaces["nairobi"]["online"] is False


def usage(client, **params) -> dict:
    answer = client.get("/api/v1/usage", query_string=params)
    assert answer.status_code == 200, answer.json
    return answer.json


def test_by_hour_a_rolled_up_day_is_one_24_hour_entry(user):
    got = usage(
        user, space="athens", granularity="hour", **{"from": "2025-03-01", "to": "2025-04-01"}
    )
    assert [(p["start"], p["hours"], p["signins"]) for p in got["periods"]] == [
        ("2025-03-11T09:00:00Z", 1, 4),
        ("2025-03-11T10:00:00Z", 1, 2),
        ("2025-03-17T00:00:00Z", 24, 10),
    ]
    assert got["from"] == "2025-03-01T00:00:00Z" and got["to"] == "2025-04-01T00:00:00Z"


def test_by_day_counts_add_up_and_peaks_take_the_highest(user):
    got = usage(
        user, space="athens", granularity="day", **{"from": "2025-03-01", "to": "2025-04-01"}
    )
    first, second = got["periods"]
    assert first["start"] == "2025-03-11T00:00:00Z" and first["hours"] == 24
    assert first["signins"] == 6 and first["unique_visitors"] == 6
    assert first["occupancy_peak"] == 8  # the higher of 5 and 8, not 13
    assert first["person_minutes"] == 240 and first["open_minutes"] == 120
    assert first["by_purpose"] == {"cowork": 5, "workshop": 1}
    assert first["by_event"] == {"Repair café": 2}
    assert first["door_openings"] == 0  # every count is there, zero or not
    assert (second["start"], second["signins"], second["occupancy_peak"]) == (
        "2025-03-17T00:00:00Z",
        10,
        7,
    )


def test_weeks_start_on_monday_and_months_on_the_first(user):
    weeks = usage(user, space="athens", granularity="week")["periods"]
    assert [(p["start"], p["hours"], p["signins"]) for p in weeks] == [
        ("2025-02-24T00:00:00Z", 168, 50),  # Friday 28 February's week
        ("2025-03-10T00:00:00Z", 168, 6),
        ("2025-03-17T00:00:00Z", 168, 10),  # the rolled-up Monday
        ("2025-03-31T00:00:00Z", 168, 99),  # Tuesday 1 April's week began in March
    ]
    months = usage(user, space="athens", granularity="month")["periods"]
    assert [(p["start"], p["hours"], p["signins"]) for p in months] == [
        ("2025-02-01T00:00:00Z", 28 * 24, 50),
        ("2025-03-01T00:00:00Z", 31 * 24, 16),
        ("2025-04-01T00:00:00Z", 30 * 24, 99),
    ]


def test_without_a_space_every_space_is_summed(user):
    got = usage(user, granularity="month", **{"from": "2025-03-01", "to": "2025-04-01"})
    assert got["space"] is None
    (march,) = got["periods"]
    assert march["signins"] == 16 + 8
    assert march["occupancy_peak"] == 8
    assert march["by_purpose"] == {"cowork": 11 + 1, "workshop": 1, "meeting": 4, "study": 7}
    assert march["connected_minutes"] == 60 + 60 + 1440 + 30 + 1000


def test_a_space_alone_lists_its_buckets_as_stored(user):
    got = usage(user, space="athens", **{"from": "2025-03-11T10:00:00Z", "to": "2025-03-12"})
    assert got["buckets"] == [
        {
            "start": "2025-03-11T10:00:00Z",
            "version": 1,
            "signins": 2,
            "unique_visitors": 2,
            "returning_visitors": 2,
            "by_purpose": {"cowork": 2},
            "occupied_minutes": 30,
            "open_minutes": 60,
            "person_minutes": 90,
            "occupancy_peak": 8,
            "connected_minutes": 60,
        }
    ]


def test_the_csv_says_what_the_json_says(user):
    query = {"granularity": "day", "from": "2025-03-01", "to": "2025-04-01"}
    periods = usage(user, **query)["periods"]
    for path, extra in (("/api/v1/usage.csv", {}), ("/api/v1/usage", {"format": "csv"})):
        answer = user.get(path, query_string=query | extra)
        assert answer.status_code == 200 and answer.mimetype == "text/csv"
        assert "attachment" in answer.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert len(rows) == len(periods) == 4
        for row, period in zip(rows, periods, strict=True):
            assert row["space"] == "all" and row["start"] == period["start"]
            assert int(row["hours"]) == period["hours"]
            for name in ("signins", "unique_visitors", "occupancy_peak", "open_minutes"):
                assert int(row[name]) == period[name]
            for label in ("cowork", "workshop", "meeting", "study"):
                assert int(row[f"purpose:{label}"]) == period["by_purpose"].get(label, 0)
            assert int(row["event:Coding club"]) == period["by_event"].get("Coding club", 0)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"granularity": "fortnight"}, "granularity"),
        ({"granularity": "day", "from": "yesterday"}, "'from' must be an ISO-8601"),
        ({"granularity": "day", "from": "2025-04-01", "to": "2025-03-01"}, "before"),
        ({"granularity": "day", "format": "xml"}, "format"),
        ({}, "space"),
    ],
)
def test_bad_parameters_are_refused_with_a_reason(user, query, message):
    answer = user.get("/api/v1/usage", query_string=query)
    assert answer.status_code == 400 and message in answer.json["error"]


def test_an_unknown_space_is_not_found(user):
    answer = user.get("/api/v1/usage", query_string={"space": "atlantis", "granularity": "day"})
    assert answer.status_code == 404 and "atlantis" in answer.json["error"]
    assert user.get("/reports/atlantis").status_code == 404
    assert user.get("/spaces/atlantis").status_code == 404


# --- reports ---


def report_rows(client, period: str) -> dict[str, dict]:
    answer = client.get("/reports.csv", query_string={"period": period})
    assert answer.status_code == 200
    return {row["space"]: row for row in csv.DictReader(io.StringIO(answer.text))}


def test_a_month_report_adds_up_by_hand(user):
    rows = report_rows(user, "2025-03")
    athens, nairobi, total = rows["athens"], rows["nairobi"], rows["all"]
    assert athens["name"] == "Athens Makerspace" and athens["period"] == "2025-03"
    assert int(athens["visits"]) == 4 + 2 + 10
    assert int(athens["unique_visitors_hourly_sum"]) == 15
    assert int(athens["new_visitors"]) == 3
    # Hours as an agent sent them before first_in_* and open_person_minutes: different
    # people, those returning and people on average while open are not known, so blank.
    assert athens["distinct_visitors"] == athens["returning_distinct_visitors"] == ""
    assert (int(athens["events_held"]), int(athens["event_signins"])) == (2, 7)
    # occupied 45 + 30 + 300 = 375 minutes of 60 + 60 + 600 = 720 open minutes
    assert float(athens["utilisation"]) == pytest.approx(375 / 720, abs=1e-4)
    assert int(athens["occupancy_peak"]) == 8
    assert float(athens["peak_per_capacity"]) == pytest.approx(8 / 20)
    assert athens["average_occupancy"] == ""
    # Athens was first heard of in February: all of March's 44,640 minutes count.
    assert float(athens["link_availability"]) == pytest.approx(1560 / 44640, abs=1e-4)
    assert (athens["cost"], athens["currency"]) == ("620.00", "EUR")
    assert float(athens["cost_per_visit"]) == pytest.approx(620 / 16)
    # Nairobi's first hour was 21 March 14:00: 10 days and 10 hours of the month.
    assert float(nairobi["link_availability"]) == pytest.approx(1030 / 15000, abs=1e-4)
    assert nairobi["peak_per_capacity"] == "" and nairobi["cost_per_visit"] == ""
    assert int(total["visits"]) == 24
    assert float(total["utilisation"]) == pytest.approx(495 / 1260, abs=1e-4)
    assert float(total["peak_per_capacity"]) == pytest.approx(8 / 20)
    assert float(total["link_availability"]) == pytest.approx(2590 / 59640, abs=1e-4)
    assert float(total["cost_per_visit"]) == pytest.approx(620 / 16)


def test_spaces_are_compared_by_size(user, central):
    """Which sizes work: the spaces of each size band added up like the total row."""
    _cfg, db = central
    hour = at("2025-03-12T10:00")
    for space, name, capacity, signins in (
        ("bogota", "Bogotá", 40, 6),
        ("madrid", "Madrid", 30, 10),
    ):
        accounts.set_space_info(db, space, name, capacity)
        counts = {"signins": signins, "open_minutes": 60, "occupied_minutes": 30}
        commit_usage(db, space, [Bucket(hour, 1, counts | {"occupancy_peak": 4})])
    march = periods.parse_period("2025-03")
    sizes = {b.label: b for b in reports.report(db, march, at("2025-04-02T00:00")).sizes}
    assert list(sizes) == ["up to 20 people", "21 to 50 people", "size not given"]
    small, middle, unknown = sizes.values()
    assert (small.spaces, small.figures.visits) == (1, 16)  # Athens, 20 people
    assert (middle.spaces, middle.visits_per_space) == (2, 8)
    assert middle.figures.utilisation == pytest.approx(0.5)
    assert middle.figures.peak_ratio == pytest.approx((4 + 4) / (40 + 30))
    assert (unknown.spaces, unknown.figures.visits) == (1, 8)  # Nairobi
    page = user.get("/reports?period=2025-03").text
    assert "By size of space" in page and "21 to 50 people" in page


def test_a_quarter_prices_only_the_visits_of_months_with_a_cost(user):
    athens = report_rows(user, "2025-Q1")["athens"]
    assert int(athens["visits"]) == 50 + 16
    assert athens["cost_months"] == "1"
    assert float(athens["cost_per_visit"]) == pytest.approx(620 / 16)


def test_the_report_page_shows_the_table_and_says_how_it_counts(user):
    page = user.get("/reports?period=2025-03").text
    assert "Report for 2025-03" in page and "Athens Makerspace" in page
    assert "38.75 EUR" in page  # 620 EUR / 16 visits
    assert "52%" in page  # utilisation, 375 / 720
    assert "sum of each hour" in page
    assert 'href="/reports.csv?period=2025-03"' in page


def test_a_space_report_before_the_space_was_heard_of_is_empty_not_an_error(user):
    answer = user.get("/reports/nairobi?period=2025-02")  # it first reported in March
    assert answer.status_code == 200
    assert "Progress report · 2025-02" in answer.text and "no cost entered" in answer.text


def test_a_space_report_is_printable_with_its_charts(user):
    answer = user.get("/reports/athens?period=2025-03")
    assert answer.status_code == 200
    page = answer.text
    assert "Progress report · 2025-03" in page and "<h1>Athens Makerspace</h1>" in page
    assert "38.75 EUR" in page and "52%" in page  # its row of the month's table, as there
    assert page.count('role="img"') == 3  # weekly visits, purposes, hour of the week
    assert "<desc" in page and "The numbers" in page
    assert "Coding club" in page and "Repair café" in page
    css = user.get("/static/collector.css").text
    assert "size: A4" in css and "@media print" in css


def test_the_hour_of_the_week_is_each_spaces_own(user, central):
    """A space's pattern is drawn at its local hours, from the zone its status gives."""
    _cfg, db = central
    monday_3pm_utc, tuesday_2am_utc = at("2025-03-10T15:00"), at("2025-03-11T02:00")
    for space, zone in (("bogota", "America/Bogota"), ("bangalore", "Asia/Kolkata")):
        commit_usage(
            db,
            space,
            [Bucket(monday_3pm_utc, 1, {"signins": 3}), Bucket(tuesday_2am_utc, 1, {"signins": 2})],
        )
        store.commit_status(db, space, STATUS | {"about": {"name": space, "timezone": zone}})
    commit_usage(db, "nowhere", [Bucket(monday_3pm_utc, 1, {"signins": 1})])
    store.commit_status(db, "nowhere", STATUS | {"about": {"timezone": "Mars/Olympus_Mons"}})

    spaces = {s.id: s for s in reports.spaces(db)}
    assert spaces["nowhere"].timezone == "UTC"  # not a zone: its hours stay in UTC
    zones = {space: s.timezone for space, s in spaces.items()}
    found = periods.rows(db, at("2025-03-10T00:00"), at("2025-03-12T00:00"))
    grid, _ = reports.hour_of_week([r for r in found if r.space == "bogota"], zones)
    assert grid[0][10] == 3 and grid[0][21] == 2  # UTC-5: Monday 10:00, and 21:00
    grid, _ = reports.hour_of_week([r for r in found if r.space == "bangalore"], zones)
    assert grid[0][20] == 3 and grid[1][7] == 2  # UTC+5:30: 20:30 and 07:30, by their start
    grid, _ = reports.hour_of_week([r for r in found if r.space == "nowhere"], zones)
    assert grid[0][15] == 1
    page = user.get("/reports/bogota?period=2025-03").text
    assert "hours in America/Bogota" in page


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("2025-13", "a month like 2026-11"),
        ("2025-Q5", "a quarter like 2026-Q4"),
        ("March", "a month like 2026-11"),
        ("1999-01", "between 2000 and 2100"),
    ],
)
def test_a_bad_period_is_refused_with_a_reason(user, period, message):
    answer = user.get("/reports", query_string={"period": period})
    assert answer.status_code == 400 and message in answer.text
    assert user.get("/reports.csv", query_string={"period": period}).status_code == 400


# --- what the central team enters ---


def post_form(client, path: str, **fields):
    return client.post(path, data=fields | {"csrf_token": csrf(client, "/spaces/nairobi")})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"month": "2025-03", "amount": "-5", "currency": "KES"}, "a number of 0 or more"),
        ({"month": "2025-03", "amount": "lots", "currency": "KES"}, "a number of 0 or more"),
        ({"month": "2025-3", "amount": "5", "currency": "KES"}, "A month looks like"),
        ({"month": "2025-03", "amount": "5", "currency": "shillings"}, "three-letter code"),
    ],
)
def test_a_bad_cost_is_refused_and_the_form_shown_again(user, central, fields, message):
    answer = post_form(user, "/spaces/nairobi/cost", **fields)
    assert answer.status_code == 400
    assert message in answer.text
    assert f'value="{fields["amount"]}"' in answer.text  # what was typed stays
    assert (
        central[1].execute("SELECT count(*) FROM costs WHERE space = 'nairobi'").fetchone()[0] == 0
    )


def test_a_cost_entered_prices_the_visits(user, central):
    answer = post_form(user, "/spaces/nairobi/cost", month="2025-03", amount="1200", currency="kes")
    assert answer.status_code == 303
    assert "Cost for 2025-03 saved" in user.get(answer.headers["Location"]).text
    nairobi = report_rows(user, "2025-03")["nairobi"]
    assert (nairobi["cost"], nairobi["currency"]) == ("1200.00", "KES")
    assert float(nairobi["cost_per_visit"]) == pytest.approx(1200 / 8)
    assert report_rows(user, "2025-03")["all"]["currency"] == "mixed"  # EUR and KES


def test_a_form_without_its_csrf_token_is_refused(user, central):
    answer = user.post(
        "/spaces/nairobi/cost", data={"month": "2025-03", "amount": "5", "currency": "KES"}
    )
    assert answer.status_code == 400
    assert (
        central[1].execute("SELECT count(*) FROM costs WHERE space = 'nairobi'").fetchone()[0] == 0
    )


def test_name_and_capacity_are_checked_then_saved(user):
    bad = post_form(user, "/spaces/nairobi/info", name="Nairobi Hub", capacity="many")
    assert bad.status_code == 400 and "whole number of people" in bad.text
    assert post_form(user, "/spaces/nairobi/info", name="", capacity="12").status_code == 400
    good = post_form(user, "/spaces/nairobi/info", name="Nairobi Hub", capacity="12")
    assert good.status_code == 303
    nairobi = report_rows(user, "2025-03")["nairobi"]
    assert nairobi["name"] == "Nairobi Hub" and nairobi["capacity"] == "12"
    assert float(nairobi["peak_per_capacity"]) == pytest.approx(4 / 12, abs=1e-4)


def test_the_same_pages_and_figures_from_postgresql(tmp_path, pg_url):
    cfg = config.load(write_collector_config(tmp_path, broker_port=1, database_url=pg_url))
    db = store.connect(cfg.central)
    try:
        commit_usage(db, "athens", ATHENS)
        commit_usage(db, "nairobi", NAIROBI)
        accounts.set_space_info(db, "athens", "Athens Makerspace", 20)
        accounts.set_cost(db, "athens", "2025-03", 620, "EUR")
        accounts.add_user(db, "central", PASSWORD)
        client = create_app(cfg).test_client()
        log_in(client)
        assert "Athens Makerspace" in client.get("/").text
        athens = report_rows(client, "2025-03")["athens"]
        assert int(athens["visits"]) == 16
        assert float(athens["cost_per_visit"]) == pytest.approx(620 / 16)
        months = usage(client, space="athens", granularity="month")["periods"]
        assert [p["signins"] for p in months] == [50, 16, 99]
        assert client.get("/reports/athens?period=2025-03").status_code == 200
        saved = post_form(
            client, "/spaces/nairobi/cost", month="2025-03", amount="5", currency="KES"
        )
        assert saved.status_code == 303
    finally:
        db.close()


# --- in a browser ---


def weekly_pattern(monday: int, base: int, grow: int) -> list[Bucket]:
    """A plausible week for the background: open 09-19 on weekdays and 10-14 on Saturday,
    busiest at lunch and after work."""
    out = []
    for day, hours in [*((d, range(9, 20)) for d in range(5)), (5, range(10, 15))]:
        for hour in hours:
            n = base + grow + (2 if hour in (12, 13, 17, 18) else 0) - (day == 4)
            counts_ = counts(
                n,
                unique_visitors=n,
                returning_visitors=n // 2,
                new_visitors=n - n // 2,
                by_purpose={"cowork": n - n // 3, "workshop": n // 3},
                occupied_minutes=min(60, 12 * n),
                open_minutes=60,
                person_minutes=25 * n,
                occupancy_peak=n,
                connected_minutes=60,
            )
            out.append(Bucket(monday + day * 86400 + hour * 3600, 1, counts_))
    return out


def recent_visits(db) -> dict[str, list[Bucket]]:
    """What the browser sees. Checked by hand: last full week, 10:00-13:00 UTC on
    weekdays, Athens has two sign-ins an hour (40) and Bogotá one (20); Bogotá has nothing
    else. Around them, Athens' earlier weeks and Nairobi and Manila follow a pattern."""
    today = int(time.time()) // 86400
    this_week = (today - (today + 3) % 7) * 86400  # Monday (1970-01-01 was a Thursday)
    last_week = this_week - 7 * 86400
    made: dict[str, list[Bucket]] = {
        space: [
            Bucket(last_week + day * 86400 + hour * 3600, 1, counts(n, open_minutes=60))
            for day in range(5)
            for hour in range(10, 14)
        ]
        for space, n in (("athens", 2), ("bogota", 1))
    }
    for space, base, first in (("athens", 1, 2), ("nairobi", 3, 1), ("manila", 1, 1)):
        for back in range(first, 17):
            week = this_week - back * 7 * 86400
            made.setdefault(space, []).extend(weekly_pattern(week, base, (16 - back) // 5))
    for space, buckets in made.items():
        commit_usage(db, space, buckets)
    now = time.time()
    caught_up = {"backlog": 0, "oldest_pending": None, "sensors": {}}
    statuses = {
        "athens": STATUS | {"last_sync": now - 180},
        # Nairobi is on a metered link: it calls once a day and has no last will.
        "nairobi": STATUS | caught_up | {"last_sync": now - 720, "contact_every": 86400},
        "manila": STATUS | caught_up | {"last_sync": now - 3000, "clock": "unsynchronized"},
        "bogota": STATUS
        | {"online": False, "last_sync": now - 2 * 86400, "backlog": 41, "oldest_pending": None},
    }
    for space, status in statuses.items():
        store.commit_status(db, space, status)
    return made


def month_of(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def test_the_dashboard_and_a_report_in_a_browser(tmp_path, broker, services, browser, screenshots):
    toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    cfg = config.load(toml)
    url = f"http://127.0.0.1:{cfg.central.listen[1]}/"
    http_ready(url + "healthz", services("collector", "--config", str(toml)))
    db = store.connect(cfg.central)
    made = recent_visits(db)
    add_user(url, "central")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    refused = []  # what the content security policy blocked: nothing, on any page
    page.on("console", lambda m: refused.append(m.text) if "Security Policy" in m.text else None)
    try:
        page.goto(url)
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        styled = page.locator("header.top").evaluate("e => getComputedStyle(e).display")
        assert styled == "flex", styled  # the stylesheet applies under the policy
        page.get_by_label("Name").fill("central")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        spaces = page.get_by_role("table", name="Spaces")
        expect(spaces.get_by_role("row", name=re.compile("athens"))).to_contain_text("online")
        expect(spaces.get_by_role("row", name=re.compile("athens"))).to_contain_text(
            "beam_a: stuck"
        )
        manila = spaces.get_by_role("row", name=re.compile("manila"))
        expect(manila).to_contain_text("not synchronised")
        weekly = page.locator("#weekly svg[role=img]")
        expect(weekly.locator("g.series")).to_have_count(4)
        expect(page.locator("#compare-visits svg rect[fill]")).to_have_count(4)
        expect(page.locator("#pattern svg rect.cell")).to_have_count(7 * 24)
        assert page.locator("#weekly title").first.text_content() == "Visits per week"

        last_week = min(b.start for b in made["bogota"]) // 86400 * 86400  # a Monday
        label = datetime.fromtimestamp(last_week, UTC).strftime("%d %b %Y")
        page.locator("#weekly summary").click()
        numbers = page.get_by_role("table", name=re.compile("visits \\(sign-ins\\) per week"))
        header = numbers.locator("thead th").all_inner_texts()
        cells = numbers.get_by_role("row", name=label).locator("th, td").all_inner_texts()
        week = dict(zip(header, cells, strict=True))
        assert (week["athens"], week["bogota"]) == ("40", "20")
        nairobi = sum(
            b.counts["signins"]
            for b in made["nairobi"]
            if last_week <= b.start < last_week + 7 * 86400
        )
        assert week["nairobi"] == str(nairobi)

        page.get_by_label("Show").select_option("bogota")
        page.get_by_role("button", name="Show").click()
        expect(page.locator("#pattern figcaption")).to_contain_text("bogota")
        page.locator("#pattern summary").click()
        heat = page.get_by_role("table", name=re.compile("hour of the week"))
        for day in ("Mon", "Fri"):
            hours = heat.get_by_role("row", name=day).locator("th, td").all_inner_texts()
            assert hours[1:] == ["0"] * 10 + ["1"] * 4 + ["0"] * 10
        assert set(heat.get_by_role("row", name="Sat").locator("td").all_inner_texts()) == {"0"}
        page.goto(url)
        screenshot(page, screenshots / "collector-dashboard.png", full_page=True)

        month = month_of(last_week)
        page.goto(url + "spaces/athens")
        page.get_by_label("Name").fill("Athens Makerspace")
        page.get_by_label("Capacity (people)").fill("20")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status")).to_have_text("Name and capacity saved.")
        page.get_by_label("Month").fill(month)
        page.get_by_label("Amount").fill("-10")
        page.get_by_label("Currency").fill("EUR")
        page.get_by_role("button", name="Save cost").click()
        expect(page.get_by_role("alert")).to_contain_text("a number of 0 or more")
        page.get_by_label("Amount").fill("600")
        page.get_by_role("button", name="Save cost").click()
        expect(page.get_by_role("status")).to_have_text(f"Cost for {month} saved.")

        page.goto(url + f"reports/athens?period={month}")
        expect(page.get_by_role("heading", level=1)).to_have_text("Athens Makerspace")
        expect(page.locator("svg[role=img]")).to_have_count(3)
        visits = sum(b.counts["signins"] for b in made["athens"] if month_of(b.start) == month)
        figures = page.get_by_role("region", name="Key figures")
        expect(figures).to_contain_text(f"{visits:,}")
        # A month still running takes its cost pro-rated to the hours the space has sent.
        span = periods.parse_period(month)
        sent = min(max(b.start + b.hours * 3600 for b in made["athens"]), time.time(), span.end)
        cost = 600 * (sent - span.start) / (span.end - span.start)
        expect(figures).to_contain_text(f"{cost / visits:,.2f} EUR")
        page.emulate_media(media="print")
        assert page.locator("header.top").is_hidden()
        page.emulate_media(media="screen")
        screenshot(page, screenshots / "collector-report.png", full_page=True)
        for path in ("reports", "no-such-page"):
            page.goto(url + path)
            expect(page.locator("header.top")).to_be_visible()
        assert refused == []
    finally:
        context.close()
        db.close()
