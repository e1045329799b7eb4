"""Shared fixtures: a real Mosquitto, real SQLite files, real processes, a real Chromium."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import tomllib
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import postgres
import pytest
import requests

from spacekiosk import config, pilots, protocol
from spacekiosk.broker import Broker, free_port, wait_for_port
from spacekiosk.protocol import Bucket

ROOT = Path(__file__).resolve().parent.parent
SPACE = "testspace"
PASSWORDS = {SPACE: "space-secret", "otherspace": "other-secret", "collector": "collector-secret"}
# The broker names each client after its login, so a second collector, and a watcher of
# the traffic beside a running collector and agent, each log in as a collector of their own.
PASSWORDS |= {"collector-2": "collector-2-secret", "collector-tap": "tap-secret"}
LOGINS = {"central": "a long test password"}  # the collector page's users, in the tests
CHROMIUM = "/usr/bin/chromium"
# A door, a PIR and a two-beam counter, undebounced, as the sensor tests use them.
SENSORS = """
[sensors.door]
pin = 17
bounce_ms = 0
open_alert_minutes = 15

[[sensors.motion]]
pin = 27
location = "main room"

[sensors.counter]
beam_a = 22
beam_b = 23
bounce_ms = 0
"""


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = ""):
    """Poll `predicate` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):  # reset by a client or a proxy: that is a test too
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def echo():
    """A threaded echo server on a free loopback port; yields the port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()  # joins the handlers: each has seen its client go
    thread.join()


def round_trip(sock: socket.socket, data: bytes) -> bytes:
    """Send `data` from another thread while reading its echo, so neither side stalls."""
    sender = threading.Thread(target=sock.sendall, args=(data,))
    sender.start()
    received = bytearray()
    while len(received) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before the echo was back"
        received += chunk
    sender.join()
    return bytes(received)


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto on a free loopback port, with per-space logins and the ACL."""
    with Broker(tmp_path / "broker", PASSWORDS) as running:
        yield running


def write_space_config(
    folder: Path,
    *,
    broker_port: int,
    kiosk_port: int = 0,
    space: str = SPACE,
    extra: str = "",
    sync: str = "",
    mqtt: str = "",
) -> Path:
    """A space's config on the test broker, and its MQTT password beside it. `extra` holds
    TOML tables to add or change, `sync` and `mqtt` keys of those tables."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mqtt-password").write_text(PASSWORDS.get(space, "wrong") + "\n")
    overrides = tomllib.loads(extra)
    overrides.setdefault("mqtt", {}).update(tomllib.loads(mqtt))
    path = folder / "space.toml"
    path.write_text(
        pilots.space_toml(
            id=space,
            name="Test Space",
            timezone="Europe/Athens",
            languages=["en", "el"],
            capacity=20,
            database="space.db",
            listen=f"127.0.0.1:{kiosk_port or free_port()}",
            broker="127.0.0.1",
            broker_port=broker_port,
            tls=False,
            password_file="mqtt-password",
            keepalive_seconds=30,
            sync={"interval_seconds": 1, "ack_timeout_seconds": 3, "send_every_minutes": 0}
            | tomllib.loads(sync),
            overrides=overrides,
        )
    )
    return path


def write_collector_config(
    folder: Path, *, broker_port: int, central: str = "", database_url: str = ""
) -> Path:
    """A collector's config; `database_url` stores in PostgreSQL, `central` adds keys."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "collector-password").write_text(PASSWORDS["collector"])
    path = folder / "central.toml"
    port = free_port()
    _COLLECTORS[port] = path
    _API_TOKENS.pop(port, None)
    path.write_text(
        pilots.central_toml(
            listen=f"127.0.0.1:{port}",
            database="central.db",
            database_url=database_url,
            broker="127.0.0.1",
            broker_port=broker_port,
            tls=False,
            username="collector",
            password_file="collector-password",
            overrides={"central": tomllib.loads(central)},
        )
    )
    return path


def visitor_form(name: str, pin: str | None = None, **extra) -> dict:
    """What the first-visit form posts when a visitor fills it in."""
    form = {"name": name, "accept": "yes", "purpose": "cowork", "request_id": uuid.uuid4().hex}
    if pin:
        form |= {"pin": pin, "pin2": pin}
    return form | extra


class Service:
    """A `spacekiosk` subcommand running as its own process, as systemd would run it."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        self.args = args
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spacekiosk", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=ROOT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.args[0]} ignored SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def services(tmp_path):
    """Start `spacekiosk` processes; each must stop cleanly (exit 0) on SIGTERM at the end."""
    started: list[Service] = []

    def start(*args: str, env: dict | None = None) -> Service:
        service = Service(list(args), tmp_path / f"{args[0]}-{len(started)}.log", env)
        started.append(service)
        return service

    start.started = started  # what the test started so far, in order
    yield start
    problems = []
    for service in reversed(started):
        if service.proc.returncode is not None:
            continue  # the test ended it on purpose
        code = service.stop()
        if code != 0:
            problems.append(f"{service.args[0]} exited {code} on SIGTERM:\n{service.output()}")
    assert not problems, "\n".join(problems)


def http_ready(url: str, service: Service, timeout: float = 30):
    def up():
        if service.proc.poll() is not None:
            raise AssertionError(f"{service.args[0]} exited early:\n{service.output()}")
        try:
            return requests.get(url, timeout=1).ok
        except requests.RequestException:
            return False

    return wait_until(up, timeout, what=url)


@pytest.fixture
def space(tmp_path, broker):
    """A space config on the test broker, and the started-services helper's kiosk URL."""
    path = write_space_config(tmp_path / "space", broker_port=broker.port)
    return config.load(path)


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session (see tests/postgres.py)."""
    with postgres.server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server):
    """A fresh database of this test's own on that server."""
    with postgres.database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where screens are saved: $SPACEKIOSK_SCREENSHOTS (docs/screenshots for the README)."""
    folder = os.environ.get("SPACEKIOSK_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright with touch emulation."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/setup test does)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-quic",
            ],
        )
        yield chromium
        chromium.close()


def screenshot(page, path: Path, **options) -> None:
    """Save a screenshot for the docs. A busy machine can make Chromium answer "Unable
    to capture screenshot" now and then; that says nothing of the screen, so try again."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            page.screenshot(path=path, **options)
            return
        except Error as exc:
            if "Unable to capture screenshot" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.5)


@pytest.fixture
def touch_page(browser):
    """A fresh 800x480 touch page (the official 7-inch display), closed afterwards."""
    context = browser.new_context(
        viewport={"width": 800, "height": 480}, has_touch=True, is_mobile=False, locale="en-GB"
    )
    page = context.new_page()
    yield page
    context.close()


class Tap:
    """Every payload the broker carries on the protocol's topics, as a space's peers see it."""

    def __init__(self, port: int):
        self.payloads: list[tuple[str, bytes]] = []
        self.clients = []
        kinds = ("usage", "status", "digest")
        for user, topics in (
            (
                "collector-tap",
                [f"spacekiosk/v1/+/{kind}" for kind in kinds] + [f"spacekiosk/v1/{SPACE}/ack"],
            ),
        ):
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=f"tap-{user}", protocol=mqtt.MQTTv5
            )
            client.username_pw_set(user, PASSWORDS[user])
            client.on_connect = lambda c, u, f, rc, p, topics=topics: c.subscribe(
                [(t, 1) for t in topics]
            )
            client.on_message = lambda c, u, m: self.payloads.append((m.topic, m.payload))
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)

    def texts(self) -> list[str]:
        out = []
        for _topic, payload in self.payloads:
            raw = payload if payload[:1] == b"{" else zlib.decompress(payload)
            out.append(raw.decode())
        return out

    def close(self):
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def publisher(port: int, user: str = SPACE) -> mqtt.Client:
    """A connected MQTT 5 client logged in as `user` on the test broker."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, PASSWORDS[user])
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@pytest.fixture
def tap(broker):
    """Every payload the test broker carries on the protocol's topics."""
    t = Tap(broker.port)
    yield t
    t.close()


def sync_once(toml, timeout: int = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "spacekiosk",
            "sync",
            "--once",
            "--timeout",
            str(timeout),
            "--config",
            str(toml),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
def collector(tmp_path, broker, services):
    toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    cfg = config.load(toml)
    url = f"http://127.0.0.1:{cfg.central.listen[1]}/"
    http_ready(url + "healthz", services("collector", "--config", str(toml)))
    wait_until(
        lambda: requests.get(url + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector's subscription",
    )
    return url


# The config of each collector written above, by its port, and the API token the tests
# read it with: nothing at a collector is readable without a login or a token.
_COLLECTORS: dict[int, Path] = {}
_API_TOKENS: dict[int, str] = {}


def _central_store(url: str):
    from collector import store

    return store.connect(config.load(_COLLECTORS[urlsplit(url).port]).central)


def api_token(url: str) -> str:
    """A token for the API of the collector at `url`, made in its store the first time."""
    from collector import accounts

    port = urlsplit(url).port
    if port not in _API_TOKENS:
        db = _central_store(url)
        try:
            _API_TOKENS[port] = accounts.add_api_token(db, f"tests-{port}")
        finally:
            db.close()
    return _API_TOKENS[port]


def api_get(url: str, path: str, **params) -> requests.Response:
    """GET a collector's API (`url` is its base) with the tests' token."""
    headers = {"Authorization": f"Bearer {api_token(url)}"}
    return requests.get(url + path, params=params, headers=headers, timeout=5)


def add_user(url: str, name: str = "central") -> None:
    """A login for the page of the collector at `url`, in its store (password LOGINS[name])."""
    from collector import accounts

    db = _central_store(url)
    try:
        accounts.add_user(db, name, LOGINS[name])
    finally:
        db.close()


def log_in(url: str, name: str = "central") -> requests.Session:
    """A requests session logged in to the collector's page through its form."""
    add_user(url, name)
    session = requests.Session()
    form = session.get(url + "login", timeout=5).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
    answer = session.post(
        url + "login",
        data={"name": name, "password": LOGINS[name], "csrf_token": csrf},
        timeout=5,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return session


def read_usage(payload: bytes, space: str) -> list[Bucket]:
    """A usage batch as the collector reads it, as Buckets to compare with what was sent."""
    return [
        Bucket(start, hour.version, hour.counts(), hour.hours)
        for start, hour in protocol.read_hours(payload, space)
    ]


def usage(url: str, space: str = SPACE) -> list[dict]:
    """The collector's buckets for a space, through its API ([] before it knows the space)."""
    response = api_get(url, "api/v1/usage", space=space)
    return response.json()["buckets"] if response.status_code == 200 else []


__all__ = ["PASSWORDS", "ROOT", "SPACE", "free_port", "wait_for_port", "wait_until"]


# --- Services that say when they are ready, on a clock the test can set ---

FAKECLOCK = ROOT / "tests" / "fakeclock.py"


class Notified(Service):
    """A `spacekiosk` service with a NOTIFY_SOCKET of its own (an abstract datagram
    socket, as systemd gives a Type=notify unit), so the test hears its READY=1 and
    STOPPING=1. With `clock_file`, its wall clock is off by the seconds written there
    (tests/fakeclock.py)."""

    def __init__(
        self, args: list[str], log: Path, env: dict | None = None, clock_file: Path | None = None
    ):
        import socket

        self.args, self.log, self.said = list(args), log, []
        name = f"spacekiosk-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        command = [sys.executable, "-m", "spacekiosk", *args]
        if clock_file is not None:
            command = [sys.executable, str(FAKECLOCK), str(clock_file), *args]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), "NOTIFY_SOCKET": "@" + name},
                cwd=ROOT,
            )

    def wait_for(self, message: str = "READY=1", timeout: float = 30) -> None:
        """Wait until the service has sent `message` (one line of an sd_notify datagram)."""
        deadline = time.monotonic() + timeout
        while message not in self.said:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args[0]} exited early:\n{self.output()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.args[0]} never said {message}:\n{self.output()}")
            self.sock.settimeout(min(left, 0.5))
            try:
                self.said += self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                continue

    def stop(self, timeout: float = 20) -> int:
        try:
            return super().stop(timeout)
        finally:
            self.sock.close()


@pytest.fixture
def notified(tmp_path):
    """Start `spacekiosk` services that say when they are ready (see Notified); each must
    stop cleanly (exit 0) on SIGTERM at the end, unless the test ended it."""
    started: list[Notified] = []

    def start(*args: str, env: dict | None = None, clock_file: Path | None = None) -> Notified:
        log = tmp_path / f"{args[0]}-{len(started)}.log"
        service = Notified(list(args), log, env, clock_file)
        started.append(service)
        return service

    start.started = started
    yield start
    problems = []
    for service in reversed(started):
        if service.proc.returncode is not None:
            service.sock.close()
            continue
        code = service.stop()
        if code != 0:
            problems.append(f"{service.args[0]} exited {code} on SIGTERM:\n{service.output()}")
    assert not problems, "\n".join(problems)


class SmallDisk:
    """A tmpfs of `size` bytes mounted on `folder` (the tests run as root in CI), with
    a ballast file that fills it to the last byte and can be taken away again."""

    def __init__(self, folder: Path, size: int):
        self.folder, self.size = folder, size
        self.ballast = folder / "ballast"

    def __enter__(self) -> SmallDisk:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.folder)],
            check=True,
            capture_output=True,
        )
        return self

    def fill(self) -> int:
        """Write the ballast until not a byte more fits; returns its size."""
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    continue
        finally:
            os.close(fd)
        return self.ballast.stat().st_size

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        subprocess.run(["umount", "-l", str(self.folder)], check=False, capture_output=True)


# --- The fault table: what each fault scenario of tests/test_faults.py measured ---

FAULT_ROWS: list[dict] = []


SUMMARIES: dict[str, list[str]] = {}  # section -> lines, printed at the end of the run


def summarise(section: str, *lines: str) -> None:
    """Lines for the run's closing summary, shown whatever the verbosity: the figures a
    test measured or compared, so that CI's log holds them."""
    SUMMARIES.setdefault(section, []).extend(lines)


def pytest_terminal_summary(terminalreporter):
    """Print the fault scenarios' table and the tests' summaries at the end of the run."""
    for section, lines in SUMMARIES.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
    if not FAULT_ROWS:
        return
    columns = [
        ("scenario", "scenario", 28),
        ("operations", "ops", 5),
        ("acknowledged", "acked", 6),
        ("refused", "503", 5),
        ("lost", "lost", 5),
        ("twice", "twice", 6),
        ("converge_s", "converge s", 11),
        ("connected_reported_s", "conn s reported", 16),
        ("connected_real_s", "conn s real", 12),
    ]
    terminalreporter.section("fault scenarios (connected time in seconds: scaled down for CI)")
    terminalreporter.write_line(" ".join(f"{title:>{width}}" for _, title, width in columns))
    for row in FAULT_ROWS:
        cells = []
        for key, _title, width in columns:
            value = row.get(key, "")
            text = f"{value:.1f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{width}}")
        terminalreporter.write_line(" ".join(cells))


class ErrorLog(logging.Handler):
    """Every log record that carries a traceback or says ERROR: a page that answered a
    hostile request with a 4xx must not have logged one."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.ERROR:
            self.bad.append(self.format(record))
