"""The deployment files: systemd units, the central collector's config, the central broker.

The units are checked twice: by systemd's own `systemd-analyze verify` and `security`
(on copies whose ExecStart points at this checkout's `spacekiosk`, since
/opt/spacekiosk/venv does not exist on a development machine or in CI), and by reading
them here and holding them against the code they start.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import SENSORS, Notified, free_port, write_collector_config, write_space_config

from spacekiosk import broker, cli, config
from spacekiosk.service import EX_CONFIG

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
CONFIGS = ROOT / "config"
MOSQUITTO = CONFIGS / "mosquitto"

INSTALLED = "/opt/spacekiosk/venv/bin/spacekiosk"
CONFIG_DIR = Path("/etc/spacekiosk")
TARGET = "spacekiosk.target"
PI_SERVICES = {
    "spacekiosk-kiosk.service": "kiosk",
    "spacekiosk-sensors.service": "sensors",
    "spacekiosk-sync.service": "sync",
}
SERVICES = {**PI_SERVICES, "spacekiosk-collector.service": "collector"}
# Started by its timer, not by the target: one backup a night, then it exits.
BACKUP, BACKUP_TIMER = "spacekiosk-backup.service", "spacekiosk-backup.timer"
ONESHOTS = {BACKUP: "backup"}
STATE_DIRECTORY = {"kiosk": "spacekiosk", "sensors": "spacekiosk", "sync": "spacekiosk"}
STATE_DIRECTORY["collector"] = "spacekiosk-collector"
STATE_DIRECTORY["backup"] = "spacekiosk"
# systemd-analyze security's scale is 0-100 here (it prints 0.0-10.0): at most 2.0.
MAX_EXPOSURE = 20


# --- reading a unit file the way systemd does ---


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [every assignment, in order]}}.

    Unlike configparser this keeps repeated keys (SystemCallFilter=, Environment=),
    keeps the keys' case, ignores `%` and `;`-comments, and joins lines ending in `\\`.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        while line.endswith("\\"):
            following = next(lines, "").strip()
            if following[:1] in ("#", ";"):
                following = "\\"  # a comment inside a continued line is skipped
            line = line[:-1].rstrip() + " " + following
        assert current is not None, f"{path.name}: {line!r} comes before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(unit: dict, section: str, key: str) -> str | None:
    """A single-valued setting: the last assignment wins."""
    values = unit.get(section, {}).get(key)
    return values[-1] if values else None


def words(unit: dict, section: str, key: str) -> list[str]:
    """A list-valued setting: the words after the last empty assignment (which resets)."""
    result: list[str] = []
    for value in unit.get(section, {}).get(key, []):
        result = [] if value == "" else result + shlex.split(value)
    return result


def environment(unit: dict) -> dict[str, str]:
    env = {}
    for item in words(unit, "Service", "Environment"):
        name, _, value = item.partition("=")
        env[name] = value
    return env


def seconds(text: str) -> float:
    """A systemd time span such as '30s', '2min', '1min 30s' or '90'."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        assert unit in units, f"unexpected time unit in {text!r}"
        total += float(number) * units[unit]
    return total


def exec_start(unit: dict) -> list[str]:
    argv = shlex.split(last(unit, "Service", "ExecStart") or "")
    if argv:
        argv[0] = argv[0].lstrip("-@:+!")
    return argv


def load_unit(name: str) -> dict:
    path = UNITS / name
    assert path.is_file(), f"systemd/{name} is missing"
    return parse_unit(path)


# --- the set of units ---


def test_the_unit_files_are_the_expected_ones():
    kinds = {".service", ".target", ".socket", ".timer", ".path"}
    units = sorted(p.name for p in UNITS.iterdir() if p.suffix in kinds)
    assert units == sorted([*SERVICES, *ONESHOTS, BACKUP_TIMER, TARGET])


def test_the_target_enables_every_pi_service_and_nothing_more():
    target = load_unit(TARGET)
    assert words(target, "Install", "WantedBy") == ["multi-user.target"]
    assert sorted(words(target, "Install", "Also")) == sorted(PI_SERVICES)
    # No hard dependencies: a failing service must not stop the others.
    for key in ("Requires", "BindsTo", "Requisite"):
        assert not words(target, "Unit", key), f"{TARGET} must not have {key}="


# --- each service against the code it starts ---


@pytest.mark.parametrize("name", {**SERVICES, **ONESHOTS})
def test_execstart_runs_a_real_spacekiosk_command(name):
    unit = load_unit(name)
    argv = exec_start(unit)
    assert argv[:1] == [INSTALLED], f"{name}: ExecStart should run {INSTALLED}"
    try:
        args = cli.parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{name}: `spacekiosk {' '.join(argv[1:])}` is not a valid command line")
    assert args.command == {**SERVICES, **ONESHOTS}[name]
    assert args.config, f"{name}: pass --config explicitly"
    assert Path(args.config).parent == CONFIG_DIR, f"{name}: the config lives in {CONFIG_DIR}"
    assert words(unit, "Service", "ConfigurationDirectory") == [CONFIG_DIR.name]


# A watchdog of 20 ms, as WatchdogSec= asks for one: a service that feeds it says
# WATCHDOG=1 every 10 ms.
WATCHDOG_USEC = 20_000


def hear_until_exit(service: Notified, timeout: float = 20) -> int:
    """SIGTERM, then read what the service says until it has exited: a datagram socket
    holds few unread messages (ten, by Linux's default), and once it is full the
    service's next notify would block."""
    service.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    service.sock.settimeout(0.1)
    while service.proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            service.said += service.sock.recv(4096).decode().splitlines()
    service.sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:  # what it said last, before it exited
            service.said += service.sock.recv(4096).decode().splitlines()
    return service.stop()


def run_as_unit(name: str, folder: Path) -> list[str]:
    """Start the command of unit `name`, with its Environment=, on a config in `folder`
    and a notify socket, as systemd would with a watchdog; once it is ready (and has
    served a request, if it serves), hear whether it feeds the watchdog, and stop it.
    Returns what it said, in order."""
    unit = load_unit(name)
    if SERVICES[name] == "collector":
        toml = write_collector_config(folder, broker_port=free_port())
        listen = config.load(toml).central.listen
    else:
        toml = write_space_config(folder, broker_port=free_port(), extra=SENSORS)
        listen = config.load(toml).kiosk.listen
    args = [str(toml) if Path(a).parent == CONFIG_DIR else a for a in exec_start(unit)[1:]]
    env = environment(unit) | {"WATCHDOG_USEC": str(WATCHDOG_USEC)}
    if "GPIOZERO_PIN_FACTORY" in env:
        env["GPIOZERO_PIN_FACTORY"] = "mock"  # no pins here: gpiozero's mock ones
    service = Notified(args, folder / "service.log", env)
    try:
        service.wait_for("READY=1")
        if SERVICES[name] in ("kiosk", "collector"):
            assert requests.get(f"http://{listen[0]}:{listen[1]}/healthz", timeout=5).ok
        # A service that feeds the watchdog says so within a period of it (10 ms); one
        # silent for a hundred periods does not (systemd would have killed it by then).
        with contextlib.suppress(AssertionError):
            service.wait_for("WATCHDOG=1", timeout=100 * WATCHDOG_USEC / 1e6)
        assert hear_until_exit(service) == 0, service.output()
    finally:
        if service.proc.poll() is None:
            service.kill()
        service.sock.close()
    return service.said


@pytest.fixture(scope="module")
def notifications(tmp_path_factory):
    """What each unit's service says to systemd over its life; each is run once."""
    heard: dict[str, list[str]] = {}

    def of(name: str) -> list[str]:
        if name not in heard:
            heard[name] = run_as_unit(name, tmp_path_factory.mktemp(SERVICES[name]))
        return heard[name]

    return of


@pytest.mark.parametrize("name", SERVICES)
def test_type_notify_and_the_service_says_ready(name, notifications):
    unit = load_unit(name)
    assert last(unit, "Service", "Type") == "notify"
    assert last(unit, "Service", "NotifyAccess") == "main"
    # The sd_notify socket is an AF_UNIX datagram socket.
    assert "AF_UNIX" in words(unit, "Service", "RestrictAddressFamilies")
    assert "READY=1" in notifications(name), f"{SERVICES[name]} does not send READY=1"


@pytest.mark.parametrize("name", SERVICES)
def test_watchdog_only_where_the_main_loop_pings_it(name, notifications):
    unit = load_unit(name)
    pings = "WATCHDOG=1" in notifications(name)
    watchdog = last(unit, "Service", "WatchdogSec")
    if pings:
        assert watchdog, f"{name}: the service sends WATCHDOG=1, so set WatchdogSec="
        assert seconds(watchdog) >= 10
    else:
        # A watchdog nobody feeds would kill a healthy service.
        assert not watchdog or seconds(watchdog) == 0, f"{name}: it never sent WATCHDOG=1"
    assert SERVICES[name] in ("sensors", "sync") or not pings


@pytest.mark.parametrize("name", SERVICES)
def test_restart_on_failure_but_not_on_a_bad_config(name):
    unit = load_unit(name)
    assert last(unit, "Service", "Restart") == "on-failure"
    assert seconds(last(unit, "Service", "RestartSec") or "0") >= 1
    assert str(EX_CONFIG) in words(unit, "Service", "RestartPreventExitStatus")


@pytest.mark.parametrize("name", {**SERVICES, **ONESHOTS})
def test_runs_as_the_shared_spacekiosk_user(name):
    unit = load_unit(name)
    assert last(unit, "Service", "User") == "spacekiosk"
    assert last(unit, "Service", "Group") == "spacekiosk"
    # Not DynamicUser=: the Pi services share one SQLite file, and with it one owner.
    assert last(unit, "Service", "DynamicUser") in (None, "no", "false")
    command = {**SERVICES, **ONESHOTS}[name]
    assert words(unit, "Service", "StateDirectory") == [STATE_DIRECTORY[command]]


@pytest.mark.parametrize("name", {**SERVICES, **ONESHOTS})
def test_hardening(name):
    unit = load_unit(name)
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert last(unit, "Service", key) == value, f"{name}: expected {key}={value}"
    # An empty CapabilityBoundingSet= drops every capability.
    assert "CapabilityBoundingSet" in unit["Service"]
    assert words(unit, "Service", "CapabilityBoundingSet") == []
    families = set(words(unit, "Service", "RestrictAddressFamilies"))
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_sensors_can_reach_the_gpio_chips():
    unit = load_unit("spacekiosk-sensors.service")
    assert "gpio" in words(unit, "Service", "SupplementaryGroups")
    assert environment(unit).get("GPIOZERO_PIN_FACTORY") == "lgpio"
    # PrivateDevices=yes would hide /dev/gpiochip*.
    assert last(unit, "Service", "PrivateDevices") in (None, "no", "false")
    if last(unit, "Service", "DevicePolicy") in ("closed", "strict"):
        allowed = unit["Service"].get("DeviceAllow", [])
        assert any(
            rule.split()[0] == "char-gpiochip" and "r" in rule.split()[-1] for rule in allowed
        ), "DevicePolicy is closed but /dev/gpiochip* is not allowed"
    # lgpio creates its notification FIFO in the working directory: it must be writable
    # under ProtectSystem=strict, i.e. the unit's RuntimeDirectory= or StateDirectory=.
    workdir = last(unit, "Service", "WorkingDirectory")
    writable = [f"/run/{d}" for d in words(unit, "Service", "RuntimeDirectory")]
    writable += [f"/var/lib/{d}" for d in words(unit, "Service", "StateDirectory")]
    assert workdir in writable, "lgpio needs a writable working directory"


def test_pi_services_are_grouped_without_taking_each_other_down():
    for name in PI_SERVICES:
        unit = load_unit(name)
        assert words(unit, "Install", "WantedBy") == [TARGET]
        assert TARGET in words(unit, "Unit", "PartOf")
        for key in ("Requires", "BindsTo", "Requisite"):
            assert not words(unit, "Unit", key), f"{name}: {key}= would couple the services"
    # Ordering (the kiosk first) only, so the schema migration is rarely raced.
    assert "spacekiosk-kiosk.service" in words(
        load_unit("spacekiosk-sensors.service"), "Unit", "After"
    )
    sync_after = words(load_unit("spacekiosk-sync.service"), "Unit", "After")
    assert {"spacekiosk-kiosk.service", "spacekiosk-sensors.service"} <= set(sync_after)


@pytest.mark.parametrize("name", SERVICES)
def test_credentials_keep_the_file_name_the_config_loader_looks_for(name):
    # config.readable_file looks up a missing password_file by its *file name* in
    # $CREDENTIALS_DIRECTORY, so a credential's id must be its source file's name.
    for item in load_unit(name).get("Service", {}).get("LoadCredential", []):
        ident, _, source = item.partition(":")
        assert source, f"{name}: LoadCredential={item} needs ID:PATH"
        assert Path(source).name == ident, f"{name}: credential {ident!r} vs {source}"
        assert Path(source).parent == CONFIG_DIR


def test_sync_gets_the_mqtt_password_as_a_credential():
    unit = load_unit("spacekiosk-sync.service")
    idents = [item.partition(":")[0] for item in unit["Service"].get("LoadCredential", [])]
    assert "mqtt-password" in idents


def test_example_databases_are_inside_the_state_directories():
    # ProtectSystem=strict leaves only the StateDirectory= writable.
    spaces = 0
    for path in sorted(CONFIGS.glob("*.toml")):
        loaded = config.load(path)
        if isinstance(loaded, config.SpaceConfig):
            spaces += 1
            db_path = loaded.database.path
            assert db_path.parent == Path("/var/lib") / STATE_DIRECTORY["kiosk"], path.name
        else:
            db_path = loaded.central.database
            assert db_path.parent == Path("/var/lib") / STATE_DIRECTORY["collector"], path.name
    assert spaces >= 1


# --- the nightly backup ---


def test_the_backup_runs_once_a_night_from_its_timer_and_never_restarts():
    unit = load_unit(BACKUP)
    assert last(unit, "Service", "Type") == "oneshot"
    assert last(unit, "Service", "Restart") in (None, "no")  # a missing stick waits a night
    assert "Install" not in unit, "the timer starts it, not the boot"
    assert words(unit, "Service", "UMask") == ["0077"], "backups hold visitors' names"
    timer = load_unit(BACKUP_TIMER)
    assert last(timer, "Timer", "OnCalendar")
    assert last(timer, "Timer", "Persistent") == "true", "a Pi off at night backs up later"
    assert last(timer, "Timer", "Unit") in (None, BACKUP)
    assert words(timer, "Install", "WantedBy") == ["timers.target"]
    # Not part of the target: stopping the services for a restore leaves it alone, and
    # `systemctl stop spacekiosk.target` does not cut a backup short.
    assert BACKUP not in words(load_unit(TARGET), "Install", "Also")


def test_the_backup_may_write_the_configs_backup_folder():
    writable = [path.lstrip("-") for path in words(load_unit(BACKUP), "Service", "ReadWritePaths")]
    for path in sorted(CONFIGS.glob("*.toml")):
        loaded = config.load(path)
        if isinstance(loaded, config.SpaceConfig):
            assert str(loaded.backup.folder) in writable, path.name


def test_the_backup_units_command_backs_a_store_up(tmp_path):
    """The unit's command line, on a test config whose [backup] folder is a temporary one."""
    folder = tmp_path / "backups"
    folder.mkdir()
    toml = write_space_config(
        tmp_path / "space", broker_port=free_port(), extra=f'[backup]\nfolder = "{folder}"\n'
    )
    from spacekiosk.db import open_store
    from spacekiosk.migrations import SPACE_MIGRATIONS

    open_store(config.load(toml, secrets=False).database.path, SPACE_MIGRATIONS).close()
    args = [str(toml) if Path(a).parent == CONFIG_DIR else a for a in exec_start(load_unit(BACKUP))]
    done = subprocess.run(
        [sys.executable, "-m", "spacekiosk", *args[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("spacekiosk-*.db"))) == 1


# --- systemd's own checks ---


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail(
            "systemd-analyze not found: install systemd (Debian: apt-get install systemd) "
            "to check the unit files"
        )
    return found


def spacekiosk_executable() -> str:
    beside = Path(sys.executable).with_name("spacekiosk")
    if beside.exists():
        return str(beside)
    return shutil.which("spacekiosk") or sys.executable


@pytest.fixture(scope="module")
def checkable_units(tmp_path_factory) -> Path:
    """Copies of every unit whose ExecStart= runs this checkout's spacekiosk."""
    folder = tmp_path_factory.mktemp("units")
    real = spacekiosk_executable()
    for path in UNITS.glob("spacekiosk*"):
        (folder / path.name).write_text(path.read_text().replace(INSTALLED, real))
    return folder


@pytest.mark.parametrize("name", [*SERVICES, *ONESHOTS, BACKUP_TIMER, TARGET])
def test_systemd_analyze_verify(name, checkable_units):
    result = subprocess.run(
        [systemd_analyze(), "verify", "--recursive-errors=no", str(checkable_units / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"systemd-analyze verify {name}:\n{output}"
    assert str(checkable_units) not in output, f"systemd-analyze verify {name}:\n{output}"


@pytest.mark.parametrize("name", {**SERVICES, **ONESHOTS})
def test_systemd_analyze_security(name, checkable_units):
    result = subprocess.run(
        [
            systemd_analyze(),
            "security",
            "--offline=yes",
            f"--threshold={MAX_EXPOSURE}",
            "--no-pager",
            str(checkable_units / name),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    summary = [line for line in result.stdout.splitlines() if "exposure level" in line]
    assert result.returncode == 0, (
        f"{name} is more exposed than {MAX_EXPOSURE / 10}: {summary}\n{result.stderr}"
    )


# --- the central broker ---


def rules(text: str) -> list[str]:
    """An ACL's rules: no comments, no blank lines, single spaces."""
    return [
        " ".join(line.split())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_broker_acl_is_the_one_the_code_uses():
    assert rules((MOSQUITTO / "acl").read_text()) == rules(broker.ACL)


def listener_blocks(text: str) -> list[list[tuple[str, str]]]:
    """The settings under each `listener` line, up to the next one."""
    blocks: list[list[tuple[str, str]]] = []
    for key, value in conf_settings(text):
        if key == "listener":
            blocks.append([])
        if blocks:
            blocks[-1].append((key, value))
    return blocks


def test_every_listener_binds_client_ids_to_logins_as_the_test_broker_does(tmp_path):
    """use_username_as_clientid is a listener's setting in Mosquitto 2.0: the central
    broker needs it on each listener, and the tests' and the demo's broker alike."""
    central = listener_blocks((MOSQUITTO / "central.conf").read_text())
    local = broker.Broker(tmp_path, {"nairobi": "x"}).write_config().read_text()
    for blocks in (central, listener_blocks(local)):
        assert blocks and all(("use_username_as_clientid", "true") in b for b in blocks)
    for text in ((MOSQUITTO / "central.conf").read_text(), local):
        assert ("allow_zero_length_clientid", "false") in conf_settings(text)


def conf_settings(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def test_broker_conf_essentials():
    pairs = conf_settings((MOSQUITTO / "central.conf").read_text())
    settings = dict(pairs)
    assert pairs[0] == ("per_listener_settings", "false")
    assert settings["allow_anonymous"] == "false"
    assert settings["persistence"] == "true"
    assert int(settings["max_queued_messages"]) > 1000
    assert Path(settings["acl_file"]).name.endswith("acl")
    assert "password_file" in settings
    listeners = [value.split() for key, value in pairs if key == "listener"]
    assert ["8883"] in listeners
    for key in ("cafile", "certfile", "keyfile"):
        assert settings[key].startswith("/etc/mosquitto/certs/")


def test_central_collector_config_loads():
    loaded = config.load(CONFIGS / "central.toml")
    assert isinstance(loaded, config.CollectorConfig)
    assert loaded.mqtt.username == "collector"
    # The collector reaches the broker through central.conf's loopback listener.
    pairs = conf_settings((MOSQUITTO / "central.conf").read_text())
    listeners = [value.split() for key, value in pairs if key == "listener"]
    assert [str(loaded.mqtt.port), "127.0.0.1"] in listeners
    assert loaded.mqtt.host in ("localhost", "127.0.0.1")


def make_certificates(folder: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("openssl not found: install it (Debian: apt-get install openssl)")

    def run(command: str) -> None:
        subprocess.run(
            [openssl, *shlex.split(command)],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=60,
        )

    run("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.crt")
    run(
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -addext subjectAltName=DNS:localhost "
        "-keyout server.key -out server.csr"
    )
    run(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-copy_extensions copy -out server.crt"
    )


# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "x", no login.
MQTT_CONNECT = bytes.fromhex("100d00044d5154540402003c000178")


def first_answer(port: int, data: bytes) -> bytes:
    """What a broker port first says to `data` sent in the clear (b"" if it hangs up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        try:
            return sock.recv(64)
        except ConnectionResetError:
            return b""


def tls_handshake(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="localhost"),
    ):
        pass


def test_broker_conf_runs_with_tls_logins_and_the_acl(tmp_path):
    """central.conf, moved to temporary files and free ports, starts and enforces logins."""
    import paho.mqtt.client as mqtt

    binary = broker.find_mosquitto()
    if not binary:
        pytest.fail("mosquitto not found: install it (Debian: apt-get install mosquitto)")
    make_certificates(tmp_path)
    passwd = broker.write_passwords(
        tmp_path / "passwd", {"collector": "c-secret", "nairobi": "n-secret"}
    )
    shutil.copy(MOSQUITTO / "acl", tmp_path / "acl")
    (tmp_path / "persist").mkdir()
    tls_port, local_port = broker.free_port(), broker.free_port()
    text = (MOSQUITTO / "central.conf").read_text()
    replacements = {
        "/etc/mosquitto/certs/": f"{tmp_path}/",
        "/etc/mosquitto/spacekiosk.passwd": str(passwd),
        "/etc/mosquitto/spacekiosk.acl": str(tmp_path / "acl"),
        "/var/lib/mosquitto/": f"{tmp_path}/persist/",
        "/run/mosquitto/mosquitto.pid": str(tmp_path / "mosquitto.pid"),
        "/var/log/mosquitto/mosquitto.log": str(tmp_path / "mosquitto.log"),
        "\nlistener 8883\n": f"\nlistener {tls_port} 127.0.0.1\n",
        "\nlistener 1883 127.0.0.1\n": f"\nlistener {local_port} 127.0.0.1\n",
    }
    for old, new in replacements.items():
        assert old in text, f"central.conf no longer contains {old!r}; update this test"
        text = text.replace(old, new)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + f"user {getpass.getuser()}\n")  # as root: keep root's files

    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        up = broker.wait_for_port(tls_port, 10, proc) and broker.wait_for_port(local_port, 10, proc)
        if not up:
            proc.kill()
            log = tmp_path / "mosquitto.log"
            pytest.fail(
                f"mosquitto did not start:\n{proc.communicate()[0]}\n"
                f"{log.read_text() if log.exists() else ''}"
            )

        received: list[str] = []
        allowed = "spacekiosk/v1/nairobi/usage"  # the space's own topic
        arrived = threading.Event()  # a message on it reached the collector

        def on_message(cl, u, m):
            received.append(m.topic)
            if m.topic == allowed:
                arrived.set()

        def client(client_id, user=None, password=None, port=local_port, tls=False):
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
            if user:
                c.username_pw_set(user, password)
            if tls:
                c.tls_set(ca_certs=str(tmp_path / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
            result = {}
            answered = threading.Event()  # the CONNACK, accepting or refusing

            def on_connect(cl, u, f, rc, p):
                result.setdefault("rc", rc)
                answered.set()

            c.on_connect = on_connect
            c.on_message = on_message
            c.connect("localhost", port)
            c.loop_start()
            answered.wait(10)
            return c, result.get("rc")

        anonymous, rc = client("anonymous")
        anonymous.loop_stop()
        assert rc is not None and rc.is_failure, "an anonymous login was accepted"

        # The spaces' port speaks TLS only, with the certificate the CA signed: a plain
        # MQTT CONNECT gets no CONNACK there (it does on the loopback port), and a client
        # that does not trust the CA refuses the broker.
        assert first_answer(local_port, MQTT_CONNECT)[:1] == b"\x20"
        assert first_answer(tls_port, MQTT_CONNECT)[:1] != b"\x20"
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_handshake(tls_port, ssl.create_default_context())
        tls_handshake(tls_port, ssl.create_default_context(cafile=tmp_path / "ca.crt"))

        collector, rc = client("collector-1", "collector", "c-secret")
        assert rc is not None and not rc.is_failure, f"collector login refused: {rc}"
        subacks: dict[int, list] = {}
        subscribed = threading.Event()

        def on_subscribe(cl, u, mid, reason_codes, p):
            subacks[mid] = reason_codes
            subscribed.set()

        collector.on_subscribe = on_subscribe
        _, mid = collector.subscribe("spacekiosk/v1/+/usage", qos=1)
        # The space asks for the collector's client ids; the broker names it "nairobi".
        for stolen in ("collector-1", "collector"):
            thief, rc = client(stolen, "nairobi", "n-secret", tls_port, tls=True)
            assert rc is not None and not rc.is_failure, f"space login over TLS refused: {rc}"
            thief.disconnect()
            thief.loop_stop()
        space, rc = client("spacekiosk-nairobi", "nairobi", "n-secret", tls_port, tls=True)
        assert rc is not None and not rc.is_failure, f"space login over TLS refused: {rc}"
        assert collector.is_connected(), "a space's login took the collector's place"
        assert subscribed.wait(10), "the broker never acknowledged the subscription"
        assert [code.value for code in subacks[mid]] == [1], subacks  # granted QoS 1
        # Athens' topic is refused by the ACL; then the space's own one, the marker. The
        # broker queues a QoS 1 message for its subscribers before it acknowledges it,
        # and sends a subscriber's queue in order: had athens' got through, it would
        # have arrived before the marker.
        space.publish("spacekiosk/v1/athens/usage", b"{}", qos=1).wait_for_publish(5)
        space.publish(allowed, b"{}", qos=1).wait_for_publish(5)
        assert arrived.wait(5), "the space's message on its own topic never arrived"
        for c in (space, collector):
            c.disconnect()
            c.loop_stop()
        # Only nairobi's own topic got through; athens' was refused by the ACL.
        assert received == [allowed]
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
