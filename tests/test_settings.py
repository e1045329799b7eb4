"""The settings store: what the local admins change, layered over the config file, checked
by the file's own checker, seen by every reader at its next look, and shown by
`spacekiosk check-config`. Real SQLite files, the real checker, the real command."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import ROOT, SENSORS, write_space_config
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from spacekiosk import config, hours, pilots, settings
from spacekiosk.db import connect, open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

# Every kind of setting a file can hold, so that building the file's config back into
# the dict TOML reads (as_toml) is shown to lose nothing.
EVERY_KIND = (
    SENSORS
    + """
[space.opening_hours]
mon = "09:00-13:00, 14:00-24:00"
sun = "closed"

[kiosk]
listen = "[::1]:8181"
guidelines = { en = "Be kind.\\n\\nAsk first.", el = "Να είστε ευγενικοί." }
guidelines_version = 3

[retention]
days = 30

[spaceapi]
email = "hello@example.org"
lat = -1.2921
lon = 36.8219

[[events]]
name = "Repair café"
date = "2026-12-01"
hours = "18:00-21:00"
"""
)


@pytest.fixture
def space(tmp_path):
    """A space's config (the file's), and its store opened as a service opens it."""
    toml = write_space_config(tmp_path, broker_port=1, extra=EVERY_KIND)
    base = config.load(toml)
    db = open_store(base.database.path, SPACE_MIGRATIONS)
    yield base, db
    db.close()


def stored(db) -> dict:
    return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM settings").fetchall()}


@pytest.mark.parametrize("pilot", sorted(pilots.PILOTS))
def test_every_pilot_config_is_built_back_into_what_its_file_says(tmp_path, pilot):
    path = tmp_path / "space.toml"
    path.write_text(pilots.render(pilots.PILOTS[pilot], database=str(tmp_path / "space.db")))
    base = config.load(path, secrets=False)
    assert config.from_data(settings.as_toml(base), base.source, secrets=False) == base


def test_a_file_with_every_kind_of_setting_is_built_back_whole(space):
    base, _db = space
    assert config.from_data(settings.as_toml(base), base.source) == base
    assert settings.as_toml(base)["space"]["opening_hours"]["mon"] == "09:00-13:00, 14:00-24:00"


def test_a_saved_setting_is_in_effect_over_the_file_and_the_file_is_not_written(space):
    base, db = space
    before = base.source.read_bytes()
    assert settings.effective(db, base) is base  # nothing saved yet: the file's, as it is
    changed = settings.save(db, base, {"space.capacity": 33}, "ada")
    assert changed == [settings.Changed("space.capacity", 20, 33)]
    now = settings.effective(db, base)
    assert now.space.capacity == 33
    assert now.space.opening_hours == base.space.opening_hours  # the rest is the file's
    assert now.sensors == base.sensors and now.mqtt == base.mqtt
    assert base.source.read_bytes() == before
    row = db.execute("SELECT changed_by, changed_at FROM settings").fetchone()
    assert row[0] == "ada" and abs(row[1] - datetime.now(UTC).timestamp()) < 60


def test_another_process_save_is_seen_at_the_next_read_and_reads_are_cached(space):
    base, db = space
    other = connect(base.database.path)  # as the kiosk's admin page would write
    try:
        first = settings.effective(db, base)
        settings.save(other, base, {"space.opening_hours": {"mon": "10:00-12:00"}}, "ada")
        second = settings.effective(db, base)
        assert second is not first
        assert second.space.hours_on(0) == hours_of("10:00-12:00")
        assert second.space.hours_on(6) == ()  # a day left out of the table: closed
        assert settings.effective(db, base) is second  # unchanged version: no rebuild
    finally:
        other.close()


def hours_of(text: str):
    return config.opening_hours(text, None)


def test_the_version_moves_only_when_something_changed(space):
    base, db = space

    def version():
        return db.execute("SELECT version FROM settings_version").fetchone()[0]

    assert version() == 0
    settings.save(db, base, {"kiosk.idle_seconds": 30}, "ada")
    assert version() == 1
    assert settings.save(db, base, {"kiosk.idle_seconds": 30}, "bo") == []
    assert version() == 1
    assert db.execute("SELECT changed_by FROM settings").fetchone()[0] == "ada"


def test_saving_the_files_value_gives_the_setting_back_to_the_file(space):
    base, db = space
    settings.save(db, base, {"space.capacity": 33, "retention.days": 45}, "ada")
    changed = settings.save(db, base, {"space.capacity": 20}, "ada")
    assert changed == [settings.Changed("space.capacity", 33, 20)]
    assert stored(db) == {"retention.days": 45}


def test_values_are_stored_as_the_checker_writes_them(space):
    base, db = space
    settings.save(
        db,
        base,
        {
            "space.opening_hours": {"tue": " 14:00-16:00 ,09:00-10:00 ", "wed": "CLOSED"},
            "space.closed_dates": ["2026-12-25"],
        },
        "ada",
    )
    assert stored(db)["space.opening_hours"] == {"tue": "09:00-10:00, 14:00-16:00", "wed": "closed"}


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"space.capacity": 0}, "space.capacity"),
        ({"space.capacity": "lots"}, "space.capacity"),
        ({"space.opening_hours": {"mon": "25:00-26:00"}}, "space.opening_hours.mon"),
        ({"space.opening_hours": {"monday": "09:00-10:00"}}, "space.opening_hours.monday"),
        ({"space.languages": []}, "space.languages"),
        ({"space.languages": ["en", "klingon"]}, "space.languages[1]"),
        ({"space.languages": ["en", "en"]}, "space.languages"),
        ({"kiosk.purposes": ["a/b"]}, "kiosk.purposes[0]"),
        ({"kiosk.purposes": [f"p{i}" for i in range(17)]}, "kiosk.purposes"),
        ({"kiosk.idle_seconds": 5}, "kiosk.idle_seconds"),
        ({"kiosk.guidelines": {"en": "Be kind\u202e."}}, "kiosk.guidelines.en"),
        ({"kiosk.guidelines": {"xx": "Hello"}}, "kiosk.guidelines.xx"),
        ({"kiosk.guidelines_version": 10_001}, "kiosk.guidelines_version"),
        ({"retention.days": 0}, "retention.days"),
        ({"spaceapi.lat": float("nan")}, "spaceapi.lat"),
        ({"spaceapi.lon": None}, "spaceapi"),  # lat without lon
        ({"spaceapi.email": "not an address"}, "spaceapi.email"),
        ({"space.closed_dates": ["2026-02-30"]}, "space.closed_dates[0]"),
        (
            {"events": [{"name": "", "date": "2026-12-01", "hours": "18:00-21:00"}]},
            "events[0].name",
        ),
        ({"events": [{"name": "Meetup", "date": "tomorrow"}]}, "events[0].date"),
        ({"mqtt.host": "evil.example"}, "mqtt.host"),
        ({"database.path": "/tmp/elsewhere.db"}, "database.path"),
        ({"sensors.door.pin": 4}, "sensors.door.pin"),
    ],
)
def test_a_refused_change_names_its_problem_and_saves_nothing(space, changes, where):
    base, db = space
    settings.save(db, base, {"kiosk.confirm_seconds": 7}, "ada")
    before = (stored(db), db.execute("SELECT * FROM settings_version").fetchone())
    with pytest.raises(settings.SettingsError) as refused:
        settings.save(db, base, {"space.capacity": 21, **changes}, "mallory")
    assert where in [p.path for p in refused.value.problems], refused.value.problems
    assert all(p.message for p in refused.value.problems)
    assert (stored(db), db.execute("SELECT * FROM settings_version").fetchone()) == before
    assert settings.effective(db, base).space.capacity == 20


def test_a_stored_value_that_no_longer_passes_is_left_out_and_said(space, capsys):
    base, db = space
    settings.save(db, base, {"space.capacity": 33, "kiosk.idle_seconds": 30}, "ada")
    # As if a newer release checked capacity more strictly than the one that stored it.
    db.execute("UPDATE settings SET value = '0' WHERE key = 'space.capacity'")
    db.execute("UPDATE settings_version SET version = version + 1, stamp = 'moved'")
    layered = settings.read(db, base)
    assert layered.config.space.capacity == 20  # the file's
    assert layered.config.kiosk.idle_seconds == 30  # the others still apply
    assert [p.path for p in layered.ignored["space.capacity"]] == ["space.capacity"]
    lines = settings.report(base.database.path, base)
    assert any("left out, the file's value applies: space.capacity" in line for line in lines)
    # The next save keeps to what passes.
    settings.save(db, base, {"kiosk.confirm_seconds": 9}, "ada")
    assert settings.effective(db, base).kiosk.confirm_seconds == 9


def test_a_day_closed_is_closed_whatever_its_weekday_says(space):
    base, db = space
    monday = datetime(2026, 11, 30, 11, 0, tzinfo=base.space.timezone).timestamp()
    assert hours.state(base.space, monday).is_open  # Mondays 09:00-13:00, 14:00-24:00
    settings.save(db, base, {"space.closed_dates": ["2026-11-30"]}, "ada")
    now = settings.effective(db, base)
    assert not hours.state(now.space, monday).is_open
    # Mondays are its only open days: it opens again next Monday.
    assert hours.state(now.space, monday).change_at.date().isoformat() == "2026-12-07"


def test_todays_event_comes_from_the_settings_in_effect(space):
    base, db = space
    day = datetime(2026, 12, 3, 17, 0, tzinfo=base.space.timezone)
    assert hours.todays_event(base, day.timestamp()) is None
    events = [
        {"name": "Morning class", "date": "2026-12-03", "hours": "09:00-11:00"},
        {"name": "Hack night", "date": "2026-12-03", "hours": "18:00-21:00"},
    ]
    settings.save(db, base, {"events": events}, "ada")
    now = settings.effective(db, base)
    assert hours.todays_event(now, day.timestamp()).name == "Hack night"  # on next
    assert [e.name for e in hours.upcoming(now, day.timestamp())] == ["Morning class", "Hack night"]


def test_check_config_shows_what_the_admins_changed_on_top_of_the_file(space):
    base, db = space
    command = [sys.executable, "-m", "spacekiosk", "check-config", str(base.source)]
    before = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert before.returncode == 0, before.stderr
    assert "no settings changed on the admin pages; the file's are in effect" in before.stdout
    settings.save(db, base, {"space.capacity": 33, "kiosk.guidelines_version": 4}, "ada")
    after = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    assert lines[0].startswith(f"{base.source}: OK")
    assert "settings version 1" in lines[1]
    at = lines.index("  space.capacity = 33")
    assert lines[at + 1].startswith("      by ada, ") and lines[at + 1].endswith("the file: 20")
    assert "  kiosk.guidelines_version = 4" in lines


def test_check_config_says_when_there_is_no_database_yet(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1)
    out = subprocess.run(
        [sys.executable, "-m", "spacekiosk", "check-config", str(toml)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "no database yet; the file's settings are in effect" in out.stdout


def test_a_store_from_before_the_settings_is_read_as_the_files(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1)
    base = config.load(toml)
    db = open_store(base.database.path, SPACE_MIGRATIONS[:8])
    try:
        assert settings.effective(db, base) is base
    finally:
        db.close()


# --- anything at all, saved: refused with problems, or stored within the checker's bounds ---

TEXT = st.text(max_size=60) | st.sampled_from(["", "closed", "09:00-21:00", "24:00-25:00", "en"])
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# Values near the checker's bounds, on both sides, so that many saves go through.
CLOCK = st.builds("{:02d}:{:02d}".format, st.integers(0, 25), st.sampled_from([0, 30, 59, 60]))
SPANS = st.lists(st.builds("{}-{}".format, CLOCK, CLOCK), min_size=1, max_size=3).map(", ".join)
HOURS = SPANS | st.just("closed") | TEXT
NUMBER = st.integers(-2, 11_000) | st.sampled_from([0, 1, 2, 10, 60, 3650, 10_000, 10_001])
WORDS = st.from_regex(r"[\w -]{1,34}", fullmatch=True) | TEXT
PLAUSIBLE = {
    "space.opening_hours": st.dictionaries(st.sampled_from((*config.WEEKDAYS, "xyz")), HOURS),
    "space.closed_dates": st.lists(st.dates().map(str) | TEXT, max_size=5),
    "space.languages": st.lists(st.sampled_from((*config.LANGUAGES, "zh", "")), max_size=5),
    "kiosk.purposes": st.lists(WORDS, max_size=18),
    "kiosk.guidelines": st.dictionaries(
        st.sampled_from((*config.LANGUAGES, "xx")), st.text(max_size=300) | TEXT, max_size=3
    ),
    "spaceapi.lat": st.none() | st.floats(-100, 100) | st.floats(),
    "spaceapi.lon": st.none() | st.floats(-200, 200) | st.floats(),
    "spaceapi.email": st.emails() | TEXT,
    "events": st.lists(
        st.fixed_dictionaries(
            {"name": WORDS, "date": st.dates().map(str) | TEXT, "hours": SPANS | TEXT}
        ),
        max_size=3,
    ),
    **{
        key: NUMBER
        for key in settings.EDITABLE
        if key.endswith(("capacity", "_seconds", "days", "version"))
    },
}
ONE_CHANGE = st.sampled_from(sorted(PLAUSIBLE)).flatmap(
    lambda key: PLAUSIBLE[key].map(lambda value: {key: value})
)
CHANGES = (
    st.dictionaries(
        st.sampled_from([*settings.EDITABLE, "mqtt.host", "space.id", "nonsense"]),
        JSONISH,
        max_size=4,
    )
    | st.fixed_dictionaries({}, optional=PLAUSIBLE)
    | ONE_CHANGE  # most often one setting at a time, as the pages save them
    | ONE_CHANGE
    | ONE_CHANGE
)


@pytest.fixture(scope="module")
def shared_space(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-settings")
    toml = write_space_config(folder, broker_port=1, extra=EVERY_KIND)
    base = config.load(toml)
    db = open_store(base.database.path, SPACE_MIGRATIONS)
    yield base, db
    db.close()


@hypothesis_settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=CHANGES)
def test_whatever_is_saved_the_store_holds_only_what_the_file_could(shared_space, changes):
    base, db = shared_space
    try:
        changed = settings.save(db, base, changes, "hypothesis")
        event(f"saved, {'changing something' if changed else 'changing nothing'}")
    except settings.SettingsError as exc:
        event("refused")
        assert exc.problems and all(p.message for p in exc.problems)
    layered = settings.read(db, base)
    assert layered.ignored == {}  # every stored value passes the file's checker
    for key, value in stored(db).items():
        assert key in settings.EDITABLE
        assert settings.value_at(settings.as_toml(layered.config), key) == value
    # And the config in effect is one the file could have been.
    assert config.from_data(settings.as_toml(layered.config), base.source) == layered.config


def test_the_json_in_the_store_is_checked_by_sqlite_too(space):
    _base, db = space
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO settings VALUES ('space.capacity', 'NaN', 0, 'x')")
