"""A local Mosquitto with per-space logins and the protocol's ACL, for the demo and tests.

The central deployment's broker config lives in config/mosquitto/; this writes the same
ACL for a broker on a loopback port, in a folder of its own.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from spacekiosk.config import is_collector_login, write_secret
from spacekiosk.protocol import PREFIX

# The collectors' logins the shipped ACL grants: one per collector process, since the
# broker names each client after its login (see BINDING) and two clients of one name
# would keep taking each other's place. A third collector needs a block of its own.
COLLECTORS = ("collector", "collector-2")

SPACE_RULES = f"""\
# Each space writes only its own usage, status and digest, and reads only its own acks.
pattern write {PREFIX}/%u/usage
pattern write {PREFIX}/%u/status
pattern write {PREFIX}/%u/digest
pattern read {PREFIX}/%u/ack
"""

COLLECTOR_RULES = f"""\
topic read {PREFIX}/+/usage
topic read {PREFIX}/+/status
topic read {PREFIX}/+/digest
topic readwrite {PREFIX}/+/ack
"""

# Listener options that bind a client id to its login: the broker replaces whatever id a
# client asks for with its username, so no login can connect as the collector or as
# another space and so disconnect it. Mosquitto takes it per listener: it goes after
# each `listener` line.
BINDING = "use_username_as_clientid true\n"


def acl(collectors: tuple[str, ...] = COLLECTORS) -> str:
    """The protocol's ACL, with a block for each collector login in `collectors`."""
    blocks = [SPACE_RULES]
    for n, name in enumerate(collectors):
        what = (
            "reads every space and acknowledges to each; it may read the acks\n"
            "# too (it writes them anyway), so a login that watches the traffic sees it all"
            if n == 0
            else "is a further collector, with the same rights"
        )
        blocks.append(f"# The collector {name!r} {what}.\nuser {name}\n{COLLECTOR_RULES}")
    return "\n".join(blocks)


ACL = acl()


def find_mosquitto() -> str | None:
    """The broker binary: $SPACEKIOSK_MOSQUITTO if set (empty means "none"), else from
    PATH and /usr/sbin, where Debian puts it outside a normal user's PATH."""
    if "SPACEKIOSK_MOSQUITTO" in os.environ:
        return os.environ["SPACEKIOSK_MOSQUITTO"] or None
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which("mosquitto", path=path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def write_passwords(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file with these logins ({user: password}), hashed by
    mosquitto_passwd, readable by its owner alone (the broker runs as that user:
    see Broker.write_config)."""
    write_secret(path, "")  # mosquitto_passwd keeps the mode of the file it updates
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in users.items():
        subprocess.run(
            [tool, "-b", str(path), user, password], check=True, capture_output=True, timeout=30
        )
    return path


def write_certificates(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for `host` (and localhost), as the
    central broker's: one 2048-bit RSA certificate, no chain. Made with the openssl
    command once per folder; returns (ca.crt, server.crt, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, crt, key = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    if crt.exists() and key.exists() and ca.exists():
        return ca, crt, key
    tool = shutil.which("openssl") or "/usr/bin/openssl"
    ca_key, csr, ext = folder / "ca.key", folder / "server.csr", folder / "server.ext"
    ext.write_text(f"subjectAltName=IP:{host},DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([tool, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "3650", "-subj", "/CN=spacekiosk test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", f"/CN={host}")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "3650", "-extfile", str(ext))  # fmt: skip
    return ca, crt, key


class Broker:
    """Mosquitto on a free loopback port with logins `users` ({name: password}).

    With `tls`, a second listener on `tls_port` speaks MQTT over TLS with a certificate
    from a private CA (`ca_file`), as the central broker's port 8883 does: spaces reach it
    there, while a collector on the same host may keep the plain port."""

    def __init__(
        self,
        folder: Path,
        users: dict[str, str],
        port: int | None = None,
        binary: str | None = None,
        tls: bool = False,
    ):
        self.folder = Path(folder)
        self.users = users
        self.port = port or free_port()
        self.binary = binary or find_mosquitto()
        self.proc: subprocess.Popen | None = None
        self.log = self.folder / "mosquitto.log"
        self.tls_port = free_port() if tls else None
        self.ca_file: Path | None = None

    def write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        passwd = write_passwords(self.folder / "passwd", self.users)
        acl_file = self.folder / "acl"
        logins = {*COLLECTORS, *filter(is_collector_login, self.users)}
        acl_file.write_text(acl(tuple(sorted(logins, key=lambda n: (n != "collector", n)))))
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            f"# written by spacekiosk for a local broker\n"
            # As root it would drop to the `mosquitto` user, who cannot read the 0600
            # password file: run as whoever started it, who owns these files.
            f"user {getpass.getuser()}\n"
            f"allow_zero_length_clientid false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"{BINDING}"
            f"{self._tls_listener()}"
            f"allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {acl_file}\n"
            f"persistence false\n"
            f"log_dest file {self.log}\n"
            f"log_type error\nlog_type warning\nlog_type notice\n"
        )
        return conf

    def _tls_listener(self) -> str:
        if self.tls_port is None:
            return ""
        self.ca_file, crt, key = write_certificates(self.folder / "certs")
        return (
            f"listener {self.tls_port} 127.0.0.1\n{BINDING}"
            f"certfile {crt}\nkeyfile {key}\ntls_version tlsv1.2\n"
        )

    def start(self, timeout: float = 10.0) -> Broker:
        if not self.binary:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt install mosquitto)")
        conf = self.write_config()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        if not all(wait_for_port(port, timeout, self.proc) for port in ports):
            self.stop()
            detail = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {detail}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
