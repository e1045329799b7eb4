"""The pilot spaces, and the one writer of config files: `space_toml()` writes a space's,
`central_toml()` the collector's.

`spacekiosk init-config` writes a pilot's file with every key spelled out and explained;
the demo, the tests and the benchmarks write theirs with the same function, the keys they
set and nothing else (each still explained). A key is written once, in its place: what a
caller overrides replaces the value it would have had, it is never added a second time.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from spacekiosk.config import LANGUAGES, WEEKDAYS


@dataclass(frozen=True)
class Pilot:
    id: str
    name: str
    timezone: str
    languages: tuple[str, ...]
    capacity: int
    link: str = "always-on"  # "metered": a mobile SIM billed by the byte


PILOTS = {
    p.id: p
    for p in (
        Pilot("athens", "Mozilla Community Space Athens", "Europe/Athens", ("el", "en"), 40),
        Pilot("bogota", "Mozilla Community Space Bogotá", "America/Bogota", ("es_CO", "en"), 30),
        Pilot(
            "bangalore", "Mozilla Community Space Bangalore", "Asia/Kolkata", ("en", "kn", "hi"), 50
        ),
        Pilot("madrid", "Mozilla Community Space Madrid", "Europe/Madrid", ("es", "en"), 35),
        Pilot(
            "manila", "Mozilla Community Space Manila", "Asia/Manila", ("fil", "en"), 30, "metered"
        ),
        Pilot(
            "nairobi",
            "Mozilla Community Space Nairobi",
            "Africa/Nairobi",
            ("sw", "en"),
            40,
            "metered",
        ),
        Pilot("taipei", "Mozilla Community Space Taipei", "Asia/Taipei", ("zh_Hant_TW", "en"), 45),
    )
}

DATABASE = "/var/lib/spacekiosk/space.db"  # where the spacekiosk units keep the store
CENTRAL_DATABASE = "/var/lib/spacekiosk-collector/central.db"  # the collector unit's
CENTRAL_MQTT_LOGIN_FILE = "/etc/spacekiosk/mqtt-password"  # as docs/central.md installs it
# The pilots' hours until a space sets its own.
PILOT_HOURS = {
    "mon": "10:00-21:00",
    "tue": "10:00-21:00",
    "wed": "10:00-21:00",
    "thu": "10:00-21:00",
    "fri": "10:00-22:00",
    "sat": "11:00-18:00",
    "sun": "closed",
}
# The wiring the pilots, the demo and the benchmarks share: a door contact, a PIR in the
# main room and a two-beam counter, on these BCM pins.
SENSORS: Mapping[str, Any] = {
    "door": {"pin": 17},
    "motion": [{"pin": 27, "location": "main room"}],
    "counter": {"beam_a": 22, "beam_b": 23},
}


def render(pilot: Pilot, database: str = DATABASE, broker: str = "broker.example.org") -> str:
    """A complete config file for a pilot space, every key present and explained."""
    return space_toml(
        id=pilot.id,
        name=pilot.name,
        timezone=pilot.timezone,
        languages=pilot.languages,
        capacity=pilot.capacity,
        database=database,
        opening_hours=PILOT_HOURS,
        broker=broker,
        sensors=SENSORS,
        sync={"link": pilot.link} if pilot.link != "always-on" else None,
        every_key=True,
    )


# --- what a file holds, in order, and what each key means ---


@dataclass(frozen=True)
class Key:
    """A key of a table: the lines that explain it, and with `every_key` the value it is
    written with when the caller gives none (None: only `example`, commented out)."""

    name: str
    default: Any = None
    about: str = ""
    example: str = ""


@dataclass(frozen=True)
class Table:
    """A table of the file. `note` is written above the first table that carries it,
    `about` under the header. An `optional` table is written only when given; with
    `every_key`, `example` (commented out) stands in for it."""

    path: str
    keys: tuple[Key, ...] = ()
    about: str = ""
    note: str = ""
    optional: bool = False
    example: str = ""


_HOURS = Table(
    "space.opening_hours",
    tuple(Key(day) for day in WEEKDAYS),
    about='# One line per day: "HH:MM-HH:MM", several spans with commas, or "closed".\n'
    "# Visits still open at closing time are signed out automatically.",
)
_SENSORS_NOTE = (
    "# Sensors: leave a table out if the space does not have that sensor.\n"
    "# Pins are BCM GPIO numbers."
)

SPACE_TABLES = (
    Table(
        "space",
        (
            Key(
                "id",
                about="# The space's id: lowercase letters, digits and dashes. It is also the "
                "MQTT username\n# and part of every topic, so it never changes once the space "
                "is registered.",
            ),
            Key("name"),
            Key("timezone", about="# An IANA time zone (`timedatectl list-timezones`)."),
            Key(
                "languages",
                about="# The kiosk's languages; the first is the default on the welcome "
                f"screen.\n# Shipped: {', '.join(LANGUAGES)}.",
            ),
            Key(
                "capacity",
                about="# How many people the space holds (for utilisation and the "
                "evacuation list).",
            ),
            Key("url", "", about="# Shown in the SpaceAPI document."),
            Key("logo", ""),
            Key(
                "closed_dates",
                about="# Days closed whatever the weekday's hours say (holidays).",
                example='# closed_dates = ["2026-12-25", "2027-01-01"]',
            ),
        ),
        note="# The local admins can change the space's hours, days closed, languages, "
        "purposes,\n# capacity, screen times, guidelines, retention, SpaceAPI contact and "
        "events on the\n# kiosk's Settings and Events pages; what they save is kept in "
        "the database and\n# wins over this file. `spacekiosk check-config` shows both.",
    ),
    _HOURS,
    Table(
        "database",
        (
            Key(
                "path",
                about="# The space's SQLite file; the services create it and keep its "
                "schema up to date.",
            ),
            Key("busy_timeout_ms"),
        ),
    ),
    Table(
        "kiosk",
        (
            Key(
                "listen",
                "127.0.0.1:8080",
                about="# Where the touchscreen's browser (and phones on the space's network) "
                "reach the kiosk.",
            ),
            Key(
                "idle_seconds",
                60,
                about="# Seconds without a touch before any screen goes back to Welcome and "
                "forgets its fields.",
            ),
            Key(
                "confirm_seconds",
                5,
                about='# Seconds "Welcome, Ana" stays up before the screen is ready for the '
                "next person.",
            ),
            Key("threads", 8),
            Key(
                "public_url",
                "",
                about="# The address phones on the space's network use: the QR code on "
                'Welcome points here\n# (set listen to "0.0.0.0:8080" too). Leave it empty '
                "to show no QR code.",
            ),
            Key(
                "purposes",
                ["cowork", "event", "meeting", "other"],
                about="# Why visitors come; cowork, event, meeting and other are translated, "
                "others shown as is.",
            ),
            Key(
                "guidelines_version",
                1,
                about="# Raise this when the participation guidelines change: returning "
                "visitors accept again.",
            ),
            Key(
                "guidelines",
                about="# The guidelines' text in each language (else the kiosk's own).",
                example='# guidelines = { en = "Be kind; leave the space tidier than you '
                'found it." }',
            ),
            Key(
                "admin_networks",
                about="# Who reaches the admin pages besides the kiosk's own screen: by "
                "default the\n# private ranges (10/8, 172.16/12, 192.168/16, link-local, "
                "IPv6 ULA); name yours to\n# narrow it, e.g. the space's Wi-Fi alone.",
                example='# admin_networks = ["192.168.1.0/24"]',
            ),
        ),
    ),
    Table(
        "retention",
        (
            Key(
                "days",
                90,
                about="# Days a visitor's name and e-mail are kept; then they are erased. "
                "Counts stay.",
            ),
            Key(
                "sensor_events_days",
                60,
                about="# Days raw sensor events are kept (the hourly counts keep the figures); "
                "never while\n# an hour that needs them is still to be sent.",
            ),
            Key(
                "visits_days",
                730,
                about="# Days the nameless visits of erased visitors are kept for the History "
                "page.",
            ),
        ),
    ),
    Table(
        "backup",
        (
            Key(
                "folder",
                "/var/backups/spacekiosk",
                about="# Where the nightly backups go (spacekiosk-backup.timer runs `spacekiosk "
                "backup`): a folder\n# that exists already, best on a USB stick. It is never "
                "created, so a stick that is\n# not mounted fills no empty mount point on the "
                "SD card. See docs/backups.md.",
            ),
            Key("keep", 14, about="# How many backups to keep; the oldest go first."),
        ),
    ),
    Table(
        "notifications",
        (
            Key(
                "min_interval_minutes",
                30,
                about="# Messages to the space's chat (targets are set on the admin pages' "
                "Notifications;\n# see docs/notifications.md). One condition — a sensor, the "
                "door, open or closed —\n# is told at most once in this many minutes, however "
                "often it flaps.",
            ),
            Key(
                "backlog_hours",
                24,
                about="# Usage data waiting this many hours to be sent is told as a backlog.",
            ),
            Key(
                "disk_full_percent",
                90,
                about="# The store's disk this full (per cent) is told as nearly full.",
            ),
        ),
    ),
    Table(
        "mqtt",
        (
            Key(
                "host",
                about="# The central broker. Ask the central team for the host and this "
                "space's password.",
            ),
            Key("port", 8883),
            Key("tls", True),
            Key(
                "ca_file",
                example='# ca_file = "/etc/spacekiosk/ca.crt"        '
                "# omit to use the system's CA certificates",
            ),
            Key("username", about="# username defaults to the space id."),
            Key(
                "password_file",
                about="# The password file must be readable by the spacekiosk service alone "
                "(mode 0600).",
                example='# password_file = "/etc/spacekiosk/mqtt-password"',
            ),
            Key("keepalive_seconds", 600),
        ),
    ),
    Table(
        "sync",
        (
            Key(
                "link",
                "always-on",
                about='# How the link is paid for. "metered" (a mobile SIM billed by the byte): '
                "connect every\n# contact_every_minutes, send the finished hours, disconnect: "
                'about 5 KB a day\n# (docs/protocol.md). "always-on" (broadband): the '
                "connection stays open and the\n# central page shows the space live.",
            ),
            Key(
                "contact_every_minutes",
                1440,
                about="# Metered links only: how often to connect. Each contact costs a TLS "
                "handshake.",
            ),
            Key(
                "interval_seconds",
                300,
                about="# How often hourly counts are recomputed (on the Pi; nothing is sent "
                "for this).",
            ),
            Key(
                "send_every_minutes",
                360,
                about="# Always-on links: how often finished hours are sent, together in one "
                "compressed\n# message. Longer saves bytes; 0 sends each hour as soon as it "
                "is over.",
            ),
            Key(
                "send_running_hour",
                False,
                about="# Also send the hour still running at each interval (live figures, "
                "more resends).",
            ),
            Key(
                "ack_timeout_seconds",
                30,
                about="# How long to wait for the collector's acknowledgement before sending "
                "again.",
            ),
            Key(
                "batch_hours",
                48,
                about="# Hours per message when a backlog is sent after an outage.",
            ),
            Key(
                "recompute_days",
                7,
                about="# How far back late data (a sign-out, a delayed sensor batch) can still "
                "change an hour.",
            ),
            Key(
                "max_outbox_hours",
                336,
                about="# Past this many hours waiting, old days are rolled up and sent as one "
                "bucket each.",
            ),
            Key(
                "reconcile_hours",
                168,
                about="# How often the collector is asked to compare what it holds with what "
                "was delivered.",
            ),
            Key(
                "http_url",
                "",
                about="# The HTTPS route, used when the MQTT port has been unreachable for "
                "http_after_seconds.\n# `spacekiosk space add` on the central server prints "
                "the token for token_file.",
            ),
            Key("token_file", example='# token_file = "/etc/spacekiosk/collector-token"'),
            Key("http_after_seconds", 120),
        ),
    ),
    Table(
        "spaceapi",
        (
            Key("email"),
            Key("phone"),
            Key("matrix"),
            Key("mastodon"),
            Key("address"),
            Key("lat"),
            Key("lon"),
        ),
        note="# How people reach the space, for the SpaceAPI document (/spaceapi.json).",
        optional=True,
        example='# [spaceapi]\n# email = "hello@example.org"\n# address = "1 Example '
        'Street"\n# lat = -1.2921\n# lon = 36.8219',
    ),
    Table(
        "events",
        (Key("name"), Key("date"), Key("hours")),
        note="# Community events: on the day, visitors can say they came for it.",
        optional=True,
        example='# [[events]]\n# name = "Firefox OS app day"\n# date = "2026-12-05"\n'
        '# hours = "10:00-18:00"',
    ),
    Table(
        "sensors.door",
        (
            Key("pin"),
            Key("pull_up", True),
            Key("bounce_ms", 50),
            Key(
                "open_alert_minutes",
                15,
                about="# Minutes open before the door is reported as left open (kiosk status, "
                "central status).",
            ),
            Key(
                "fault_open_hours",
                24,
                about="# Hours open before the contact itself is suspected (a cut wire reads "
                "as open).",
            ),
            Key(
                "flicker_edges",
                30,
                about="# Changes within 5 seconds that no real door makes: the contact is "
                "flickering.",
            ),
        ),
        note=_SENSORS_NOTE,
        optional=True,
    ),
    Table(
        "sensors.motion",
        (
            Key("pin"),
            Key("location", "main room"),
            Key("pull_up"),
            Key(
                "stuck_hours",
                4,
                about="# Hours of unbroken motion before the PIR is reported stuck; changes "
                "in 5 s that mean noise.",
            ),
            Key("flicker_edges", 15),
        ),
        note=_SENSORS_NOTE,
        optional=True,
    ),
    Table(
        "sensors.counter",
        (
            Key(
                "beam_a",
                about="# A is the beam on the outside of the doorway, B the one inside.",
            ),
            Key("beam_b"),
            Key("pull_up", True),
            Key("bounce_ms", 5),
            Key(
                "blocked_minutes",
                5,
                about="# Minutes a beam may stay broken before it is reported blocked; changes "
                "in 5 s that mean\n# a failing receiver or sunlight (the counter ignores both "
                "beams until they calm down).",
            ),
            Key("flicker_edges", 50),
        ),
        note=_SENSORS_NOTE,
        optional=True,
    ),
)

CENTRAL_TABLES = (
    Table(
        "central",
        (
            Key(
                "listen",
                "127.0.0.1:8090",
                about="# Where the dashboard, JSON API and CSV exports are served (put a TLS\n"
                "# proxy in front of it for anyone beyond this machine).",
            ),
            Key("database", CENTRAL_DATABASE, about="# The central SQLite store."),
            Key(
                "database_url",
                about="# A postgresql:// URL: store in PostgreSQL instead.",
                example='# database_url = "postgresql://collector@localhost/spacekiosk"',
            ),
            Key(
                "client_id",
                about="# What the collector asks the broker to call it.",
                example='# client_id = "collector-1"',
            ),
            Key(
                "shared",
                about="# Share the spaces' messages with other collectors.",
                example="# shared = false",
            ),
            Key(
                "secret_file",
                about="# Signs the page's login cookies; made on first start if left out.",
                example='# secret_file = "/etc/spacekiosk/central-secret"',
            ),
            Key(
                "mqtt_password_file",
                about="# The broker's password file: `spacekiosk space add` writes a space's\n"
                "# login there (the collector itself never reads it).",
                example='# mqtt_password_file = "/etc/mosquitto/spacekiosk.passwd"',
            ),
            Key(
                "public_broker",
                about="# The broker as the spaces reach it, for `spacekiosk space add`'s snippet.",
                example='# public_broker = "mqtts://broker.example.org:8883"',
            ),
            Key(
                "public_url",
                about="# The collector's address as the spaces reach it (the HTTPS route).",
                example='# public_url = "https://collector.example.org"',
            ),
            Key(
                "proxies",
                about="# How many reverse proxies (nginx) stand in front of `listen`: their\n"
                "# X-Forwarded-For names the caller, for the login throttle and the logs.\n"
                "# 0 when nothing is in front; never more than there are.",
                example="# proxies = 1",
            ),
        ),
    ),
    Table(
        "backup",
        (
            Key(
                "folder",
                "/var/backups/spacekiosk",
                about="# Where `spacekiosk backup --config central.toml` writes the central "
                "SQLite store's\n# backups: a folder that exists already (it is never "
                "created). With database_url,\n# back PostgreSQL up with pg_dump instead; "
                "see docs/backups.md.",
            ),
            Key("keep", 14, about="# How many backups to keep; the oldest go first."),
        ),
    ),
    Table(
        "mqtt",
        (
            Key(
                "host",
                about="# The central broker. Beside it, use its loopback-only listener (1883,\n"
                "# no TLS: the connection never leaves this host); a broker elsewhere: its\n"
                "# host name, port 8883 and tls = true.",
            ),
            Key("port"),
            Key("tls"),
            Key(
                "ca_file",
                example='# ca_file = "/etc/spacekiosk/ca.crt"        '
                "# with tls: omit to use the system's CA certificates",
            ),
            Key(
                "username",
                "collector",
                about="# The collector's login (and client id) on the broker: collector, "
                "collector-2, ...",
            ),
            Key(
                "password_file",
                CENTRAL_MQTT_LOGIN_FILE,
                about="# Its password, on the file's first line (only the collector's user may\n"
                "# read it).",
            ),
            Key("keepalive_seconds", 600),
        ),
    ),
    Table(
        "alerts",
        (
            Key(
                "targets",
                about="# Where the central team's alerts go: Apprise URLs (json://, mailto://,\n"
                "# tgram://, ...; https://github.com/caronc/apprise/wiki). None: alerts\n"
                "# show on the page and in /api/v1/spaces only.",
                example='# targets = ["json://hooks.example.org/spacekiosk"]',
            ),
            Key("silent_hours", 72, about="# A space silent (no contact) for this many hours."),
            Key("backlog_hours", 24, about="# A space whose oldest unsent hour is this old."),
            Key("clock_hours", 1, about="# A space's clock unsynchronised for this long."),
            Key("sensor_hours", 24, about="# A sensor faulty for this long."),
            Key("rejects_per_hour", 20, about="# More of a space's messages refused in an hour."),
            Key(
                "clear_minutes",
                60,
                about="# An alert clears once its condition has been gone this long (a silent\n"
                "# space's at its next contact).",
            ),
            Key("every_seconds", 60, about="# How often the collector judges and sends them."),
        ),
    ),
)


# --- the two files ---


def space_toml(
    *,
    id: str,
    name: str,
    timezone: str,
    languages: Sequence[str],
    capacity: int,
    database: str | os.PathLike,
    broker: str,
    broker_port: int | None = None,
    tls: bool | None = None,
    password_file: str | os.PathLike | None = None,
    keepalive_seconds: int | None = None,
    opening_hours: Mapping[str, str] | None = None,
    listen: str | None = None,
    sync: Mapping[str, Any] | None = None,
    sensors: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    note: str = "",
    every_key: bool = False,
) -> str:
    """A space's config file, explained line by line.

    `broker` is the MQTT host; `sync` the [sync] keys; `sensors` the [sensors] tables as
    TOML reads them (`{"door": {"pin": 17}, "motion": [{"pin": 27}]}`, see SENSORS).
    `overrides` adds or replaces keys anywhere, as TOML reads tables:
    `{"kiosk": {"threads": 4}, "events": [{...}]}`. A setting left out (None) is not
    written, so its default applies; with `every_key` it is written with the value a new
    space starts from, and the optional ones as commented-out examples: the file
    `spacekiosk init-config` writes. `note` adds lines to the comment at the top.
    """
    space: dict[str, Any] = {
        "id": id,
        "name": name,
        "timezone": timezone,
        "languages": list(languages),
        "capacity": capacity,
    }
    if opening_hours is not None:
        space["opening_hours"] = dict(opening_hours)
    mqtt = {
        "host": broker,
        "port": broker_port,
        "tls": tls,
        "password_file": password_file,
        "keepalive_seconds": keepalive_seconds,
    }
    data: dict[str, Any] = {
        "space": space,
        "database": {"path": database},
        "kiosk": {"listen": listen},
        "mqtt": mqtt,
        "sync": sync,
        "sensors": sensors,
    }
    merged = _merge(_given(data), overrides or {})
    head = [
        f"spacekiosk configuration for {name}.",
        "Check it with `spacekiosk check-config PATH`; every service refuses to start",
        "(exit code 78) until it is right. Times are local to the space's time zone.",
        *note.splitlines(),
    ]
    return _render(SPACE_TABLES, merged, head, every_key)


def central_toml(
    *,
    listen: str,
    database: str | os.PathLike,
    broker: str,
    broker_port: int | None = None,
    tls: bool | None = None,
    username: str = "collector",
    password_file: str | os.PathLike | None = None,
    database_url: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    note: str = "",
) -> str:
    """The central collector's config file: the keys given and nothing else, explained.

    `broker` is the MQTT host; `overrides` adds or replaces keys, as TOML reads tables
    (`{"central": {"shared": True}}`).
    """
    data = {
        "central": {"listen": listen, "database": database, "database_url": database_url},
        "mqtt": {
            "host": broker,
            "port": broker_port,
            "tls": tls,
            "username": username,
            "password_file": password_file,
        },
    }
    head = [
        "spacekiosk configuration for a central collector.",
        "Check it with `spacekiosk check-config PATH`; the collector refuses to start",
        "(exit code 78) until it is right.",
        *note.splitlines(),
    ]
    return _render(CENTRAL_TABLES, _merge(_given(data), overrides or {}), head, every_key=False)


def central_template(database: str = CENTRAL_DATABASE, broker: str = "localhost") -> str:
    """A complete config file for the central collector, every key present and explained
    (the optional ones as commented examples), for `spacekiosk init-config --central`."""
    head = [
        "spacekiosk configuration for a central collector.",
        "Check it with `spacekiosk check-config PATH`; the collector refuses to start",
        "(exit code 78) until it is right. Before starting it, write the collector's",
        f"broker password into {CENTRAL_MQTT_LOGIN_FILE} (docs/central.md, step 4).",
    ]
    port, tls = (1883, False) if broker in ("localhost", "127.0.0.1") else (8883, True)
    data = {
        "central": {"database": database},
        "mqtt": {"host": broker, "port": port, "tls": tls},
    }
    return _render(CENTRAL_TABLES, data, head, every_key=True)


# --- writing TOML (tomllib reads it but does not write it) ---


def _given(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without the keys left out (None), nor the tables that leaves empty."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            value = _given(value)
        if value is not None and value != {}:
            out[key] = value
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, table by table: a key of both takes `over`'s value."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(map(_is_table, value))


def _plain(table: Mapping[str, Any]) -> dict[str, Any]:
    """A table's own keys, without the tables inside it."""
    return {k: v for k, v in table.items() if not _is_table(v) and not _is_table_list(v)}


def _tables(data: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """(path, whether an item of an array of tables, its keys) of every table in `data`
    that holds keys, parents before their children. A table inside an array's item is
    written inline."""
    if path and (plain := _plain(data)):
        yield path, False, plain
    for key, value in data.items():
        if _is_table(value):
            yield from _tables(value, (*path, key))
        elif _is_table_list(value):
            for item in value:
                yield (*path, key), True, dict(item)


def _render(
    template: Sequence[Table], data: Mapping[str, Any], head: list[str], every_key: bool
) -> str:
    """The file: `head` as a comment, then the template's tables in its order, each key in
    its place with its comment; then what the template does not know, as given."""
    top = _plain(data)
    given: dict[tuple[str, ...], list[tuple[bool, dict]]] = {}
    for path, array, plain in _tables(data):
        given.setdefault(path, []).append((array, plain))
    blocks = ["\n".join("# " + line if line else "#" for line in head)]
    if top:  # keys outside every table belong above the first
        blocks[0] += "\n" + "\n".join(_line(k, v) for k, v in top.items())
    notes: set[str] = set()

    def block(table: Table | None, path: tuple[str, ...], array: bool, values: dict) -> str:
        lines = []
        if table and table.note and table.note not in notes:
            notes.add(table.note)
            lines.append(table.note)
        name = ".".join(map(_key, path))
        lines.append(f"[[{name}]]" if array else f"[{name}]")
        if table and table.about:
            lines.append(table.about)
        for key in table.keys if table else ():
            if key.name in values:
                lines += [key.about] if key.about else []
                lines.append(_line(key.name, values.pop(key.name)))
            elif every_key:
                lines += [key.about] if key.about else []
                if key.default is not None:
                    lines.append(_line(key.name, key.default))
                elif key.example:
                    lines.append(key.example)
        lines += [_line(k, v) for k, v in values.items()]  # the ones the template lacks
        return "\n".join(lines)

    for table in template:
        path = tuple(table.path.split("."))
        if path in given:
            blocks += [block(table, path, array, values) for array, values in given.pop(path)]
        elif every_key and not table.optional:
            blocks.append(block(table, path, False, {}))
        elif every_key and table.example:
            blocks.append("\n".join(filter(None, (table.note, table.example))))
    for path, items in given.items():  # tables the template does not know, as given
        blocks += [block(None, path, array, values) for array, values in items]
    return "\n\n".join(blocks) + "\n"


def _line(key: str, value: Any) -> str:
    return f"{_key(key)} = {_value(value)}"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str | os.PathLike):
        return _string(os.fspath(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__} {value!r}")
