"""systemd's own checks on every unit the installers put on a machine.

Every file in systemd/ (found by glob, so a unit added there is checked without a change
here) must pass `systemd-analyze verify`, and every service must score at most
MAX_EXPOSURE on `systemd-analyze security --offline=yes`: 2.0 of 10, inside systemd's "OK"
band (the band runs to 4.9; 2.0 leaves a unit no room to lose more than one or two of its
hardening settings unnoticed). docs/installing.md lists each unit's score.

systemd checks that ExecStart= exists, and /opt/spacekiosk/venv does not on a development
machine or in CI, so the checks run on copies pointing at this checkout's `spacekiosk`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALLED = "/opt/spacekiosk/venv/bin/spacekiosk"
MAX_EXPOSURE = 2.0
KINDS = (".service", ".timer", ".target", ".socket", ".path")

ALL = sorted(p.name for p in UNITS.iterdir() if p.suffix in KINDS)
SERVICES = [name for name in ALL if name.endswith(".service")]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze not found: apt-get install systemd (scripts/setup test)")
    return found


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("units")
    real = Path(sys.executable).with_name("spacekiosk")
    assert real.exists(), f"{real}: install the project into this venv (scripts/setup test)"
    for name in ALL:
        text = (UNITS / name).read_text(encoding="utf-8")
        (folder / name).write_text(text.replace(INSTALLED, str(real)), encoding="utf-8")
    return folder


def test_the_pi_and_central_units_are_all_found():
    assert "spacekiosk.target" in ALL
    assert {"spacekiosk-kiosk.service", "spacekiosk-collector.service"} <= set(SERVICES)


@pytest.mark.parametrize("name", ALL)
def test_systemd_analyze_verify(name, copies):
    result = subprocess.run(
        [systemd_analyze(), "verify", "--recursive-errors=no", str(copies / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, f"systemd-analyze verify {name}:\n{output}"
    # Warnings exit 0 too; a line naming the unit's file is one of them.
    assert str(copies) not in output, f"systemd-analyze verify {name}:\n{output}"


@pytest.mark.parametrize("name", SERVICES)
def test_systemd_analyze_security(name, copies):
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(copies / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, f"no exposure level for {name}:\n{result.stdout}\n{result.stderr}"
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, (
        f"{name} is exposed {exposure} ({found.group(2)}), more than {MAX_EXPOSURE}; "
        "the lines with a non-zero exposure say which settings would lower it:\n"
        + "\n".join(line for line in result.stdout.splitlines() if line.startswith("✗"))
    )
