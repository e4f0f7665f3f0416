"""The daily report: its numbers equal an independent recomputation from the database (plain SQL on the
ordering, stock, members and alert tables), its HQ message validates against docs/schemas, the receipt
summary is queued, the pages render (charts as inline SVG without style attributes) for the right roles."""

from __future__ import annotations

import json
import math
import re
from statistics import median
from typing import Any

from ordhelpers import csrf, staff_login
from realparts import validate_hq_message
from stockdocs import doc

from gateway.core.models import now_ms
from gateway.health import report as rpt

DAY = 86_400_000
HOUR = 3_600_000


def _nearest_rank(values: list[float], p: float) -> int | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[math.ceil(p / 100 * len(s)) - 1])


def _trade(gw: Any, svc: Any, diner_factory: Any) -> None:
    """A small day: three tables order, one line is voided, two bills are paid, dishes served, complaints."""
    stock = gw.services["stock"]
    stock.import_doc(doc(chicken="600"))
    mem = gw.services["members"]
    for table, covers, dishes in (("A1", 2, [("h01", 2), ("c01", 1)]), ("A2", 4, [("h01", 1), ("h02", 3)]),
                                  ("B1", 1, [("d01", 2)])):
        svc.open_table(table, covers, "mgr")
        d = diner_factory(table, f"phone{table}")
        for item, qty in dishes:
            d.add(item, qty=qty)
        assert d.send().status_code in (200, 303)
    for station in ("hot", "cold", "bar"):
        svc.kds_view(station)  # shown on a KDS: "printed"
    rows = gw.store.read().execute("SELECT id, table_id, item_id FROM ord_lines ORDER BY id").fetchall()
    void = next(lid for lid, t, item in rows if t == "A2" and item == "h02")
    svc.void_line(void, "void", "wrong dish", "mgr")
    for tid, in gw.store.read().execute("SELECT id FROM ord_tickets WHERE table_id IN ('A1', 'B1')").fetchall():
        svc.bump_ticket(tid)
    svc.pay("A1", "cash", "", "mgr")
    svc.pay("B1", "qr", "", "mgr")
    a1_line = next(lid for lid, t, _ in rows if t == "A1")
    mem.complain("A1", a1_line, "taste", "too salty", "mgr")
    mem.complain("A1", None, "wait", "", "mgr")
    # history for the baseline: dishes the same weekday and hour 1, 2 and 3 weeks ago
    now = now_ms()
    for weeks, qty in ((1, 4), (2, 6), (3, 5)):
        ts = now - weeks * 7 * DAY
        gw.store.writer.call(lambda c, ts=ts, qty=qty: c.execute(
            "INSERT INTO ord_lines (round_id, session_id, table_id, item_id, name_zh, name_en, qty, unit_cents, "
            "station, created_ms) VALUES (0, 0, 'A1', 'c01', '拍黄瓜', 'Smashed cucumber', ?, 1600, 'cold', ?)",
            (qty, ts)))


def test_report_equals_sql_and_hq_message_validates(gw: Any, svc: Any, diner_factory: Any) -> None:
    health = gw.services["health"]
    _trade(gw, svc, diner_factory)
    now = now_ms()
    day = rpt.day_of(health.tz, now)
    assert health.daily_report(now, day=day) == day
    assert health.daily_report(now, day=day) is None  # once a day
    rep = health.stored(day)
    since, until = rpt.day_window(health.tz, day)
    q = gw.store.read().execute
    w = (since, until)

    assert rep["sales_cents"] == q("SELECT sum(amount_cents) FROM ord_payments WHERE ts_ms >= ? AND ts_ms < ?",
                                   w).fetchone()[0]
    bills, covers = q("SELECT count(*), sum(covers) FROM ord_sessions WHERE paid_ms >= ? AND paid_ms < ?", w).fetchone()
    assert (rep["bills"], rep["covers"]) == (bills, covers) == (2, 3)
    assert rep["avg_bill_cents"] == math.floor(rep["sales_cents"] / bills + 0.5)
    qty = dict(q("SELECT item_id, sum(qty) FROM ord_lines WHERE created_ms >= ? AND created_ms < ? "
                 "AND status != 'void' GROUP BY item_id", w).fetchall())
    assert rep["dishes"] == sum(qty.values())
    top = sorted(qty.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(i["item"], i["qty"]) for i in rep["top_items"]] == top
    active = [r[0] for r in q("SELECT id FROM ord_items WHERE active = 1")]
    bottom = sorted(((i, qty.get(i, 0)) for i in active), key=lambda kv: (kv[1], kv[0]))[:5]
    assert [(i["item"], i["qty"]) for i in rep["bottom_items"]] == bottom
    revenue = dict(q("SELECT item_id, sum(qty * unit_cents) FROM ord_lines WHERE created_ms >= ? AND created_ms < ? "
                     "AND status != 'void' AND comp = 0 GROUP BY item_id", w).fetchall())
    assert all(i["revenue_cents"] == revenue[i["item"]] for i in rep["top_items"])
    printed = [(r - c) / 1000 for r, c in q("SELECT received_ms, created_ms FROM ord_tickets WHERE created_ms >= ? "
                                             "AND created_ms < ? AND received_ms IS NOT NULL", w)]
    served = [(s - c) / 1000 for s, c in q("SELECT served_ms, created_ms FROM ord_lines WHERE created_ms >= ? AND "
                                           "created_ms < ? AND served_ms IS NOT NULL AND status != 'void'", w)]
    for key, values in (("printed", printed), ("served", served)):
        t = rep["ticket_times"][key]
        assert t["count"] == len(values) > 0
        assert (t["p50_s"], t["p90_s"]) == (_nearest_rank(values, 50), _nearest_rank(values, 90))
    assert sum(rep["served_histogram"]) == len(served)
    # dishes per hour of the day and the same-weekday baseline
    for h in range(24):
        start = since + h * HOUR
        n = q("SELECT coalesce(sum(qty), 0) FROM ord_lines WHERE created_ms >= ? AND created_ms < ? "
              "AND status != 'void'", (start, start + HOUR)).fetchone()[0]
        assert rep["dishes_by_hour"][h] == n
    hour = (now - since) // HOUR
    past = [q("SELECT coalesce(sum(qty), 0) FROM ord_lines WHERE created_ms >= ? AND created_ms < ?",
              (since + hour * HOUR - k * 7 * DAY, since + (hour + 1) * HOUR - k * 7 * DAY)).fetchone()[0]
            for k in (1, 2, 3)]
    assert rep["baseline_by_hour"][hour] == median(past) == 5
    # stock: Kung Pao chicken used 3 x 200 g: sold out; chicken under its safety stock
    out = {r[0] for r in q("SELECT item_id FROM stk_soldout_log WHERE state = 'out' AND ts_ms >= ? AND ts_ms < ?", w)}
    assert set(rep["sold_out"]) >= out == {"h01"}
    below = [r[0] for r in q("SELECT id FROM stk_ingredients WHERE safety_m > 0 AND on_hand_m < safety_m ORDER BY id")]
    assert [b["id"] for b in rep["below_safety"]] == below == ["chicken"]
    complaints = dict(q("SELECT category, count(*) FROM mem_complaints WHERE day = ? GROUP BY category", (day,)))
    assert rep["complaints"] == complaints == {"taste": 1, "wait": 1}
    raised = q("SELECT count(*) FROM alert_log WHERE state = 'raised' AND ts_ms >= ? AND ts_ms < ?", w).fetchone()[0]
    assert rep["alerts"]["raised"] == raised >= 1
    # equipment, the other half of store health, through its facade (a build without it says "not available")
    if "equipment" in gw.services:
        eq = gw.services["equipment"]
        assert rep["maintenance_due"] == eq.maintenance_due(now)
        assert rep["devices"] == eq.device_health(since, until)
    else:
        assert rep["devices"] is None and rep["maintenance_due"] is None

    # the HQ message: in the outbox, valid against its schema, no names, no free text
    row = q("SELECT topic, payload FROM outbox WHERE topic LIKE '%/reports/daily'").fetchone()
    msg = json.loads(row[1])
    assert validate_hq_message(row[0], msg) is None
    assert msg["id"] == f"sh-001:report:{day}" and msg["sales_cents"] == rep["sales_cents"]
    if rep["maintenance_due"] is not None:
        assert msg["maintenance_due"] == len(rep["maintenance_due"])
    text = json.dumps(msg, ensure_ascii=False)
    for private in ("too salty", "mgr", "鸡", "Kung Pao"):
        assert private not in text


def test_receipt_summary_and_pages(gw: Any, svc: Any, diner_factory: Any, client: Any) -> None:
    from gateway.staff import accounts

    _trade(gw, svc, diner_factory)
    health = gw.services["health"]
    day = rpt.day_of(health.tz, now_ms())
    blocks = rpt.receipt(health.build_report(day), "Test store")
    assert blocks[-1] == {"t": "cut"} and any("DAILY REPORT" in b.get("text", "") for b in blocks)
    gw.store.writer.call(lambda c: accounts.add_staff(c, "wang", "waiter", "246813"))
    staff_login(client, "wang", "246813")
    assert client.get("/staff/report").status_code == 403
    from ordhelpers import add_privileged
    auth = add_privileged(svc, "boss", "manager")
    client.post("/staff/logout", data={"csrf_token": _csrf(client)})
    staff_login(client, "boss", "correct horse battery", auth.code())
    page = client.get(f"/staff/report?day={day}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html[:500]
    assert html.count("<svg") == 2 and "style=" not in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert re.search(r'id="bills">2<', html)
    assert client.get(f"/staff/report/print?day={day}").status_code == 200
    assert client.get("/staff/report?day=2026-13-45").status_code == 404
    r = client.post("/staff/report/receipt", data={"day": day, "csrf_token": _csrf(client)},
                    headers={"X-Requested-With": "js"})
    assert r.status_code == 409 and "receipt printer" in r.get_json()["error"]  # no printer in this store


def _csrf(client: Any) -> str:
    return csrf(client, "/staff/login")


def test_summary_prints_on_the_receipt_printer(make_gw: Any) -> None:
    """The report's summary goes through the print service to a (virtual) ESC/POS receipt printer."""
    from realparts import wait_for

    from devices.escpos.simulator import VirtualPrinter

    with VirtualPrinter() as receipt:
        gw = make_gw(f'[[devices]]\nid = "printer-receipt"\nkind = "escpos"\nport = "{receipt.url}"\n'
                     'station = "receipt"\nstatus_timeout = "500ms"\nconfirm_timeout = "2s"\npoll = "200ms"\n')
        health = gw.services["health"]
        day = rpt.day_of(health.tz, now_ms())
        assert health.daily_report(day=day) == day
        wait_for(lambda: receipt.tickets(), timeout=15, what="the report summary on the receipt printer")
        text = "\n".join(receipt.tickets()[0])
        assert f"DAILY REPORT {day}" in text and "Sales" in text and "0.00" in text
        job = gw.store.read().execute("SELECT print_job FROM hl_reports WHERE day = ?", (day,)).fetchone()[0]
        assert job and gw.services["printing"].job(job)["source"] == "health-report"


def test_report_shows_maintenance_due_and_device_health_from_equipment(gw: Any, svc: Any) -> None:
    """With the equipment service (the other half of store health): an overdue plan and a device's uptime
    are in the report, its page, its receipt summary and its HQ message (counts only)."""
    from gateway.core.models import Reading

    eq = gw.services["equipment"]
    eq.import_rows([{"device_id": "fryer-1", "plans": [{"task": "change oil", "mode": "floating", "every_hours": 1}]}])
    start = now_ms() - 3 * HOUR
    readings = [Reading("fryer-1", start + i * 30_000, {"running": True}, digest=f"{i:032x}", stamped=True)
                for i in range(2 * 120)]
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, readings))
    eq.run_check()
    health = gw.services["health"]
    now = now_ms()
    day = rpt.day_of(health.tz, now)
    rep = health.build_report(day, now)
    assert [(m["device_id"], m["task"], m["state"]) for m in rep["maintenance_due"]] == [
        ("fryer-1", "change oil", "overdue")]
    assert "fryer-1" in [d["device_id"] for d in rep["devices"]]
    assert rep["alerts"]["by_rule"].get("maintenance-overdue") == 1
    text = "\n".join(b.get("text", "") + b.get("left", "") for b in rpt.receipt(rep, "S"))
    assert "Maintenance due" in text
    msg = rpt.hq_message(rep, "sh-001", "CNY", "2026-11-30T15:30:00.000Z")
    assert msg["maintenance_due"] == 1 and isinstance(msg["device_uptime_pct"], float)
    assert validate_hq_message("storegw/v1/sh-001/reports/daily", msg) is None
    assert "change oil" not in json.dumps(msg)
