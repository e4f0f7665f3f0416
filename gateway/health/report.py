"""The daily store report: one business day's numbers from the ordering, stock, equipment and members
facades (docs/store-health.md, "Daily report"), its HQ message (``P/reports/daily``) and its receipt
summary (ESC/POS document blocks for the print service).

Percentiles are nearest-rank (the value at rank ⌈p·n⌉ of the sorted values). Top items: the 5 most
ordered (dishes, then id); bottom items: the 5 least ordered of the active menu, 0 included.
"""

from __future__ import annotations

import datetime as dt
import math
from statistics import median
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SERVED_BUCKETS_MIN = (5, 10, 15, 20, 30)  # served-time histogram: <5, 5-10, ..., 20-30, >=30 minutes
TOP = 5


def day_window(tz: dt.tzinfo, day: str) -> tuple[int, int]:
    """[start, end) of a business day (local midnight to midnight) in epoch ms."""
    d = dt.date.fromisoformat(day)
    start = dt.datetime(d.year, d.month, d.day, tzinfo=tz)
    end = start + dt.timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def day_of(tz: dt.tzinfo, ts_ms: int) -> str:
    """The business day (YYYY-MM-DD, store time) of an instant."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%Y-%m-%d")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def times(values: list[float]) -> dict[str, Any]:
    """count, p50_s, p90_s, max_s of a list of durations in seconds (whole seconds)."""
    def r(v: float | None) -> int | None:
        return None if v is None else round(v)
    return {"count": len(values), "p50_s": r(percentile(values, 50)), "p90_s": r(percentile(values, 90)),
            "max_s": r(max(values) if values else None)}


def histogram(served_s: list[float]) -> list[int]:
    """Lines served per bucket of SERVED_BUCKETS_MIN (the last bucket is everything above)."""
    out = [0] * (len(SERVED_BUCKETS_MIN) + 1)
    for s in served_s:
        minutes = s / 60
        i = next((n for n, edge in enumerate(SERVED_BUCKETS_MIN) if minutes < edge), len(SERVED_BUCKETS_MIN))
        out[i] += 1
    return out


def hourly(by_hour: dict[int, int], since_ms: int) -> list[int]:
    """24 dishes-per-hour values of a day from an hour-start → count map."""
    return [by_hour.get(since_ms + h * HOUR_MS, 0) for h in range(24)]


def build(services: Any, tz: dt.tzinfo, day: str, now: int, *, weeks: int = 8) -> dict[str, Any]:
    """The report of ``day`` (aggregates only), from the facades of the services that exist."""
    since, until = day_window(tz, day)
    ordering = services.get("ordering")
    stock = services.get("stock")
    equipment = services.get("equipment")
    members = services.get("members")
    facts = ordering.report_facts(since, until)
    items = facts["items"]
    sold = [i for i in items if i["qty"] > 0]
    top = sorted(sold, key=lambda i: (-i["qty"], i["item"]))[:TOP]
    bottom = sorted(items, key=lambda i: (i["qty"], i["item"]))[:TOP]
    by_hour = ordering.dishes_by_hour(since - weeks * 7 * DAY_MS, until)
    hours = hourly(by_hour, since)
    baseline: list[float | None] = []
    for h in range(24):
        past = [by_hour.get(since - w * 7 * DAY_MS + h * HOUR_MS, 0) for w in range(1, weeks + 1)
                if since - w * 7 * DAY_MS >= min(by_hour, default=since)]
        baseline.append(float(median(past)) if past else None)
    sold_out = set(ordering.sold_out)
    if stock is not None:
        sold_out |= set(stock.sold_out_between(since, until))
    report: dict[str, Any] = {
        "day": day, "since_ms": since, "until_ms": until, "generated_ms": now,
        "sales_cents": facts["sales_cents"], "bills": facts["bills"], "covers": facts["covers"],
        "avg_bill_cents": facts["avg_bill_cents"], "dishes": sum(i["qty"] for i in items),
        "top_items": top, "bottom_items": bottom,
        "dishes_by_hour": hours, "baseline_by_hour": baseline,
        "ticket_times": {"printed": times(facts["ticket_s"]), "served": times(facts["served_s"])},
        "served_histogram": histogram(facts["served_s"]), "served_buckets_min": list(SERVED_BUCKETS_MIN),
        "sold_out": sorted(sold_out),
        "below_safety": stock.below_safety() if stock is not None else [],
        "complaints": {}, "devices": None, "maintenance_due": None,
    }
    if members is not None:
        report["complaints"] = members.complaints_per_day(day, day).get(day, {})
    if equipment is not None:  # the equipment service (registry, maintenance, device health) when this build has it
        report["devices"] = _call(equipment, "device_health", since, until)
        report["maintenance_due"] = _call(equipment, "maintenance_due", now)
    return report


def _call(svc: Any, name: str, *args: Any) -> Any:
    fn = getattr(svc, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - the report goes out without this part rather than not at all
        return None


def alerts_of(conn: Any, since: int, until: int) -> dict[str, Any]:
    """Alerts raised in the window, per rule, and how many are active now (the spine's alert log)."""
    by_rule = {rule: int(n) for rule, n in conn.execute(
        "SELECT rule, count(*) FROM alert_log WHERE state = 'raised' AND ts_ms >= ? AND ts_ms < ? GROUP BY rule",
        (since, until))}
    active = conn.execute("SELECT count(*) FROM alerts_active").fetchone()[0]
    return {"raised": sum(by_rule.values()), "by_rule": by_rule, "active": int(active)}


def uptime_pct(devices: Any) -> float | None:
    """The mean uptime of the devices in a report (None without device health)."""
    if not devices:
        return None
    values = [d["uptime_pct"] for d in devices if isinstance(d, dict) and isinstance(d.get("uptime_pct"), int | float)]
    return round(sum(values) / len(values), 2) if values else None


def hq_message(report: dict[str, Any], store_id: str, currency: str, ts: str) -> dict[str, Any]:
    """``P/reports/daily`` (docs/schemas/reports-daily.json): aggregates and ids, no personal data."""
    def item(i: dict[str, Any]) -> dict[str, Any]:
        return {"item": i["item"], "qty": i["qty"], "revenue_cents": i["revenue_cents"]}
    maint = report.get("maintenance_due")
    return {
        "id": f"{store_id}:report:{report['day']}", "ts": ts, "store": store_id, "day": report["day"],
        "currency": currency, "sales_cents": report["sales_cents"], "bills": report["bills"],
        "covers": report["covers"], "avg_bill_cents": report["avg_bill_cents"], "dishes": report["dishes"],
        "top_items": [item(i) for i in report["top_items"]], "bottom_items": [item(i) for i in report["bottom_items"]],
        "dishes_by_hour": report["dishes_by_hour"], "baseline_by_hour": report["baseline_by_hour"],
        "ticket_times": report["ticket_times"], "sold_out": report["sold_out"],
        "below_safety": [b["id"] for b in report["below_safety"]], "alerts": report["alerts"],
        "complaints": report["complaints"], "device_uptime_pct": uptime_pct(report.get("devices")),
        "maintenance_due": len(maint) if isinstance(maint, list) else None,
    }


def money(cents: int) -> str:
    """Cents as yuan with two decimals."""
    return f"{'-' if cents < 0 else ''}{abs(cents) / 100:.2f}"


def receipt(report: dict[str, Any], store_name: str) -> list[dict[str, Any]]:
    """The report's summary as print-service blocks for a 58/80 mm receipt printer."""
    def text(t: str, **kw: Any) -> dict[str, Any]:
        return {"t": "text", "text": t, "size": kw.get("size", "normal"), "align": kw.get("align", "left"),
                "bold": kw.get("bold", False), "invert": False}

    def cols(left: str, right: Any) -> dict[str, Any]:
        return {"t": "columns", "left": left[:30], "right": str(right)[:16]}
    tt = report["ticket_times"]
    out = [text(store_name or "storegw", size="large", align="center", bold=True),
           text(f"日报 DAILY REPORT {report['day']}", align="center"), {"t": "rule"},
           cols("营业额 Sales", money(report["sales_cents"])), cols("账单 Bills", report["bills"]),
           cols("人数 Covers", report["covers"]), cols("客单价 Avg bill", money(report["avg_bill_cents"])),
           cols("菜品 Dishes", report["dishes"]), {"t": "rule"}, text("畅销 Top", bold=True)]
    out += [cols(f"{i['qty']} x {i['name_zh']}", money(i["revenue_cents"])) for i in report["top_items"]]
    out += [text("滞销 Bottom", bold=True)]
    out += [cols(f"{i['qty']} x {i['name_zh']}", money(i["revenue_cents"])) for i in report["bottom_items"]]
    out += [{"t": "rule"},
            cols("出单 p50/p90 s", f"{tt['printed']['p50_s']}/{tt['printed']['p90_s']}"),
            cols("上菜 p50/p90 min", "/".join("-" if v is None else f"{v / 60:.0f}"
                                            for v in (tt["served"]["p50_s"], tt["served"]["p90_s"]))),
            cols("估清 Sold out", len(report["sold_out"])), cols("低于安全库存 Low stock", len(report["below_safety"])),
            cols("告警 Alerts", report["alerts"]["raised"]),
            cols("投诉 Complaints", sum(report["complaints"].values()))]
    maint = report.get("maintenance_due")
    if isinstance(maint, list):
        out.append(cols("待保养 Maintenance due", len(maint)))
    up = uptime_pct(report.get("devices"))
    if up is not None:
        out.append(cols("设备在线 Uptime %", up))
    out += [{"t": "feed", "lines": 2}, {"t": "cut"}]
    return out
