"""How long each admin page takes with one month and with three years of history.

    .venv/bin/python bench/admin.py [--turns 7] [--years 3]

Two space databases are built in the same run, the same way: 60 visits a day (a fifth
by people who never came before), each with its door, counter and motion events (about
1,370 sensor events a day: 1.5 million over three years), and the sync agent's hourly
buckets for every hour with anything in it. One holds the last 30 days, the other the
last `--years` years. A logged-in admin asks each page of each (Now, history for a
month and for a year, health, visitors: those the app has), `--turns` times; the
median is reported, and the ratio big/small. Goal: within 1.5x, and under 150 ms.

History for a year is the page whose reading grows with the history: in the one-month
database its year holds a month of visits, in the big one twelve (and as many in the
year before, which it is compared with). Every read is an index range over that year
(migration m011), so it grows with the visits in the span, never with the whole table.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spacekiosk import config, pilots  # noqa: E402
from spacekiosk.db import open_store, write  # noqa: E402
from spacekiosk.migrations import SPACE_MIGRATIONS  # noqa: E402

ZONE = "Europe/Athens"
OPEN = "10:00-22:00"
VISITS_PER_DAY = 60
NEW_SHARE = 0.2
PURPOSES = ("cowork", "event", "meeting", "other")
# Motion and stillness a PIR reports through an open day, to make the day's events up to
# about 1,370 (1.5 million in three years) beside each visit's door and counter events.
MOTION_PAIRS = 505


def write_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.toml"
    path.write_text(
        pilots.space_toml(
            id="bench",
            name="Benchmark Space",
            timezone=ZONE,
            languages=["en"],
            capacity=40,
            database=folder / "space.db",
            opening_hours={day: OPEN for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
            broker="127.0.0.1",
            broker_port=1,
            tls=False,
            sensors=pilots.SENSORS,
        )
    )
    return path


def build(folder: Path, days: int, now: float, seed: int = 13) -> config.SpaceConfig:
    """A space whose database holds `days` days of history up to `now`, written in one
    transaction with executemany."""
    cfg = config.load(write_config(folder))
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    today = datetime.fromtimestamp(now, zone).date()
    visitors, visits, events = [], [], []
    people = 0
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        opens = datetime.combine(day, datetime.min.time(), zone).timestamp() + 10 * 3600
        _day(rng, opens, now, visitors, visits, events, people)
        people = len(visitors)
    buckets = _buckets(visits, events, now)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="OFF")
    with write(db):
        db.conn.executemany(
            "INSERT INTO visitors (id, name, name_key, created_at, handle) VALUES (?, ?, ?, ?, ?)",
            visitors,
        )
        db.conn.executemany(
            "INSERT INTO visits (visitor_id, signed_in_at, signed_out_at, purpose, event, "
            "closed_by, handle) VALUES (?, ?, ?, ?, ?, ?, ?)",
            visits,
        )
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)", sorted(events)
        )
        db.conn.executemany(
            "INSERT INTO buckets (hour_start, version, counts, computed_at, delivered_version) "
            "VALUES (?, 1, ?, ?, 1)",
            [(hour, json.dumps(counts, sort_keys=True), now) for hour, counts in buckets],
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    db.close()
    return cfg


def _day(rng, opens: float, now: float, visitors, visits, events, known: int) -> None:
    closes = opens + 12 * 3600
    event = "Repair café" if datetime.fromtimestamp(opens).weekday() == 3 else None
    for _ in range(VISITS_PER_DAY):
        start = opens + rng.uniform(0, 11 * 3600)
        if start > now:
            continue
        if not known or rng.random() < NEW_SHARE:
            visitor = len(visitors) + 1
            visitors.append(
                (visitor, f"Visitor {visitor}", f"visitor {visitor}", start, secrets.token_hex(12))
            )
        else:  # the regulars come most
            visitor = min(int(rng.paretovariate(1.2)), known)
            visitor = known - visitor + 1 if rng.random() < 0.5 else rng.randint(1, known)
        end = min(start + rng.uniform(1800, 4 * 3600), closes)
        left = end if end <= now else None
        purpose = "event" if event and rng.random() < 0.5 else rng.choice(PURPOSES)
        visits.append(
            (visitor, start, left, purpose, event if purpose == "event" else None,
             "visitor" if left else None, secrets.token_hex(12))
        )  # fmt: skip
        for at, sensor, kind in (
            (start - 5, "door", "open"),
            (start - 3, "counter", "entry"),
            (start, "door", "close"),
            (end, "door", "open"),
            (end + 2, "counter", "exit"),
            (end + 5, "door", "close"),
        ):
            if at <= now:
                events.append((at, sensor, kind))
    step = (closes - opens) / MOTION_PAIRS
    for i in range(MOTION_PAIRS):
        at = opens + i * step
        if at + 20 <= now:
            events += [(at, "motion:main room", "motion"), (at + 20, "motion:main room", "still")]


def _buckets(visits, events, now: float) -> list[tuple[int, dict]]:
    """Each hour's counts as the sync agent keeps them (those the pages read)."""
    hours: dict[int, dict] = defaultdict(lambda: defaultdict(int))
    last = int(now // 3600 * 3600)
    for _visitor, start, end, *_ in visits:
        hour = int(start // 3600 * 3600)
        if hour < last:
            hours[hour]["signins"] += 1
        end = end or now
        at = start
        while at < end:
            hour = int(at // 3600 * 3600)
            edge = min(hour + 3600, end)
            if hour < last:
                hours[hour]["person_minutes"] += round((edge - at) / 60)
                hours[hour]["occupancy_peak"] += 1  # an upper bound: enough for timing
            at = edge
    for at, _sensor, _kind in events:
        hour = int(at // 3600 * 3600)
        if hour < last:
            hours[hour]["open_minutes"] = 60
    return sorted((hour, dict(counts)) for hour, counts in hours.items())


ADMIN, PASSWORD, PIN = "bench", "a long bench password", "135790"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pages(app, today: date) -> list[tuple[str, str]]:
    """(name, path) of each admin page this kiosk has, as an admin opens it."""
    found = []
    month = f"start={today - timedelta(days=29)}&end={today}"
    year = f"start={today - timedelta(days=364)}&end={today}"
    for endpoint, name, path in (
        ("admin.now", "Now", "/admin/"),
        ("admin.history", "History, a month", f"/admin/history?{month}"),
        ("admin.history", "History, a year", f"/admin/history?{year}"),
        ("admin.health", "Health", "/admin/health"),
        ("admin.visitors", "Visitors", "/admin/visitors"),
    ):
        if endpoint in app.view_functions:
            found.append((name, path))
    return found


def logged_in(cfg: config.SpaceConfig):
    """The kiosk app for `cfg`, and a test client logged in as a local admin."""
    from kiosk import admins, create_app

    app = create_app(cfg)
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    try:
        admins.add(db, ADMIN, PASSWORD, PIN)
    finally:
        db.close()
    client = app.test_client()
    token = CSRF.search(client.get("/admin/login").get_data(as_text=True))[1]
    answer = client.post(
        "/admin/login", data={"name": ADMIN, "password": PASSWORD, "csrf_token": token}
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
    return app, client


def timed(client, path: str, turns: int) -> float:
    """The median time, in ms, of `turns` requests for `path` (after one to warm up)."""
    took = []
    for turn in range(turns + 1):
        started = time.perf_counter()
        answer = client.get(path)
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, (path, answer.status_code)
        if turn:
            took.append(elapsed * 1000)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--years", type=int, default=3)
    args = parser.parse_args()
    now = time.time()
    today = datetime.fromtimestamp(now, ZoneInfo(ZONE)).date()
    sizes = (("one month", 30), (f"{args.years} years", args.years * 365))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, days in sizes:
            started = time.perf_counter()
            cfg = build(Path(tmp) / name.replace(" ", "-"), days, now)
            db = open_store(cfg.database.path, SPACE_MIGRATIONS)
            counts = [
                db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("visits", "sensor_events", "buckets")
            ]
            db.close()
            print(
                f"{name}: {counts[0]:,} visits, {counts[1]:,} sensor events, "
                f"{counts[2]:,} hourly buckets (built in {time.perf_counter() - started:.1f} s)"
            )
            app, client = logged_in(cfg)
            try:
                for page, path in pages(app, today):
                    results.setdefault(page, {})[name] = timed(client, path, args.turns)
            finally:
                app.extensions["writer"].close()
    small, big = (name for name, _ in sizes)
    print(f"\n{'page':<20} {small:>12} {big:>12} {'ratio':>7}   goal: within 1.5x, under 150 ms")
    for page, times in results.items():
        ratio = times[big] / times[small]
        verdict = "ok" if ratio <= 1.5 and times[big] < 150 else "MISSED"
        print(
            f"{page:<20} {times[small]:>9.1f} ms {times[big]:>9.1f} ms {ratio:>6.2f}x   {verdict}"
        )


if __name__ == "__main__":
    main()
