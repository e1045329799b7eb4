"""The space's notifications: what the notifier tells, once, in the space's language, and
never a visitor's name — through Apprise's JSON webhook to a real HTTP receiver the test
starts, cut and restored as a link would be."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spacekiosk import notices
from spacekiosk.broker import free_port


class Receiver:
    """A small HTTP server standing in for a chat's webhook: it keeps each JSON body it
    is sent, answers `status`, and can be stopped (the link cut) and started again on the
    same port (the link back)."""

    def __init__(self):
        self.port = free_port()
        self.received: list[dict] = []
        self.status = 200
        self.arrived = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                size = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(size) or b"{}")
                body["path"] = self.path
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"thanks")
                if receiver.status < 300:
                    with receiver.arrived:
                        receiver.received.append(body)
                        receiver.arrived.notify_all()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} of {count} messages arrived")
            return list(self.received)


@pytest.fixture
def receiver():
    running = Receiver()
    running.start()
    yield running
    running.stop()


def test_send_test_reaches_the_target_in_its_language(receiver):
    ok, answer = notices.send_test(receiver.url("test"), "es", space="Casa Bogotá")
    assert ok, answer
    assert "JSON" in answer
    (got,) = receiver.wait_for(1)
    assert got["path"] == "/test"
    assert got["title"] == "Prueba desde Casa Bogotá"
    assert "quiosco" in got["message"]


def test_send_test_says_what_went_wrong(receiver):
    receiver.status = 500
    ok, answer = notices.send_test(receiver.url(), "en")
    assert not ok
    assert "500" in answer
    receiver.stop()  # nothing listens there now: the link is down
    ok, answer = notices.send_test(receiver.url(), "en")
    assert not ok and "onnection" in answer
    ok, answer = notices.send_test("nonsense://what", "en")
    assert not ok and "Apprise" in answer


def test_every_language_has_every_text():
    keys = set(notices.TEXTS["en"])
    for lang in notices.LANGUAGES:
        assert set(notices.TEXTS[lang]) == keys, lang
        for kind in notices.KINDS:
            title, body = notices.message(kind, lang, {"space": "S", "time": "10:00"})
            assert title and body and "{" not in title + body
    assert notices.language("es_CO") == "es"
    assert notices.language("zh-Hant-TW") == "zh_Hant_TW"
    assert notices.language("xx") == "en"


def test_a_test_from_the_kiosk_loads_neither_apprise_nor_paho(receiver):
    """The kiosk calls send_test in its own process: Apprise (and paho, which Apprise's
    MQTT target imports) stay in a child process."""
    import subprocess
    import sys

    code = (
        "import sys; from spacekiosk import notices; "
        f"print(notices.send_test({receiver.url('kiosk')!r}, 'el')); "
        "assert 'paho' not in sys.modules and 'apprise' not in sys.modules, 'loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "(True, " in done.stdout
    (got,) = receiver.wait_for(1)
    assert got["path"] == "/kiosk" and got["title"].startswith("Δοκιμή")
