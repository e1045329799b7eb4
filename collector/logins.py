"""The spaces' broker logins: Mosquitto's password file, the broker's reload, and the
config snippet a space pastes.

Logins are written with Debian's `mosquitto_passwd`, so the hashes are whatever the
installed broker reads. Mosquitto rereads the password file on SIGHUP (`systemctl reload
mosquitto`), and then also disconnects clients whose password no longer matches.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Where a space's secrets live on its Pi (the names the pilot configs and the sync
# unit's LoadCredential= use). Paths, not secrets.
PI_PASSWORD_FILE = "/etc/spacekiosk/mqtt-password"  # noqa: S105
PI_TOKEN_FILE = "/etc/spacekiosk/collector-token"  # noqa: S105


class LoginError(Exception):
    """The password file cannot be read or changed; the message says why and what to do."""


def new_password() -> str:
    return secrets.token_urlsafe(24)  # 192 bits, no characters a shell or TOML minds


def new_token() -> str:
    """A space's bearer token for the HTTPS route (256 bits; the store keeps its SHA-256)."""
    return secrets.token_urlsafe(32)


class PasswordFile:
    """Mosquitto's password file: one `user:hash` line per login."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def users(self) -> set[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LoginError(
                f"the broker's password file {self.path} does not exist; create it with the "
                f"collector's login first (`mosquitto_passwd -c {self.path} collector`), or "
                "point central.mqtt_password_file at the file central.conf's password_file names"
            ) from None
        except PermissionError:
            raise LoginError(
                f"cannot read {self.path}; run this as root (or as the owner of the file)"
            ) from None
        return {line.split(":", 1)[0] for line in text.splitlines() if ":" in line}

    def private(self) -> None:
        """Refuse a password file every user of the server can read: mosquitto_passwd
        keeps a file's mode, so logins written into it would be open to them too. Its
        owner and group stay the operator's: the broker must still read it."""
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o007:
            raise LoginError(
                f"{self.path} can be read by every user on this server (mode {mode:04o}); "
                f"make it the broker's alone first: chown root:mosquitto {self.path} && "
                f"chmod 0640 {self.path}"
            )

    def set(self, user: str, password: str) -> None:
        """Add the login, or change its password."""
        self.users()  # a missing or unreadable file gets its own message
        self.private()
        # The password goes in on stdin (twice, as mosquitto_passwd asks for it), not as
        # an argument like `-b` would: any user on the server can read a process's argv.
        self._run([str(self.path), user], input=f"{password}\n{password}\n")
        if user not in self.users():
            raise LoginError(f"mosquitto_passwd did not add {user!r} to {self.path}")

    def remove(self, user: str) -> bool:
        """Delete the login; False if there was none."""
        if user not in self.users():
            return False
        self.private()
        self._run(["-D", str(self.path), user])
        return True

    def _run(self, args: list[str], input: str | None = None) -> None:
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(tool).exists():
            raise LoginError("mosquitto_passwd not found; install Debian's mosquitto package")
        result = subprocess.run(
            [tool, *args], input=input, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise LoginError(f"mosquitto_passwd failed on {self.path}: {detail}")


def reload_broker(pid_file: str | os.PathLike) -> int:
    """Send SIGHUP to the broker whose pid is in `pid_file`, so it rereads its password
    file; returns the pid."""
    path = Path(pid_file)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise LoginError(f"cannot read a broker pid from {path}: {exc}") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise LoginError(f"no broker runs as pid {pid} (from {path})") from None
    except PermissionError:
        raise LoginError(f"not allowed to signal the broker (pid {pid}); run as root") from None
    return pid


@dataclass(frozen=True)
class Credentials:
    """What a space needs to reach the central side, secrets included."""

    space: str
    password: str
    token: str
    host: str
    port: int
    tls: bool
    http_url: str


def snippet(creds: Credentials) -> str:
    """The TOML a space pastes into its config (no secrets: those go into files)."""
    lines = [
        "[mqtt]",
        f'host = "{creds.host}"',
        f"port = {creds.port}",
        f"tls = {'true' if creds.tls else 'false'}",
    ]
    if creds.tls:
        lines.append(
            '# ca_file = "/etc/spacekiosk/ca.crt"  # only if the broker\'s certificate '
            "is signed by your own CA"
        )
    lines += [
        f'username = "{creds.space}"',
        f'password_file = "{PI_PASSWORD_FILE}"',
        "",
        "[sync]",
        f'http_url = "{creds.http_url}"'
        if creds.http_url
        else '# http_url = "https://collector.example.org"  # the collector, for when MQTT '
        "is blocked",
        f'token_file = "{PI_TOKEN_FILE}"',
    ]
    return "\n".join(lines)


BEGIN_SNIPPET = "# --- spacekiosk config for {space}: begin ---"
END_SNIPPET = "# --- spacekiosk config for {space}: end ---"
BEGIN_SECRETS = "# ==== SECRETS for {space}: begin (shown this once; not for the config) ===="
END_SECRETS = "# ==== SECRETS for {space}: end ===="


def instructions(creds: Credentials, verb: str, reloaded: int | None) -> str:
    """Everything the central team hands to the space, in the order to do it."""
    space = creds.space
    if reloaded is not None:
        reload = f"3. The broker (pid {reloaded}) was told to reread its password file."
    else:
        reload = (
            "3. On this server, make the broker reread its password file:\n"
            "     systemctl reload mosquitto"
        )
    old = (
        "\n   The old password stops working then (the old token already has)."
        if verb == "rotated"
        else ""
    )
    return f"""\
Space {space}: broker login and HTTPS token {verb}.

1. Paste this into the space's config (/etc/spacekiosk/space.toml) in place of its [mqtt]
   table, and set these keys in its [sync] table:

{BEGIN_SNIPPET.format(space=space)}
{snippet(creds)}
{END_SNIPPET.format(space=space)}

2. Save each secret on the space's Pi in the file of that name in /etc/spacekiosk/,
   readable by the service alone. This server keeps only hashes: if they are lost,
   run `spacekiosk space rotate {space}`.

{BEGIN_SECRETS.format(space=space)}
mqtt-password = "{creds.password}"
collector-token = "{creds.token}"
{END_SECRETS.format(space=space)}

   As root on the Pi, paste these lines, then each secret (without the quotes) at its
   silent prompt; the secrets stay out of the shell's history:
     for f in {Path(PI_PASSWORD_FILE).name} {Path(PI_TOKEN_FILE).name}; do
       install -m 0600 -o spacekiosk -g spacekiosk /dev/null /etc/spacekiosk/$f
       read -rsp "$f: " s && printf '%s\\n' "$s" > /etc/spacekiosk/$f; echo
     done; unset s

{reload}{old}
   Then on the Pi: spacekiosk check-config && systemctl restart spacekiosk-sync
"""
