"""The installers, run for real in a throwaway Debian root.

A Debian 12 root is made once with `debootstrap --variant=minbase` from the mirror this
machine's apt uses, plus systemd (so `systemctl enable` works offline) and a desktop
user with uid 1000, as on Raspberry Pi OS. Each scenario runs in a copy of it, entered
with chroot (/proc, /sys, /dev bound in; no systemd running there, which the installers
notice): a fresh install of this tree, an upgrade from the previous release with a
populated store, and the central server. The Pi installer runs with
--no-screen-packages, so CI downloads no Chromium; the autostart files are still
written and checked.

It needs root (chroot, mount, debootstrap). Without it the test fails and says so: a
skipped installer test would look like a passing one. scripts/setup test installs
debootstrap. SPACEKIOSK_TEST_BASE=DIR keeps the base root in DIR between runs (for a
developer's machine; CI makes it afresh).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from spacekiosk.migrations import SPACE_MIGRATIONS

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
# The release before migration 11: its store is one schema version behind this tree's.
PREVIOUS_RELEASE = "9ff3fe50ce4c731f147bb49905e6ae84c2e69206"
SRC = "/srv/spacekiosk"  # where the tree is copied inside the root
PI_SERVICES = ["spacekiosk-kiosk.service", "spacekiosk-sensors.service", "spacekiosk-sync.service"]
ADMIN = ["--admin", "amina", "--admin-password-file", "/root/admin-password"]
ADMIN += ["--admin-pin-file", "/root/admin-pin"]


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "the installer tests build a Debian root with debootstrap and chroot into it, "
            "which needs root: run the suite as root (CI does), e.g. sudo scripts/test"
        )
    if not shutil.which("debootstrap"):
        pytest.fail(
            "debootstrap is not installed: run scripts/setup test (apt-get install debootstrap)"
        )


def mirror() -> str:
    """The Debian mirror this machine's apt uses, else Debian's own."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for url in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            if url.rstrip("/").endswith("/debian"):
                return url
    return "http://deb.debian.org/debian"


def run(args: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    return result


def check(args: list[str], timeout: float = 600, **kw) -> str:
    result = run(args, timeout=timeout, **kw)
    assert result.returncode == 0, (
        f"{' '.join(args)}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


class Root:
    """A copy of the base root with /proc, /sys and /dev bound in."""

    def __init__(self, path: Path, caches: dict[str, Path]) -> None:
        self.path = path
        self.caches = caches
        self.mounts: list[Path] = []
        for name in ("proc", "sys", "dev", "dev/pts"):
            self.bind(Path("/") / name, path / name)
        for inside, outside in caches.items():
            (path / inside.lstrip("/")).mkdir(parents=True, exist_ok=True)
            self.bind(outside, path / inside.lstrip("/"))
        # pip inside the root trusts what pip here trusts (a CI's proxy, a private CA).
        shutil.copy(host_ca_bundle(), path / "root/host-ca.crt")

    def bind(self, source: Path, target: Path) -> None:
        check(["mount", "--bind", str(source), str(target)])
        self.mounts.append(target)

    def unmount(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)
        self.mounts.clear()
        for target in ("proc", "sys", "dev/pts", "dev", *self.caches):
            target = self.path / target.lstrip("/")
            assert not os.path.ismount(target), f"{target} still mounted"

    def close(self) -> None:
        self.unmount()
        shutil.rmtree(self.path)

    def env(self) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "PIP_CERT": "/root/host-ca.crt",
            "PIP_CACHE_DIR": "/var/cache/spacekiosk-test-pip",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
            if os.environ.get(key, "").startswith(("http://", "https://")):
                env[key] = os.environ[key]
        return env

    def enter(self) -> list[str]:
        """How a command gets into the root: chroot, or into the booted container."""
        return ["chroot", str(self.path)]

    def run(self, *args: str, timeout: float = 600, stdin=subprocess.DEVNULL):
        return run([*self.enter(), *args], timeout=timeout, env=self.env(), stdin=stdin)

    def check(self, *args: str, timeout: float = 600) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"{' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout + result.stderr

    def as_service(self, *args: str) -> str:
        return self.check(
            "setpriv", "--reuid=spacekiosk", "--regid=spacekiosk", "--init-groups", *args
        )

    def write(self, path: str, text: str, mode: int = 0o600) -> None:
        target = self.path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def p(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def copy_tree(self, dest: str, commit: str | None = None) -> None:
        """This work tree (what git tracks or would track), or a commit's, at dest."""
        target = self.p(dest)
        target.mkdir(parents=True)
        if commit:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(target, filter="tar")
            return
        names = check(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        )
        for name in filter(None, names.split("\0")):
            source = ROOT / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)

    def snapshot(self, *paths: str) -> dict[str, tuple]:
        """Every file and folder under paths: content hash, mode, owner, mtime."""
        seen = {}
        for top in paths:
            base = self.p(top)
            items = [base, *base.rglob("*")] if base.is_dir() else [base]
            for item in items:
                st = item.lstat()
                digest = ""
                if item.is_file() and not item.is_symlink():
                    digest = hashlib.sha256(item.read_bytes()).hexdigest()
                elif item.is_symlink():
                    digest = os.readlink(item)
                seen[str(item.relative_to(self.path))] = (
                    digest,
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                    st.st_mtime_ns,
                )
        return seen

    def uid(self, name: str) -> int:
        for line in self.p("etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise AssertionError(f"no user {name} in the root")

    def gid(self, name: str) -> int:
        for line in self.p("etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise AssertionError(f"no group {name} in the root")

    def members(self, group: str) -> list[str]:
        for line in self.p("etc/group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return [m for m in fields[3].split(",") if m]
        return []


def host_ca_bundle() -> str:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE")):
        if candidate and Path(candidate).is_file():
            return candidate
    return "/etc/ssl/certs/ca-certificates.crt"


def build_base(target: Path, apt_cache: Path) -> None:
    started = time.monotonic()
    check(
        ["debootstrap", "--variant=minbase", SUITE, str(target), mirror()],
        timeout=900,
    )
    # A throwaway root needs no fsync after every file dpkg unpacks.
    (target / "etc/dpkg/dpkg.cfg.d/spacekiosk-test").write_text("force-unsafe-io\n")
    chroot_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    # No service starts inside the root (nginx, Mosquitto, PostgreSQL would bind the
    # host's ports): the usual policy-rc.d of a chroot.
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    binds = {"proc": Path("/proc"), "dev": Path("/dev"), "var/cache/apt/archives": apt_cache}
    for inside, outside in binds.items():
        check(["mount", "--bind", str(outside), str(target / inside)])
    try:
        check(
            [
                "chroot",
                str(target),
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "systemd",
            ],
            env={**chroot_env, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=900,
        )
        # Raspberry Pi OS's first user, whose desktop session shows the kiosk.
        check(
            ["chroot", str(target), "useradd", "-m", "-u", "1000", "-s", "/bin/bash", "pi"],
            env=chroot_env,
        )
    finally:
        for inside in reversed(binds):
            subprocess.run(["umount", "-l", str(target / inside)], check=False)
    (target / ".spacekiosk-base-ready").write_text(f"{time.monotonic() - started:.0f} s\n")


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[str, Path]:
    """pip's and apt's downloads, shared by every root of the run (bound in at these paths).

    apt's starts with this machine's own .debs (hard links, when on the same disk): a
    machine that ran scripts/setup test has Mosquitto's, nginx's and Python's already.
    """
    pip = tmp_path_factory.mktemp("pip-cache")
    apt = tmp_path_factory.mktemp("apt-cache")
    (apt / "partial").mkdir()
    for deb in Path("/var/cache/apt/archives").glob("*.deb"):
        with contextlib.suppress(OSError):
            os.link(deb, apt / deb.name)
    return {"/var/cache/spacekiosk-test-pip": pip, "/var/cache/apt/archives": apt}


@pytest.fixture(scope="module")
def base(tmp_path_factory, caches) -> Path:
    need_root()
    kept = os.environ.get("SPACEKIOSK_TEST_BASE")
    target = Path(kept) if kept else tmp_path_factory.mktemp("install") / "base"
    if not (target / ".spacekiosk-base-ready").exists():
        if target.exists():
            shutil.rmtree(target)
        build_base(target, caches["/var/cache/apt/archives"])
    return target


@pytest.fixture
def make_root(base, caches, tmp_path):
    roots = []

    def make(name: str) -> Root:
        path = tmp_path / name
        check(["cp", "-a", str(base), str(path)])
        root = Root(path, caches)
        roots.append(root)
        return root

    yield make
    for root in roots:
        root.close()


def pi_secrets(root: Root) -> None:
    root.write("/root/admin-password", "a-long-password-1\n")
    root.write("/root/admin-pin", "4321\n")
    root.write("/root/mqtt-password", "the-space-broker-password\n")


def install(root: Root, *args: str, release: str | None = None) -> str:
    cmd = [f"{SRC}/scripts/install", *args, "--no-screen-packages"]
    if release:
        cmd += ["--release", release]
    return root.check(*cmd)


def venv_release(root: Root) -> str:
    link = os.readlink(root.p("/opt/spacekiosk/venv"))
    assert link.startswith("releases/"), link
    return link.removeprefix("releases/")


def store(root: Root) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root.p('/var/lib/spacekiosk/space.db')}?mode=ro", uri=True)


def check_pi_installation(root: Root, port: int = 8080) -> None:
    # The release, its own venv, the command on the PATH.
    release = venv_release(root)
    assert root.p(f"/opt/spacekiosk/releases/{release}/bin/spacekiosk").is_file()
    assert os.readlink(root.p("/usr/local/bin/spacekiosk")) == "/opt/spacekiosk/venv/bin/spacekiosk"
    assert "spacekiosk" in root.check("/usr/local/bin/spacekiosk", "--version")

    # The service user: a system user without a login, in the gpio group.
    uid = root.uid("spacekiosk")
    assert uid < 1000
    passwd = next(
        x for x in root.p("etc/passwd").read_text().splitlines() if x.startswith("spacekiosk:")
    )
    assert passwd.endswith(":/var/lib/spacekiosk:/usr/sbin/nologin"), passwd
    assert "spacekiosk" in root.members("gpio")

    # The config, root's; the secret, the service's alone; the state folder, the service's.
    config = root.p("/etc/spacekiosk/space.toml")
    st = config.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o644)
    text = config.read_text()
    assert 'id = "nairobi"' in text and 'timezone = "Africa/Nairobi"' in text
    assert '\npassword_file = "/etc/spacekiosk/mqtt-password"' in text
    secret = root.p("/etc/spacekiosk/mqtt-password").stat()
    assert (secret.st_uid, secret.st_gid, secret.st_mode & 0o777) == (
        uid,
        root.gid("spacekiosk"),
        0o600,
    )
    assert root.p("/etc/spacekiosk/mqtt-password").read_text() == "the-space-broker-password\n"
    state = root.p("/var/lib/spacekiosk").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (uid, 0o750)
    if (ROOT / "systemd/spacekiosk-backup.service").exists():
        backups = root.p("/var/backups/spacekiosk").stat()
        assert (backups.st_uid, backups.st_mode & 0o777) == (uid, 0o750)
    db = root.p("/var/lib/spacekiosk/space.db").stat()
    assert (db.st_uid, db.st_mode & 0o077) == (uid, 0)
    assert "OK — space 'nairobi'" in root.check(
        "spacekiosk", "check-config", "/etc/spacekiosk/space.toml"
    )

    # Every unit in systemd/ but the collector's, installed and enabled.
    units = root.p("/etc/systemd/system")
    shipped = sorted(
        p.name for p in (ROOT / "systemd").glob("spacekiosk*") if "collector" not in p.name
    )
    for name in shipped:
        assert (units / name).read_bytes() == (ROOT / "systemd" / name).read_bytes(), name
    assert not (units / "spacekiosk-collector.service").exists()
    assert os.readlink(units / "multi-user.target.wants/spacekiosk.target").endswith(
        "/spacekiosk.target"
    )
    for name in PI_SERVICES:
        assert (units / "spacekiosk.target.wants" / name).is_symlink(), name
    for timer in (ROOT / "systemd").glob("*.timer"):  # the nightly backup's, when shipped
        assert (units / "timers.target.wants" / timer.name).is_symlink(), timer.name

    # The screen: labwc's autostart for the desktop user starts the browser under lwrespawn.
    autostart = root.p("/home/pi/.config/labwc/autostart")
    assert autostart.stat().st_uid == 1000
    text = autostart.read_text()
    assert f"lwrespawn /usr/local/bin/spacekiosk-screen http://127.0.0.1:{port}/ &" in text
    environment = root.p("/home/pi/.config/labwc/environment").read_text()
    assert "XCURSOR_THEME=spacekiosk-hidden" in environment
    assert root.p("/usr/share/icons/spacekiosk-hidden/cursors/left_ptr").read_bytes()[:4] == b"Xcur"
    screen = root.p("/usr/local/bin/spacekiosk-screen")
    assert screen.stat().st_mode & 0o777 == 0o755
    assert "--kiosk" in screen.read_text()
    check(["sh", "-n", str(autostart)])

    # The first admin, in the store.
    assert root.as_service("spacekiosk", "admin", "list").split() == ["amina"]


WATCHED = [
    "/opt/spacekiosk",
    "/etc/spacekiosk",
    "/etc/systemd/system",
    "/var/lib/spacekiosk",
    "/home/pi/.config",
    "/usr/local/bin",
    "/usr/share/icons/spacekiosk-hidden",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
]


def test_the_pi_installer_installs_then_changes_nothing_the_second_time(make_root):
    root = make_root("pi")
    root.copy_tree(SRC)
    pi_secrets(root)

    # No terminal and no admin: refused before anything changes.
    refused = root.run(f"{SRC}/scripts/install", "--pilot", "nairobi", "--no-screen-packages")
    assert refused.returncode == 64, refused.stderr
    assert "--admin NAME --admin-password-file FILE --admin-pin-file FILE" in refused.stderr
    assert not root.p("/opt/spacekiosk").exists() and not root.p("/etc/spacekiosk").exists()

    out = install(root, "--pilot", "nairobi", *ADMIN, "--mqtt-password-file", "/root/mqtt-password")
    assert "systemd is not running here (a chroot?): installed and enabled, not started" in out
    check_pi_installation(root)

    before = root.snapshot(*WATCHED)
    again = install(
        root, "--pilot", "nairobi", *ADMIN, "--mqtt-password-file", "/root/mqtt-password"
    )
    assert "nothing to change" in again, again
    after = root.snapshot(*WATCHED)
    assert [k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)] == []

    # Uninstall keeps the config, the secrets and the store; --purge takes them too.
    root.check(f"{SRC}/scripts/install", "--uninstall")
    assert not root.p("/opt/spacekiosk").exists()
    assert not root.p("/etc/systemd/system/spacekiosk-kiosk.service").exists()
    assert not root.p("/etc/systemd/system/multi-user.target.wants/spacekiosk.target").exists()
    autostart = root.p("/home/pi/.config/labwc/autostart")
    assert not autostart.exists() or "spacekiosk" not in autostart.read_text()
    assert root.p("/etc/spacekiosk/space.toml").exists()
    assert root.p("/var/lib/spacekiosk/space.db").exists()
    root.check(f"{SRC}/scripts/install", "--uninstall", "--purge")
    assert not root.p("/etc/spacekiosk").exists() and not root.p("/var/lib/spacekiosk").exists()
    assert "spacekiosk:" not in root.p("/etc/passwd").read_text()


def make_certificate(root: Root, host: str) -> None:
    folder = root.p("/root")
    check(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName=DNS:{host}",
            "-keyout",
            str(folder / "tls.key"),
            "-out",
            str(folder / "tls.crt"),
        ]
    )


def test_the_central_installer_sets_up_broker_proxy_and_collector_and_space_add_works(make_root):
    root = make_root("central")
    root.copy_tree(SRC)
    make_certificate(root, "central.test")
    root.write("/root/login-password", "central-password-1\n")
    args = [
        f"{SRC}/scripts/install-central",
        "--host",
        "central.test",
        "--tls-cert",
        "/root/tls.crt",
        "--tls-key",
        "/root/tls.key",
        "--admin",
        "ops",
        "--admin-password-file",
        "/root/login-password",
    ]
    out = root.check(*args)
    assert "systemd is not running here" in out

    uid, mosquitto = root.uid("spacekiosk"), root.gid("mosquitto")
    # Mosquitto: the shipped config, ACL and a password file with the collector's login.
    assert (
        root.p("/etc/mosquitto/mosquitto.conf").read_bytes()
        == (ROOT / "config/mosquitto/central.conf").read_bytes()
    )
    assert (
        root.p("/etc/mosquitto/spacekiosk.acl").read_bytes()
        == (ROOT / "config/mosquitto/acl").read_bytes()
    )
    for name in ("spacekiosk.acl", "spacekiosk.passwd", "certs/server.key"):
        st = root.p(f"/etc/mosquitto/{name}").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, mosquitto, 0o640), name
    assert root.p("/etc/mosquitto/spacekiosk.passwd").read_text().startswith("collector:")
    secret = root.p("/etc/spacekiosk/mqtt-password").stat()
    assert (secret.st_uid, secret.st_gid, secret.st_mode & 0o777) == (
        0,
        root.gid("spacekiosk"),
        0o640,
    )

    # nginx: the collector's site, TLS with the given certificate, and it checks.
    site = root.p("/etc/nginx/sites-available/spacekiosk-collector").read_text()
    assert "server_name central.test;" in site and "proxy_pass http://127.0.0.1:8090;" in site
    assert "ssl_certificate /etc/mosquitto/certs/server.crt;" in site
    assert os.readlink(root.p("/etc/nginx/sites-enabled/spacekiosk-collector")).endswith(
        "spacekiosk-collector"
    )
    assert not root.p("/etc/nginx/sites-enabled/default").exists()
    root.check("nginx", "-t", "-q")

    # The collector: config, unit enabled, state folder, the first login.
    config = root.p("/etc/spacekiosk/central.toml").read_text()
    assert 'public_broker = "mqtts://central.test:8883"' in config
    assert 'public_url = "https://central.test"' in config
    units = root.p("/etc/systemd/system")
    assert (units / "multi-user.target.wants/spacekiosk-collector.service").is_symlink()
    assert (units / "spacekiosk-collector.service").read_bytes() == (
        ROOT / "systemd/spacekiosk-collector.service"
    ).read_bytes()
    assert root.p("/var/lib/spacekiosk-collector").stat().st_uid == uid
    with sqlite3.connect(
        f"file:{root.p('/var/lib/spacekiosk-collector/central.db')}?mode=ro", uri=True
    ) as db:
        assert [r[0] for r in db.execute("SELECT name FROM users")] == ["ops"]

    watched = [
        "/opt/spacekiosk",
        "/etc/spacekiosk",
        "/etc/systemd/system",
        "/etc/mosquitto",
        "/etc/nginx",
        "/var/lib/spacekiosk-collector",
        "/etc/passwd",
        "/etc/group",
    ]
    before = root.snapshot(*watched)
    assert "nothing to change" in root.check(*args)
    after = root.snapshot(*watched)
    assert [k for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)] == []

    # A space registered against this installation.
    added = root.check(
        "spacekiosk", "space", "add", "nairobi", "--name", "Nairobi Hub", "--capacity", "30"
    )
    assert 'host = "central.test"' in added and 'http_url = "https://central.test"' in added
    assert re.search(
        r"^nairobi:\$7\$", root.p("/etc/mosquitto/spacekiosk.passwd").read_text(), re.M
    )
    assert "nairobi" in root.check("spacekiosk", "space", "list")
    password = re.search(r'^mqtt-password = "([^"]+)"', added, re.M).group(1)

    # Booted, on a network of its own: Mosquitto, nginx and the collector come up with
    # what the installer wrote, and the space logs in to the broker over TLS.
    with root.p("/etc/hosts").open("a") as hosts:
        hosts.write("127.0.0.1 central.test\n")
    booted = Booted(root, private_network=True)
    try:
        for unit in ("mosquitto.service", "nginx.service", "spacekiosk-collector.service"):
            booted.wait_active(unit)
        health = root.check(
            "python3",
            "-c",
            "import json, ssl, urllib.request\n"
            "tls = ssl.create_default_context(cafile='/etc/mosquitto/certs/ca.crt')\n"
            "with urllib.request.urlopen('https://central.test/healthz', context=tls) as r:\n"
            "    print(r.status, r.read().decode())\n",
        )
        assert health.startswith("200 "), health
        tls = ["-h", "central.test", "-p", "8883", "--cafile", "/etc/mosquitto/certs/ca.crt"]
        topic = ["-i", "nairobi", "-V", "5", "-t", "spacekiosk/v1/nairobi/status", "-m", "{}"]
        right = root.run("mosquitto_pub", *tls, "-u", "nairobi", "-P", password, *topic)
        log = root.p("/var/log/mosquitto/mosquitto.log")
        assert right.returncode == 0, right.stderr + (log.read_text() if log.exists() else "")
        wrong = root.run("mosquitto_pub", *tls, "-u", "nairobi", "-P", "not-it", *topic)
        assert wrong.returncode != 0, "the broker took a wrong password"
    finally:
        booted.close()


# --- a live upgrade, under a real systemd -------------------------------------------------


class Booted:
    """The root booted with systemd-nspawn: systemd is PID 1 inside, sharing this
    machine's network (the installer fetches packages), entered with nsenter."""

    def __init__(self, root: Root, private_network: bool = False) -> None:
        if not shutil.which("systemd-nspawn"):
            pytest.fail("systemd-nspawn is not installed: run scripts/setup test")
        self.root = root
        root.unmount()
        self.leader = 0
        binds = [f"--bind={outside}:{inside}" for inside, outside in root.caches.items()]
        self.process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                *(["--private-network"] if private_network else []),
                *binds,
                "-D",
                str(root.path),
                "-b",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_for_boot()
        except BaseException:
            self.close()  # never leave a container running behind a failed test
            raise

    def _wait_for_boot(self) -> None:
        deadline = time.monotonic() + 60
        self.leader = 0
        while time.monotonic() < deadline and not self.leader:
            self.leader = self._leader()
            if not self.leader:
                time.sleep(0.2)
        assert self.leader, "systemd-nspawn started no container"
        self.root.enter = lambda: ["nsenter", "-t", str(self.leader), "-a", "-r", "-w", "--"]
        # "offline" until systemd inside has its bus up; then --wait waits for the boot.
        while (state := self.system_state()) == "offline" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state in ("running", "degraded"), state

    def system_state(self) -> str:
        result = self.root.run("systemctl", "is-system-running", "--wait", timeout=120)
        return result.stdout.strip() or "offline"

    def _leader(self) -> int:
        for child in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                status = Path(f"/proc/{pid}/status").read_text()
                if re.search(r"^NSpid:\s+\d+\s+1$", status, re.M):
                    return int(pid)
        return 0

    def state(self, unit: str) -> str:
        return self.root.check("systemctl", "show", "-p", "ActiveState", "--value", unit).strip()

    def wait_active(self, unit: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state(unit)) != "active":
            assert time.monotonic() < deadline, f"{unit} is {state}"
            time.sleep(0.5)

    def close(self) -> None:
        if self.leader:
            with contextlib.suppress(Exception):
                self.root.run("systemctl", "poweroff", "--no-block", timeout=30)
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            if self.leader:  # the container's init, and with it everything inside
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, 9)
            self.process.kill()
            self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def populate(root: Root) -> None:
    """Visitors sign in with the installed release's own code, as its kiosk would."""
    root.as_service(
        "/opt/spacekiosk/venv/bin/python",
        "-c",
        "from spacekiosk import config\n"
        "from spacekiosk.db import open_store\n"
        "from spacekiosk.migrations import SPACE_MIGRATIONS\n"
        "from kiosk import visits\n"
        "cfg = config.load('/etc/spacekiosk/space.toml', secrets=False)\n"
        "db = open_store(cfg.database.path, SPACE_MIGRATIONS)\n"
        "for name in ('Wanjiru Kamau', 'Otieno Ouma', 'Achieng Atieno'):\n"
        "    visitor = visits.NewVisitor(name=name, purpose='cowork', pin='2468')\n"
        "    visits.sign_in_new(db, visitor, 'k' * 32)\n",
    )


def test_a_live_upgrade_restarts_on_the_new_release_and_a_broken_one_is_rolled_back(make_root):
    root = make_root("live")
    root.copy_tree(SRC)
    root.copy_tree("/srv/previous", commit=PREVIOUS_RELEASE)
    # A release whose kiosk cannot start: the upgrade to it must roll back.
    root.copy_tree("/srv/broken")
    with root.p("/srv/broken/kiosk/__init__.py").open("a") as f:
        f.write("\nraise SystemExit('a release that cannot start, on purpose')\n")
    pi_secrets(root)
    install(
        root,
        "--pilot",
        "nairobi",
        *ADMIN,
        "--mqtt-password-file",
        "/root/mqtt-password",
        release="/srv/previous",
    )
    old = venv_release(root)
    populate(root)
    port = free_port()  # the container shares this machine's network
    config = root.p("/etc/spacekiosk/space.toml")
    config.write_text(config.read_text().replace('"127.0.0.1:8080"', f'"127.0.0.1:{port}"'))

    booted = Booted(root)
    try:
        booted.wait_active("spacekiosk-kiosk.service")  # enabled, so started at boot

        config_before = config.read_bytes()
        out = install(root, "--pilot", "nairobi", "--health-timeout", "60")
        new = venv_release(root)
        assert f"upgraded {old} -> {new}" in out and f"healthy on {new}" in out, out
        assert booted.state("spacekiosk-kiosk.service") == "active"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            assert answer.status == 200
        # Config, secret and store kept; the store migrated by the new release's services.
        assert config.read_bytes() == config_before
        assert root.p("/etc/spacekiosk/mqtt-password").read_text() == "the-space-broker-password\n"
        assert root.p(f"/opt/spacekiosk/releases/{old}/bin/spacekiosk").exists()  # to go back
        with store(root) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == len(SPACE_MIGRATIONS)
            names = {row[0] for row in db.execute("SELECT name FROM visitors")}
            assert names == {"Wanjiru Kamau", "Otieno Ouma", "Achieng Atieno"}
            assert db.execute("SELECT count(*) FROM visits").fetchone()[0] == 3
        check_pi_installation(root, port)

        # Back to the previous release over the migrated store: refused, nothing switched.
        refused = root.run(
            f"{SRC}/scripts/install", "--release", "/srv/previous", "--no-screen-packages"
        )
        assert refused.returncode != 0
        assert "written by a newer release" in refused.stdout + refused.stderr
        assert venv_release(root) == new

        # A release whose kiosk does not start: the symlink and the store go back.
        broken = root.run(
            f"{SRC}/scripts/install",
            "--release",
            "/srv/broken",
            "--health-timeout",
            "60",
            "--no-screen-packages",
        )
        output = broken.stdout + broken.stderr
        assert broken.returncode != 0, output
        assert "is not healthy" in output and f"rolled back to {new}" in output, output
        assert venv_release(root) == new
        booted.wait_active("spacekiosk-kiosk.service")
        assert not root.p("/var/lib/spacekiosk/pre-upgrade.db").exists()
        with store(root) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == len(SPACE_MIGRATIONS)
            assert db.execute("SELECT count(*) FROM visits").fetchone()[0] == 3
    finally:
        booted.close()
