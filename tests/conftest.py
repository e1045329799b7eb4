"""Shared fixtures: a real Mosquitto, real SQLite files, real processes, a real Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from spacekiosk import config
from sync.broker import Broker, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SPACE = "testspace"
PASSWORDS = {SPACE: "space-secret", "otherspace": "other-secret", "collector": "collector-secret"}
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
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mqtt-password").write_text(PASSWORDS.get(space, "wrong") + "\n")
    path = folder / "space.toml"
    path.write_text(f"""
[space]
id = "{space}"
name = "Test Space"
timezone = "Europe/Athens"
languages = ["en", "el"]
capacity = 20

[database]
path = "space.db"

[kiosk]
listen = "127.0.0.1:{kiosk_port or free_port()}"

[mqtt]
host = "127.0.0.1"
port = {broker_port}
tls = false
password_file = "mqtt-password"
keepalive_seconds = 30

[sync]
interval_seconds = 1
ack_timeout_seconds = 3
{sync}
{extra}
""")
    return path


def write_collector_config(folder: Path, *, broker_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "collector-password").write_text(PASSWORDS["collector"])
    path = folder / "central.toml"
    path.write_text(f"""
[central]
listen = "127.0.0.1:{free_port()}"
database = "central.db"

[mqtt]
host = "127.0.0.1"
port = {broker_port}
tls = false
username = "collector"
password_file = "collector-password"
""")
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


@pytest.fixture
def touch_page(browser):
    """A fresh 800x480 touch page (the official 7-inch display), closed afterwards."""
    context = browser.new_context(
        viewport={"width": 800, "height": 480}, has_touch=True, is_mobile=False, locale="en-GB"
    )
    page = context.new_page()
    yield page
    context.close()


__all__ = ["PASSWORDS", "ROOT", "SPACE", "free_port", "wait_for_port", "wait_until"]
