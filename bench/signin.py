"""Sign-in throughput and latency of the kiosk, against a bare baseline in the same run.

    .venv/bin/python bench/signin.py [--seconds 10] [--clients 20]

Both servers run as their own process on waitress with the same thread count and write
to SQLite in WAL mode with synchronous=FULL; the baseline is a minimal Flask app doing
one INSERT per request. The same client (persistent HTTP/1.1 connections, one thread per
client) drives each for the same time, in alternating turns, and the
median turn is reported. Machines here are shared and noisy, so compare
the ratios, not the absolute figures. Goal: at least half the baseline's requests per
second, and a p99 within twice the baseline's.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spacekiosk import pilots  # noqa: E402
from spacekiosk.broker import free_port, wait_for_port  # noqa: E402

BASELINE = """
import sqlite3, sys, threading
from flask import Flask, request
from waitress import serve

app = Flask(__name__)
local = threading.local()

def db():
    if not hasattr(local, "conn"):
        local.conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=15)
        local.conn.execute("PRAGMA journal_mode = WAL")
        local.conn.execute("PRAGMA synchronous = FULL")
    return local.conn

db().execute("CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, name TEXT, at REAL)")

@app.post("/sign-in/new")
def sign_in():
    db().execute("INSERT INTO visits (name, at) VALUES (?, strftime('%s','now'))",
                 [request.form["name"]])
    return "Welcome", 201

serve(app, host="127.0.0.1", port=int(sys.argv[2]), threads=int(sys.argv[3]), _quiet=True)
"""


def kiosk_config(folder: Path, port: int, threads: int) -> str:
    """The kiosk's config: room for every visitor the clients send, no broker in reach."""
    return pilots.space_toml(
        id="bench",
        name="Benchmark Space",
        timezone="Europe/Athens",
        languages=["en"],
        capacity=10000,
        database=folder / "space.db",
        listen=f"127.0.0.1:{port}",
        broker="127.0.0.1",
        broker_port=1,
        tls=False,
        overrides={"kiosk": {"threads": threads}},
    )


def drive(port: int, clients: int, seconds: float) -> tuple[int, list[float], int]:
    """Post sign-ins from `clients` threads for `seconds`; (done, latencies, errors)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while time.monotonic() < deadline[0]:
            body = urllib.parse.urlencode(
                {
                    "name": f"Visitor {uuid.uuid4().hex[:12]}",
                    "accept": "yes",
                    "purpose": "cowork",
                    "request_id": uuid.uuid4().hex,
                }
            )
            t0 = time.perf_counter()
            conn.request(
                "POST", "/sign-in/new", body, {"Content-Type": "application/x-www-form-urlencoded"}
            )
            response = conn.getresponse()
            response.read()
            latencies[i].append(time.perf_counter() - t0)
            if response.status != 201:
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + seconds
    start.wait()
    for t in threads:
        t.join()
    flat = [x for per in latencies for x in per]
    return len(flat), flat, sum(errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def run_server(kind: str, folder: Path, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "baseline":
        script = folder / "baseline.py"
        script.write_text(BASELINE)
        cmd = [sys.executable, str(script), str(folder / "baseline.db"), str(port), str(threads)]
    else:
        toml = folder / "space.toml"
        toml.write_text(kiosk_config(folder, port, threads))
        cmd = [sys.executable, "-m", "spacekiosk", "kiosk", "--config", str(toml)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if not wait_for_port(port, 30, proc):
        raise SystemExit(f"{kind} did not start")
    return proc, port


def measure(clients: int, seconds: float, threads: int, rounds: int) -> dict[str, dict]:
    """Both servers up side by side, driven in turns, `rounds` times each: a burst of
    noise from the shared machine then lands on both rather than on one."""
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        for kind in ("baseline", "kiosk"):
            (Path(tmp) / kind).mkdir()
            servers[kind] = run_server(kind, Path(tmp) / kind, threads)
        runs: dict[str, list] = {kind: [] for kind in servers}
        try:
            for _proc, port in servers.values():
                drive(port, clients, 1.0)  # warm up: connections, page cache
            for _ in range(rounds):
                for kind, (proc, port) in servers.items():
                    before = cpu_seconds(proc.pid)
                    done, latencies, errors = drive(port, clients, seconds / rounds)
                    runs[kind].append((done, latencies, errors, cpu_seconds(proc.pid) - before))
        finally:
            for proc, _port in servers.values():
                proc.terminate()
                proc.wait(15)
    results = {}
    for kind, parts in runs.items():
        done = sum(p[0] for p in parts)
        latencies = [x for p in parts for x in p[1]]
        results[kind] = {
            "kind": kind,
            "clients": clients,
            "errors": sum(p[2] for p in parts),
            "rps": statistics.median(p[0] / (seconds / rounds) for p in parts),
            "cpu_ms": sum(p[3] for p in parts) / done * 1000,
            "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="per server, all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="turns each server gets")
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--threads", type=int, default=8, help="waitress threads, both servers")
    args = parser.parse_args()
    print(
        f"{'server':<10}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'CPU ms/req':>12}{'errors':>8}"
    )
    for clients in args.clients:
        rows = measure(clients, args.seconds, args.threads, args.rounds)
        for row in rows.values():
            print(
                f"{row['kind']:<10}{row['clients']:>8}{row['rps']:>10.0f}{row['p50']:>10.1f}"
                f"{row['p99']:>10.1f}{row['cpu_ms']:>12.2f}{row['errors']:>8}"
            )
        ratio_rps = rows["kiosk"]["rps"] / rows["baseline"]["rps"]
        ratio_p99 = rows["kiosk"]["p99"] / rows["baseline"]["p99"]
        print(
            f"  ratio kiosk/baseline at {clients} clients: throughput {ratio_rps:.2f} "
            f"(goal >= 0.50), p99 {ratio_p99:.2f} (goal <= 2.00)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
