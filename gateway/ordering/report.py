"""What a day of ordering was, for the daily store report (gateway.health reads it through the facade).

Definitions (docs/store-health.md, "Daily report"), for a window [since, until) in epoch ms:

- ``sales_cents``: the sum of payments taken in the window (refunds are negative payments);
- ``bills``: sessions whose bill was paid in the window; ``covers``: their covers (guests);
- ``avg_bill_cents``: ``sales_cents / bills`` rounded half up to a cent (0 without bills);
- ``items``: per menu item, dishes ordered (not voided) in the window and their revenue (comps at 0);
- ``ticket_s``: seconds from the order (round sent) to the ticket printed (confirmed by the printer,
  or shown on a KDS), per ticket; ``served_s``: from the order to the dish served, per line;
- ``dishes_by_hour``: dishes ordered (not voided) per hour, keyed by the hour's start (epoch ms).
"""

from __future__ import annotations

from typing import Any

from gateway.store.db import Connection

HOUR_MS = 3_600_000


def day_facts(conn: Connection, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The ordering facts of one window (see the module's definitions)."""
    w = (since_ms, until_ms)
    sales = conn.execute("SELECT coalesce(sum(amount_cents), 0) FROM ord_payments WHERE ts_ms >= ? AND ts_ms < ?",
                         w).fetchone()[0]
    bills, covers = conn.execute("SELECT count(*), coalesce(sum(covers), 0) FROM ord_sessions "
                                 "WHERE paid_ms >= ? AND paid_ms < ?", w).fetchone()
    items = {iid: {"item": iid, "name_zh": zh, "name_en": en, "qty": 0, "revenue_cents": 0}
             for iid, zh, en in conn.execute("SELECT id, name_zh, name_en FROM ord_items WHERE active = 1")}
    for iid, zh, en, qty, revenue in conn.execute(
            "SELECT item_id, max(name_zh), max(name_en), sum(qty), sum(CASE WHEN comp = 0 THEN qty * unit_cents "
            "ELSE 0 END) FROM ord_lines WHERE created_ms >= ? AND created_ms < ? AND status != 'void' "
            "GROUP BY item_id", w):
        items[iid] = {"item": iid, "name_zh": zh, "name_en": en, "qty": int(qty), "revenue_cents": int(revenue)}
    ticket_s = [(r[0] - r[1]) / 1000 for r in conn.execute(
        "SELECT received_ms, created_ms FROM ord_tickets WHERE created_ms >= ? AND created_ms < ? "
        "AND received_ms IS NOT NULL", w)]
    served_s = [(r[0] - r[1]) / 1000 for r in conn.execute(
        "SELECT served_ms, created_ms FROM ord_lines WHERE created_ms >= ? AND created_ms < ? "
        "AND served_ms IS NOT NULL AND status != 'void'", w)]
    return {"sales_cents": int(sales), "bills": int(bills), "covers": int(covers),
            "avg_bill_cents": (2 * int(sales) + int(bills)) // (2 * int(bills)) if bills else 0,
            "items": list(items.values()), "ticket_s": ticket_s, "served_s": served_s}


def dishes_by_hour(conn: Connection, since_ms: int, until_ms: int) -> dict[int, int]:
    """Dishes ordered (not voided) per hour in [since, until): hour start (epoch ms, UTC-aligned) → count."""
    return {int(h): int(n) for h, n in conn.execute(
        "SELECT (created_ms / ?) * ?, sum(qty) FROM ord_lines WHERE created_ms >= ? AND created_ms < ? "
        "AND status != 'void' GROUP BY 1", (HOUR_MS, HOUR_MS, since_ms, until_ms))}
