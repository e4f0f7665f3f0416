"""Order summaries for HQ (``P/orders/summary``): per paid bill and per hour; no personal data.

Each message has a stable ``id`` (a retry or a recomputation re-sends the same id) and ``ts``.
Only dish ids and names, quantities, revenue, covers, rounds and ticket times leave the store:
no nicknames, notes, payment references or staff names.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import TYPE_CHECKING, Any

from gateway.core.models import iso_ms, now_ms
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

if TYPE_CHECKING:
    from gateway.ordering.context import OrderingContext

HOUR_MS = 3_600_000
HOUR_KEY = "summary_hour"


def _ticket_times(conn: Connection, where: str, args: tuple[Any, ...]) -> dict[str, Any]:
    secs = sorted((served - created) / 1000 for created, served in conn.execute(
        f"SELECT created_ms, served_ms FROM ord_lines WHERE served_ms IS NOT NULL AND {where}", args))  # noqa: S608
    if not secs:
        return {"count": 0, "p50_s": None, "p90_s": None, "max_s": None}
    return {"count": len(secs), "p50_s": round(statistics.median(secs), 1),
            "p90_s": round(secs[min(len(secs) - 1, int(len(secs) * 0.9))], 1), "max_s": round(secs[-1], 1)}


def _items(conn: Connection, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    sql = ("SELECT item_id, name_zh, name_en, sum(qty), sum(CASE WHEN comp THEN 0 ELSE qty * unit_cents END) "  # noqa: S608
           f"FROM ord_lines WHERE status != 'void' AND {where} GROUP BY item_id ORDER BY item_id")
    return [{"item": iid, "name_zh": zh, "name_en": en, "qty": qty, "revenue_cents": rev}
            for iid, zh, en, qty, rev in conn.execute(sql, args)]


def bill_summary(svc: OrderingContext, c: Connection, sid: int, table_id: str, method: str,
                 bill: dict[str, Any]) -> None:
    """Queue the summary of one paid bill (same transaction as the payment)."""
    ts = now_ms()
    covers, rounds, opened = c.execute("SELECT covers, rounds, opened_ms FROM ord_sessions WHERE id = ?",
                                       (sid,)).fetchone()
    pid = c.execute("SELECT max(id) FROM ord_payments WHERE session_id = ?", (sid,)).fetchone()[0]
    msg = {"id": f"{svc.store_id}:bill:{sid}:{pid}", "ts": iso_ms(ts), "kind": "bill", "store": svc.store_id,
           "table": table_id, "opened_at": iso_ms(opened), "covers": covers, "rounds": rounds,
           "currency": svc.menu.currency, "items": _items(c, "session_id = ?", (sid,)),
           "subtotal_cents": bill["subtotal"], "service_cents": bill["service"], "revenue_cents": bill["total"],
           "discount_cents": bill.get("discount", 0),
           "payment": method, "ticket_times": _ticket_times(c, "session_id = ?", (sid,))}
    enqueue(c, Lane.ORDERS, f"{svc.cfg.prefix}/orders/summary", msg["id"], "orders", msg)


def hourly(svc: OrderingContext, c: Connection, now: int | None = None) -> int:
    """Queue a summary for every completed hour not yet sent; return how many were queued."""
    now = now if now is not None else now_ms()
    current = now - now % HOUR_MS
    row = c.execute("SELECT value FROM ord_meta WHERE key = ?", (HOUR_KEY,)).fetchone()
    if row is None:
        first = c.execute("SELECT min(created_ms) FROM ord_lines").fetchone()[0]
        start = (first - first % HOUR_MS) if first else current
    else:
        start = int(row[0])
    sent = 0
    hour = start
    while hour < current and sent < 48:
        args = (hour, hour + HOUR_MS)
        where = "created_ms >= ? AND created_ms < ?"
        items = _items(c, where, args)
        if items:
            covers = c.execute("SELECT coalesce(sum(covers), 0) FROM ord_sessions WHERE opened_ms >= ? "
                               "AND opened_ms < ?", args).fetchone()[0]
            rounds = c.execute(f"SELECT count(*) FROM ord_rounds WHERE {where}", args).fetchone()[0]  # noqa: S608
            start_iso = dt.datetime.fromtimestamp(hour / 1000, dt.UTC).strftime("%Y%m%dT%H")
            msg = {"id": f"{svc.store_id}:hour:{start_iso}", "ts": iso_ms(now), "kind": "hour",
                   "store": svc.store_id, "window_start": iso_ms(hour), "window_s": 3600, "covers": covers,
                   "rounds": rounds, "currency": svc.menu.currency, "items": items,
                   "revenue_cents": sum(i["revenue_cents"] for i in items),
                   "ticket_times": _ticket_times(c, where, args)}
            enqueue(c, Lane.ORDERS, f"{svc.cfg.prefix}/orders/summary", msg["id"], "orders", msg)
            sent += 1
        hour += HOUR_MS
    c.execute("INSERT INTO ord_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
              (HOUR_KEY, str(hour)))
    return sent
