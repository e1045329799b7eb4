"""The collector's pages against hostile data and hostile requests.

What a space stored before its messages were checked (a status of the wrong types, NaN,
1e300, hours in year 1 or 9999, counts that are strings) is written straight into a real
store, and every page and the API must still answer 200 with figures within bounds. Then
Hypothesis walks every route and parameter with hostile values: no 5xx, nothing stored out
of bounds, and the central page and API still answer afterwards."""

from __future__ import annotations

import collections
import json
import logging
import math
import re
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import pytest
from central import commit_usage
from conftest import LOGINS, write_collector_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from collector import accounts, reading, store
from collector.web import create_app
from spacekiosk import config
from spacekiosk.protocol import COUNTS, Bucket

PASSWORD = LOGINS["central"]
NOW = time.time()
THIS_HOUR = int(NOW) // 3600 * 3600


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def csrf(client, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)[1]


def logged_in(cfg):
    client = create_app(cfg).test_client()
    answer = client.post(
        "/login", data={"name": "central", "password": PASSWORD, "csrf_token": csrf(client)}
    )
    assert answer.status_code == 302
    return client


def open_store(tmp_path, database_url: str = ""):
    cfg = config.load(
        write_collector_config(tmp_path / "central", broker_port=1, database_url=database_url)
    )
    db = store.connect(cfg.central)
    good = [Bucket(THIS_HOUR - 24 * 3600, 1, {"signins": 3, "open_minutes": 60})]
    commit_usage(db, "athens", good)
    store.commit_status(db, "athens", {"online": True, "last_sync": NOW - 60})
    accounts.add_user(db, "central", PASSWORD)
    return cfg, db


@pytest.fixture
def central(tmp_path):
    cfg, db = open_store(tmp_path)
    yield cfg, db
    db.close()


# --- what a space stored before validation existed ---

BAD_STATUSES = {
    "last_sync a string": {"online": True, "last_sync": "yesterday"},
    "last_sync NaN": {"online": True, "last_sync": math.nan},
    "last_sync 1e300": {"online": True, "last_sync": 1e300},
    "last_sync -inf": {"online": True, "last_sync": -math.inf},
    "last_sync in year 9999": {"online": True, "last_sync": 253402300000},
    "last_sync true": {"online": True, "last_sync": True},
    "online a string": {"online": "yes"},
    "backlog a string": {"online": True, "backlog": "many", "oldest_pending": 5},
    "backlog NaN": {"online": True, "backlog": math.nan, "oldest_pending": "yesterday"},
    "sensors a list": {"online": True, "sensors": [1, 2]},
    "sensors a string": {"online": True, "sensors": "broken"},
    "faults a list": {"online": True, "sensors": {"faults": ["beam_a"], "door_alert": "yes"}},
    "faults of numbers": {"online": True, "sensors": {"faults": {"beam_a": 5, "": "x"}}},
    "faults a string": {"online": True, "sensors": {"faults": "stuck"}},
    "clock and agent objects": {"online": True, "clock": {"a": 1}, "agent": [1]},
    "about a string": {"online": True, "about": "Athens"},
    "about of wrong types": {
        "online": True,
        "about": {"name": ["x"], "capacity": "20", "timezone": 5},
    },
    "capacity 1e300": {"online": True, "about": {"capacity": 1e300, "timezone": "../../etc"}},
    "capacity huge": {"online": True, "about": {"capacity": 10**30, "name": "x" * 10_000}},
    "a list": [1, 2, 3],
    "null": None,
    "a number": 1e300,
}
# As raw text in the status column: what no json.dumps would write.
BAD_STATUS_TEXTS = {
    "not JSON": "{not json",
    "3 MB": json.dumps({"online": True, "agent": "x" * 3_000_000}),
    "nested deep": "[" * 100_000 + "]" * 100_000,
}
BAD_HOURS = {
    "year 1": at("0001-01-01T00:00"),
    "1970": 0,
    "2100": at("2100-06-01T00:00"),
    "9999": at("9999-12-31T23:00"),
    "past datetime": 2**60,
    "before datetime": -(2**60),
    "not a whole hour": THIS_HOUR - 7 * 86400 + 1234,
    "tomorrow and a day": THIS_HOUR + 3 * 86400,
}
BAD_COUNTS = {
    "a string": {"signins": "5"},
    "NaN": {"signins": math.nan},
    "1e300": {"signins": 1e300, "occupancy_peak": 1e300},
    "negative": {"signins": -5, "person_minutes": -1},
    "beyond 64 bits": {"signins": 2**80},
    "a bool": {"signins": True},
    "breakdown a list": {"signins": 1, "by_purpose": ["cowork"]},
    "breakdown of strings": {"signins": 1, "by_purpose": {"cowork": "3", "": 1, "x" * 500: 2}},
    "minutes past the hour": {"open_minutes": 10**6, "occupied_minutes": 61},
    "unknown names": {"signins": 1, "visitor_names": {"Ana": 1}, "x": 5},
}
BAD_COUNT_TEXTS = {"not JSON": "{oops", "a list": "[1,2]", "null": "null", "deep": "[" * 50_000}

PAGES = [
    "/",
    "/?space=bad",
    "/api/v1/spaces",
    "/api/v1/usage?space=bad",
    "/api/v1/usage?space=bad&format=csv",
    *(f"/api/v1/usage?granularity={g}" for g in ("hour", "day", "week", "month")),
    *(f"/api/v1/usage.csv?granularity={g}&space=bad" for g in ("hour", "day", "week", "month")),
    "/api/v1/usage?granularity=month&from=2000-01-01&to=2100-01-01",
    "/reports",
    "/reports?period=2100-Q4",
    "/reports.csv?period=2000-01",
    "/reports/bad",
    "/reports/bad?period=2100-12",
    "/spaces/bad",
]


def store_status(db, space: str, text: str) -> None:
    with store.transaction(db):
        db.execute(
            "INSERT INTO spaces (id, first_seen, last_seen, status) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status",
            [space, NOW - 3600, NOW - 60, text],
        )


def store_bucket(db, space: str, start: int, counts: str, hours: int = 1) -> None:
    store_status(db, space, json.dumps({"online": True}))
    with store.transaction(db):
        db.execute(
            "INSERT INTO usage (space, hour_start, hours, version, counts, received_at)"
            " VALUES (?, ?, ?, 1, ?, ?)",
            [space, start, hours, counts, NOW],
        )


def assert_pages_answer(client) -> dict:
    """Every page and route of the central team answers 200; returns what the API said."""
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    spaces = {s["id"]: s for s in client.get("/api/v1/spaces").json["spaces"]}
    for space in spaces.values():
        json.dumps(space, allow_nan=False)  # JSON any client can read: no NaN, no Infinity
        assert space["last_sync"] is None or space["last_sync"].startswith("20")
        assert isinstance(space["online"], bool)
        assert isinstance(space["sensors"]["faults"], dict)
        assert space["capacity"] is None or 1 <= space["capacity"] <= 10000
    for granularity in ("hour", "day", "week", "month"):
        got = client.get(f"/api/v1/usage?granularity={granularity}").json
        for period in got["periods"]:
            assert "2000" <= period["start"] <= datetime.fromtimestamp(NOW + 86400, UTC).isoformat()
            for name in COUNTS:
                if name == "occupied_minutes" and period[name] is None:
                    continue  # no space has reported motion: not known (docs/figures.md)
                assert isinstance(period[name], int) and period[name] >= 0, (name, period)
            assert all(isinstance(n, int) for n in period["by_purpose"].values())
    return spaces


@pytest.mark.parametrize("name", sorted(BAD_STATUSES))
def test_a_status_of_the_wrong_types_breaks_no_page(central, name):
    cfg, db = central
    store_status(db, "bad", json.dumps(BAD_STATUSES[name]))
    spaces = assert_pages_answer(logged_in(cfg))
    assert spaces["athens"]["online"] is True and spaces["athens"]["last_sync"] is not None
    assert spaces["bad"]["last_sync"] is None


def test_a_space_whose_disk_is_full_says_so_on_the_page(central):
    cfg, db = central
    store.commit_status(db, "bad", {"online": True, "store": "full"})
    client = logged_in(cfg)
    spaces = assert_pages_answer(client)
    assert spaces["bad"]["store"] == "full" and spaces["athens"]["store"] == "ok"
    assert "disk full: not recording" in client.get("/").text
    store_status(db, "bad", json.dumps({"online": True, "store": 7}))
    assert assert_pages_answer(client)["bad"]["store"] == "ok"  # unsaid, not shown
    assert "disk full" not in client.get("/").text


@pytest.mark.parametrize("name", sorted(BAD_STATUS_TEXTS))
def test_a_status_that_is_not_json_breaks_no_page(central, name):
    cfg, db = central
    store_status(db, "bad", BAD_STATUS_TEXTS[name])
    spaces = assert_pages_answer(logged_in(cfg))
    assert spaces["bad"]["online"] is False and spaces["bad"]["agent"] is None


@pytest.mark.parametrize("name", sorted(BAD_HOURS))
def test_an_hour_no_space_can_have_had_is_left_out(central, name):
    cfg, db = central
    store_bucket(db, "bad", BAD_HOURS[name], json.dumps({"signins": 7}))
    client = logged_in(cfg)
    assert_pages_answer(client)
    assert client.get("/api/v1/usage?space=bad").json["buckets"] == []
    months = client.get("/api/v1/usage?granularity=month").json["periods"]
    assert sum(p["signins"] for p in months) == 3  # athens' alone


@pytest.mark.parametrize("name", sorted(BAD_COUNTS))
def test_counts_out_of_bounds_read_as_zero(central, name):
    cfg, db = central
    hour = THIS_HOUR - 2 * 3600
    store_bucket(db, "bad", hour, json.dumps(BAD_COUNTS[name]))
    client = logged_in(cfg)
    assert_pages_answer(client)
    (bucket,) = client.get("/api/v1/usage?space=bad").json["buckets"]
    for name_ in COUNTS:
        assert 0 <= bucket.get(name_, 0) < 2**31
    assert bucket.get("open_minutes", 0) <= 60 and bucket.get("occupied_minutes", 0) <= 60
    assert set(bucket) <= {"start", "version", *COUNTS, "by_purpose", "by_event"}


@pytest.mark.parametrize("name", sorted(BAD_COUNT_TEXTS))
def test_counts_that_are_not_json_read_as_nothing(central, name):
    cfg, db = central
    store_bucket(db, "bad", THIS_HOUR - 3600, BAD_COUNT_TEXTS[name])
    client = logged_in(cfg)
    assert_pages_answer(client)
    (bucket,) = client.get("/api/v1/usage?space=bad").json["buckets"]
    assert set(bucket) == {"start", "version"}


def test_each_problem_is_logged_once_not_on_every_page(central, caplog):
    cfg, db = central
    store_bucket(db, "loud", 0, json.dumps({"signins": 1}))
    store_status(db, "loud", json.dumps(BAD_STATUSES["last_sync NaN"]))
    reading.problems.seen.clear()
    client = logged_in(cfg)
    with caplog.at_level(logging.WARNING, logger="collector.reading"):
        for _ in range(3):
            assert client.get("/").status_code == 200
            assert client.get("/api/v1/spaces").status_code == 200
    said = [r.getMessage() for r in caplog.records if "loud" in r.getMessage()]
    assert len(said) == 2, said  # its status, its hours: once each
    assert any("last_sync" in s for s in said) and any("hours outside" in s for s in said)


def test_everything_at_once_on_postgresql(tmp_path, pg_url):
    cfg, db = open_store(tmp_path, pg_url)
    try:
        store_status(db, "bad", BAD_STATUS_TEXTS["3 MB"])
        for i, value in enumerate(BAD_STATUSES.values()):
            store_status(db, f"status-{i}", json.dumps(value))
        store_status(db, "text", BAD_STATUS_TEXTS["not JSON"])
        for i, start in enumerate(v for v in BAD_HOURS.values() if abs(v) < 2**62):
            store_bucket(db, f"hours-{i}", start, json.dumps({"signins": 7}))
        for i, value in enumerate([*BAD_COUNTS.values()]):
            store_bucket(db, f"counts-{i}", THIS_HOUR - 3600, json.dumps(value))
        assert_pages_answer(logged_in(cfg))
    finally:
        db.close()


# --- every route and parameter, with hostile values (Hypothesis) ---

SPECIAL = [
    "",
    " ",
    "0",
    "-1",
    "1",
    "10000",
    "10001",
    "1e309",
    "NaN",
    "nan",
    "-inf",
    "-0",
    "0x10",
    "99999999999999999999",
    "1,250",
    "1250.50",
    "٣",
    "²",
    "2026-11",
    "2026-Q4",
    "2026-q1",
    "2026-13",
    "2026-Q5",
    "0000-01",
    "9999-12",
    "2101-01",
    "1999-12",
    "2026-11-01",
    "2026-11-25T16:00:00Z",
    "2026-11-25T16:00:00+05:30",
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-02-30",
    "\x00",
    "\r\n",
    "a\x00b",
    "\u202eevil",
    "\ufeff",
    "💥",
    "Ἀθῆναι",
    "athens",
    "bad",
    "nobody",
    "central",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%",
    "%00",
    "../..",
    "//evil.example/",
    "/\\evil.example",
    "https://evil.example/",
    "/reports",
    "hour",
    "day",
    "week",
    "month",
    "csv",
    "json",
    "EUR",
    "eur",
    "KES1",
    "x" * 5000,
]
text = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0x20), max_size=4),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,4})?(e-?[0-9]{1,4})?", fullmatch=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
QUERY_NAMES = ["granularity", "from", "to", "space", "format", "period", "next"]
GETS = [
    "/",
    "/api/v1/spaces",
    "/api/v1/usage",
    "/api/v1/usage.csv",
    "/reports",
    "/reports.csv",
    "/reports/{space}",
    "/spaces/{space}",
    "/login",
    "/healthz",
    "/static/{space}",
    "/{space}",
]
FORMS = {
    "/spaces/{space}/info": ["name", "capacity"],
    "/spaces/{space}/cost": ["month", "amount", "currency"],
    "/login": ["name", "password", "next"],
}
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
ANY_PATH = [*GETS, *FORMS, "/logout", "/api/v1/ingest", "/api/v1/digest", "/api/v1/status"]


class Walk:
    """One store and app for the whole walk: a logged-in client and an anonymous one."""

    def __init__(self, folder):
        self.cfg, self.db = open_store(folder)
        store_status(self.db, "bad", json.dumps(BAD_STATUSES["faults a list"]))
        store_bucket(self.db, "bad", at("9999-12-31T23:00"), json.dumps({"signins": 1}))
        store_bucket(self.db, "nairobi", THIS_HOUR - 3600, json.dumps(BAD_COUNTS["1e300"]))
        accounts.set_space_info(self.db, "athens", "Athens", 20)
        self.user = logged_in(self.cfg)
        self.token = csrf(self.user, "/spaces/athens")
        self.anon = self.user.application.test_client()
        self.login_token = csrf(self.anon)
        self.errors: list[str] = []
        self.answers: collections.Counter = collections.Counter()

    def check(self, answer) -> None:
        self.answers[answer.status_code] += 1
        assert answer.status_code < 500, (answer.request.method, answer.request.url)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        self.stored_within_bounds()
        assert not self.errors, self.errors

    def stored_within_bounds(self) -> None:
        for name, capacity in self.db.execute("SELECT name, capacity FROM space_info"):
            assert 1 <= len(name) <= 80 and accounts.visible(name) and name == name.strip()
            assert capacity is None or (type(capacity) is int and 1 <= capacity <= 10000)
        for month, amount, currency in self.db.execute("SELECT month, amount, currency FROM costs"):
            assert re.fullmatch(r"(20[0-9]{2}|2100)-(0[1-9]|1[0-2])", month)
            assert isinstance(amount, float) and math.isfinite(amount) and 0 <= amount < 1e12
            assert re.fullmatch(r"[A-Z]{3}", currency)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    running = Walk(tmp_path_factory.mktemp("walk"))

    class Errors(logging.Handler):
        def emit(self, record):
            running.errors.append(record.getMessage())

    catcher = Errors(logging.ERROR)
    logging.getLogger().addHandler(catcher)
    yield running
    logging.getLogger().removeHandler(catcher)
    # Afterwards the central page and the API still answer, for people and programs.
    assert running.user.get("/").status_code == 200
    assert running.user.get("/api/v1/spaces").status_code == 200
    said = ", ".join(f"{n} x {code}" for code, n in sorted(running.answers.items()))
    print(f"\n{running.answers.total()} hostile requests, no 5xx: {said}")
    running.db.close()


def hostile_pairs(names: list[str]):
    """(name, value) pairs: the route's own names and others, repeated or left out."""
    name = st.one_of(st.sampled_from(names), st.sampled_from(QUERY_NAMES), st.text(max_size=8))
    return st.lists(st.tuples(name, text), max_size=6)


def space_in_path():
    """Mostly a space that exists, so that its forms are reached; else anything."""
    known = st.sampled_from(["athens", "bad", "nairobi"])
    return st.one_of(known, known, known, text).map(lambda v: quote(v, safe="") or "x")


WALK = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@settings(WALK, max_examples=3000)
@given(path=st.sampled_from(GETS), space=space_in_path(), pairs=hostile_pairs(QUERY_NAMES),
       raw=st.sampled_from(["", "&space=%ff%fe", "&from=%00", "&granularity=%c0%af", "&&=&"]),
       anonymous=st.booleans())  # fmt: skip
def test_no_query_gets_a_5xx(walk, path, space, pairs, raw, anonymous):
    query = urlencode(pairs) + raw
    client = walk.anon if anonymous else walk.user
    walk.check(client.get(path.format(space=space), query_string=query))


# A value that passes for each field, so that many forms reach the store.
VALID = {
    "name": ["Athens Makerspace", " Nairobi Hub ", "Ἀθῆναι", "x" * 80],
    "capacity": ["", "1", "20", "10000"],
    "month": ["2026-11", "2000-01", "2100-12"],
    "amount": ["0", "1250.50", "999999999999"],
    "currency": ["EUR", "kes", " PHP "],
    "password": ["guess", PASSWORD],
    "next": ["/reports", ""],
}


RAW_FORMS = [b"name=%ff%fe&capacity=\xff\xfe", b"\x00\x01=\xc0&month=%C0%AF"]


def form_fields(names: list[str]):
    """Each field right (most often, so that forms reach the store), hostile, missing,
    or sent twice."""

    def field(name: str):
        right, hostile = st.sampled_from(VALID[name]), text
        return st.one_of(
            st.lists(right, min_size=1, max_size=1),
            st.lists(hostile, min_size=1, max_size=1),
            st.lists(st.one_of(right, hostile), max_size=3),
        ).map(lambda values: [(name, v) for v in values])

    return st.tuples(*map(field, names)).map(lambda parts: [p for part in parts for p in part])


@settings(WALK, max_examples=2500)
@given(form=st.sampled_from(sorted(FORMS)), space=space_in_path(), data=st.data(),
       token=st.sampled_from(["right", "right", "right", "wrong", "none", "twice"]),
       raw=st.sampled_from([None, None, None, *RAW_FORMS]))  # fmt: skip
def test_no_form_gets_a_5xx_or_stores_out_of_bounds(walk, form, space, data, token, raw):
    login = form == "/login"
    client = walk.anon if login else walk.user
    right = walk.login_token if login else walk.token
    sent = {"right": [right], "wrong": ["x" * 43], "none": [], "twice": ["x", right]}[token]
    pairs = data.draw(form_fields(FORMS[form]))
    fields = MultiDict([*pairs, *(("csrf_token", t) for t in sent)])
    path = form.format(space=space)
    if raw is not None:
        answer = client.post(path, data=raw, content_type="application/x-www-form-urlencoded")
    else:
        answer = client.post(path, data=fields)
    walk.check(answer)
    if login:
        assert answer.status_code in (302, 400, 401, 429)
        if answer.status_code == 302:  # a right password: log out again, for the next
            client.post("/logout", data={"csrf_token": csrf(client, "/")})
            walk.login_token = csrf(client)


@settings(WALK, max_examples=2000)
@given(method=st.sampled_from(METHODS), path=st.sampled_from(ANY_PATH), space=space_in_path(),
       headers=st.sampled_from([{}, {"Authorization": "Bearer " + "x" * 43},
                                {"Authorization": "Basic \x00"}, {"Content-Length": "5"},
                                {"Content-Type": "application/json"}]),
       body=st.binary(max_size=64))  # fmt: skip
def test_no_method_on_any_route_gets_a_5xx(walk, method, path, space, headers, body):
    client = walk.anon  # an anonymous stranger: only what is public answers
    if path == "/logout" and method == "POST":
        client = walk.anon
    answer = client.open(path.format(space=space), method=method, headers=headers, data=body)
    walk.check(answer)
    if path in ("/", "/api/v1/spaces", "/api/v1/usage", "/reports") and method == "GET":
        assert answer.status_code in (302, 401)  # nothing readable without a login
