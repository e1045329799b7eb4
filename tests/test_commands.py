"""The commands as a first-time user meets them, run without a terminal (stdin is not a
tty, as in a script, a CI job or ssh without -t): each says what to do and exits non-zero,
never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_collector_config

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
