"""Bench: the daily report of a 90-day store, and a month of sparklines.

Builds an in-process gateway (uplink off) whose database holds 90 days of trading (about 60 bills and
450 dishes a day, tickets printed and dishes served, payments, a few complaints), then times:

- ``report_ms``: the staff report page for the last day, end to end through Flask (median of N
  renders): the facades' queries, the same-weekday baseline over 8 weeks, two SVG charts, the template;
- ``sparklines_ms``: a month (30 points) of sparklines for 20 devices x 4 metrics (80 charts) with
  ``web.charts.sparkline`` (the equipment pages');
- ``rss_delta_mb``: the process's RSS growth from before the first render to after the last.

Prints progress to stderr and one JSON line last: {"report_ms", "sparklines_ms", "rss_delta_mb", ...}.

Example:
  python bench/report.py --days 90 --renders 20
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _harness import free_port, make_log  # noqa: E402

log = make_log("report")
DAY = 86_400_000
HOUR = 3_600_000
PROFILE = {11: 35, 12: 60, 13: 40, 14: 12, 17: 30, 18: 70, 19: 65, 20: 35, 21: 12}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def seed(conn, days: int, end_ms: int, items: list[tuple[str, str, str, int]]) -> int:
    """Insert ``days`` of trading ending at ``end_ms`` (sessions, rounds, lines, tickets, payments)."""
    rng = random.Random(7)
    n = 0
    for d in range(days, 0, -1):
        day0 = end_ms - d * DAY
        factor = max(0.5, rng.gauss(1.0, 0.15))
        for hour, level in PROFILE.items():
            dishes = int(level * factor)
            bills = max(1, dishes // 7)
            for _ in range(bills):
                t0 = day0 + hour * HOUR + rng.randrange(HOUR - 120_000)
                sid = conn.execute("INSERT INTO ord_sessions (table_id, opened_ms, closed_ms, covers, paid_ms, rounds) "
                                   "VALUES ('A1', ?, ?, ?, ?, 1)", (t0, t0 + 3_600_000, rng.randint(1, 6),
                                                                     t0 + 3_000_000)).lastrowid
                rid = conn.execute("INSERT INTO ord_rounds (session_id, table_id, round_no, idem_key, created_ms, "
                                   "total_cents) VALUES (?, 'A1', 1, ?, ?, 0)", (sid, f"b{sid}", t0)).lastrowid
                tid = conn.execute("INSERT INTO ord_tickets (round_id, table_id, round_no, station, created_ms, "
                                   "received_ms, state) VALUES (?, 'A1', 1, 'hot', ?, ?, 'confirmed')",
                                   (rid, t0, t0 + rng.randint(800, 6000))).lastrowid
                total = 0
                for _dish in range(max(1, dishes // bills)):
                    iid, zh, en, price = rng.choice(items)
                    conn.execute("INSERT INTO ord_lines (round_id, session_id, table_id, item_id, name_zh, name_en, "
                                 "qty, unit_cents, station, ticket_id, status, created_ms, served_ms) VALUES "
                                 "(?, ?, 'A1', ?, ?, ?, 1, ?, 'hot', ?, 'served', ?, ?)",
                                 (rid, sid, iid, zh, en, price, tid, t0, t0 + rng.randint(240_000, 2_400_000)))
                    total += price
                    n += 1
                conn.execute("INSERT INTO ord_payments (session_id, table_id, method, amount_cents, staff, ts_ms) "
                             "VALUES (?, 'A1', 'cash', ?, 'bench', ?)", (sid, total, t0 + 3_000_000))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--renders", type=int, default=20)
    args = ap.parse_args()

    import pyotp

    from gateway.app import build
    from gateway.config import parse
    from gateway.ordering.menu import sample_document
    from gateway.staff import accounts
    from web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    synced = tmp / "synchronized"
    synced.touch()
    cfg = parse(tomllib.loads(f"""
[store]
id = "bench-001"
data_dir = "{(tmp / 'data').as_posix()}"
[local_mqtt]
port = {free_port()}
[uplink]
enabled = false
[web]
listen = "127.0.0.1:{free_port()}"
[staff]
clock_sync_files = ["{synced.as_posix()}"]
"""))
    gw = build(cfg)
    gw.start(web=False, devices=False)
    try:
        svc = gw.services["ordering"]
        svc.import_menu(sample_document())
        svc.add_table("A1")
        items = [(i.id, i.name_zh, i.name_en, i.price) for i in svc.menu.items.values()]
        health = gw.services["health"]
        now = int(time.time() * 1000)
        from gateway.health.report import day_of, day_window

        day = day_of(health.tz, now - DAY)
        end = day_window(health.tz, day)[1]
        t = time.perf_counter()
        lines = gw.store.writer.call(lambda c: seed(c, args.days, end, items), timeout=600)
        log(f"seeded {args.days} days, {lines} dishes in {time.perf_counter() - t:.1f}s")
        cipher = gw.privacy.cipher
        secret = gw.store.writer.call(lambda c: accounts.enrol(c, "boss", "manager", "correct horse battery", "b",
                                                               cipher=cipher))
        client = create_app(gw, {"TESTING": True}).test_client()
        page = client.get("/staff/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = client.post("/staff/login", data={"name": "boss", "pin": "correct horse battery",
                                              "code": pyotp.TOTP(secret).now(), "csrf_token": token})
        assert r.status_code == 303, r.get_data(as_text=True)[:300]
        rss0 = rss_mb()
        times = []
        for _ in range(args.renders):
            t = time.perf_counter()
            r = client.get(f"/staff/report?day={day}")
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.status_code
            assert r.get_data(as_text=True).count("<svg") == 2
        report_ms = statistics.median(times)
        log(f"report page: median {report_ms:.1f} ms, first {times[0]:.1f} ms")
        from web.charts import sparkline  # the equipment pages' sparkline (one for the whole app)
        rng = random.Random(3)
        series = [[rng.uniform(90, 100) for _ in range(30)] for _ in range(80)]
        spark = []
        for _ in range(args.renders):
            t = time.perf_counter()
            out = [sparkline(s) for s in series]
            spark.append((time.perf_counter() - t) * 1000)
            assert all("<svg" in o for o in out)
        rss1 = rss_mb()
        result = {"report_ms": round(report_ms, 2), "sparklines_ms": round(statistics.median(spark), 3),
                  "rss_delta_mb": round(rss1 - rss0, 1), "days": args.days, "dishes": lines,
                  "report_first_ms": round(times[0], 2), "sparklines": len(series)}
    finally:
        gw.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
