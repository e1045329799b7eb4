"""The space's and the central collector's configuration: one TOML file each, checked once.

Where a config is found: `--config PATH`, else `$SPACEKIOSK_CONFIG`, else
`/etc/spacekiosk/space.toml`. A file with a `[space]` table configures a kiosk Pi;
one with a `[central]` table configures the central collector.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spacekiosk.validation import ConfigError, Context, Invalid, Problem, build, setting

DEFAULT_PATH = Path("/etc/spacekiosk/space.toml")

# Locales the kiosk ships catalogues for, in Babel's spelling (see FIELD-NOTES: Babel).
LANGUAGES = ("en", "es", "es_CO", "el", "zh_Hant_TW", "sw", "fil", "kn", "hi")
_LANGUAGE_ALIASES = {
    "zh_tw": "zh_Hant_TW",
    "zh-tw": "zh_Hant_TW",
    "zh-hant-tw": "zh_Hant_TW",
    "zh": "zh_Hant_TW",
    "tl": "fil",
    "es-co": "es_CO",
    "es_co": "es_CO",
    "en_us": "en",
    "en-us": "en",
    "gr": "el",
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The central broker names every client after its login (use_username_as_clientid), so
# a login is also a client id. The collectors log in as "collector", "collector-2", ...:
# no space may take one of those names, or it could take a collector's place.
COLLECTOR_LOGIN = re.compile(r"^collector(-[a-z0-9][a-z0-9-]{0,21})?$")
SPACE_ID = re.compile(r"^(?!collector(-|$))[a-z0-9][a-z0-9-]{1,31}$")


def write_file(path: str | os.PathLike, text: str, mode: int) -> Path:
    """Write a file with exactly `mode`, whatever the umask, and never a moment with looser
    rights. It replaces the file whole (a file beside it, renamed over it), so a reader
    sees the old text or the new one."""
    path = Path(path)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), mode)  # a umask can take rights away, or leave too many
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def write_secret(path: str | os.PathLike, text: str) -> Path:
    """Write a secret (a password, a token, a login file): its owner's alone, mode 0600."""
    return write_file(path, text, 0o600)


# --- checks: each takes the parsed value and returns the converted one or raises Invalid ---


def is_collector_login(name: str) -> bool:
    """Whether `name` is one of the names kept for the collectors' broker logins."""
    return name == "collector" or name.startswith("collector-")


def space_id(value: str, ctx: Context) -> str:
    if is_collector_login(value):
        raise Invalid(
            f"{value!r} is kept for the central collectors' MQTT logins ('collector', "
            "'collector-2', ...); choose another id"
        )
    if not SPACE_ID.match(value):
        raise Invalid(
            f"{value!r} is not a valid space id; use 2-32 lowercase letters, digits and "
            "dashes, starting with a letter or digit (e.g. 'nairobi'). It is the MQTT "
            "username and part of every topic."
        )
    return value


def collector_login(value: str, ctx: Context) -> str:
    if not COLLECTOR_LOGIN.match(value):
        raise Invalid(
            f"{value!r} is not a collector's login; use 'collector', or 'collector-2' and so "
            "on for further collectors (each its own login, granted by the broker's ACL)"
        )
    return value


def non_empty(value: str, ctx: Context) -> str:
    if not value.strip():
        raise Invalid("must not be empty")
    return value.strip()


# What a space's status and buckets may carry (spacekiosk/protocol.py's bounds): a space name
# or an event of up to 80 characters, a PIR's fault named "motion:<location>" likewise.
SPACE_NAME_CHARS = 80
EVENT_NAME_CHARS = 80
LOCATION_CHARS = 80 - len("motion:")


def label(most: int):
    """Text shown on the collector's pages: at most `most` characters, none of them a
    control or formatting character (which the collector refuses, whole status and all)."""

    def check(value: str, ctx: Context) -> str:
        value = non_empty(value, ctx)
        if len(value) > most:
            raise Invalid(f"must be at most {most} characters, not {len(value)}")
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
            raise Invalid("must not hold a control or formatting character")
        return value

    return check


def timezone(value: str, ctx: Context) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a long name
        raise Invalid(
            f"{value!r} is not a known time zone; use an IANA name such as "
            "'Africa/Nairobi' or 'Europe/Athens' (list them with `timedatectl list-timezones`)"
        ) from None


def language(value: str, ctx: Context) -> str:
    if value in LANGUAGES:
        return value
    alias = _LANGUAGE_ALIASES.get(value.lower())
    fix = f"write {alias!r}" if alias else f"choose from {', '.join(LANGUAGES)}"
    raise Invalid(f"{value!r} is not a language the kiosk ships; {fix}")


def at_least(minimum: float, maximum: float | None = None):
    def check(value: float, ctx: Context) -> float:
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise Invalid(f"{value} is out of range; use at least {minimum}{upper}")
        return value

    return check


def gpio_pin(value: int, ctx: Context) -> int:
    if not 0 <= value <= 27:
        raise Invalid(f"{value} is not a Raspberry Pi GPIO number; use BCM numbering, 0-27")
    return value


def listen_address(value: str, ctx: Context) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    digits = port.isascii() and port.isdigit()  # not "²", which isdigit() but int() refuses
    if not sep or not host or not digits or not 0 <= int(port) <= 65535:
        raise Invalid(f"{value!r} is not HOST:PORT; write e.g. '127.0.0.1:8080' or '0.0.0.0:8080'")
    return host.strip("[]"), int(port)


def readable_file(value: Path, ctx: Context) -> Path:
    # A secret handed over by systemd's LoadCredential= (named like the file) wins: the
    # file itself can then stay readable by root alone.
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / value.name).is_file():
        value = Path(creds) / value.name
    if not ctx.secrets:
        return value
    try:
        with value.open("rb"):
            pass
    except FileNotFoundError:
        raise Invalid(f"file {str(value)!r} does not exist; create it or fix the path") from None
    except PermissionError:
        raise Invalid(
            f"file {str(value)!r} cannot be read by this user; make it readable by the "
            "service's user (and no one else, if it holds a secret)"
        ) from None
    except IsADirectoryError:
        raise Invalid(f"{str(value)!r} is a folder; give the path of a file") from None
    except OSError as exc:  # a name too long, a loop of links, ...
        raise Invalid(f"file {str(value)!r} cannot be opened ({exc.strerror})") from None
    return value


def opening_hours(value: str, ctx: Context) -> tuple[tuple[time, time], ...]:
    text = value.strip().lower()
    if text in ("", "closed"):
        return ()
    spans = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", part)
        hours = [int(g) for g in m.groups()] if m else []
        if not m or hours[0] > 23 or hours[2] > 24 or hours[1] > 59 or hours[3] > 59:
            raise Invalid(
                f"{value!r} is not opening hours; write e.g. '09:00-21:00', "
                "'10:00-14:00, 16:00-22:00' or 'closed'"
            )
        start = time(hours[0], hours[1])
        end = time(23, 59, 59) if hours[2] == 24 else time(hours[2], hours[3])
        if end <= start:
            raise Invalid(f"{part.strip()!r} ends before it starts; spans must stay within a day")
        spans.append((start, end))
    return tuple(sorted(spans))


PURPOSES = ("cowork", "event", "meeting", "other")
# What the built-in purposes are called, in English: the central pages show these, the
# kiosk its translations of the same words (kiosk/i18n.py); a space's own purposes are
# shown as they are named.
PURPOSE_LABELS = {
    "cowork": "Coworking or a project",
    "event": "An event",
    "meeting": "A meeting",
    "other": "Something else",
}


def purpose(value: str, ctx: Context) -> str:
    value = value.strip()
    if not re.fullmatch(r"[\w -]{1,32}", value):
        raise Invalid(f"{value!r} is not a purpose; use a short word such as 'cowork'")
    return value


# The private ranges a space's own network uses: who besides the kiosk's screen may
# reach the admin pages, unless the config names its own networks.
PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
)


def network(value: str, ctx: Context) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise Invalid(
            f"{value!r} is not a network; write e.g. '192.168.1.0/24' (or one address, "
            "'192.168.1.20/32')"
        ) from None


def http_url(value: str, ctx: Context) -> str:
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise Invalid(f"{value!r} is not a web address; write e.g. 'http://192.168.1.20:8080'")
    return value.rstrip("/")


def broker_address(value: str) -> tuple[str, int, bool]:
    """(host, port, tls) of "mqtts://host[:port]" (TLS, 8883) or "mqtt://host[:port]"."""
    m = re.fullmatch(r"(mqtts?)://(\[[0-9a-fA-F:]+\]|[^\s/:\[\]]+)(?::(\d{1,5}))?/?", value)
    if not m or (m[3] and not 0 < int(m[3]) <= 65535):
        raise ValueError(
            f"{value!r} is not a broker address; write e.g. 'mqtts://mqtt.example.org:8883' "
            "(TLS) or 'mqtt://192.168.1.20:1883' (plain, for a test LAN)"
        )
    tls = m[1] == "mqtts"
    return m[2].strip("[]"), int(m[3]) if m[3] else (8883 if tls else 1883), tls


def broker_url(value: str, ctx: Context) -> str:
    if value:
        try:
            broker_address(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    return value


def postgres_url(value: str, ctx: Context) -> str:
    if value and not re.match(r"^postgres(ql)?://", value):
        raise Invalid(f"{value!r} is not a PostgreSQL URL; write e.g. 'postgresql:///spacekiosk'")
    return value


def iso_date(value: str, ctx: Context) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise Invalid(f"{value!r} is not a date; write it as YYYY-MM-DD") from None


# Characters a text of paragraphs may hold beyond a label's: line breaks and tabs, and the
# joiners and soft hyphen that Kannada, Hindi and others write words with. Never a bidi
# override or isolate (they reorder what a visitor reads), nor any other control.
_TEXT_CONTROLS = {"\n", "\t", "\u200c", "\u200d", "\u00ad"}
GUIDELINES_CHARS = 4000


def paragraphs(most: int):
    """Text of a few paragraphs shown to visitors (the participation guidelines)."""

    def check(value: str, ctx: Context) -> str:
        value = value.replace("\r\n", "\n").strip()
        if not value:
            raise Invalid("must not be empty")
        if len(value) > most:
            raise Invalid(f"must be at most {most} characters, not {len(value)}")
        bad = next(
            (
                ch
                for ch in value
                if unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch not in _TEXT_CONTROLS
            ),
            None,
        )
        if bad is not None:
            raise Invalid(f"must not hold the control or formatting character U+{ord(bad):04X}")
        return value

    return check


def optional(check):
    """`check`, for a text that may also be left empty ("" = not given)."""

    def either(value: str, ctx: Context) -> str:
        return check(value, ctx) if value.strip() else ""

    return either


def pattern(regex: str, most: int, example: str):
    """A one-line text of at most `most` characters that matches `regex`."""
    compiled = re.compile(regex)

    def check(value: str, ctx: Context) -> str:
        value = value.strip()
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
            raise Invalid("must not hold a control or formatting character")
        if len(value) > most or not compiled.fullmatch(value):
            raise Invalid(f"{value[:80]!r} does not look right; write e.g. {example!r}")
        return value

    return check


def degrees(most: float):
    """A latitude (most = 90) or longitude (most = 180) in decimal degrees."""

    def check(value: float, ctx: Context) -> float:
        if not math.isfinite(value) or not -most <= value <= most:
            raise Invalid(f"{value} is not between -{most:g} and {most:g} degrees")
        return value

    return check


# --- the space's config ---


@dataclass(frozen=True, kw_only=True)
class Space:
    id: str = setting(check=space_id, doc='the space\'s id, e.g. id = "nairobi"')
    name: str = setting(check=label(SPACE_NAME_CHARS), doc="the space's name shown on the kiosk")
    timezone: ZoneInfo = setting(
        check=timezone, raw=str, doc='an IANA time zone, e.g. "Africa/Nairobi"'
    )
    languages: tuple[str, ...] = setting(check=language, doc='e.g. languages = ["sw", "en"]')
    capacity: int = setting(check=at_least(1, 10000), doc="how many people the space holds")
    # Each day's text ("09:00-21:00, 22:00-23:00") is checked into (start, end) spans.
    opening_hours: dict[str, str] = setting({}, check=opening_hours, keys=WEEKDAYS)
    url: str = setting("")
    logo: str = setting("")
    # Days the space stays closed whatever its weekday's hours say (a holiday, a move).
    closed_dates: tuple[str, ...] = setting((), check=iso_date, doc='e.g. ["2026-12-25"]')

    def hours_on(self, weekday: int) -> tuple[tuple[time, time], ...]:
        """Opening spans on a weekday (0 = Monday), in the space's local time."""
        return self.opening_hours.get(WEEKDAYS[weekday], ())

    def hours_on_date(self, day: date) -> tuple[tuple[time, time], ...]:
        """Opening spans on a date: none on one of the closed dates, else its weekday's."""
        if day.isoformat() in self.closed_dates:
            return ()
        return self.hours_on(day.weekday())


@dataclass(frozen=True, kw_only=True)
class Database:
    path: Path = setting(doc="where the space's SQLite file lives")
    # How long a writer waits for another process's transaction before giving up.
    busy_timeout_ms: int = setting(15_000, check=at_least(100, 60_000))


@dataclass(frozen=True, kw_only=True)
class Kiosk:
    listen: tuple[str, int] = setting(("127.0.0.1", 8080), check=listen_address, raw=str)
    idle_seconds: int = setting(60, check=at_least(10, 3600))
    threads: int = setting(8, check=at_least(1, 64))
    # The address phones on the space's network use; the QR code on Welcome points there.
    public_url: str = setting("", check=http_url)
    confirm_seconds: int = setting(5, check=at_least(2, 60))
    purposes: tuple[str, ...] = setting(PURPOSES, check=purpose)
    # Raise it when the participation guidelines change: returning visitors accept again.
    guidelines_version: int = setting(1, check=at_least(1, 10_000))
    # The guidelines' text in each language; a language without one shows the first
    # language's, and with none at all the kiosk's own translated text.
    guidelines: dict[str, str] = setting({}, check=paragraphs(GUIDELINES_CHARS), keys=LANGUAGES)
    # Who may reach the admin pages besides the kiosk's own screen (which always may).
    # File only: no admin page changes it.
    admin_networks: tuple[str, ...] = setting(PRIVATE_NETWORKS, check=network)


@dataclass(frozen=True, kw_only=True)
class Event:
    name: str = setting(check=label(EVENT_NAME_CHARS), doc="the event's name, shown to visitors")
    date: str = setting(check=iso_date, doc="the day, as YYYY-MM-DD")
    hours: tuple[tuple[time, time], ...] = setting(
        check=opening_hours, raw=str, doc='the time, e.g. "18:00-21:00"'
    )


@dataclass(frozen=True, kw_only=True)
class Door:
    pin: int = setting(check=gpio_pin, doc="BCM GPIO number of the reed switch")
    pull_up: bool = setting(True)
    bounce_ms: int = setting(50, check=at_least(0, 5000))
    open_alert_minutes: int = setting(15, check=at_least(1, 24 * 60))
    # Health (sensors/health.py). Open a whole day and night: a cut wire or a magnet that
    # fell off reads as open, and the occupancy estimate then never finds the space empty.
    fault_open_hours: int = setting(24, check=at_least(1, 24 * 14))
    # This many changes within 5 s is a loose wire or a magnet at the edge of its range:
    # a door takes a couple of seconds to open and shut, a bouncing contact (after the
    # debounce) can change 20 times a second.
    flicker_edges: int = setting(30, check=at_least(4, 10_000))


@dataclass(frozen=True, kw_only=True)
class Motion:
    pin: int = setting(check=gpio_pin, doc="BCM GPIO number of the PIR sensor")
    location: str = setting("main room", check=label(LOCATION_CHARS))
    pull_up: bool = setting(False)
    # Motion without a break for this long: stuck on, or aimed at a heater, fan or curtain.
    stuck_hours: int = setting(4, check=at_least(1, 24 * 14))
    # Changes within 5 s: a PIR holds its output 2-3 s after each trigger, so it makes
    # at most 3; gpiozero samples it at 10 Hz, so a noisy or floating line makes up to 50.
    flicker_edges: int = setting(15, check=at_least(4, 10_000))


@dataclass(frozen=True, kw_only=True)
class Counter:
    beam_a: int = setting(check=gpio_pin, doc="GPIO of the outer beam (A)")
    beam_b: int = setting(check=gpio_pin, doc="GPIO of the inner beam (B)")
    pull_up: bool = setting(True)
    bounce_ms: int = setting(5, check=at_least(0, 1000))
    # A beam broken this long without a break: blocked, or the pair knocked out of line.
    blocked_minutes: int = setting(5, check=at_least(1, 24 * 60))
    # Changes of one beam within 5 s: a crowd makes about 2 a second, a hand waved through
    # the beam cannot keep up 10 a second for 5 s; a failing receiver or sunlight can.
    flicker_edges: int = setting(50, check=at_least(4, 10_000))


@dataclass(frozen=True, kw_only=True)
class Sensors:
    door: Door | None = setting(None)
    motion: tuple[Motion, ...] = setting(())
    counter: Counter | None = setting(None)

    def pins(self) -> list[tuple[str, int]]:
        used = [("door", self.door.pin)] if self.door else []
        used += [(f"motion[{i}]", m.pin) for i, m in enumerate(self.motion)]
        if self.counter:
            used += [
                ("counter.beam_a", self.counter.beam_a),
                ("counter.beam_b", self.counter.beam_b),
            ]
        return used


@dataclass(frozen=True, kw_only=True)
class Mqtt:
    host: str = setting(check=non_empty, doc="the central broker's host name")
    port: int = setting(8883, check=at_least(1, 65535))
    tls: bool = setting(True)
    ca_file: Path | None = setting(None, check=readable_file)
    username: str = setting("", doc="defaults to the space id")
    password_file: Path | None = setting(None, check=readable_file)
    keepalive_seconds: int = setting(600, check=at_least(10, 65535))


LINKS = ("always-on", "metered")


def link(value: str, ctx: Context) -> str:
    if value not in LINKS:
        raise Invalid(f"must be one of {', '.join(map(repr, LINKS))}, not {value[:40]!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Sync:
    # "metered": the link is paid by the byte (a mobile SIM); the agent connects every
    # contact_every_minutes, sends, and disconnects (docs/protocol.md, "Metered links").
    # "always-on": the connection stays open, so the central page sees the space live.
    link: str = setting("always-on", check=link, doc='"always-on" or "metered"')
    contact_every_minutes: int = setting(
        1440, check=at_least(10, 7 * 1440), doc="metered: how often to connect and send"
    )
    interval_seconds: int = setting(300, check=at_least(1, 86400))
    ack_timeout_seconds: int = setting(30, check=at_least(1, 3600))
    batch_hours: int = setting(48, check=at_least(1, 1000))
    recompute_days: int = setting(7, check=at_least(1, 365))
    send_every_minutes: int = setting(
        360, check=at_least(0, 1440), doc="how often to send finished hours; 0: at once"
    )
    send_running_hour: bool = setting(
        False, doc="also send the hour still running, at each interval (costs resends)"
    )
    max_outbox_hours: int = setting(
        24 * 14, check=at_least(48, 100_000), doc="past this, old days are rolled up"
    )
    reconcile_hours: int = setting(168, check=at_least(1, 24 * 90))
    http_url: str = setting("", check=http_url, doc="HTTPS fallback: the collector's base URL")
    token_file: Path | None = setting(None, check=readable_file)
    http_after_seconds: int = setting(120, check=at_least(0, 86400))

    @property
    def metered(self) -> bool:
        return self.link == "metered"

    @property
    def every_seconds(self) -> int:
        """How long finished hours may wait on the Pi before they go: a metered link's
        contact interval, an always-on link's send_every_minutes."""
        return 60 * (self.contact_every_minutes if self.metered else self.send_every_minutes)


@dataclass(frozen=True, kw_only=True)
class Retention:
    days: int = setting(90, check=at_least(1, 3650))
    # Raw sensor events, and the visits of visitors whose names were erased, go after this
    # many days; never while the hourly counts may still need them (an hour not yet sent,
    # or one the sync agent may still recompute).
    sensor_events_days: int = setting(60, check=at_least(15, 36500))
    visits_days: int = setting(730, check=at_least(15, 36500))


def backup_folder(value: Path, ctx: Context) -> Path:
    """Where backups go. Not checked for existence here: a USB stick may be out while
    the kiosk starts; `spacekiosk backup` says so when it runs."""
    if str(value) == "/":
        raise Invalid("the root folder is not a backup folder; give e.g. /media/backup/spacekiosk")
    return value


@dataclass(frozen=True, kw_only=True)
class Backup:
    """Nightly backups of the store (`spacekiosk backup`, spacekiosk-backup.timer)."""

    # A folder that already exists; a USB stick's is common. It is never created, so a
    # stick that is not mounted fills no empty mount point on the SD card.
    folder: Path = setting(Path("/var/backups/spacekiosk"), check=backup_folder)
    keep: int = setting(14, check=at_least(1, 1000), doc="how many backups to keep")


@dataclass(frozen=True, kw_only=True)
class Notifications:
    """When the sync agent's notifier tells the space's chat (docs/notifications.md); the
    targets themselves are set on the kiosk's Notifications page."""

    # A condition (a sensor's fault, the door, the space open...) is told at most once
    # in this many minutes, however often it flaps; its latest state goes at the end.
    min_interval_minutes: int = setting(30, check=at_least(1, 24 * 60))
    # Usage data not sent for this many hours is told as a backlog.
    backlog_hours: int = setting(24, check=at_least(1, 24 * 30))
    # The store's disk this full (per cent) is told as nearly full.
    disk_full_percent: int = setting(90, check=at_least(50, 99))


@dataclass(frozen=True, kw_only=True)
class SpaceApi:
    """How to reach the space and where it is, for its SpaceAPI document (/spaceapi.json).
    Every key may be left out."""

    email: str = setting(
        "", check=optional(pattern(r"[^@\s]+@[^@\s]+\.[^@\s]+", 254, "hello@example.org"))
    )
    phone: str = setting(
        "", check=optional(pattern(r"\+[0-9][0-9 ()./-]{5,30}", 32, "+254 20 123 4567"))
    )
    matrix: str = setting(
        "", check=optional(pattern(r"[#+@!][^\s:]{1,200}:[^\s]{1,200}", 255, "#space:example.org"))
    )
    mastodon: str = setting(
        "", check=optional(pattern(r"@[^\s@]{1,100}@[^\s@]{1,200}", 255, "@space@example.social"))
    )
    address: str = setting("", check=optional(label(200)), doc="the postal address")
    lat: float | None = setting(None, check=degrees(90), doc="latitude, e.g. -1.2921")
    lon: float | None = setting(None, check=degrees(180), doc="longitude, e.g. 36.8219")


# A space's lists, bounded: each purpose and event is a label in the hourly buckets
# (protocol.MAX_LABELS per bucket), and every list is read on each page.
MAX_PURPOSES = 16
MAX_EVENTS = 1000
MAX_CLOSED_DATES = 400


@dataclass(frozen=True, kw_only=True)
class SpaceConfig:
    space: Space = setting(doc="add a [space] table with id, name, timezone, languages")
    database: Database = setting(doc="add a [database] table with path")
    mqtt: Mqtt = setting(doc="add an [mqtt] table with the central broker's host")
    kiosk: Kiosk = setting(Kiosk())
    sensors: Sensors = setting(Sensors())
    sync: Sync = setting(Sync())
    retention: Retention = setting(Retention())
    events: tuple[Event, ...] = setting(())
    spaceapi: SpaceApi = setting(SpaceApi())
    backup: Backup = setting(Backup())
    notifications: Notifications = setting(Notifications())
    source: Path = dataclasses.field(default=Path("."), metadata={"internal": True})

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.space.id


# --- the central collector's config ---


@dataclass(frozen=True, kw_only=True)
class Central:
    listen: tuple[str, int] = setting(("127.0.0.1", 8090), check=listen_address, raw=str)
    database: Path = setting(doc="where the collector's SQLite file lives")
    database_url: str = setting(
        "", check=postgres_url, doc="a postgresql:// URL: store in PostgreSQL instead"
    )
    # What the collector asks to be called. The shipped broker names every client after
    # its login instead (use_username_as_clientid): collectors that share the load
    # (`shared`) each need their own login ([mqtt] username), not just their own id.
    client_id: str = setting("collector-1", check=non_empty)
    shared: bool = setting(False, doc="share the spaces' messages with other collectors")
    secret_file: Path | None = setting(None, doc="signs the page's login cookies")
    # Read and written only by `spacekiosk space`, never by the collector, so it is not
    # checked here: the collector's user need not be able to read the broker's logins.
    mqtt_password_file: Path = setting(
        Path("/etc/mosquitto/spacekiosk.passwd"),
        doc="the broker's password file, where `spacekiosk space add` writes a space's login",
    )
    public_broker: str = setting(
        "",
        check=broker_url,
        doc='the broker as the spaces reach it, e.g. "mqtts://mqtt.example.org:8883"',
    )
    public_url: str = setting(
        "", check=http_url, doc="the collector's address as the spaces reach it (HTTPS route)"
    )
    # Behind nginx every request comes from 127.0.0.1: the login throttle would be one
    # for everybody, and the logs would name no one. Trust exactly this many proxies'
    # X-Forwarded-For (and -Proto); never more, or anyone could name their own address.
    proxies: int = setting(
        0, check=at_least(0, 3), doc="how many reverse proxies stand in front of `listen`"
    )


def apprise_url(value: str, ctx: Context) -> str:
    """An Apprise URL: a scheme of its own (json://, mailto://, tgram://...) and no space."""
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{1,30}://\S+", value):
        raise Invalid(
            f"{value[:60]!r} is not an Apprise URL; write e.g. 'json://hooks.example.org/alerts'"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class Alerts:
    """The central team's alerts (collector/alerts.py): when each fires, where it goes."""

    targets: tuple[str, ...] = setting((), check=apprise_url, doc="Apprise URLs to notify")
    silent_hours: int = setting(72, check=at_least(1, 8760), doc="no contact for this long")
    backlog_hours: int = setting(24, check=at_least(1, 8760), doc="oldest unsent hour's age")
    clock_hours: int = setting(1, check=at_least(0, 8760), doc="clock unsynchronised for")
    sensor_hours: int = setting(24, check=at_least(0, 8760), doc="a sensor faulty for")
    rejects_per_hour: int = setting(20, check=at_least(1, 10**6), doc="refused messages")
    clear_minutes: int = setting(60, check=at_least(0, 10080), doc="clear for this long")
    every_seconds: int = setting(60, check=at_least(1, 3600), doc="how often to judge")


@dataclass(frozen=True, kw_only=True)
class CentralMqtt(Mqtt):
    username: str = setting("collector", check=collector_login)


@dataclass(frozen=True, kw_only=True)
class CollectorConfig:
    central: Central = setting(doc="add a [central] table with listen and database")
    mqtt: CentralMqtt = setting(doc="add an [mqtt] table with the broker's host")
    backup: Backup = setting(Backup())
    alerts: Alerts = setting(Alerts())
    source: Path = dataclasses.field(default=Path("."), metadata={"internal": True})


Config = SpaceConfig | CollectorConfig


def find_path(explicit: str | os.PathLike | None) -> Path:
    """The config file to use: the argument, else $SPACEKIOSK_CONFIG, else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SPACEKIOSK_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load(path: str | os.PathLike | None = None, *, secrets: bool = True) -> Config:
    """Read and check a config file; raise ConfigError listing every problem.

    With `secrets=False` the secret files are not opened: the kiosk and the sensors
    never read them, and must not stay down because the sync agent's password is missing.
    """
    source = find_path(path)
    name = str(source)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            name,
            [
                Problem(
                    "",
                    "file not found; write one with "
                    "`spacekiosk init-config --pilot ID PATH`, or pass "
                    "--config PATH or set SPACEKIOSK_CONFIG",
                )
            ],
        ) from None
    except (PermissionError, IsADirectoryError) as exc:
        raise ConfigError(name, [Problem("", f"cannot read the file ({exc.strerror})")]) from None
    except UnicodeDecodeError:
        raise ConfigError(name, [Problem("", "the file is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, [Problem("", f"not valid TOML: {exc}")]) from None
    except RecursionError:  # tomllib reads nested lists and tables by recursion
        raise ConfigError(name, [Problem("", "not valid TOML here: nested too deeply")]) from None
    return from_data(data, source, secrets=secrets)


def from_data(data: dict, source: str | os.PathLike, *, secrets: bool = True) -> Config:
    """Check a config given as TOML reads it (tables as dicts), as if read from `source`
    (relative paths are taken from its folder); raise ConfigError listing every problem.
    The settings the local admins change (spacekiosk/settings.py) go through it too, so
    the database can never hold a value the file could not."""
    source = Path(source)
    name = str(source)
    ctx = Context(source.resolve().parent, secrets)
    if "space" in data:
        cls: type = SpaceConfig
    elif "central" in data:
        cls = CollectorConfig
    else:
        raise ConfigError(
            name,
            [
                Problem(
                    "",
                    "expected a [space] table (a space's kiosk) or a "
                    "[central] table (the central collector)",
                )
            ],
        )
    config = build(cls, data, ctx)
    if config is not None and isinstance(config, SpaceConfig):
        _check_space(config, ctx)
    elif cls is SpaceConfig:
        # Another table is wrong, so the whole was not built; a pin used twice is still
        # named now, not only in the run after the rest is fixed.
        _check_pins(_raw_pins(data.get("sensors")), ctx)
    if ctx.problems:
        raise ConfigError(name, ctx.problems)
    return dataclasses.replace(config, source=source.resolve())


def _check_pins(pins: list[tuple[str, int]], ctx: Context) -> None:
    seen: dict[int, str] = {}
    for where, pin in pins:
        if pin in seen:
            ctx.add(
                f"sensors.{where}",
                f"GPIO {pin} is already used by sensors.{seen[pin]}; give each sensor its own pin",
            )
        seen.setdefault(pin, where)


def _raw_pins(sensors: object) -> list[tuple[str, int]]:
    """The valid GPIO numbers a [sensors] table as read names, where Sensors.pins() names
    them; what is not a valid pin is the builder's to report."""
    if not isinstance(sensors, dict):
        return []

    def pin(table: object, key: str = "pin") -> int | None:
        value = table.get(key) if isinstance(table, dict) else None
        valid = type(value) is int and 0 <= value <= 27
        return value if valid else None

    found = [("door", pin(sensors.get("door")))]
    motion = sensors.get("motion")
    for i, m in enumerate(motion if isinstance(motion, list) else []):
        found.append((f"motion[{i}]", pin(m)))
    counter = sensors.get("counter")
    found += [(f"counter.{beam}", pin(counter, beam)) for beam in ("beam_a", "beam_b")]
    return [(where, p) for where, p in found if p is not None]


def _check_space(config: SpaceConfig, ctx: Context) -> None:
    if not config.space.languages:
        ctx.add("space.languages", 'list at least one language, e.g. ["en"]')
    for where, items, most in (
        ("space.languages", config.space.languages, len(LANGUAGES)),
        ("kiosk.purposes", config.kiosk.purposes, MAX_PURPOSES),
        ("space.closed_dates", config.space.closed_dates, MAX_CLOSED_DATES),
        ("events", config.events, MAX_EVENTS),
    ):
        if len(items) > most:
            ctx.add(where, f"lists {len(items)}; at most {most}")
        elif len(set(items)) < len(items):
            twice = next(item for i, item in enumerate(items) if item in items[:i])
            shown = twice.name if isinstance(twice, Event) else twice
            ctx.add(where, f"lists {shown!r} twice; list each once")
    if (config.spaceapi.lat is None) != (config.spaceapi.lon is None):
        ctx.add("spaceapi", "give both lat and lon, or neither")
    _check_pins(config.sensors.pins(), ctx)
    locations: set[str] = set()
    for i, motion in enumerate(config.sensors.motion):
        if motion.location in locations:
            ctx.add(
                f"sensors.motion[{i}].location",
                f"{motion.location!r} is already the "
                "location of another PIR; give each its own, e.g. 'hall' and 'workshop'",
            )
        locations.add(motion.location)
    if config.mqtt.tls is False and config.mqtt.port == 8883:
        ctx.add("mqtt.port", "8883 is the MQTT-over-TLS port; with tls = false use 1883")
    if config.sync.http_url and not re.match(r"^https?://", config.sync.http_url):
        ctx.add("sync.http_url", "must start with https:// (or http:// on a test LAN)")
    if config.sync.http_url and config.sync.token_file is None:
        ctx.add(
            "sync.token_file",
            "the HTTPS fallback needs the space's token; `spacekiosk space add` prints it",
        )
