"""The broker's ACL against a real Mosquitto, and a space's credentials from
`spacekiosk space add` to the first committed hour.

What a space must not do is checked the MQTT 5 way (a PUBACK with 0x87, not authorised)
and the way it matters: the message never reaches anyone. "Never" is made finite by a
message that *is* allowed, sent after the refused one, reaching the same reader.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import requests
from conftest import PASSWORDS, ROOT, SPACE, wait_until, write_collector_config

from collector import accounts, store
from kiosk import visits
from spacekiosk import config, protocol
from spacekiosk.broker import Broker
from spacekiosk.config import write_secret
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.service import EX_CONFIG, EX_DATAERR

OTHER = "otherspace"
NOT_AUTHORISED = 0x87
NO_SUBSCRIBERS = 0x10  # a success: accepted, and no one subscribes
HOUR = 1795622400  # 2026-11-25T16:00:00Z


def topic(space: str, kind: str) -> str:
    return f"{protocol.PREFIX}/{space}/{kind}"


class Peer:
    """An MQTT 5 client logged in as `user`, keeping what it receives and what the
    broker answered to each publish and subscribe."""

    def __init__(self, port: int, user: str, password: str, client_id: str | None = None):
        self.received: list[tuple[str, bytes]] = []
        self.answers: dict[int, list] = {}
        self.connected = threading.Event()
        self.reason = None
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{user}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = lambda c, u, mid, rc, p: self._answer(mid, [rc])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._answer(mid, rcs)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise AssertionError(f"no CONNACK for {user}")

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.reason = reason
        self.connected.set()
        if reason.is_failure:
            client.disconnect()  # no retrying with a refused login

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.received.append((message.topic, message.payload))

    def _answer(self, mid: int, reasons: list) -> None:
        with self.lock:  # on_publish can fire before publish() has returned the mid
            self.answers[mid] = reasons

    def _wait(self, mid: int) -> list:
        return wait_until(lambda: self.answers.get(mid), 10, what=f"the broker's answer to {mid}")

    def publish(self, to: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1; the PUBACK's reason code (0 is success)."""
        (reason,) = self._wait(self.client.publish(to, payload, qos=1).mid)
        return reason.value

    def subscribe(self, *topics: str) -> list[int]:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        return [r.value for r in self._wait(mid)]

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker):
    """Log in to the test broker as anyone; every client is closed at the end."""
    opened: list[Peer] = []

    def login(user: str, password: str | None = None, client_id: str | None = None) -> Peer:
        peer = Peer(broker.port, user, PASSWORDS[user] if password is None else password, client_id)
        opened.append(peer)
        return peer

    yield login
    for peer in opened:
        peer.close()


def login_reason(port: int, user: str, password: str):
    """The CONNACK's reason code for this login."""
    peer = Peer(port, user, password)
    peer.close()
    return peer.reason


# --- the ACL ---


def test_anonymous_and_wrong_passwords_are_refused(broker):
    assert login_reason(broker.port, SPACE, "not-the-password").is_failure
    assert login_reason(broker.port, "nobody", "x").is_failure
    assert not login_reason(broker.port, SPACE, PASSWORDS[SPACE]).is_failure


@pytest.mark.parametrize("kind", ["usage", "status", "digest"])
def test_a_space_cannot_publish_into_another_space_s_topic(peers, kind):
    collector = peers("collector")
    assert collector.subscribe(topic("+", kind)) == [1]
    # The client id is the client's to choose: naming itself after the other space
    # changes nothing, since the ACL is built on the login (%u).
    space = peers(SPACE, client_id=f"spacekiosk-{OTHER}")
    assert space.publish(topic(OTHER, kind)) == NOT_AUTHORISED
    assert space.publish(topic(SPACE, kind)) == 0
    wait_until(lambda: topic(SPACE, kind) in collector.topics(), what="the space's own message")
    assert collector.topics() == [topic(SPACE, kind)]


def test_a_space_cannot_read_another_space_s_acks(peers):
    space, other = peers(SPACE), peers(OTHER)
    # Subscribing is granted (Mosquitto 2.0 checks reading at delivery), but nothing of
    # the other space's comes through, not even with a wildcard.
    space.subscribe(topic(OTHER, "ack"), f"{protocol.PREFIX}/#")
    other.subscribe(topic(OTHER, "ack"))
    collector = peers("collector")
    assert collector.publish(topic(OTHER, "ack"), b"for-other") == 0
    assert collector.publish(topic(SPACE, "ack"), b"for-space") == 0
    wait_until(lambda: other.received and space.received, what="each space's own ack")
    assert other.received == [(topic(OTHER, "ack"), b"for-other")]
    assert space.received == [(topic(SPACE, "ack"), b"for-space")]


def test_a_space_cannot_read_another_space_s_data(peers):
    collector, space = peers("collector"), peers(SPACE)
    collector.subscribe(*(topic("+", kind) for kind in ("usage", "status", "digest")))
    space.subscribe(f"{protocol.PREFIX}/#")
    other = peers(OTHER)
    for kind in ("usage", "status", "digest"):
        assert other.publish(topic(OTHER, kind)) == 0
    wait_until(lambda: len(collector.topics()) == 3, what="the other space's messages")
    # Sent after those were accepted, on the same connection to the space: once it is
    # there, anything of the other space's would have come before it.
    collector.publish(topic(SPACE, "ack"), b"after")
    wait_until(lambda: space.received, what="the space's own ack")
    assert space.received == [(topic(SPACE, "ack"), b"after")]


def test_a_space_cannot_publish_acks(peers):
    space, other = peers(SPACE), peers(OTHER)
    space.subscribe(topic(SPACE, "ack"))
    other.subscribe(topic(OTHER, "ack"))
    # A forged ack would release its own outbox rows (or another space's) unsent.
    assert space.publish(topic(SPACE, "ack"), b"forged") == NOT_AUTHORISED
    assert space.publish(topic(OTHER, "ack"), b"forged") == NOT_AUTHORISED
    collector = peers("collector")
    collector.publish(topic(SPACE, "ack"), b"real")
    collector.publish(topic(OTHER, "ack"), b"real")
    wait_until(lambda: space.received and other.received, what="the collector's acks")
    assert [p for _, p in space.received + other.received] == [b"real", b"real"]


def test_the_collector_reads_every_space_and_writes_only_acks(peers):
    collector = peers("collector")
    kinds = ("usage", "status", "digest")
    collector.subscribe(*(topic("+", kind) for kind in kinds))
    for name in (SPACE, OTHER):
        space = peers(name)
        for kind in kinds:
            assert space.publish(topic(name, kind)) == 0
    expected = {topic(name, kind) for name in (SPACE, OTHER) for kind in kinds}
    wait_until(lambda: set(collector.topics()) == expected, what="all six messages")
    assert len(collector.topics()) == 6
    assert collector.publish(topic(SPACE, "usage")) == NOT_AUTHORISED  # cannot forge usage
    assert collector.publish(topic(SPACE, "ack")) == NO_SUBSCRIBERS  # allowed; nobody listens


# --- `spacekiosk space` against the test broker and a running collector ---


def spacekiosk(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacekiosk", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def admin_config(folder: Path, broker, collector_url: str = "", public_broker: str = "") -> Path:
    """The collector's config as the central team's commands use it: the test broker's
    password file, the broker and the collector as the spaces reach them."""
    toml = folder / "central.toml"
    if not toml.exists():
        write_collector_config(folder, broker_port=broker.port)
    lines = [
        f'mqtt_password_file = "{broker.folder / "passwd"}"',
        f'public_broker = "{public_broker or f"mqtt://127.0.0.1:{broker.port}"}"',
        f'public_url = "{collector_url.rstrip("/")}"',
    ]
    admin = folder / "admin.toml"  # beside central.toml: the same central.db
    text = toml.read_text().replace("[central]\n", "[central]\n" + "\n".join(lines) + "\n", 1)
    admin.write_text(text)
    return admin


@pytest.fixture
def admin(tmp_path, broker, collector) -> Path:
    """The running collector's config, for the central team's commands."""
    return admin_config(tmp_path / "central", broker, collector)


@pytest.fixture
def usage(admin, collector):
    """The collector's buckets for a space, through its API, with a token that
    `spacekiosk token add` made ([] before it knows the space)."""
    made = spacekiosk("token", "add", "tests", "--config", str(admin))
    assert made.returncode == 0, made.stderr
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}

    def read(url: str, space: str) -> list[dict]:
        answer = requests.get(
            url + "api/v1/usage", params={"space": space}, headers=auth, timeout=5
        )
        assert answer.status_code in (200, 404), answer.text
        return answer.json()["buckets"] if answer.status_code == 200 else []

    return read


def add_space(admin: Path, space: str, *extra: str) -> tuple[dict, dict, str]:
    """Run `space add` (or rotate, with extra=("rotate",)); the snippet parsed, the
    secrets by file name, and the whole output."""
    action, *rest = extra or ("add",)
    result = spacekiosk("space", action, space, "--config", str(admin), *rest)
    assert result.returncode == 0, result.stdout + result.stderr
    return *read_output(result.stdout, space), result.stdout


def read_output(out: str, space: str) -> tuple[dict, dict]:
    def between(begin: str, end: str) -> str:
        start = out.index(begin)
        return out[start : out.index(end, start)]

    snippet = between(f"# --- spacekiosk config for {space}: begin", f"config for {space}: end")
    secrets = between(f"# ==== SECRETS for {space}: begin", f"SECRETS for {space}: end")
    return tomllib.loads(snippet.rpartition("\n")[0]), tomllib.loads(secrets.rpartition("\n")[0])


def space_config(folder: Path, space: str, snippet: str, secrets: dict) -> Path:
    """A space's config with the snippet pasted in and the secrets saved as it says."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, secret in secrets.items():
        path = folder / name
        path.touch(mode=0o600)
        path.write_text(secret + "\n")
        snippet = snippet.replace(f"/etc/spacekiosk/{name}", str(path))
    toml = folder / "space.toml"
    toml.write_text(f"""
[space]
id = "{space}"
name = "Pasted Space"
timezone = "Africa/Nairobi"
languages = ["sw", "en"]
capacity = 25

[database]
path = "space.db"

{snippet}
""")
    return toml


def snippet_text(out: str, space: str) -> str:
    start = out.index(f"# --- spacekiosk config for {space}: begin")
    return out[start : out.index(f"# --- spacekiosk config for {space}: end")]


def ingest(url: str, token: str, space: str, signins: int = 2) -> requests.Response:
    batch = protocol.usage_message(space, [protocol.Bucket(HOUR, 1, {"signins": signins})])
    return requests.post(
        url + "api/v1/ingest", data=batch, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def can_log_in(broker, user: str, password: str) -> bool:
    return not login_reason(broker.port, user, password).is_failure


def test_space_add_gives_a_space_all_it_needs_to_deliver(tmp_path, broker, collector, admin, usage):
    """`space add`, the snippet pasted, the secrets saved, check-config, and the agent's
    hours committed by the running collector."""
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{broker.proc.pid}\n")
    snippet, secrets, out = add_space(
        admin, "nairobi", "add", "--name", "Nairobi Hub", "--capacity", "25", "--reload",
        "--pid-file", str(pid_file),
    )  # fmt: skip
    assert snippet["mqtt"] == {
        "host": "127.0.0.1",
        "port": broker.port,
        "tls": False,
        "username": "nairobi",
        "password_file": "/etc/spacekiosk/mqtt-password",
    }
    assert snippet["sync"] == {
        "http_url": collector.rstrip("/"),
        "token_file": "/etc/spacekiosk/collector-token",
    }
    assert set(secrets) == {"mqtt-password", "collector-token"}
    assert f"The broker (pid {broker.proc.pid}) was told to reread" in out
    assert "install -m 0600" in out
    # The secrets are printed, never stored in clear.
    assert secrets["mqtt-password"] not in (broker.folder / "passwd").read_text()

    toml = space_config(tmp_path / "space", "nairobi", snippet_text(out, "nairobi"), secrets)
    checked = spacekiosk("check-config", str(toml))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    wait_until(lambda: can_log_in(broker, "nairobi", secrets["mqtt-password"]), what="the login")
    db = open_store(config.load(toml).database.path, SPACE_MIGRATIONS)
    start = (int(time.time()) // 3600 - 2) * 3600
    visit = visits.sign_in_new(db, visits.NewVisitor("Wanjiru"), "pin-key", now=start + 60)
    visits.sign_out(db, visit.id, now=start + 1260)
    sent = spacekiosk("sync", "--once", "--timeout", "30", "--config", str(toml))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    hours = usage(collector, "nairobi")
    assert [(b["start"], b["signins"]) for b in hours if b.get("signins")] == [
        (protocol.hour_iso(start), 1)
    ]

    listed = spacekiosk("space", "list", "--config", str(admin))
    assert listed.returncode == 0, listed.stderr
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith("nairobi ")]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert line.split()[1:7] == ["Nairobi", "Hub", "25", "yes", "yes", today]


def test_the_https_token_from_space_add_is_accepted(tmp_path, broker, collector, admin, usage):
    _, secrets, _ = add_space(admin, "manila")
    assert ingest(collector, "not-the-token", "manila").status_code == 401
    answer = ingest(collector, secrets["collector-token"], "manila")
    assert answer.status_code == 200, answer.text
    assert protocol.read_ack(answer.content).committed == [(HOUR, 1, 1)]
    assert usage(collector, "manila") == [{"start": protocol.hour_iso(HOUR), "version": 1,
                                           "signins": 2}]  # fmt: skip
    # A token names its space: it cannot deliver for another one.
    assert ingest(collector, secrets["collector-token"], SPACE).status_code == 400


def test_rotate_makes_the_old_secrets_stop_working(tmp_path, broker, collector, admin):
    _, old, _ = add_space(admin, "athens")
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: can_log_in(broker, "athens", old["mqtt-password"]), what="the login")
    connected = Peer(broker.port, "athens", old["mqtt-password"])
    try:
        _, new, out = add_space(admin, "athens", "rotate")
        assert "rotated" in out and "systemctl reload mosquitto" in out
        assert new["mqtt-password"] != old["mqtt-password"]
        assert new["collector-token"] != old["collector-token"]
        # The token changes at once; the broker's login at its reload.
        assert ingest(collector, old["collector-token"], "athens").status_code == 401
        assert ingest(collector, new["collector-token"], "athens").status_code == 200
        broker.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: not can_log_in(broker, "athens", old["mqtt-password"]),
            what="the old password to be refused",
        )
        assert can_log_in(broker, "athens", new["mqtt-password"])
        # A client still connected with the old password is put out on the reload.
        wait_until(lambda: not connected.client.is_connected(), what="the old session to end")
    finally:
        connected.close()


def test_remove_refuses_the_login_and_keeps_the_usage(tmp_path, broker, collector, admin, usage):
    _, secrets, _ = add_space(admin, "bogota")
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: can_log_in(broker, "bogota", secrets["mqtt-password"]), what="the login")
    space = Peer(broker.port, "bogota", secrets["mqtt-password"])
    batch = protocol.usage_message("bogota", [protocol.Bucket(HOUR, 1, {"signins": 7})])
    assert space.publish(topic("bogota", "usage"), batch) == 0
    space.close()
    wait_until(lambda: usage(collector, "bogota"), what="bogota's hour at the collector")

    removed = spacekiosk("space", "remove", "bogota", "--config", str(admin))
    assert removed.returncode == 0, removed.stderr
    assert "1 bucket(s) of usage stay" in removed.stdout
    broker.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: not can_log_in(broker, "bogota", secrets["mqtt-password"]),
        what="the login to be refused",
    )
    assert ingest(collector, secrets["collector-token"], "bogota").status_code == 401
    assert usage(collector, "bogota") == [{"start": protocol.hour_iso(HOUR), "version": 1,
                                           "signins": 7}]  # fmt: skip
    assert "bogota:" not in (broker.folder / "passwd").read_text()
    assert "collector:" in (broker.folder / "passwd").read_text()
    # Removed, it can be added again; what it sent before is still its own.
    _, again, _ = add_space(admin, "bogota")
    assert again["mqtt-password"] != secrets["mqtt-password"]


# A collector's login is its client id on the broker: no space may have one.
BAD_IDS = ["Nairobi", "n", "-nairobi", "nai_robi", "nai robi", "../etc", "a" * 33, "collector"]
BAD_IDS += ["collector-2", "collector-tap"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_space_ids_are_refused(tmp_path, broker, bad):
    admin = admin_config(tmp_path / "central", broker)
    before = (broker.folder / "passwd").read_text()
    for action in ("add", "rotate", "remove"):
        result = spacekiosk("space", action, "--config", str(admin), "--", bad)
        assert result.returncode == EX_DATAERR, result.stderr
        assert "space id" in result.stderr or "collector's own" in result.stderr
    assert (broker.folder / "passwd").read_text() == before


def test_what_cannot_be_done_is_refused_with_its_reason(tmp_path, broker):
    admin = admin_config(tmp_path / "central", broker)
    passwd = broker.folder / "passwd"
    before = passwd.read_text()
    capacity = spacekiosk("space", "add", "madrid", "--capacity", "0", "--config", str(admin))
    assert capacity.returncode == EX_DATAERR and "capacity" in capacity.stderr
    assert passwd.read_text() == before  # nothing half-made
    for action in ("rotate", "remove"):
        unknown = spacekiosk("space", action, "madrid", "--config", str(admin))
        assert unknown.returncode == EX_DATAERR, unknown.stderr
    add_space(admin, "madrid")
    twice = spacekiosk("space", "add", "madrid", "--config", str(admin))
    assert twice.returncode == EX_DATAERR
    assert "spacekiosk space rotate madrid" in twice.stderr

    missing = tmp_path / "central" / "missing.toml"
    missing.write_text(admin.read_text().replace(str(passwd), str(tmp_path / "no-such-passwd")))
    result = spacekiosk("space", "add", "taipei", "--config", str(missing))
    assert result.returncode == EX_CONFIG
    assert "central.mqtt_password_file" in result.stderr and "mosquitto_passwd -c" in result.stderr
    space_toml = tmp_path / "central" / "space.toml"
    space_toml.write_text('[space]\nid = "x"\n')
    assert spacekiosk("space", "list", "--config", str(space_toml)).returncode == EX_CONFIG


def test_the_snippet_for_a_tls_broker_passes_check_config(tmp_path, broker):
    admin = admin_config(
        tmp_path / "central", broker, "https://collector.example.org",
        "mqtts://mqtt.example.org",
    )  # fmt: skip
    snippet, secrets, out = add_space(admin, "taipei")
    assert snippet["mqtt"]["tls"] is True and snippet["mqtt"]["port"] == 8883
    assert snippet["mqtt"]["host"] == "mqtt.example.org"
    assert snippet["sync"]["http_url"] == "https://collector.example.org"
    toml = space_config(tmp_path / "space", "taipei", snippet_text(out, "taipei"), secrets)
    checked = spacekiosk("check-config", str(toml))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert config.load(toml).mqtt_username == "taipei"


# --- secrets on disk ---


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_secrets_are_their_owner_s_alone_whatever_the_umask(tmp_path, umask):
    """A secret file is 0600 from its first byte; the broker (running as whoever started
    it) still reads its 0600 password file; `space add` and `rotate` keep it so."""
    old = os.umask(umask)
    try:
        secret = write_secret(tmp_path / "token", "s3cret\n")
        assert mode(secret) == 0o600 and secret.read_text() == "s3cret\n"
        write_secret(secret, "new\n")  # replaced whole, still 0600
        assert mode(secret) == 0o600 and secret.read_text() == "new\n"
        assert [p.name for p in tmp_path.iterdir()] == ["token"]  # nothing left beside it
        with Broker(tmp_path / "broker", PASSWORDS) as local:
            passwd = local.folder / "passwd"
            assert mode(passwd) == 0o600
            assert can_log_in(local, SPACE, PASSWORDS[SPACE])
            admin = admin_config(tmp_path / "central", local)
            add_space(admin, "nairobi")
            add_space(admin, "nairobi", "rotate")
            assert mode(passwd) == 0o600
    finally:
        os.umask(old)


def test_logins_are_not_written_into_a_password_file_anyone_can_read(tmp_path, broker):
    admin = admin_config(tmp_path / "central", broker)
    passwd = broker.folder / "passwd"
    passwd.chmod(0o644)
    before = passwd.read_text()
    result = spacekiosk("space", "add", "madrid", "--config", str(admin))
    assert result.returncode == 1
    assert "can be read by every user" in result.stderr and "chmod 0640" in result.stderr
    assert passwd.read_text() == before


# --- the page's logins and the API's tokens ---


def test_user_and_token_commands(tmp_path, broker):
    admin = admin_config(tmp_path / "central", broker)
    cfg = config.load(admin)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return spacekiosk(*args, "--config", str(admin), stdin=stdin)

    added = run("user", "add", "amina", "--password-stdin", stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    assert run("user", "add", "amina", "--password-stdin", stdin="x" * 12).returncode == (
        EX_DATAERR
    )
    short = run("user", "add", "otieno", "--password-stdin", stdin="short\n")
    assert short.returncode == EX_DATAERR and "at least" in short.stderr
    db = store.connect(cfg.central)
    assert accounts.check_user(db, "amina", "correct horse battery")
    assert not accounts.check_user(db, "amina", "correct horse battery\n")
    assert run("user", "remove", "amina").returncode == 0
    assert not accounts.check_user(db, "amina", "correct horse battery")
    assert run("user", "remove", "amina").returncode == EX_DATAERR

    made = run("token", "add", "grafana")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 40 and "shown this once" in made.stderr
    assert accounts.api_token_user(db, token) == "grafana"
    assert run("token", "add", "grafana").returncode == EX_DATAERR
    replaced = run("token", "add", "grafana", "--replace").stdout.strip()
    assert accounts.api_token_user(db, token) is None
    assert accounts.api_token_user(db, replaced) == "grafana"
    assert run("token", "remove", "grafana").returncode == 0
    assert accounts.api_token_user(db, replaced) is None
    db.close()
