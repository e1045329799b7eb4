"""Config files: the pilots' pass; broken ones name every bad key and exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, write_collector_config, write_space_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacekiosk import config, pilots, protocol, sensorstate
from spacekiosk.validation import ConfigError

CONFIGS = sorted((ROOT / "config").glob("*.toml"))


def check_config(path: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacekiosk", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_file_in_config_passes_check_config():
    assert {p.stem for p in CONFIGS} >= set(pilots.PILOTS)
    for path in CONFIGS:
        result = check_config(path)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


@pytest.mark.parametrize("pilot", sorted(pilots.PILOTS))
def test_pilot_configs_are_what_init_config_writes(pilot, tmp_path):
    out = tmp_path / f"{pilot}.toml"
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "init-config", "--pilot", pilot, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (ROOT / "config" / f"{pilot}.toml").read_text()
    loaded = config.load(out)
    assert loaded.space.id == pilot
    assert loaded.space.timezone.key == pilots.PILOTS[pilot].timezone


def loaded(tmp_path: Path, text: str, name: str = "space.toml"):
    path = tmp_path / name
    path.write_text(text)
    return config.load(path)


@pytest.mark.parametrize("pilot", sorted(pilots.PILOTS))
def test_every_value_init_config_spells_out_is_the_default(pilot, tmp_path):
    """The file init-config writes and one that leaves every default out are the same
    config: what it tells a space it starts from is what the services assume."""
    p = pilots.PILOTS[pilot]
    given = dict(
        id=p.id,
        name=p.name,
        timezone=p.timezone,
        languages=p.languages,
        capacity=p.capacity,
        database="space.db",
        opening_hours=pilots.PILOT_HOURS,
        broker="broker.example.org",
        sensors=pilots.SENSORS,
    )
    short = pilots.space_toml(**given)
    assert len(short) < len(pilots.space_toml(**given, every_key=True)) / 2
    assert loaded(tmp_path, short) == loaded(tmp_path, pilots.space_toml(**given, every_key=True))


def test_a_key_given_twice_is_written_once_with_the_last_value(tmp_path):
    text = pilots.space_toml(
        id="overrides",
        name='A "quoted" \\ name',
        timezone="Europe/Athens",
        languages=["en"],
        capacity=20,
        database="space.db",
        listen="127.0.0.1:8080",
        broker="127.0.0.1",
        broker_port=1883,
        tls=False,
        sync={"batch_hours": 6},
        sensors=pilots.SENSORS,
        overrides={
            "kiosk": {"listen": "127.0.0.2:9000", "threads": 2},
            "sync": {"batch_hours": 12},
            "sensors": {"door": {"bounce_ms": 0}},
            "events": [{"name": "Hack night", "date": "2026-12-01", "hours": "18:00-21:00"}],
        },
        every_key=True,
    )
    tomllib.loads(text)  # refuses a key written twice
    cfg = loaded(tmp_path, text)
    assert cfg.space.name == 'A "quoted" \\ name'
    assert cfg.kiosk.listen == ("127.0.0.2", 9000) and cfg.kiosk.threads == 2
    assert cfg.sync.batch_hours == 12
    assert (cfg.sensors.door.pin, cfg.sensors.door.bounce_ms) == (17, 0)
    assert [e.name for e in cfg.events] == ["Hack night"]
    assert "# [[events]]" not in text  # the example gives way to the real thing


def test_the_collector_s_config_takes_its_keys_once(tmp_path):
    text = pilots.central_toml(
        listen="127.0.0.1:8090",
        database="central.db",
        broker="127.0.0.1",
        broker_port=1883,
        tls=False,
        overrides={"central": {"shared": True, "listen": "127.0.0.1:8091"}},
    )
    cfg = loaded(tmp_path, text, "central.toml")
    assert cfg.central.listen == ("127.0.0.1", 8091) and cfg.central.shared
    assert cfg.mqtt.username == "collector"


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_init_config_writes_a_file_no_one_else_may_change(tmp_path, umask):
    out = tmp_path / "space.toml"
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "init-config", "--pilot", "athens", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(umask),
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["space.toml"]


def test_init_config_will_not_overwrite_without_force(tmp_path):
    out = tmp_path / "space.toml"
    out.write_text("# mine\n")
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "init-config", "--pilot", "athens", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "--force" in result.stderr
    assert out.read_text() == "# mine\n"


BROKEN = """
[space]
id = "Nairobi!"
name = "Nairobi"
timezone = "Africa/Nairobbi"
languages = ["sw", "zh-TW"]
capacity = "forty"
colour = "red"

[space.opening_hours]
mon = "9-5"
funday = "10:00-12:00"

[database]
path = "space.db"

[kiosk]
listen = "8080"

[mqtt]
host = "broker.example.org"
password_file = "no-such-file"

[sensors.door]
pin = 40

[sensors.counter]
beam_a = 5
"""

EXPECTED = {
    "space.id": "not a valid space id",
    "space.timezone": "not a known time zone",
    "space.languages[1]": "write 'zh_Hant_TW'",
    "space.capacity": "expected an integer",
    "space.colour": "unknown key",
    "space.opening_hours.mon": "not opening hours",
    "space.opening_hours.funday": "unknown key",
    "kiosk.listen": "not HOST:PORT",
    "mqtt.password_file": "does not exist",
    "sensors.door.pin": "BCM numbering",
    "sensors.counter.beam_b": "missing",
}


def test_a_broken_file_gets_every_bad_key_named_and_exit_78(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(BROKEN)
    result = check_config(path)
    assert result.returncode == 78
    for key, words in EXPECTED.items():
        lines = [line for line in result.stderr.splitlines() if f"- {key}:" in line]
        assert lines and words in lines[0], f"{key} not reported as {words!r}:\n{result.stderr}"
    assert f"{len(EXPECTED)} problem(s)" in result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[space\nid=", "not valid TOML"),
        ("title = 'no tables'", "expected a [space] table"),
        ("[space]\nid = 'ok-id'", "database: missing"),
    ],
)
def test_unusable_files_are_explained(tmp_path, text, words):
    path = tmp_path / "space.toml"
    path.write_text(text)
    result = check_config(path)
    assert result.returncode == 78
    assert words in result.stderr


def test_a_missing_file_says_how_to_make_one(tmp_path):
    result = check_config(tmp_path / "nope.toml")
    assert result.returncode == 78
    assert "init-config" in result.stderr


def test_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "space.toml"
    path.write_bytes(b"[space]\nname = '\xff\xfe'\n")
    result = check_config(path)
    assert result.returncode == 78 and "UTF-8" in result.stderr


def test_a_password_file_that_is_a_folder_is_refused(tmp_path):
    pilot = (ROOT / "config" / "athens.toml").read_text()
    (tmp_path / "secrets").mkdir()
    text = pilot.replace(
        '# password_file = "/etc/spacekiosk/mqtt-password"', 'password_file = "secrets"'
    )
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [p.path for p in info.value.problems] == ["mqtt.password_file"]
    assert "is a folder" in info.value.problems[0].message


def test_the_config_is_found_through_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPACEKIOSK_CONFIG", str(ROOT / "config" / "taipei.toml"))
    assert config.load().space.id == "taipei"
    assert config.find_path("other.toml") == Path("other.toml")


def test_every_service_refuses_a_broken_config_with_78(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(BROKEN)
    for command in ("kiosk", "sensors", "sync"):
        result = subprocess.run(
            [sys.executable, "-m", "spacekiosk", command, "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 78, command
        assert "space.timezone" in result.stderr
    assert not (tmp_path / "space.db").exists()  # nothing half-started


# Any TOML whatsoever gives a ConfigError or a config — never another exception.
toml_values = st.recursive(
    st.one_of(
        st.text(max_size=20),
        st.integers(-(10**6), 10**6),
        st.booleans(),
        st.floats(allow_nan=False),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
base = tomllib.loads((ROOT / "config" / "madrid.toml").read_text())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    section=st.sampled_from(sorted(base)), key=st.text(min_size=1, max_size=12), value=toml_values
)
def test_no_toml_crashes_the_checker(tmp_path, section, key, value):
    import json

    data = json.loads(json.dumps(base))
    if isinstance(data[section], dict):
        keys = [*list(data[section]), key]
        data[section][keys[hash(key) % len(keys)]] = value
    path = tmp_path / "fuzz.toml"
    path.write_text(_dump(data))
    try:
        config.load(path)
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


def _dump(data: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the fuzz test (tomllib reads but does not write)."""
    import json

    lines, tables = [], []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, dict):
            tables.append((f"{prefix}{name}", value))
        else:
            lines.append(f"{name} = {_value(value)}")
    out = (f"[{prefix[:-1]}]\n" if prefix else "") + "\n".join(lines) + "\n"
    for name, table in tables:
        out += _dump(table, f"{name}.") if table else f"[{name}]\n"
    return out


def _value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    return json.dumps(value)


def with_password_file(tmp_path, where: str) -> Path:
    text = (ROOT / "config" / "athens.toml").read_text()
    path = tmp_path / "space.toml"
    path.write_text(
        text.replace(
            '# password_file = "/etc/spacekiosk/mqtt-password"', f'password_file = "{where}"'
        )
    )
    return path


def test_the_kiosk_does_not_need_the_sync_agent_s_secret(tmp_path):
    path = with_password_file(tmp_path, "/nonexistent/mqtt-password")
    with pytest.raises(ConfigError):
        config.load(path)  # the sync agent (and check-config) refuse it
    assert config.load(path, secrets=False).space.id == "athens"  # kiosk and sensors start


def test_a_systemd_credential_is_preferred_to_the_file(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    root_only = tmp_path / "mqtt-password"
    root_only.write_text("the file")
    loaded = config.load(with_password_file(tmp_path, str(root_only)))
    assert loaded.mqtt.password_file == creds / "mqtt-password"


@pytest.mark.parametrize("space", ["collector", "collector-2", "collector-tap"])
def test_a_collector_s_login_is_not_a_space_id(tmp_path, space):
    """The broker names each client after its login: a space with a collector's name could
    take that collector's place on the broker."""
    text = (ROOT / "config" / "athens.toml").read_text().replace('id = "athens"', f'id = "{space}"')
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [p.path for p in info.value.problems] == ["space.id"]
    assert "collectors' MQTT logins" in info.value.problems[0].message


@pytest.mark.parametrize("login", ["nairobi", "collector_2", "Collector", "collector-"])
def test_a_collector_logs_in_as_a_collector(tmp_path, login):
    path = write_collector_config(tmp_path, broker_port=1883)
    path.write_text(path.read_text().replace('username = "collector"', f'username = "{login}"'))
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [p.path for p in info.value.problems] == ["mqtt.username"]
    assert "collector-2" in info.value.problems[0].message


def test_two_pirs_in_one_place_are_refused(tmp_path):
    text = (ROOT / "config" / "athens.toml").read_text()
    text += '\n[[sensors.motion]]\npin = 5\nlocation = "main room"\n'
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [p.path for p in info.value.problems] == ["sensors.motion[1].location"]


def test_the_https_route_needs_its_token(tmp_path):
    text = (ROOT / "config" / "athens.toml").read_text()
    text = text.replace('http_url = ""', 'http_url = "https://collector.example.org/"')
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path, secrets=False)
    assert [p.path for p in info.value.problems] == ["sync.token_file"]
    assert "spacekiosk space add" in info.value.problems[0].message


def test_what_a_space_s_status_carries_is_held_to_the_protocol_s_bounds(tmp_path):
    """A name or a PIR location the collector would refuse must be refused here first, or
    every status the space sends would be refused, whole."""
    base = (ROOT / "config" / "athens.toml").read_text()
    name, location = "N" * config.SPACE_NAME_CHARS, "L" * config.LOCATION_CHARS
    path = tmp_path / "space.toml"
    path.write_text(
        base.replace('"Mozilla Community Space Athens"', f'"{name}"').replace(
            'location = "main room"', f'location = "{location}"'
        )
    )
    cfg = config.load(path)
    motion = sensorstate.motion_name(cfg.sensors.motion[0])
    sent = protocol.status_message(
        online=True,
        sensors={"faults": {motion: "in motion for 6 h"}, "door_alert": False},
        about={"name": cfg.space.name, "capacity": cfg.space.capacity, "timezone": "UTC"},
    )
    assert protocol.read_status(sent)["about"]["name"] == name
    path.write_text(
        base.replace('"Mozilla Community Space Athens"', f'"{name}N"').replace(
            'location = "main room"', 'location = "main\\u202eroom"'
        )
    )
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert {p.path: p.message for p in info.value.problems} == {
        "space.name": "must be at most 80 characters, not 81",
        "sensors.motion[0].location": "must not hold a control or formatting character",
    }


def test_a_pin_used_twice_is_named_in_the_same_run_as_the_other_problems(tmp_path):
    """A volunteer fixing a config sees every problem at once: the second sensor on pin
    17 is named beside the unknown time zone, not only once the zone is fixed."""
    text = write_space_config(
        tmp_path, broker_port=1, extra="[sensors.door]\npin = 17\n[[sensors.motion]]\npin = 17\n"
    ).read_text()
    path = tmp_path / "space.toml"
    path.write_text(text.replace('timezone = "Europe/Athens"', 'timezone = "Nowhere/Land"'))
    with pytest.raises(config.ConfigError) as refused:
        config.load(path)
    report = refused.value.report()
    assert "space.timezone" in report
    assert "sensors.motion[0]: GPIO 17 is already used by sensors.door" in report
