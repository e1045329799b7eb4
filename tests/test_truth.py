"""The truth test: a scripted week at a space, played through the real kiosk (its HTTP
routes), the real sensors (gpiozero mock pins), the real sync agent (its own process,
walked through the week on a clock the test moves), a real Mosquitto behind a proxy that
cuts the link for two days, and the real collector with its SQLite store. Every figure
the central page, the reports, the API and the kiosk's status show is then held to what
tests/oracle.py computes from the script alone.

The week ends a day before the test runs, so the collector, whose clock is the real one,
takes every hour of it; the agent is then walked on to the real time, and the figures
are read at that time: the hours since the week (the link up, the opening hours) count
as well.
"""

from __future__ import annotations

import ast
import csv
import io
import itertools
import json
import re
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import oracle
import pytest
import requests
from conftest import (
    ROOT,
    SENSORS,
    SPACE,
    Service,
    api_get,
    log_in,
    summarise,
    visitor_form,
    wait_until,
    write_space_config,
)
from gpiozero.pins.mock import MockFactory
from tcpproxy import TcpProxy

from kiosk import create_app, visits
from sensors.daemon import EventWriter, Sensors
from spacekiosk import config
from spacekiosk.clock import Watch
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS

HOUR = 3600
DAY = 86400
STEPCLOCK = ROOT / "tests" / "stepclock.py"
DOOR, PIR, BEAM_A, BEAM_B = 17, 27, 22, 23


def test_the_oracle_shares_no_code_with_the_project():
    """The oracle counts from the script alone: it imports only the standard library."""
    tree = ast.parse((ROOT / "tests" / "oracle.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported, "no imports found: the check is broken"
    assert not imported & {"spacekiosk", "kiosk", "sensors", "sync", "collector", "conftest"}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_spaceapi_lastchange_is_this_mornings_opening(tmp_path):
    """SpaceAPI's `lastchange` for a space that opened this morning is this morning, not
    last night's closing (the truth test found it a day behind)."""
    from kiosk.status import _last_change

    week = "[space.opening_hours]\n" + "".join(f'{d} = "10:00-20:00"\n' for d in oracle.WEEKDAYS)
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=week))
    zone = cfg.space.timezone
    noon = datetime(2026, 11, 29, 12, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, noon) == datetime(2026, 11, 29, 10, tzinfo=zone).timestamp()
    night = datetime(2026, 11, 29, 23, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, night) == datetime(2026, 11, 29, 20, tzinfo=zone).timestamp()
    early = datetime(2026, 11, 29, 9, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, early) == datetime(2026, 11, 28, 20, tzinfo=zone).timestamp()


def test_people_still_there_at_closing_keep_the_count(tmp_path):
    """An evening event that runs past closing: the PIR has seen motion since before
    closing and goes on seeing it, so the space is not empty 30 minutes after closing
    and the count must not start again from zero (the truth test found person-minutes
    lost: the PIR's state at closing was taken as still)."""
    from spacekiosk import occupancy
    from spacekiosk.db import write

    hours = "[space.opening_hours]\n" + "".join(f'{d} = "10:00-20:00"\n' for d in oracle.WEEKDAYS)
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=hours + SENSORS))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    zone = cfg.space.timezone

    def at(hour, minute=0):
        return datetime(2026, 11, 25, hour, minute, tzinfo=zone).timestamp()

    with write(db):
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)",
            [(at(17), "counter", "entry"), (at(17, 1), "counter", "entry"),
             (at(17, 5), "motion:main room", "motion"),  # and on, past closing
             (at(20, 40), "motion:main room", "still"),
             (at(20, 41), "door", "open"), (at(20, 41), "counter", "exit"),
             (at(20, 42), "counter", "exit"), (at(20, 42), "door", "close")],
        )  # fmt: skip
    assert occupancy.estimate(db, cfg, at(20, 35)).people == 2
    assert occupancy.reset_points(db, cfg, at(19), at(23)) == [at(21, 12)]
    steps = occupancy.counter_series(db, cfg, at(20), at(21))
    assert occupancy.between(steps, at(20), at(21)) == (2, 41 * 2 + 1)

    # A PIR stuck in motion since noon, reported at fault, does not keep the count for ever.
    def next_day(hour, minute=0):
        return at(hour, minute) + 86400

    with write(db):
        db.conn.executemany(
            "INSERT INTO sensor_events (at, sensor, kind) VALUES (?, ?, ?)",
            [(next_day(11), "counter", "entry"), (next_day(12), "motion:main room", "motion"),
             (next_day(16), "motion:main room", "fault")],
        )  # fmt: skip
    assert occupancy.reset_points(db, cfg, next_day(19), next_day(23)) == [next_day(20, 30)]
    db.close()


def test_an_agent_stopped_for_longer_than_it_recomputes_still_counts_every_hour(tmp_path):
    """The sync agent stopped (a broken password file, say) while the kiosk went on: once
    it runs again it counts every hour since its newest stored one, not only the last
    `sync.recompute_days` (the hours before were never counted, and never would be)."""
    from sync import outbox

    hours = "[space.opening_hours]\n" + "".join(f'{d} = "10:00-20:00"\n' for d in oracle.WEEKDAYS)
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=hours))
    db = open_store(cfg.database.path, SPACE_MIGRATIONS)
    t0 = datetime(2026, 11, 2, 9, tzinfo=cfg.space.timezone).timestamp()
    for at, name in ((t0, "Ana Before"), (t0 + 2 * DAY, "Bo Meanwhile")):
        visit = visits.sign_in_new(db, visits.NewVisitor(name), "pin-key", now=at + 60)
        visits.sign_out(db, visit.id, now=at + 1200)
    outbox.refresh(db, cfg, now=t0 + 2 * HOUR)  # the agent's last run before it stopped
    assert cfg.sync.recompute_days < 10
    outbox.refresh(db, cfg, now=t0 + 10 * DAY)  # ten days later
    signins = db.execute(
        "SELECT hour_start, json_extract(counts, '$.signins') FROM buckets "
        "WHERE json_extract(counts, '$.signins') > 0 ORDER BY hour_start"
    ).fetchall()
    assert signins == [(int(t0), 1), (int(t0 + 2 * DAY), 1)]
    # And the opening hours of the days it was stopped count too (docs/figures.md).
    (open_minutes,) = db.execute(
        "SELECT sum(json_extract(counts, '$.open_minutes')) FROM buckets"
    ).fetchone()
    assert open_minutes == 10 * 10 * 60  # ten days open ten hours
    db.close()


# --- the space's own clock, which the test holds and moves ---


class Clock:
    """The Pi's wall clock (the true time plus its error) and its monotonic clock; both
    stand still until the test moves them."""

    def __init__(self, true: float):
        self.true, self.error, self.mono = true, 0.0, 1000.0

    def wall(self) -> float:
        return self.true + self.error

    def monotonic(self) -> float:
        return self.mono

    def to(self, at: float) -> None:
        assert at >= self.true, "the script goes forward"
        self.mono += at - self.true
        self.true = at


def space_toml(script: oracle.Script) -> str:
    """The script's opening hours and event as the space's config says them."""
    lines = ["[space.opening_hours]"]
    for day in oracle.WEEKDAYS:
        spans = script.hours[day]
        text = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in spans) if spans else "closed"
        lines.append(f'{day} = "{text}"')
    for name, date, start, end in script.events:
        lines += ["[[events]]", f'name = "{name}"', f'date = "{date}"']
        lines.append(f'hours = "{start:%H:%M}-{end:%H:%M}"')
    return "\n".join(lines) + "\n" + SENSORS


class Space:
    """The Pi's side in this process: the kiosk's app and the sensors on mock pins,
    both on the test's clock, and a timesyncd folder of the test's own."""

    def __init__(self, cfg, clock: Clock, timesync: Path):
        self.cfg, self.clock, self.timesync = cfg, clock, timesync
        # The kiosk's housekeeping and the sensors daemon are processes of their own on
        # the Pi, each with its own connection to the store.
        self.db = open_store(cfg.database.path, SPACE_MIGRATIONS)
        self.sensors_db = open_store(cfg.database.path, SPACE_MIGRATIONS, synchronous="NORMAL")
        self.factory = MockFactory()
        self.ticks = itertools.count()
        self.writer = self.sensors = self.kiosk = None
        self.visit_floor = 0
        self.boot()
        self.factory.pin(DOOR).drive_low()  # the pull-up leaves a mock pin open: shut it

    def pace(self) -> float:
        """The sensors' monotonic clock: the Pi's, and a walking pace between edges."""
        return self.clock.monotonic() + next(self.ticks) * 0.05

    def boot(self) -> None:
        """Start (again) the kiosk and the sensors, each with a Watch of its own on the
        clock. The sensors' pins stay as they are: a mock pin's pull-up would read a shut
        door as open on a new device, where a real reed switch holds it shut."""
        self.watch, sensors_watch = (
            Watch(wall=self.clock.wall, monotonic=self.clock.monotonic, timesync=self.timesync)
            for _ in range(2)
        )
        self.kiosk = create_app(self.cfg, {"TESTING": True, "CLOCK": self.watch}).test_client()
        self.visit_floor = self.db.execute("SELECT coalesce(max(id), 0) FROM visits").fetchone()[0]
        if self.sensors is None:
            self.writer = EventWriter(self.sensors_db, sensors_watch)
            self.writer.start()
            self.sensors = Sensors(self.cfg, self.writer, pin_factory=self.factory,
                                   clock=self.pace, store=self.sensors_db)  # fmt: skip
            self.sensors.__enter__()
            return
        # The daemon started again: its writer's times come from the new Watch, and only
        # its own rows are its to correct (EventWriter.after_id).
        self.writer.stop()
        fresh = EventWriter(self.sensors_db, sensors_watch)
        self.writer.__dict__.update({k: fresh.__dict__[k] for k in ("clock_watch", "after_id")})
        self.writer.__dict__.update(
            {k: fresh.__dict__[k] for k in ("queue", "_stopping", "thread")}
        )
        self.writer.start()

    def clock_set(self) -> None:
        """timesyncd has set the clock: the kiosk and the sensors move what they took."""
        fixed = visits.correct_clock(self.db, self.watch, self.visit_floor)
        assert fixed is not None and fixed[1] > 0, "no visit was taken on the late clock"
        self.writer.check_clock()

    def close(self) -> None:
        self.sensors.__exit__(None, None, None)
        self.writer.stop()
        self.factory.reset()
        self.db.close()
        self.sensors_db.close()

    # --- what happens at the door ---

    def play(self, act: oracle.Act, pins: dict[str, str]) -> None:
        # The kiosk's housekeeping, which runs every minute: visits left open when the
        # space closed are signed out at closing time.
        visits.close_at_closing(self.db, self.cfg.space, now=self.watch.now()[0])
        pin = self.factory.pin
        if act.kind == "closed":
            (still_in,) = self.db.execute(
                "SELECT count(*) FROM visits v JOIN visitors p ON p.id = v.visitor_id "
                "WHERE p.name = ? AND v.signed_out_at IS NULL",
                [act.who],
            ).fetchone()
            assert still_in == 0, f"{act.who} was not signed out at closing"
        elif act.kind == "door_open":
            pin(DOOR).drive_high()
        elif act.kind == "door_close":
            pin(DOOR).drive_low()
        elif act.kind in ("entry", "exit"):
            first, second = (BEAM_A, BEAM_B) if act.kind == "entry" else (BEAM_B, BEAM_A)
            for p, level in ((first, 0), (second, 0), (first, 1), (second, 1)):
                (pin(p).drive_low if level == 0 else pin(p).drive_high)()
        elif act.kind in ("motion", "still"):
            (pin(PIR).drive_high if act.kind == "motion" else pin(PIR).drive_low)()
            name = next(n for n in self.sensors.current if n.startswith("motion"))
            # The PIR is sampled on a thread of its own: the event is stamped when seen.
            wait_until(lambda: self.sensors.recorded.get(name) == act.kind, timeout=10,
                       interval=0.01, what=f"the PIR's {act.kind}")  # fmt: skip
            with self.sensors._lock:  # the stamp is taken under it
                pass
        elif act.kind == "new":
            extra = {"purpose": act.purpose or ""} | ({"event": "yes"} if act.event else {})
            form = visitor_form(act.who, pins[act.who], **extra)
            answer = self.kiosk.post("/sign-in/new", data=form)
            assert answer.status_code == 201, answer.text
        elif act.kind == "returning":
            first, last = act.who.split()
            found = self.kiosk.get("/sign-in/matches", query_string={"q": first[:2]}).json
            (match,) = [m for m in found if m["label"].startswith(f"{first} {last[0]}")]
            form = {"pin": pins[act.who], "request_id": f"r{act.at}"}
            form |= {"purpose": act.purpose or ""} | ({"event": "yes"} if act.event else {})
            answer = self.kiosk.post(match["url"], data=form)
            assert answer.status_code == 201, answer.text
        elif act.kind == "out":
            page = self.kiosk.get("/sign-out").text
            handles = dict(
                (label.strip(), handle)
                for handle, label in re.findall(
                    r'action="/sign-out/([^"]+)".*?<button type="submit">([^<]+)</button>',
                    page,
                    re.S,
                )
            )
            answer = self.kiosk.post(f"/sign-out/{handles[visits.short_name(act.who)]}")
            assert answer.status_code == 200, answer.text
        else:
            raise AssertionError(act.kind)


def play_week(space: Space, script: oracle.Script) -> None:
    booted, set_at, behind = script.late
    late = "boot"
    for act in script.acts:
        if late == "boot" and act.at >= booted:
            # The Pi restarts with its clock behind, and no time server heard yet.
            space.clock.to(booted)
            (space.timesync / "synchronized").unlink()
            space.clock.error = -behind
            space.boot()
            late = "set"
        if late == "set" and act.at >= set_at:
            space.clock.to(set_at)
            space.clock.error = 0.0
            (space.timesync / "synchronized").touch()
            space.clock_set()
            late = "done"
        space.clock.to(act.at)
        space.play(act, script.pins)


# --- the sync agent, walked through the week ---


class Agent(Service):
    """`spacekiosk sync` on tests/stepclock.py: its clocks are off by what the test writes."""

    def __init__(self, toml: Path, clock_file: Path, log: Path):
        self.args, self.log, self.clock_file = ["sync"], log, clock_file
        self.at = time.time() + float(clock_file.read_text())
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(STEPCLOCK),
                    str(clock_file),
                    "-v",
                    "sync",
                    "--config",
                    str(toml),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def set(self, at: float) -> None:
        """The agent's clock reads `at` now, and runs on from there."""
        assert at >= self.at, "the agent's clock only goes forward"
        self.at = at
        moved = self.clock_file.with_suffix(".new")
        moved.write_text(repr(at - time.time()))
        moved.replace(self.clock_file)  # never half written: the agent reads it any time


def walk(agent: Agent, db, script: oracle.Script, until: float, step: float = 12 * HOUR):
    """Move the agent's clock to `until` in steps, waiting at each for the agent to have
    stored every hour that holds anything up to there."""
    at = agent.at
    while at < until:
        at = min(at + step, until)
        agent.set(at)
        truth = oracle.hourly(script, at)
        if not truth:
            continue
        last = max(truth)
        wait_until(
            lambda last=last: (db.execute("SELECT max(hour_start) FROM buckets").fetchone()[0]
                               or 0) >= last,
            timeout=30,
            what=f"the agent's hours up to {oracle._utc(last)}",
        )  # fmt: skip


def sync_state(db, key: str):
    row = db.execute("SELECT value FROM sync_state WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


# --- reading the pages ---


class Tables(HTMLParser):
    """Every table of a page (by its aria-label) as rows of cell texts, and the report's
    key figures (each `.figure`: its label and value)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: dict[str, str] = {}
        self._table: list | None = None
        self._row: list | None = None
        self._cell: list | None = None
        self._span: tuple[str, list] | None = None
        self._figure: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("aria-label") or f"#{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "div" and "figure" in (a.get("class") or "").split():
            self._figure = {}
        elif tag == "span" and self._figure is not None and a.get("class") in ("value", "label"):
            self._span = (a["class"], [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "span" and self._span is not None:
            kind, text = self._span
            self._figure[kind] = " ".join("".join(text).split())
            self._span = None
        elif tag == "div" and self._figure is not None and "label" in self._figure:
            self.figures[self._figure["label"]] = self._figure.get("value", "")
            self._figure = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._span is not None:
            self._span[1].append(data)


def row_by(table: list[list[str]], first: str) -> dict[str, str]:
    """The row whose first cell is `first`, by the header's names."""
    header = table[0]
    (row,) = [r for r in table[1:] if r and r[0] == first]
    return dict(zip(header, row, strict=False))


# The collector's display of a figure, written here the way a reader sees it.
def pct(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.1%}" if 0 < v < 0.01 else f"{v:.0%}"


def dec(v: float | None, places: int = 1) -> str:
    return "—" if v is None else f"{v:,.{places}f}"


def money(v: float | None, currency: str | None) -> str:
    return "—" if v is None else f"{v:,.2f} {currency}"


def frac(v: float | None, places: int = 4) -> str:
    return "" if v is None else f"{v:.{places}f}"


# --- the test ---


@pytest.fixture
def week_script() -> oracle.Script:
    """The week of the script: across the turn of a month, ended before yesterday."""
    return oracle.week(oracle.week_start(datetime.now(ZoneInfo("Europe/Athens")).date()))


def test_every_figure_of_a_week_equals_the_truth(
    tmp_path, broker, collector, services, monkeypatch, week_script
):
    script = week_script
    started = time.monotonic()
    folder = tmp_path / "space"
    cfg = config.load(write_space_config(folder, broker_port=broker.port, extra=space_toml(script)))
    timesync = tmp_path / "timesync"
    timesync.mkdir()
    (timesync / "synchronized").touch()
    clock = Clock(script.start)
    space = Space(cfg, clock, timesync)
    try:
        # The week at the door, on the Pi's clock: the kiosk also reads time.time()
        # (today's event), so in this process that is the Pi's clock too.
        with monkeypatch.context() as m:
            m.setattr(time, "time", clock.wall)
            play_week(space, script)
        played = time.monotonic() - started

        # The agent, from the week's first moment, through a link that is cut for two days.
        with TcpProxy(broker.port) as proxy:
            toml = write_space_config(folder, broker_port=proxy.port, extra=space_toml(script))
            db = sqlite3.connect(cfg.database.path, timeout=30)
            clock_file = tmp_path / "agent-clock"
            clock_file.write_text(repr(script.start - time.time()))
            agent = Agent(toml, clock_file, tmp_path / "sync-agent.log")
            services.started.append(agent)  # stopped (and checked) at the end
            wait_until(lambda: db.execute("SELECT count(*) FROM link_log").fetchone()[0],
                       what="the agent's first connection")  # fmt: skip
            (_, down_at), (up_at, _) = script.link
            walk(agent, db, script, down_at)
            proxy.block()
            wait_until(lambda: sync_state(db, "broker") == "unreachable", what="the cut")
            walk(agent, db, script, up_at)
            proxy.unblock()
            wait_until(
                lambda: db.execute("SELECT count(*) FROM link_log WHERE start >= ?",
                                   [up_at]).fetchone()[0],
                timeout=60, what="the agent back on the link",
            )  # fmt: skip
            walk(agent, db, script, script.local(7, "00:00"))
            # Then the quiet weeks since, a few days at a step (a longer step would make
            # the agent roll whole days up: see test_delivery.py).
            walk(agent, db, script, time.time() - 60, step=3 * DAY)
            agent.set(time.time())  # and from now on, the real time
            walked = time.monotonic() - started - played

            # Someone comes in now, while the test reads the figures.
            space.clock.to(time.time())
            for kind in ("door_open", "entry", "door_close", "new"):
                act = oracle.Act(space.clock.true, kind, "Ivy Nowak", "cowork")
                space.play(act, {"Ivy Nowak": "9999"})
                script.live.append(act)
            wait_until(lambda: db.execute("SELECT count(*) FROM sensor_events WHERE at >= ?",
                                          [space.clock.true]).fetchone()[0] == 3,
                       what="the sensors' writer to commit the live crossing")  # fmt: skip

            other_space_sends(collector, tmp_path / "central" / "central.db", script)
            session = log_in(collector)
            ledger = check_everything(collector, session, space, script, db)
    finally:
        space.close()
    took = time.monotonic() - started
    section = "truth test: figures read, the oracle's and the project's"
    summarise(section, f"the week played in {played:.1f} s, walked in {walked:.1f} s, "
              f"{took:.1f} s in all; {len(ledger.rows)} figures read, "
              f"{len(ledger.wrong())} different from the oracle")  # fmt: skip
    months = months_of(script_truth(script))
    for period in months + sorted({oracle.quarter(m) for m in months}):
        for where in (
            f"/reports/{SPACE}?period={period}",
            f"/reports?period={period} (All spaces)",
        ):
            summarise(section, f"{where}: figure, truth, shown", ledger.table(where))
    for where in ("kiosk /api/v1/status", "kiosk /spaceapi.json"):
        summarise(section, f"{where}: figure, truth, shown", ledger.table(where))
    wrong = ledger.wrong()
    assert not wrong, f"{len(wrong)} figure(s) differ from the truth:\n" + "\n".join(wrong)


def check_everything(collector: str, session, space: Space, script, db) -> Ledger:
    """Wait for the collector to hold every hour that is over, then read every figure.
    An hour may end while they are read: then read them all again, at the new hour."""
    for _attempt in range(3):
        now = time.time()
        truth = oracle.hourly(script, now)
        try:
            wait_until(lambda truth=truth: held(collector) == truth, timeout=45,
                       what="every hour at the collector")  # fmt: skip
        except AssertionError:
            if oracle.over(time.time()) != oracle.over(now):
                continue
            got = held(collector)
            assert got == truth, "\n".join(differences(got, truth))
        enter_cost(collector, session, script)
        other = oracle.other_hours(script)
        ledger = Ledger()
        visits = {"here": oracle.sign_ins(script, now), "other": oracle.other_visits(script)}
        check_api(ledger, collector, truth, other, now, visits)
        check_reports(ledger, collector, session, script, truth, other, now)
        check_dashboard(ledger, collector, session, script, truth, other)
        check_kiosk(ledger, space, script)
        if oracle.over(time.time()) == oracle.over(now):
            return ledger
    raise AssertionError("three hours ended while the figures were read")


class Ledger:
    """Every figure read, with the truth's value beside the project's; all are checked
    at the end, so a failure lists every figure that differs, not the first."""

    def __init__(self):
        self.rows: list[tuple[str, str, object, object]] = []

    def check(self, where: str, figure: str, truth: object, shown: object) -> None:
        self.rows.append((where, figure, truth, shown))

    def wrong(self) -> list[str]:
        return [f"{w}: {f}: truth {t!r}, shown {s!r}" for w, f, t, s in self.rows if t != s]

    def table(self, where: str) -> str:
        return "\n".join(f"  {f:<28} {t!s:>14} {s!s:>14}" for w, f, t, s in self.rows
                         if w == where)  # fmt: skip


def differences(got: dict[int, dict], truth: dict[int, dict]) -> list[str]:
    """Each count of each hour where the collector and the truth differ."""
    out = []
    for h in sorted(set(got) | set(truth)):
        g, t = got.get(h, {}), truth.get(h, {})
        for name in sorted(set(g) | set(t)):
            if g.get(name) != t.get(name):
                out.append(f"{oracle._utc(h):%Y-%m-%d %H:%M}Z {name}: "
                           f"collector {g.get(name)}, truth {t.get(name)}")  # fmt: skip
    return out


def held(collector: str) -> dict[int, dict]:
    """The collector's stored hours of the space, as {start: counts}."""
    answer = api_get(collector, "api/v1/usage", space=SPACE)
    if answer.status_code != 200:
        return {}
    out = {}
    for bucket in answer.json()["buckets"]:
        start = int(datetime.fromisoformat(bucket.pop("start").replace("Z", "+00:00")).timestamp())
        bucket.pop("version")
        assert bucket.pop("hours", 1) == 1, "no day was rolled up"
        out[start] = {k: v for k, v in bucket.items() if v}
    return out


def enter_cost(collector: str, session, script) -> None:
    for month, (amount, currency) in script.costs.items():
        page = session.get(collector + f"spaces/{SPACE}", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        answer = session.post(
            collector + f"spaces/{SPACE}/cost",
            data={"month": month, "amount": f"{amount:.2f}", "currency": currency,
                  "csrf_token": csrf},
            timeout=10, allow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, answer.text


def script_truth(script) -> dict[int, dict]:
    return oracle.hourly(script, time.time())


def months_of(truth: dict[int, dict]) -> list[str]:
    return sorted({oracle._utc(h).strftime("%Y-%m") for h in truth})


def other_space_sends(collector: str, central_db: Path, script) -> None:
    """A second space delivers its hours over HTTPS, and its status with its capacity."""
    from collector import store
    from spacekiosk import protocol
    from spacekiosk.db import connect

    token = "t0k3n-" + "o" * 40
    db = connect(central_db)
    store.set_token(db, oracle.OTHER["id"], token)
    db.conn.close()
    auth = {"Authorization": f"Bearer {token}"}
    buckets = [protocol.Bucket(h, 1, c) for h, c in oracle.other_hours(script).items()]
    batch = protocol.usage_message(oracle.OTHER["id"], buckets)
    answer = requests.post(collector + "api/v1/ingest", data=batch, headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    about = {k: oracle.OTHER[k] for k in ("name", "capacity")} | {"timezone": oracle.OTHER["zone"]}
    status = protocol.status_message(online=True, backlog=0, about=about)
    answer = requests.post(collector + "api/v1/status", data=status, headers=auth, timeout=10)
    assert answer.status_code == 200, answer.text


def check_api(
    ledger: Ledger, collector: str, truth: dict, other: dict, now: float, visits: dict
) -> None:
    for granularity in ("hour", "day", "week", "month"):
        for space in (SPACE, None):
            hours = truth if space else oracle.merged(truth, other)
            # Each space's different people in each period, from who signed in there.
            came = [visits["here"]] if space else [visits["here"], visits["other"]]
            expected = oracle.periods(hours, granularity, now, came)
            params = {"granularity": granularity} | ({"space": space} if space else {})
            where = f"/api/v1/usage?granularity={granularity}" + (
                f"&space={space}" if space else ""
            )
            got = api_get(collector, "api/v1/usage", **params).json()["periods"]
            ledger.check(where, "periods", [p["start"] for p in expected],
                         [p["start"] for p in got])  # fmt: skip
            for g, e in zip(got, expected, strict=False):
                for name, value in e.items():
                    if name != "start" and (value or name in g):
                        ledger.check(where, f"{e['start']} {name}", value, g.get(name))
            # A span given by `from` and `to`: only its hours, in whole or cut periods.
            since, until = min(truth) + 5 * HOUR, min(truth) + 4 * DAY + 7 * HOUR
            cut = oracle.periods({h: c for h, c in hours.items() if since <= h < until},
                                 granularity, now, came, (since, until))  # fmt: skip
            span = {"from": oracle._utc(since).isoformat(), "to": oracle._utc(until).isoformat()}
            got = api_get(collector, "api/v1/usage", **params, **span).json()["periods"]
            ledger.check(where + "&from=&to=", "periods", cut, got)
            text = api_get(collector, "api/v1/usage.csv", **params).text
            rows = list(csv.DictReader(io.StringIO(text)))
            ledger.check(where + "&format=csv", "rows", len(expected), len(rows))
            for row, e in zip(rows, expected, strict=False):
                at = f"{e['start']} "
                ledger.check(where + "&format=csv", at + "start", e["start"], row["start"])
                ledger.check(where + "&format=csv", at + "hours", str(e["hours"]), row["hours"])
                for name in oracle.COUNTS:
                    ledger.check(where + "&format=csv", at + name, str(e[name]), row[name])
                for kind, column in (("by_purpose", "purpose"), ("by_event", "event")):
                    for label, n in e[kind].items():
                        ledger.check(where + "&format=csv", f"{at}{column}:{label}", str(n),
                                     row.get(f"{column}:{label}"))  # fmt: skip


def check_reports(ledger: Ledger, collector: str, session, script, truth, other, now) -> None:
    months = months_of(truth)
    here = oracle.Reporting(
        truth, script.capacity, script.costs, "Test Space", oracle.sign_ins(script, now)
    )
    there = oracle.Reporting(
        other, oracle.OTHER["capacity"], {}, oracle.OTHER["name"], oracle.other_visits(script)
    )
    for month in months + sorted({oracle.quarter(m) for m in months}):
        f = oracle.figures(script, truth, month, now)
        rows = {
            "Test Space": f,
            "Other Space": oracle.together([there], month, now),
            "All spaces": oracle.together([here, there], month, now),
        }
        # The table, for the space and for all spaces (one space: the same figures).
        page = Tables(session.get(collector + f"reports?period={month}", timeout=10).text)
        table = next(t for t in page.tables.values() if t and t[0][:2] == ["Space", "Visits"])
        for name, f in rows.items():
            where = f"/reports?period={month} ({name})"
            shown = {k.rstrip("0123456789"): v for k, v in row_by(table, name).items()}
            events = f"{f.events}" + (f" ({f.event_signins})" if f.event_signins else "")
            for figure, expected in (
                ("Visits", f"{f.visits:,}"),
                ("Unique visitors", f"{f.unique_visitors:,}"),
                ("New", f"{f.new_visitors:,}"),
                ("Returning", f"{f.returning_visitors:,}"),
                ("Events held", events),
                ("Utilisation", pct(f.utilisation)),
                # All spaces: the busiest space's peak, named, over its own capacity.
                ("Peak", str(f.peak) + (f" at {f.peak_space}" if f.peak_space else "")),
                (
                    "Peak ÷ capacity",
                    pct(f.peak_ratio)
                    + {"Test Space": " of 20", "Other Space": " of 50"}.get(
                        name, f" of {f.peak_capacity}"
                    ),
                ),
                ("Average occupancy", dec(f.average_occupancy)),
                ("Link availability", pct(f.availability)),
                ("Cost", money(f.cost, f.currency)),
                ("Cost per visit", money(f.cost_per_visit, f.currency)),
            ):
                ledger.check(where, figure, expected, shown.get(figure))
        # Which sizes of space work: each space alone in its band.
        sizes = next(t for t in page.tables.values() if t and t[0][:2] == ["Size", "Spaces"])
        for band, f in (("up to 20 people", rows["Test Space"]),
                        ("21 to 50 people", rows["Other Space"])):  # fmt: skip
            where = f"/reports?period={month} ({band})"
            shown = row_by(sizes, band)
            for figure, expected in (
                ("Spaces", "1"),
                ("Visits per space", f"{f.visits:,.0f}"),
                ("Utilisation", pct(f.utilisation)),
                ("Peak ÷ capacity", pct(f.peak_ratio)),
                ("Average occupancy", dec(f.average_occupancy)),
                ("Cost per visit", money(f.cost_per_visit, f.currency)),
            ):
                ledger.check(where, figure, expected, shown.get(figure))
        f = rows["Test Space"]
        # The CSV: each space's row and the total.
        figures_by_name = rows
        text = session.get(collector + f"reports.csv?period={month}", timeout=10).text
        rows = list(csv.DictReader(io.StringIO(text)))
        ledger.check(f"/reports.csv?period={month}", "rows", 3, len(rows))
        by_id = {SPACE: "Test Space", oracle.OTHER["id"]: "Other Space", "all": "All spaces"}
        for row in rows:
            where = f"/reports.csv?period={month} ({row['space']})"
            f = figures_by_name[by_id[row["space"]]]
            for column, expected in (
                ("period", month),
                ("visits", str(f.visits)),
                ("distinct_visitors", str(f.unique_visitors)),
                ("unique_visitors_hourly_sum", str(f.hourly_visitors)),
                ("new_visitors", str(f.new_visitors)),
                ("returning_distinct_visitors", str(f.returning_visitors)),
                ("events_held", str(f.events)),
                ("event_signins", str(f.event_signins)),
                ("occupied_hours", frac(f.occupied_minutes / 60, 2)),
                ("open_hours", frac(f.open_minutes / 60, 2)),
                ("utilisation", frac(f.utilisation)),
                ("occupancy_peak", str(f.peak)),
                ("peak_space", f.peak_space or by_id[row["space"]]),
                ("peak_per_capacity", frac(f.peak_ratio)),
                ("average_occupancy", frac(f.average_occupancy, 2)),
                ("link_availability", frac(f.availability)),
                ("cost", frac(f.cost, 2)),
                ("currency", f.currency or ""),
                ("cost_per_visit", frac(f.cost_per_visit, 2)),
            ):
                ledger.check(where, column, expected, row.get(column))
        f = figures_by_name["Test Space"]
        # The printable progress report.
        where = f"/reports/{SPACE}?period={month}"
        page = Tables(session.get(collector + where[1:], timeout=10).text)
        figures = {label.split(" (")[0]: value for label, value in page.figures.items()}
        for figure, expected in (
            ("visits", f"{f.visits:,}"),
            ("unique visitors", f"{f.unique_visitors:,}"),
            ("new / returning", f"{f.new_visitors} / {f.returning_visitors}"),
            ("events held", str(f.events)),
            ("utilisation", pct(f.utilisation)),
            ("peak occupancy", f"{f.peak} / {script.capacity}"),
            ("people on average while open", dec(f.average_occupancy)),
            ("link availability", pct(f.availability)),
            ("cost per visit", money(f.cost_per_visit, f.currency)),
        ):
            ledger.check(where, figure, expected, figures.get(figure))
        labels = " ".join(page.figures)
        ledger.check(where, "event sign-ins", f"({f.event_signins} sign-ins)",
                     re.search(r"\(\d+ sign-ins\)", labels)[0])  # fmt: skip
        purposes = next(t for name, t in page.tables.items() if name.startswith("Why visitors"))
        ledger.check(where, "why visitors came", f.by_purpose,
                     {r[0]: int(r[1]) for r in purposes[1:]})  # fmt: skip
        events_table = page.tables.get("Community events", [])
        ledger.check(where, "community events", f.by_event,
                     {r[0]: int(r[1]) for r in events_table[1:]})  # fmt: skip


def check_dashboard(ledger: Ledger, collector: str, session, script, truth, other) -> None:
    zone = script.zone
    for where, shown_spaces in (("/", [(zone, truth), (oracle.OTHER["zone"], other)]),
                                (f"/?space={SPACE}", [(zone, truth)])):  # fmt: skip
        page = Tables(session.get(collector + where[1:], timeout=10).text)
        spaces = page.tables["Spaces"]
        header = [h.strip() for h in spaces[0]]
        row = next(r for r in spaces[1:] if r[0].startswith("Test Space"))
        ledger.check(where, "hours stored", str(len(truth)), row[header.index("Hours stored")])
        # Visits per ISO week (UTC), over the weeks the chart shows, for each space.
        weekly = next(t for name, t in page.tables.items() if name.startswith("Visits per week"))
        for name, hours in (("Test Space", truth), ("Other Space", other)):
            column = weekly[0].index(name)
            shown = sorted(r[column] for r in weekly[1:] if r[column] not in ("", "0"))
            per_week: dict[str, int] = {}
            for h, counts in hours.items():
                week = oracle._utc(oracle.period_start(h, "week")).strftime("%Y-%m-%d")
                per_week[week] = per_week.get(week, 0) + counts.get("signins", 0)
            expected = sorted(f"{n:,}" for n in per_week.values() if n)
            ledger.check(where, f"visits per week ({name})", expected, shown)
        # The spaces compared, over the same weeks: visits and utilisation.
        visits = next(t for name, t in page.tables.items()
                      if name.startswith("Visits") and t[0][-1] == "visits")  # fmt: skip
        use = next(t for name, t in page.tables.items() if name.startswith("Utilisation"))
        for name, hours in (("Test Space", truth), ("Other Space", other)):
            everything = oracle.total(hours)
            ledger.check(where, f"visits compared ({name})", f"{everything['signins']:,}",
                         row_by(visits, name)["visits"])  # fmt: skip
            ledger.check(where, f"utilisation compared ({name})",
                         pct(everything["occupied_minutes"] / everything["open_minutes"]),
                         row_by(use, name)["utilisation"])  # fmt: skip
        # Visits by hour of the week, each space's hours in its own time zone.
        heat = next(t for name, t in page.tables.items() if "hour of the week" in name)
        shown_grid = [[int(c.replace(",", "") or 0) for c in r[1:25]] for r in heat[1:8]]
        ledger.check(where, "visits by hour of the week", oracle.hour_of_week(shown_spaces),
                     shown_grid)  # fmt: skip


def check_kiosk(ledger: Ledger, space: Space, script) -> None:
    now = time.time()
    status = space.kiosk.get("/api/v1/status").json
    present = sum(1 for a in script.live if a.kind == "entry")
    signed_in = sum(1 for a in script.live if a.kind == "new")
    where = "kiosk /api/v1/status"
    ledger.check(where, "open", oracle.is_open(script, now), status["open"])
    ledger.check(where, "capacity", script.capacity, status["capacity"])
    ledger.check(where, "people", present, status["people"]["people"])
    ledger.check(where, "people source", "counter", status["people"]["source"])
    ledger.check(where, "people signed in", signed_in, status["people_signed_in"])
    document = space.kiosk.get("/spaceapi.json").json
    where = "kiosk /spaceapi.json"
    ledger.check(where, "state.open", oracle.is_open(script, now), document["state"]["open"])
    ledger.check(where, "state.lastchange", int(oracle.last_change(script, now)),
                 document["state"]["lastchange"])  # fmt: skip
    (people,) = document["sensors"]["people_now_present"]
    ledger.check(where, "people_now_present", present, people["value"])
