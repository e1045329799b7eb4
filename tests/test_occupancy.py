"""People present now, and per hour: the counter with its drift corrected, sign-ins,
motion — and the SpaceAPI document and status that carry it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from conftest import ROOT, SENSORS, visitor_form, write_space_config

from kiosk import create_app, visits
from spacekiosk import config, occupancy
from spacekiosk.db import open_store, write
from spacekiosk.migrations import SPACE_MIGRATIONS
from sync.buckets import compute

ZONE = ZoneInfo("Europe/Athens")
HOURS = '\n[space.opening_hours]\nwed = "10:00-21:00"\nthu = "10:00-21:00"\n'


def at(hour: int, minute: int = 0, day: int = 25) -> float:
    """A local time on Wednesday 25 or Thursday 26 November 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=ZONE).timestamp()


@pytest.fixture
def space(tmp_path):
    toml = write_space_config(tmp_path, broker_port=1, extra=SENSORS)
    toml.write_text(toml.read_text().replace("capacity = 20\n", "capacity = 20\n" + HOURS))
    cfg = config.load(toml)
    return cfg, open_store(cfg.database.path, SPACE_MIGRATIONS)


def events(db, *rows):
    """Rows as the sensors daemon writes them: (time, sensor, kind)."""
    with write(db):
        db.conn.executemany("INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)", rows)


def test_the_counter_counts_and_never_goes_below_zero(space):
    cfg, db = space
    events(
        db,
        (at(10, 5), "counter", "entry"),
        (at(10, 6), "counter", "entry"),
        (at(10, 7), "counter", "exit"),
        (at(10, 8), "counter", "exit"),
        (at(10, 9), "counter", "exit"),
        (at(10, 10), "counter", "entry"),
    )
    now = occupancy.estimate(db, cfg, at(10, 30))
    assert (now.people, now.source) == (1, "counter")  # the extra exit did not go to -1


def test_drift_is_corrected_once_the_closed_space_is_quiet(space):
    cfg, db = space
    # Five in, three counted out: two "still inside" by the count, though all left.
    events(
        db,
        *[(at(12, i), "counter", "entry") for i in range(5)],
        *[(at(20, i), "counter", "exit") for i in range(3)],
        (at(20, 50), "door", "open"),
        (at(20, 51), "door", "close"),
        (at(21, 10), "motion:main room", "motion"),
        (at(21, 12), "motion:main room", "still"),
    )
    assert occupancy.estimate(db, cfg, at(21, 20)).people == 2
    # Door shut and nothing moved from 21:12: empty for sure at 21:42.
    assert occupancy.reset_points(db, cfg, at(9), at(23)) == [at(21, 42)]
    late = occupancy.estimate(db, cfg, at(23))
    assert (late.people, late.confidence) == (0, "high")
    # Next morning the count starts from zero.
    events(db, (at(10, 15, day=26), "counter", "entry"))
    assert occupancy.estimate(db, cfg, at(10, 30, day=26)).people == 1


def test_an_open_door_after_closing_is_not_quiet(space):
    cfg, db = space
    events(db, (at(12), "counter", "entry"), (at(20, 55), "door", "open"))
    assert occupancy.reset_points(db, cfg, at(9), at(23, 59)) == []
    assert occupancy.estimate(db, cfg, at(23, 59)).people == 1


def test_a_pir_still_seeing_motion_keeps_the_count(space):
    cfg, db = space
    events(db, (at(12), "counter", "entry"), (at(21, 5), "motion:main room", "motion"))
    assert occupancy.reset_points(db, cfg, at(9), at(23, 59)) == []


def test_without_a_counter_sign_ins_and_motion_speak(tmp_path):
    toml = write_space_config(
        tmp_path, broker_port=1, extra='[[sensors.motion]]\npin = 27\nlocation = "hall"\n'
    )
    cfg = config.load(toml)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    events(db, (at(10), "motion:hall", "motion"))
    alone = occupancy.estimate(db, cfg, at(10, 5))
    assert (alone.people, alone.source, alone.confidence) == (1, "motion", "low")
    for name in ("Ana", "Lin", "Amani"):
        visits.sign_in_new(db, visits.NewVisitor(name), "key", now=at(10, 1))
    signed = occupancy.estimate(db, cfg, at(10, 5))
    assert (signed.people, signed.source, signed.signed_in) == (3, "signins", 3)


def test_hourly_peak_and_person_minutes():
    steps = [(0, 0), (900, 2), (1800, 1), (4000, 5)]
    assert occupancy.hourly(steps, 0) == (2, 60)  # 2 people x 15 min + 1 x 30 min
    assert occupancy.hourly(steps, 3600) == (5, 273)  # (1 x 400 s + 5 x 3200 s) / 60


def test_buckets_carry_occupancy_and_occupied_minutes(space):
    cfg, db = space
    events(
        db,
        (at(11), "counter", "entry"),
        (at(11, 30), "counter", "entry"),
        (at(11, 45), "counter", "exit"),
        (at(11, 10), "motion:main room", "motion"),
        (at(11, 40), "motion:main room", "still"),
    )
    hour = int(at(11))
    bucket = compute(db, hour, hour + 3600, cfg)[hour]
    assert bucket["entries"] == 2 and bucket["exits"] == 1
    assert bucket["occupancy_peak"] == 2
    assert bucket["person_minutes"] == 30 * 1 + 15 * 2 + 15 * 1
    assert bucket["occupied_minutes"] == 30


def test_spaceapi_document_is_valid_v15_and_carries_the_estimate(space):
    cfg, db = space
    app = create_app(cfg, {"TESTING": True})
    client = app.test_client()
    client.post("/sign-in/new", data=visitor_form("Ana Pérez"))
    # A minute ago: too recent for any quiet-after-closing reset to fall in between.
    events(db, *[(time.time() - 60 + i, "counter", "entry") for i in range(4)])
    response = client.get("/spaceapi.json")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.get_json()
    schema = json.loads((ROOT / "tests" / "data" / "spaceapi-15.json").read_text())
    jsonschema.validate(document, schema)
    for key in ("api_compatibility", "space", "logo", "url", "contact"):
        assert key in document
    assert "15" in document["api_compatibility"]
    present = document["sensors"]["people_now_present"][0]
    assert present["value"] == 4 and "counter" in present["description"]
    assert isinstance(document["state"]["open"], bool)
    assert "Pérez" not in response.text  # counts only
    assert client.get(document["logo"].replace("http://localhost", "")).status_code == 200

    status = client.get("/api/v1/status").get_json()
    assert status["people"]["people"] == 4 and status["people"]["signed_in"] == 1
    assert status["people"]["source"] == "counter"
