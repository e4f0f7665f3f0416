"""Front of house: the table map (open, clear, move, merge), void/comp, bills and payments, tasks.

Write functions take ``(ctx, conn, ...)`` and return ``(result, channels_to_notify)``; every change
a manager or cashier makes is audited in the same transaction.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.core.text import free_text
from gateway.ordering import summary
from gateway.printing import PrintError
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.ordering.context import OrderingContext

PAY_METHODS = ("cash", "card", "qr")


def _session(conn: Connection, table_id: str) -> int | None:
    row = conn.execute("SELECT id FROM ord_sessions WHERE table_id = ? AND closed_ms IS NULL", (table_id,)).fetchone()
    return int(row[0]) if row else None


def _need_table(svc: OrderingContext, table_id: str) -> None:
    if table_id not in svc.tables:
        raise OrderingError("no such table", code="no_table", status=404)


def open_table(svc: OrderingContext, c: Connection, table_id: str, covers: int, who: str) -> tuple[int, list[str]]:
    """开台: open a session so the table's QR accepts orders."""
    _need_table(svc, table_id)
    if _session(c, table_id) is not None:
        raise OrderingError("The table is already open.", code="already_open", status=409)
    sid = int(c.execute("INSERT INTO ord_sessions (table_id, opened_ms, opened_by, covers) VALUES (?, ?, ?, ?)",
                        (table_id, now_ms(), who, max(0, min(covers, 99)))).lastrowid)
    audit(c, who, "open", f"table:{table_id}", f"covers={covers}")
    return sid, [f"table:{table_id}", "staff"]


def clear_table(svc: OrderingContext, c: Connection, table_id: str, who: str) -> tuple[int | None, list[str]]:
    """清台: close the session (its unsent cart is dropped); the QR locks if require_open_table."""
    _need_table(svc, table_id)
    sid = _session(c, table_id)
    if sid is None:
        return None, []
    paid = c.execute("SELECT paid_ms FROM ord_sessions WHERE id = ?", (sid,)).fetchone()[0] is not None
    for hook in svc.bill_hooks:
        hook.on_closed(c, sid, paid, who)
    c.execute("UPDATE ord_sessions SET closed_ms = ? WHERE id = ?", (now_ms(), sid))
    c.execute("DELETE FROM ord_cart WHERE session_id = ?", (sid,))
    c.execute("UPDATE ord_tasks SET ack_ms = ?, ack_by = ? WHERE session_id = ? AND ack_ms IS NULL",
              (now_ms(), who, sid))
    audit(c, who, "clear", f"table:{table_id}")
    return sid, [f"table:{table_id}", "staff"]


def move_table(svc: OrderingContext, c: Connection, src: str, dst: str, who: str) -> tuple[int, list[str]]:
    """Move a table's session (cart, rounds, bill) to a free table."""
    _need_table(svc, src)
    _need_table(svc, dst)
    sid = _session(c, src)
    if sid is None:
        raise OrderingError("The table is not open.", code="not_open", status=409)
    if _session(c, dst) is not None:
        raise OrderingError("The target table is in use; merge instead.", code="in_use", status=409)
    c.execute("UPDATE ord_sessions SET table_id = ? WHERE id = ?", (dst, sid))
    c.execute("UPDATE ord_tasks SET table_id = ? WHERE session_id = ?", (dst, sid))
    audit(c, who, "move", f"table:{src}", f"to {dst}")
    return sid, [f"table:{src}", f"table:{dst}", "staff"]


def merge_tables(svc: OrderingContext, c: Connection, src: str, dst: str, who: str) -> tuple[int, list[str]]:
    """并台: merge a table's session into another open table's; the source closes."""
    _need_table(svc, src)
    _need_table(svc, dst)
    a, b = _session(c, src), _session(c, dst)
    if a is None or b is None or a == b:
        raise OrderingError("Both tables must be open (and different) to merge.", code="not_open", status=409)
    for hook in svc.bill_hooks:
        hook.on_merge(c, a, b)
    for table in ("ord_cart", "ord_lines", "ord_tasks", "ord_payments"):
        c.execute(f"UPDATE {table} SET session_id = ? WHERE session_id = ?", (b, a))  # noqa: S608
    c.execute("UPDATE ord_rounds SET session_id = ?, round_no = round_no + "
              "(SELECT coalesce(max(round_no), 0) FROM ord_rounds WHERE session_id = ?) WHERE session_id = ?",
              (b, b, a))
    c.execute("UPDATE ord_sessions SET covers = covers + (SELECT covers FROM ord_sessions WHERE id = ?), "
              "rounds = (SELECT coalesce(max(round_no), 0) FROM ord_rounds WHERE session_id = ?) WHERE id = ?",
              (a, b, b))
    c.execute("UPDATE ord_sessions SET closed_ms = ? WHERE id = ?", (now_ms(), a))
    audit(c, who, "merge", f"table:{src}", f"into {dst}")
    return b, [f"table:{src}", f"table:{dst}", "staff"]


def void_line(svc: OrderingContext, c: Connection, line_id: int, action: str, reason: str,
              who: str) -> tuple[int, list[str]]:
    """Void or comp a line with a reason (audit-logged)."""
    reason = free_text(reason, 140)
    if not reason:
        raise OrderingError("A reason is required. 请填写原因。", code="reason_required")
    row = c.execute("SELECT table_id, station, session_id FROM ord_lines WHERE id = ?", (line_id,)).fetchone()
    if row is None:
        raise OrderingError("no such line", code="no_line", status=404)
    if action == "void":
        c.execute("UPDATE ord_lines SET status = 'void', reason = ? WHERE id = ?", (reason, line_id))
        if svc.stock_svc is not None:  # its ingredients go back on hand (估清 lifted when portions return)
            svc.stock_svc.release(c, [line_id])
    elif action == "comp":
        c.execute("UPDATE ord_lines SET comp = 1, reason = ? WHERE id = ?", (reason, line_id))
    else:
        raise OrderingError("action must be void or comp")
    audit(c, who, action, f"line:{line_id}", reason)
    _changed(svc, c, row[2], who)
    return line_id, [f"table:{row[0]}", f"kds:{row[1]}", "staff"]


def _changed(svc: OrderingContext, c: Connection, sid: int, who: str) -> None:
    if svc.bill_hooks:
        b = bill_of_session(svc, c, sid)
        for hook in svc.bill_hooks:
            hook.on_changed(c, sid, b, who)


def refund(svc: OrderingContext, c: Connection, table_id: str, reason: str, who: str) -> tuple[int, list[str]]:
    """Refund a paid bill (退款/撤单) while the table is still open: every line is voided with the reason,
    a negative payment of what was paid is recorded, and the bill hooks reverse what the payment did."""
    reason = free_text(reason, 140)
    if not reason:
        raise OrderingError("A reason is required. 请填写原因。", code="reason_required")
    sid = _session(c, table_id)
    if sid is None:
        raise OrderingError("The table is not open.", code="not_open", status=409)
    row = c.execute("SELECT method, coalesce(sum(amount_cents), 0) FROM ord_payments WHERE session_id = ?",
                    (sid,)).fetchone()
    paid = int(row[1] or 0)
    if paid <= 0:
        raise OrderingError("Nothing was paid on this bill.", code="not_paid", status=409)
    voided = [r[0] for r in c.execute("SELECT id FROM ord_lines WHERE session_id = ? AND status != 'void'", (sid,))]
    c.execute("UPDATE ord_lines SET status = 'void', reason = ? WHERE session_id = ? AND status != 'void'",
              (f"refund: {reason}", sid))
    if svc.stock_svc is not None:
        svc.stock_svc.release(c, voided)
    c.execute("INSERT INTO ord_payments (session_id, table_id, method, amount_cents, staff, reference, ts_ms) "
              "VALUES (?, ?, ?, ?, ?, 'refund', ?)", (sid, table_id, row[0] or "cash", -paid, who, now_ms()))
    audit(c, who, "refund", f"table:{table_id}", f"{paid} {reason}")
    _changed(svc, c, sid, who)
    return sid, [f"table:{table_id}", "staff"]


def bill(svc: OrderingContext, conn: Connection, table_id: str) -> dict[str, Any]:
    """Return the bill of a table's open session (voids excluded, comps at zero, service charge, and what
    the bill hooks add: a member's discounts, coupons, points)."""
    sid = _session(conn, table_id)
    if sid is None:
        return {"session": None, "lines": [], "subtotal": 0, "service": 0, "total": 0, "paid": 0,
                "adjustments": [], "discount": 0}
    return bill_of_session(svc, conn, sid)


def bill_of_session(svc: OrderingContext, conn: Connection, sid: int) -> dict[str, Any]:
    """The bill of one session (open or not)."""
    lines = []
    subtotal = 0
    for lid, zh, en, qty, unit, mods, status, comp, reason in conn.execute(
            "SELECT id, name_zh, name_en, qty, unit_cents, mods, status, comp, reason FROM ord_lines "
            "WHERE session_id = ? ORDER BY id", (sid,)):
        amount = 0 if status == "void" or comp else unit * qty
        subtotal += amount
        lines.append({"id": lid, "name_zh": zh, "name_en": en, "qty": qty, "unit": unit, "amount": amount,
                      "mods": [f"{m['zh']} / {m['en']}" for m in json.loads(mods)], "status": status,
                      "comp": bool(comp), "reason": reason})
    service = round(subtotal * svc.ocfg.service_charge_pct / 100)
    paid = conn.execute("SELECT coalesce(sum(amount_cents), 0) FROM ord_payments WHERE session_id = ?",
                        (sid,)).fetchone()[0]
    base = {"session": sid, "lines": lines, "subtotal": subtotal, "service": service}
    adjustments = [a for hook in svc.bill_hooks for a in hook.adjustments(conn, sid, base)]
    discount = min(sum(a["amount"] for a in adjustments), subtotal + service)
    return {**base, "total": subtotal + service - discount, "paid": paid, "adjustments": adjustments,
            "discount": discount}


def pay(svc: OrderingContext, c: Connection, table_id: str, method: str, reference: str,
        who: str) -> tuple[int, list[str]]:
    """Mark the bill paid at the counter (cash, card terminal, QR); queue the HQ bill summary.

    Only a method and a short terminal reference are kept: card data never enters the gateway.
    """
    if method not in PAY_METHODS:
        raise OrderingError(f"method must be one of {', '.join(PAY_METHODS)}")
    ref = free_text(reference, 32)
    if sum(ch.isdigit() for ch in ref) >= 12:
        raise OrderingError("Enter the terminal's approval code, never a card number.", code="card_data")
    b = bill(svc, c, table_id)
    if b["session"] is None:
        raise OrderingError("The table is not open.", code="not_open", status=409)
    due = b["total"] - b["paid"]
    if due <= 0:
        raise OrderingError("Nothing to pay.", code="nothing_due", status=409)
    pid = int(c.execute("INSERT INTO ord_payments (session_id, table_id, method, amount_cents, staff, reference, "
                        "ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (b["session"], table_id, method, due, who, ref, now_ms())).lastrowid)
    c.execute("UPDATE ord_sessions SET paid_ms = ? WHERE id = ?", (now_ms(), b["session"]))
    audit(c, who, "pay", f"table:{table_id}", f"{method} {due}")
    for hook in svc.bill_hooks:
        hook.on_paid(c, b["session"], table_id, b, who)
    summary.bill_summary(svc, c, b["session"], table_id, method, b)
    return pid, [f"table:{table_id}", "staff"]


RECEIPT_STATION = "receipt"


def receipt_blocks(store_name: str, table_label: str, b: dict[str, Any], when: str) -> list[dict[str, Any]]:
    """The print document of a bill: lines, subtotal, service, the hooks' lines (member, discounts,
    coupons, points), total and paid. No payment reference and no personal data beyond a member number."""
    def text(t: str, **kw: Any) -> dict[str, Any]:
        return {"t": "text", "text": t, "size": kw.get("size", "normal"), "align": kw.get("align", "left"),
                "bold": kw.get("bold", False), "invert": False}

    def money(cents: int) -> str:
        return f"{'-' if cents < 0 else ''}{abs(cents) / 100:.2f}"

    out = [text(store_name or "storegw", size="large", align="center", bold=True),
           text(f"桌 TABLE {table_label}", align="center"), {"t": "columns", "left": "结账单 RECEIPT", "right": when},
           {"t": "rule"}]
    for ln in b["lines"]:
        if ln["status"] == "void":
            continue
        out.append({"t": "columns", "left": f"{ln['qty']} x {ln['name_zh']} {ln['name_en']}"[:40],
                    "right": "赠送 COMP" if ln["comp"] else money(ln["amount"])})
    out.append({"t": "rule"})
    out.append({"t": "columns", "left": "小计 Subtotal", "right": money(b["subtotal"])})
    if b["service"]:
        out.append({"t": "columns", "left": "服务费 Service", "right": money(b["service"])})
    for a in b.get("adjustments", ()):
        right = f"-{money(a['amount'])}" if a["amount"] else ""
        out.append({"t": "columns", "left": a["label_zh"][:24], "right": right})
        out.append(text(f"  {a['label_en']}"[:48]))
    out.append({"t": "columns", "left": "合计 TOTAL", "right": money(b["total"])})
    out.append({"t": "columns", "left": "已付 Paid", "right": money(b["paid"])})
    out.append({"t": "feed", "lines": 2})
    out.append({"t": "cut"})
    return out


def print_receipt(svc: OrderingContext, c: Connection, table_id: str, who: str) -> tuple[str, list[str]]:
    """Queue the table's bill on the receipt printer (a printer whose station is ``receipt``, or the only one)."""
    _need_table(svc, table_id)
    b = bill(svc, c, table_id)
    if b["session"] is None:
        raise OrderingError("The table is not open.", code="not_open", status=409)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    doc = receipt_blocks(svc.cfg.store.name, svc.tables[table_id].label, b, when)
    try:
        job = svc.printing.enqueue(c, station=RECEIPT_STATION, doc=doc, source="ordering-receipt",
                                   source_id=str(b["session"]))
    except PrintError:
        try:
            job = svc.printing.enqueue(c, doc=doc, source="ordering-receipt", source_id=str(b["session"]))
        except PrintError as err:
            raise OrderingError(f"No receipt printer: {err}", code="no_printer", status=409) from err
    audit(c, who, "receipt", f"table:{table_id}")
    return str(job), ["staff"]


def ack_task(svc: OrderingContext, c: Connection, task_id: int, who: str) -> tuple[int, list[str]]:
    """Acknowledge a diner request (the diner's page shows it)."""
    row = c.execute("SELECT table_id FROM ord_tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise OrderingError("no such task", code="no_task", status=404)
    c.execute("UPDATE ord_tasks SET ack_ms = coalesce(ack_ms, ?), ack_by = ? WHERE id = ?", (now_ms(), who, task_id))
    return task_id, [f"table:{row[0]}", "staff"]


def table_map(svc: OrderingContext, conn: Connection) -> list[dict[str, Any]]:
    """Return every table with its session state, covers, rounds, open tasks and amount."""
    sessions = {r[0]: r[1:] for r in conn.execute(
        "SELECT table_id, id, covers, rounds, opened_ms, paid_ms FROM ord_sessions WHERE closed_ms IS NULL")}
    tasks: dict[str, int] = {}
    for table_id, n in conn.execute("SELECT table_id, count(*) FROM ord_tasks WHERE ack_ms IS NULL GROUP BY table_id"):
        tasks[table_id] = n
    out = []
    for t in svc.tables.values():
        s = sessions.get(t.id)
        out.append({"id": t.id, "label": t.label, "area": t.area, "seats": t.seats, "open": s is not None,
                    "covers": s[1] if s else 0, "rounds": s[2] if s else 0, "opened_ms": s[3] if s else None,
                    "paid": bool(s and s[4]), "tasks": tasks.get(t.id, 0)})
    return out


def open_tasks(conn: Connection) -> list[dict[str, Any]]:
    """Return unacknowledged diner requests, oldest first."""
    return [{"id": i, "table": t, "kind": k, "line": line, "created_ms": ts,
             "dish": (conn.execute("SELECT name_zh || ' ' || name_en FROM ord_lines WHERE id = ?",
                                   (line,)).fetchone() or [""])[0] if line else ""}
            for i, t, k, line, ts in conn.execute(
                "SELECT id, table_id, kind, line_id, created_ms FROM ord_tasks WHERE ack_ms IS NULL ORDER BY id")]
