"""How long the collector's pages take with many spaces' months, against reading the rows.

    .venv/bin/python bench/dashboard.py [--spaces 50] [--weeks 26] [--turns 5]

A central store holds `--spaces` spaces (in the seven pilots' time zones), each with
every hour of the last `--weeks` weeks. A logged-in client asks for the dashboard (which
draws those weeks for every space), the month's report and one space's progress report;
the baseline is the least any such page must do: select the same rows from the same
file and decode their counts. The median of `--turns` turns is reported, and the ratio
page/baseline: what drawing the page costs beyond reading what it shows.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector import accounts, periods, store  # noqa: E402
from collector.web import create_app  # noqa: E402
from spacekiosk import config, pilots  # noqa: E402
from spacekiosk.protocol import Bucket, counts_json  # noqa: E402

ZONES = [
    "Europe/Athens",
    "America/Bogota",
    "Asia/Kolkata",
    "Europe/Madrid",
    "Asia/Manila",
    "Africa/Nairobi",
    "Asia/Taipei",
]
PASSWORD = "bench-password-1"


def fill(db, spaces: int, weeks: int, now: int) -> int:
    """Every hour of the last `weeks` weeks for each space; the buckets stored."""
    rng = random.Random(7)
    hours = weeks * 7 * 24
    for n in range(spaces):
        space = f"space-{n:03d}"
        buckets = [
            Bucket(now - back * 3600, 1, _counts(rng, (now - back * 3600) // 3600 % 24))
            for back in range(1, hours + 1)
        ]
        store.commit(
            db, usage=[(space, b.start, b.hours, b.version, counts_json(b.counts)) for b in buckets]
        )
        about = {"name": f"Space {n}", "capacity": 20, "timezone": ZONES[n % len(ZONES)]}
        store.commit_status(db, space, {"v": 1, "online": True, "about": about})
    return spaces * hours


def _counts(rng: random.Random, hour: int) -> dict:
    if not 8 <= hour < 21:
        return {"connected_minutes": 60}
    signins = rng.randint(0, 6)
    return {
        "signins": signins,
        "unique_visitors": signins,
        "by_purpose": {"cowork": signins},
        "open_minutes": 60,
        "occupied_minutes": rng.randint(0, 60),
        "occupancy_peak": signins,
        "connected_minutes": 60,
    }


def timed(fn, turns: int) -> float:
    took = []
    for _ in range(turns):
        started = time.perf_counter()
        fn()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", type=int, default=50)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "central.toml").write_text(
            pilots.central_toml(
                listen="127.0.0.1:8090",
                database="central.db",
                broker="127.0.0.1",
                broker_port=1883,
                tls=False,
            )
        )
        cfg = config.load(folder / "central.toml")
        db = store.connect(cfg.central)
        now = int(time.time()) // 3600 * 3600
        buckets = fill(db, args.spaces, args.weeks, now)
        accounts.add_user(db, "bench", PASSWORD)
        client = create_app(cfg).test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
        client.post("/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token})
        print(f"{args.spaces} spaces x {args.weeks} weeks: {buckets} hourly buckets")
        since = now - args.weeks * 7 * 86400

        def page(path: str):
            def get():
                answer = client.get(path)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path}: {answer.status_code}")

            return get

        baseline = timed(lambda: periods.rows(db, since, now + 3600), args.turns)
        print(f"baseline: read and decode the rows     {baseline * 1000:>7.0f} ms")
        month = time.strftime("%Y-%m", time.gmtime(now - 86400))
        for name, path in (
            ("dashboard, every space", "/"),
            ("report, a month", f"/reports?period={month}"),
            ("a space's progress report", f"/reports/space-001?period={month}"),
        ):
            took = timed(page(path), args.turns)
            print(f"{name:<38} {took * 1000:>7.0f} ms   page/baseline {took / baseline:.2f}")


if __name__ == "__main__":
    main()
