"""The pilot spaces, and the commented config file `spacekiosk init-config` writes for one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pilot:
    id: str
    name: str
    timezone: str
    languages: tuple[str, ...]
    capacity: int


PILOTS = {
    p.id: p
    for p in (
        Pilot("athens", "Mozilla Community Space Athens", "Europe/Athens", ("el", "en"), 40),
        Pilot("bogota", "Mozilla Community Space Bogotá", "America/Bogota", ("es_CO", "en"), 30),
        Pilot(
            "bangalore", "Mozilla Community Space Bangalore", "Asia/Kolkata", ("en", "kn", "hi"), 50
        ),
        Pilot("madrid", "Mozilla Community Space Madrid", "Europe/Madrid", ("es", "en"), 35),
        Pilot("manila", "Mozilla Community Space Manila", "Asia/Manila", ("fil", "en"), 30),
        Pilot("nairobi", "Mozilla Community Space Nairobi", "Africa/Nairobi", ("sw", "en"), 40),
        Pilot("taipei", "Mozilla Community Space Taipei", "Asia/Taipei", ("zh_Hant_TW", "en"), 45),
    )
}


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(
    pilot: Pilot, database: str = "/var/lib/spacekiosk/space.db", broker: str = "broker.example.org"
) -> str:
    """A complete config file for a space, every key present and explained."""
    langs = ", ".join(_toml_str(lang) for lang in pilot.languages)
    return f"""\
# spacekiosk configuration for {pilot.name}.
# Check it with `spacekiosk check-config PATH`; every service refuses to start
# (exit code 78) until it is right. Times are local to the space's time zone.

[space]
# The space's id: lowercase letters, digits and dashes. It is also the MQTT username
# and part of every topic, so it never changes once the space is registered.
id = {_toml_str(pilot.id)}
name = {_toml_str(pilot.name)}
# An IANA time zone (`timedatectl list-timezones`).
timezone = {_toml_str(pilot.timezone)}
# The kiosk's languages; the first is the default on the welcome screen.
# Shipped: en, es, es_CO, el, zh_Hant_TW, sw, fil, kn, hi.
languages = [{langs}]
# How many people the space holds (for utilisation and the evacuation list).
capacity = {pilot.capacity}
# Shown in the SpaceAPI document.
url = ""
logo = ""

[space.opening_hours]
# One line per day: "HH:MM-HH:MM", several spans with commas, or "closed".
# Visits still open at closing time are signed out automatically.
mon = "10:00-21:00"
tue = "10:00-21:00"
wed = "10:00-21:00"
thu = "10:00-21:00"
fri = "10:00-22:00"
sat = "11:00-18:00"
sun = "closed"

[database]
# The space's SQLite file; the services create it and keep its schema up to date.
path = {_toml_str(database)}

[kiosk]
# Where the touchscreen's browser (and phones on the space's network) reach the kiosk.
listen = "127.0.0.1:8080"
# Seconds without a touch before any screen goes back to Welcome and forgets its fields.
idle_seconds = 60
# Seconds "Welcome, Ana" stays up before the screen is ready for the next person.
confirm_seconds = 5
threads = 8
# The address phones on the space's network use: the QR code on Welcome points here
# (set listen to "0.0.0.0:8080" too). Leave it empty to show no QR code.
public_url = ""
# Why visitors come; cowork, event, meeting and other are translated, others shown as is.
purposes = ["cowork", "event", "meeting", "other"]
# Raise this when the participation guidelines change: returning visitors accept again.
guidelines_version = 1

[retention]
# Days a visitor's name and e-mail are kept; then they are erased. Counts stay.
days = 90

[mqtt]
# The central broker. Ask the central team for the host and this space's password.
host = {_toml_str(broker)}
port = 8883
tls = true
# ca_file = "/etc/spacekiosk/ca.crt"        # omit to use the system's CA certificates
# username defaults to the space id.
# The password file must be readable by the spacekiosk service alone (mode 0600).
# password_file = "/etc/spacekiosk/mqtt-password"
keepalive_seconds = 600

[sync]
# How often hourly counts are recomputed (on the Pi; nothing is sent for this).
interval_seconds = 300
# How often finished hours are sent, together in one compressed message. Longer saves
# bytes on a metered link; 0 sends each hour as soon as it is over.
send_every_minutes = 360
# Also send the hour still running at each interval (live figures, more resends).
send_running_hour = false
# How long to wait for the collector's acknowledgement before sending again.
ack_timeout_seconds = 30
# Hours per message when a backlog is sent after an outage.
batch_hours = 48
# How far back late data (a sign-out, a delayed sensor batch) can still change an hour.
recompute_days = 7
# Past this many hours waiting, old days are rolled up and sent as one bucket each.
max_outbox_hours = 336
# How often the collector is asked to compare what it holds with what was delivered.
reconcile_hours = 168
# The HTTPS route, used when the MQTT port has been unreachable for http_after_seconds.
# `spacekiosk space add` on the central server prints the token for token_file.
http_url = ""
# token_file = "/etc/spacekiosk/collector-token"
http_after_seconds = 120

# Community events: on the day, visitors can say they came for it.
# [[events]]
# name = "Firefox OS app day"
# date = "2026-12-05"
# hours = "10:00-18:00"

# Sensors: leave a table out if the space does not have that sensor.
# Pins are BCM GPIO numbers.
[sensors.door]
pin = 17
pull_up = true
bounce_ms = 50
# Minutes open before the door is reported as left open (kiosk status, central status).
open_alert_minutes = 15
# Hours open before the contact itself is suspected (a cut wire reads as open).
fault_open_hours = 24
# Changes within 5 seconds that no real door makes: the contact is flickering.
flicker_edges = 30

[[sensors.motion]]
pin = 27
location = "main room"
# Hours of unbroken motion before the PIR is reported stuck; changes in 5 s that mean noise.
stuck_hours = 4
flicker_edges = 15

[sensors.counter]
# A is the beam on the outside of the doorway, B the one inside.
beam_a = 22
beam_b = 23
pull_up = true
bounce_ms = 5
# Minutes a beam may stay broken before it is reported blocked; changes in 5 s that mean
# a failing receiver or sunlight (the counter ignores both beams until they calm down).
blocked_minutes = 5
flicker_edges = 50
"""
