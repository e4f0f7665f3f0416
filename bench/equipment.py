"""Benchmark the equipment pages' work on a busy store: N devices with 90 days of alert history.

An in-process gateway (web off; the page through Flask's test client with a signed-in manager),
N devices each with a record, one plan, and about two faults a week (offline and threshold episodes)
for 90 days in the alert log. Measures, median of ``--rounds``: ``device_health`` over 7 days, the
14-day sparkline series, ``maintenance_due``, one equipment check, and the whole Equipment page
(health, series, 4 × N SVG sparklines, the template). Peak RSS growth over the run is reported.

Prints progress to stderr and, last, one JSON line on stdout:
``{"devices", "episodes", "device_health_ms", "health_series_ms", "maintenance_due_ms", "check_ms",
"page_ms", "page_kb", "rss_delta_mb"}``.

    python bench/equipment.py [--devices 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "ordering"))

from ordhelpers import PASSWORD, add_privileged, gateway_config, staff_login  # noqa: E402

DAY_MS = 86_400_000


def log(msg: str) -> None:
    """Write a progress line to stderr."""
    print(f"[bench/equipment] {msg}", file=sys.stderr, flush=True)


def timed(fn, rounds: int) -> float:
    """Median wall time of ``fn()`` in ms."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from gateway.app import build
    from gateway.core.models import now_ms
    from web import create_app

    with tempfile.TemporaryDirectory() as tmp:
        gw = build(gateway_config(Path(tmp)))
        gw.start(web=False, devices=False)
        try:
            eq = gw.services["equipment"]
            rng = random.Random(20261130)
            now = now_ms()
            devices = [f"fridge-{i:03d}" for i in range(args.devices)]
            eq.import_rows([{"device_id": d, "brand": "Haier", "model": "SC-240", "location": "kitchen",
                             "purchased": "2022-01-01", "life_years": 8,
                             "plans": [{"task": "clean coil", "mode": "fixed", "every": "90d"}]} for d in devices])
            episodes = 0

            def history(c):
                nonlocal episodes
                for d in devices:
                    t = now - 90 * DAY_MS
                    while True:
                        t += int(rng.expovariate(2 / (7 * DAY_MS)))
                        if t >= now - 3600_000:
                            break
                        kind, rule, key = (("offline", "device-offline", f"offline:{d}") if rng.random() < 0.4
                                           else ("threshold", "fridge-warm", f"rule:fridge-warm:{d}"))
                        if gw.alerts.raise_(c, key, kind=kind, rule=rule, device=d, severity="major", ts_ms=t):
                            gw.alerts.clear(c, key, ts_ms=t + rng.randint(60_000, 4 * 3600_000))
                            episodes += 1
                c.execute("DELETE FROM outbox")  # the history is not the benchmark's upstream traffic
            gw.store.writer.call(history)
            log(f"{args.devices} devices, {episodes} alert episodes over 90 days")
            rss0 = rss_mb()
            app = create_app(gw, {"TESTING": True})
            auth = add_privileged(gw.services["ordering"], "boss")
            client = app.test_client()
            assert staff_login(client, "boss", PASSWORD, auth.code()).status_code == 303
            page = client.get("/staff/equipment")
            sparks = len(re.findall(r'<svg class="spark"', page.get_data(as_text=True)))
            if page.status_code != 200 or sparks != 4 * args.devices:
                raise SystemExit(f"the Equipment page answered {page.status_code} with {sparks} sparklines")
            result = {
                "devices": args.devices,
                "episodes": episodes,
                "device_health_ms": timed(lambda: eq.device_health(now - 7 * DAY_MS, now), args.rounds),
                "health_series_ms": timed(eq.health_series, args.rounds),
                "maintenance_due_ms": timed(lambda: eq.maintenance_due(now), args.rounds),
                "check_ms": timed(eq.run_check, args.rounds),
                "page_ms": timed(lambda: client.get("/staff/equipment"), args.rounds),
                "page_kb": round(len(page.get_data()) / 1024, 1),
                "rss_delta_mb": round(rss_mb() - rss0, 1),
            }
        finally:
            gw.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
