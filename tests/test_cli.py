"""The command line: every subcommand explains itself; Flask stays out of the Pi daemons."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from spacekiosk.cli import parser

COMMANDS = [
    "kiosk",
    "sensors",
    "sync",
    "collector",
    "demo",
    "check-config",
    "init-config",
    "watch",
    "backup",
    "restore",
]
COMMANDS += ["space", "user", "token"]
# The central team's commands each have actions of their own.
ACTIONS = ["space add", "space rotate", "space remove", "space list", "user add"]
ACTIONS += ["user remove", "token add", "token remove"]


def test_the_issue_s_commands_all_exist():
    sub = next(a for a in parser()._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)


@pytest.mark.parametrize("command", COMMANDS + ACTIONS)
def test_every_subcommand_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "spacekiosk", *command.split(), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: spacekiosk " + command)
    description = result.stdout.split("\n\n")[1]
    assert len(description.split()) >= 4, description


def test_the_sensors_and_sync_processes_do_not_import_flask():
    code = (
        "import sys, sensors.daemon, sensors.simulate, sync.agent, sync.outbox; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', "
        "'jinja2', 'kiosk')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_logs_carry_journald_priorities_under_systemd(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacekiosk",
            "sync",
            "--once",
            "--config",
            str(tmp_path / "missing.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"JOURNAL_STREAM": "8:1234", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 78
    code = (
        "import logging; from spacekiosk.service import setup_logging; "
        "setup_logging('t'); logging.getLogger('x').warning('careful\\nsecond line')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"JOURNAL_STREAM": "8:1234", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.stderr.splitlines() == ["<4>x: careful", "<4>second line"]
