"""The commands as a first-time user meets them, run without a terminal (stdin is not a
tty, as in a script, a CI job or ssh without -t): each says what to do and exits non-zero,
never with a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import wait_until, write_collector_config

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str = "", env: dict | None = None, timeout: float = 60):
    """`spacekiosk ARGS` as a subprocess whose stdin is a pipe, never a terminal."""
    environ = {k: v for k, v in os.environ.items() if k != "SPACEKIOSK_CONFIG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "spacekiosk.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=timeout,
    )


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_user_add_without_a_terminal_says_to_use_password_stdin(tmp_path):
    central = write_collector_config(tmp_path, broker_port=1883)
    result = run("user", "add", "ada", "--config", str(central))
    no_traceback(result)
    assert result.returncode == 64, result.stderr
    assert "no terminal" in result.stderr and "--password-stdin" in result.stderr
    # And the way it names works, without a terminal either.
    result = run(
        "user",
        "add",
        "ada",
        "--password-stdin",
        "--config",
        str(central),
        stdin="a long passphrase\n",
    )
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "user ada added" in result.stdout


def test_every_central_command_looks_for_central_toml_and_says_how_to_write_it(tmp_path):
    missing = tmp_path / "central.toml"
    env = {"SPACEKIOSK_CONFIG": str(missing)}
    for args in (
        ["collector"],
        ["space", "list"],
        ["user", "remove", "ada"],
        ["token", "remove", "x"],
    ):
        result = run(*args, env=env)
        no_traceback(result)
        assert result.returncode == 78, (args, result.stderr)
        assert f"spacekiosk init-config --central {missing}" in result.stderr, result.stderr
        assert "--pilot" not in result.stderr
    # Without $SPACEKIOSK_CONFIG, one default for all of them: the collector's unit's.
    for args in (["collector"], ["space", "list"]):
        result = run(*args)
        assert "/etc/spacekiosk/central.toml" in result.stderr, result.stderr
        assert "space.toml" not in result.stderr


def test_init_config_central_writes_a_collector_config_the_commands_then_use(tmp_path):
    path = tmp_path / "central.toml"
    result = run("init-config", "--central", str(path))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert "[central]" in text and "[space]" not in text
    assert "# public_url" in text and "# secret_file" in text  # the optional keys, explained
    # Its one gap is the collector's broker password, and check-config names the file.
    result = run("check-config", str(path))
    no_traceback(result)
    assert result.returncode == 78
    assert "mqtt.password_file" in result.stderr
    (tmp_path / "mqtt-password").write_text("collector-secret\n")
    text = text.replace("/etc/spacekiosk/mqtt-password", str(tmp_path / "mqtt-password"))
    path.write_text(text.replace("/var/lib/spacekiosk-collector/", f"{tmp_path}/"))
    result = run("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "central collector" in result.stdout
    result = run("token", "add", "grafana", env={"SPACEKIOSK_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    # A space's pilot and --central are one or the other.
    result = run("init-config", "--central", "--pilot", "athens", str(tmp_path / "x.toml"))
    no_traceback(result)
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_check_config_warns_on_an_untouched_init_config_s_placeholders(tmp_path):
    path = tmp_path / "space.toml"
    assert run("init-config", "--pilot", "athens", str(path)).returncode == 0
    # Untouched: valid (the kiosk runs without the broker), but it says what is missing.
    result = run("check-config", str(path))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "warning: mqtt.host is the placeholder 'broker.example.org'" in result.stderr
    assert "warning: mqtt.password_file is not set" in result.stderr
    # Fixed, with a real broker and a password file: OK and no warning.
    (tmp_path / "mqtt-password").write_text("secret\n")
    text = path.read_text()
    text = text.replace('host = "broker.example.org"', 'host = "mqtt.fablab.gr"')
    text = text.replace("[mqtt]\n", f'[mqtt]\npassword_file = "{tmp_path}/mqtt-password"\n')
    text = text.replace("/var/lib/spacekiosk/", f"{tmp_path}/")
    path.write_text(text)
    result = run("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def _setup(tmp_path, *args: str):
    """scripts/setup with apt-get, sudo, pip and python3 replaced by stubs that note their call."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name in ("apt-get", "sudo", "python3", "pip"):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/called"\n')
        (stubs / name).chmod(0o755)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup"), *args],
        input="",
        capture_output=True,
        text=True,
        env={"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=30,
    )


def test_setup_help_prints_usage_and_installs_nothing(tmp_path):
    for flag in ("-h", "--help"):
        result = _setup(tmp_path, flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: scripts/setup [run|test]")
        assert not (tmp_path / "called").exists()
    result = _setup(tmp_path, "--bogus")
    assert result.returncode == 64
    assert "unknown argument '--bogus'" in result.stderr and "Usage:" in result.stderr
    assert not (tmp_path / "called").exists()


def test_the_demo_says_its_temporary_logs_go_on_ctrl_c_and_how_to_keep_them(tmp_path):
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "SPACEKIOSK_CONFIG"}
    env |= {"TMPDIR": str(tmp_path), "SPACEKIOSK_MOSQUITTO": ""}  # no broker: up sooner
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spacekiosk", "demo"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    try:

        def up():
            assert proc.poll() is None, out.read_text()
            return "press Ctrl-C" in out.read_text()

        wait_until(up, timeout=60, what="the demo")
        folders = list(tmp_path.glob("spacekiosk-demo-*"))
        assert len(folders) == 1
        text = out.read_text()
        assert f"files and logs: {folders[0]}  (a temporary folder, deleted" in text
        assert "--data DIR" in text
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    assert "Traceback" not in text
    assert f"deleted its temporary folder {folders[0]}" in text.splitlines()[-1]
    assert "--data DIR to keep them" in text.splitlines()[-1]
    assert not folders[0].exists()
