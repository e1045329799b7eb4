"""The central team's accounts: page logins, API tokens, spaces' names and costs — on
SQLite and on PostgreSQL, since the SQL is written once for both."""

from __future__ import annotations

import pytest
from central import commit_usage
from conftest import write_collector_config

from collector import accounts, sessions, store
from spacekiosk import config
from spacekiosk.protocol import Bucket

HOUR = 1795622400  # 2026-11-25T16:00:00Z


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    cfg = config.load(write_collector_config(tmp_path, broker_port=1, database_url=url))
    opened = store.connect(cfg.central, "ingest")
    yield opened
    opened.close()


def test_a_password_is_checked_and_kept_only_as_a_salted_hash(db):
    assert accounts.add_user(db, "amina", "correct horse battery") is True
    assert accounts.check_user(db, "amina", "correct horse battery")
    assert not accounts.check_user(db, "amina", "correct horse batter")
    assert not accounts.check_user(db, "amina", "")
    assert not accounts.check_user(db, "nobody", "correct horse battery")
    accounts.add_user(db, "otieno", "correct horse battery")
    stored = dict(db.execute("SELECT name, password_hash FROM users").fetchall())
    assert "correct horse battery" not in "".join(stored.values())
    assert stored["amina"] != stored["otieno"]  # the same password, salted apart
    assert all(h.startswith("scrypt:") for h in stored.values())  # its parameters named


def test_a_new_password_replaces_the_old_one_and_removal_ends_the_login(db):
    accounts.add_user(db, "amina", "correct horse battery")
    assert accounts.add_user(db, "amina", "a new long password") is False
    assert not accounts.check_user(db, "amina", "correct horse battery")
    assert accounts.check_user(db, "amina", "a new long password")
    assert accounts.users(db) == ["amina"]
    assert accounts.remove_user(db, "amina") is True
    assert accounts.remove_user(db, "amina") is False
    assert not accounts.check_user(db, "amina", "a new long password")


@pytest.mark.parametrize(
    ("name", "password", "words"),
    [("amina", "short", "at least 10"), ("", "long enough pw", "user name"),
     ("a b", "long enough pw", "user name"), ("x" * 65, "long enough pw", "user name")],
)  # fmt: skip
def test_bad_logins_are_refused(db, name, password, words):
    with pytest.raises(ValueError, match=words):
        accounts.add_user(db, name, password)
    assert accounts.users(db) == []


def test_api_tokens_are_unique_named_and_revocable(db):
    tokens = {accounts.add_api_token(db, f"tool-{i}") for i in range(20)}
    assert len(tokens) == 20 and all(len(t) >= 43 for t in tokens)
    some = accounts.add_api_token(db, "grafana")
    assert accounts.api_token_user(db, some) == "grafana"
    assert accounts.api_token_user(db, some[:-1]) is None
    assert accounts.api_token_user(db, "") is None
    stored = [r[0] for r in db.execute("SELECT token_sha256 FROM api_tokens").fetchall()]
    assert some not in stored
    again = accounts.add_api_token(db, "grafana")  # the name's earlier token stops working
    assert accounts.api_token_user(db, some) is None
    assert accounts.api_token_user(db, again) == "grafana"
    assert accounts.remove_api_token(db, "grafana") is True
    assert accounts.api_token_user(db, again) is None
    assert accounts.remove_api_token(db, "grafana") is False


def test_space_info_is_set_and_a_name_not_given_is_kept(db):
    accounts.set_space_info(db, "nairobi", "Nairobi Hub", 30)
    accounts.set_space_info(db, "nairobi", capacity=35)
    assert accounts.space_info(db, "nairobi") | {"added_at": 0} == {
        "name": "Nairobi Hub",
        "capacity": 35,
        "added_at": 0,
    }
    accounts.set_space_info(db, "nairobi", "Nairobi Hub", None)  # capacity not known
    assert accounts.space_info(db, "nairobi")["capacity"] is None
    accounts.set_space_info(db, "athens")
    assert accounts.space_info(db, "athens")["name"] == "athens"
    bad_ones = ({"capacity": 0}, {"capacity": True}, {"capacity": 2.5}, {"name": " "})
    for bad in (*bad_ones, {"name": "x" * 81}):
        with pytest.raises(ValueError):
            accounts.set_space_info(db, "nairobi", **bad)
    with pytest.raises(ValueError, match="space id"):
        accounts.set_space_info(db, "Nairobi")


def test_removing_a_space_keeps_its_stats(db):
    accounts.set_space_info(db, "nairobi", "Nairobi Hub", 30)
    store.set_token(db, "nairobi", "its-token")
    accounts.set_cost(db, "nairobi", "2026-11", 1200, "KES")
    commit_usage(db, "nairobi", [Bucket(HOUR, 1, {"signins": 4})])
    assert accounts.remove_space(db, "nairobi") is True
    assert store.token_space(db, "its-token") is None
    assert accounts.space_info(db, "nairobi") is None
    assert store.usage(db, "nairobi") == [Bucket(HOUR, 1, {"signins": 4})]
    assert db.execute("SELECT amount FROM costs WHERE space = ?", ["nairobi"]).fetchall() == [
        (1200,)
    ]
    assert accounts.remove_space(db, "nairobi") is False
    (listed,) = accounts.list_spaces(db)
    assert listed["id"] == "nairobi" and listed["hours"] == 1 and listed["token"] is False


def test_costs_are_validated_and_replaced_by_month(db):
    accounts.set_cost(db, "nairobi", "2026-11", " 1250.50", "kes")
    accounts.set_cost(db, "nairobi", "2026-12", 900, "KES")
    accounts.set_cost(db, "nairobi", "2026-11", 1300.25, "KES")
    rows = db.execute(
        "SELECT month, amount, currency FROM costs WHERE space = ? ORDER BY month", ["nairobi"]
    ).fetchall()
    assert [tuple(r) for r in rows] == [("2026-11", 1300.25, "KES"), ("2026-12", 900, "KES")]


@pytest.mark.parametrize(
    ("space", "month", "amount", "currency", "words"),
    [
        ("nairobi", "2026-13", 1, "KES", "YYYY-MM"),
        ("nairobi", "2026-1", 1, "KES", "YYYY-MM"),
        ("nairobi", "11-2026", 1, "KES", "YYYY-MM"),
        ("nairobi", "1999-12", 1, "KES", "YYYY-MM"),
        ("nairobi", "2026-11", -1, "KES", "at least 0"),
        ("nairobi", "2026-11", "abc", "KES", "number"),
        ("nairobi", "2026-11", "1,250", "KES", "no thousands separators"),
        ("nairobi", "2026-11", float("nan"), "KES", "number"),
        ("nairobi", "2026-11", float("inf"), "KES", "number"),
        ("nairobi", "2026-11", True, "KES", "number"),
        ("nairobi", "2026-11", None, "KES", "number"),
        ("nairobi", "2026-11", 1, "shillings", "ISO 4217"),
        ("nairobi", "2026-11", 1, "K1S", "ISO 4217"),
        ("Nairobi!", "2026-11", 1, "KES", "space id"),
    ],
)
def test_bad_costs_are_refused_with_what_to_write(db, space, month, amount, currency, words):
    with pytest.raises(ValueError, match=words):
        accounts.set_cost(db, space, month, amount, currency)
    assert db.execute("SELECT count(*) FROM costs").fetchone()[0] == 0


def test_sessions_end_by_key_by_user_and_by_time(db):
    accounts.add_user(db, "amina", "correct horse battery")
    token, ends = sessions.begin(db, "amina", {"csrf": "t"}, now=1000.0)
    assert ends == 1000.0 + sessions.SESSION_HOURS * 3600
    key, user, data, _ = sessions.find(db, token, now=1001.0)
    assert (user, data) == ("amina", {"csrf": "t"})
    assert token not in key and sessions.find(db, token[:-1] + "x", now=1001.0) is None
    assert sessions.find(db, token, now=ends) is None  # it has ended
    sessions.keep(db, key, {"csrf": "t", "_flashes": [["message", "saved"]]})
    assert sessions.find(db, token, now=1001.0)[2]["_flashes"] == [["message", "saved"]]
    sessions.end(db, key)
    assert sessions.find(db, token, now=1001.0) is None
    others = [sessions.begin(db, "amina", {})[0] for _ in range(3)]
    assert sessions.end_all(db, "amina") == 3
    assert all(sessions.find(db, t) is None for t in others)


def test_failed_logins_are_counted_before_the_check_and_forgiven_by_a_right_one(db):
    waits = [sessions.take_try(db, "10.0.0.1", now=5000.0) for _ in range(sessions.TRIES + 2)]
    assert waits[: sessions.TRIES] == [0] * sessions.TRIES
    assert waits[sessions.TRIES :] == [sessions.TRIES_WINDOW + 1] * 2
    assert sessions.take_try(db, "10.0.0.2", now=5000.0) == 0  # another address
    later = 5000.0 + sessions.TRIES_WINDOW
    assert sessions.take_try(db, "10.0.0.1", now=later) == 0  # the window has passed
    # A new window swept out the addresses whose window had passed (10.0.0.2's too).
    assert db.execute("SELECT address FROM login_tries").fetchall() == [("10.0.0.1",)]
    sessions.forgive(db, "10.0.0.1")
    assert db.execute("SELECT count(*) FROM login_tries").fetchone()[0] == 0
