"""The layers of docs/architecture.md, held from both sides: import-linter's contracts
(pyproject.toml) pass on the source and fail once a layer is crossed; and each service,
started as its unit starts it and put to work, never loads what its layer forbids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
from conftest import (
    ROOT,
    SENSORS,
    SPACE,
    free_port,
    publisher,
    usage,
    visitor_form,
    wait_until,
    write_collector_config,
    write_space_config,
)

from kiosk import visits
from spacekiosk import config, protocol, syncstate
from spacekiosk.db import open_store
from spacekiosk.migrations import SPACE_MIGRATIONS
from spacekiosk.protocol import Bucket

# --- the contracts, on a copy of the source that a test can break ---

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("spacekiosk", "kiosk", "sensors", "sync", "collector")
CONTRACTS = [
    contract["name"]
    for contract in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
]
SERVICES_APART = "The four services never import each other, nor the command above them"
CORE_BELOW = "The core imports no service: only the command (cli, demo) reaches up"
DAEMONS_NO_FLASK = "The daemons never load Flask"


def source_copy(folder: Path) -> Path:
    """The packages and pyproject.toml, as they are in the checkout, in `folder`."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", folder)
    return folder


def add_import(module: Path, name: str) -> int:
    """Add `import name` to a module, below its `from __future__` line; returns the line."""
    future = "from __future__ import annotations\n"
    text = module.read_text()
    assert future in text, f"{module} has no {future!r}"
    module.write_text(text.replace(future, future + f"import {name}\n", 1))
    return text[: text.index(future)].count("\n") + 2


def lint_imports(tree: Path) -> tuple[int, dict[str, str], str]:
    """lint-imports on the packages in `tree`: its exit code, each contract's verdict
    (KEPT or BROKEN), and its report. It runs in `tree` with `tree` first on the path,
    so that it reads those files, not the checkout the venv has installed (editable)."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout + result.stderr
    verdicts = {}
    for line in report.splitlines():
        for name in CONTRACTS:
            if line.startswith(f"{name} "):
                verdicts[name] = line[len(name) + 1 :].split()[0]
    return result.returncode, verdicts, report


def test_the_contracts_hold_on_the_source(tmp_path):
    code, verdicts, report = lint_imports(source_copy(tmp_path))
    assert code == 0, report
    assert verdicts == dict.fromkeys(CONTRACTS, "KEPT"), report
    assert {SERVICES_APART, CORE_BELOW, DAEMONS_NO_FLASK} <= set(CONTRACTS)


def test_the_sensors_importing_the_kiosk_break_the_contracts(tmp_path):
    """The example of issue 12: the sensors daemon imports the kiosk, and with it Flask."""
    tree = source_copy(tmp_path)
    line = add_import(tree / "sensors" / "daemon.py", "kiosk")
    code, verdicts, report = lint_imports(tree)
    assert code != 0, report
    broken = {name for name, verdict in verdicts.items() if verdict == "BROKEN"}
    assert broken == {SERVICES_APART, DAEMONS_NO_FLASK}, report
    assert set(verdicts) == set(CONTRACTS), report
    # The import it names is the one added to the copy, at its line there.
    assert f"sensors.daemon -> kiosk (l.{line})" in report, report


def test_the_core_importing_a_service_breaks_the_contracts(tmp_path):
    tree = source_copy(tmp_path)
    line = add_import(tree / "spacekiosk" / "hours.py", "sync")
    code, verdicts, report = lint_imports(tree)
    assert code != 0, report
    assert verdicts[CORE_BELOW] == "BROKEN", report
    assert f"spacekiosk.hours -> sync (l.{line})" in report, report


# --- what each service's process really loads ---

# On a service's PYTHONPATH, Python imports this at start-up (`site` looks for a
# sitecustomize module), in the service and in any Python process it starts; at exit
# it writes the name of every module the process loaded to $SPACEKIOSK_MODULES/PID.json.
SITECUSTOMIZE = """\
import atexit, json, os, sys

def _write_loaded_modules(folder=os.environ["SPACEKIOSK_MODULES"]):
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(_write_loaded_modules)
"""
PINS_AND_MQTT = ("gpiozero", "paho")
WEB = ("flask", "flask_babel", "werkzeug", "jinja2", "waitress")


class Loaded:
    """The modules each process of a service loaded over its life, as it said at exit."""

    def __init__(self, folder: Path):
        self.hook, self.modules = folder / "hook", folder / "modules"
        self.hook.mkdir(parents=True)
        self.modules.mkdir()
        (self.hook / "sitecustomize.py").write_text(SITECUSTOMIZE)

    def env(self) -> dict[str, str]:
        path = [str(self.hook), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(path), "SPACEKIOSK_MODULES": str(self.modules)}

    def of(self, service) -> set[str]:
        """Every module the stopped `service`, and any process it started, loaded."""
        assert service.stop() == 0, service.output()
        processes = {int(p.stem): json.loads(p.read_text()) for p in self.modules.glob("*.json")}
        assert service.proc.pid in processes, f"no modules written at exit:\n{service.output()}"
        return set().union(*processes.values())


def among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that belong to any of `packages`."""
    return sorted(m for m in modules if m.partition(".")[0] in packages)


@pytest.fixture
def loaded(tmp_path) -> Loaded:
    return Loaded(tmp_path / "loaded")


def test_the_kiosk_never_loads_the_pins_or_mqtt(tmp_path, notified, loaded):
    toml = write_space_config(tmp_path / "space", broker_port=free_port(), extra=SENSORS)
    url = f"http://127.0.0.1:{config.load(toml).kiosk.listen[1]}/"
    kiosk = notified("kiosk", "--config", str(toml), env=loaded.env())
    kiosk.wait_for("READY=1")
    assert requests.get(url, timeout=5).ok
    signed_in = requests.post(url + "sign-in/new", data=visitor_form("Ana"), timeout=5)
    assert signed_in.status_code == 201, signed_in.text
    assert requests.get(url + "healthz", timeout=5).ok
    modules = loaded.of(kiosk)
    assert {"kiosk.visitor", "flask", "waitress"} <= modules  # what it served with
    assert among(modules, PINS_AND_MQTT) == []


def test_the_sensors_daemon_never_loads_flask(tmp_path, notified, loaded):
    toml = write_space_config(tmp_path / "space", broker_port=free_port(), extra=SENSORS)
    daemon = notified(
        "sensors", "--simulate", "--speed", "50", "--config", str(toml), env=loaded.env()
    )
    daemon.wait_for("READY=1")
    db = open_store(config.load(toml).database.path, SPACE_MIGRATIONS)
    wait_until(
        lambda: db.execute("SELECT count(*) FROM sensor_events").fetchone()[0],
        what="the simulated traffic's events on disk",
    )
    modules = loaded.of(daemon)
    assert {"sensors.daemon", "gpiozero"} <= modules
    assert among(modules, WEB) == []


def test_the_sync_agent_never_loads_flask(tmp_path, broker, collector, notified, loaded):
    """It delivers an hour to a running collector and takes the ack, then stops."""
    toml = write_space_config(tmp_path / "space", broker_port=broker.port)
    db = open_store(config.load(toml).database.path, SPACE_MIGRATIONS)
    hour = (int(time.time()) // 3600 - 2) * 3600
    visit = visits.sign_in_new(db, visits.NewVisitor("Earlier Visitor"), "k", now=hour + 60)
    visits.sign_out(db, visit.id, now=hour + 1260)
    agent = notified("sync", "--config", str(toml), env=loaded.env())
    agent.wait_for("READY=1")
    arrived = protocol.hour_iso(hour)
    wait_until(lambda: any(b["start"] == arrived for b in usage(collector)), what="the hour")
    wait_until(lambda: syncstate.health(db)["backlog"] == 0, what="the collector's ack")
    modules = loaded.of(agent)
    assert {"sync.agent", "paho.mqtt.client"} <= modules
    assert among(modules, WEB) == []


def test_the_collector_never_loads_the_pins(tmp_path, broker, notified, loaded):
    """Its web process and its committer, which commits a batch from a space."""
    toml = write_collector_config(tmp_path / "central", broker_port=broker.port)
    url = f"http://127.0.0.1:{config.load(toml).central.listen[1]}/"
    collector = notified("collector", "--config", str(toml), env=loaded.env())
    collector.wait_for("READY=1")
    wait_until(
        lambda: requests.get(url + "healthz", timeout=5).json()["broker"] == "connected",
        what="the collector's subscription",
    )
    space = publisher(broker.port)
    try:
        batch = protocol.usage_message(SPACE, [Bucket(1795622400, 1, {"signins": 2})])
        space.publish(protocol.topic(SPACE, "usage"), batch, qos=1).wait_for_publish(5)
        wait_until(lambda: usage(url), what="the batch committed")
    finally:
        space.disconnect()
        space.loop_stop()
    modules = loaded.of(collector)
    assert len(list(loaded.modules.glob("*.json"))) >= 2, "the committer wrote nothing at exit"
    assert {"collector.ingest", "collector.store", "flask"} <= modules
    assert among(modules, ("gpiozero",)) == []
