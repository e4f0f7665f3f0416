"""Kitchen side: rounds into per-station tickets (print jobs in the same transaction), print
state updates (confirm, reroute to the backup printer or the KDS), KDS views and bumps, 划菜.

Write functions take ``(svc, conn, ...)`` and return ``(result, channels_to_notify)``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.ordering.menu import price_line
from gateway.ordering.tickets import TicketDoc, TicketLine, blocks, parse_code
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.ordering.context import OrderingContext
    from gateway.ordering.tables import Table

_LOGGER = logging.getLogger(__name__)

ACTIVE = ("sent", "received", "cooking")


def _local_time(svc: OrderingContext, ts_ms: int) -> str:
    try:
        tz: dt.tzinfo = ZoneInfo(svc.cfg.store.timezone)
    except Exception:  # noqa: BLE001 - a missing tz database must not stop the kitchen
        tz = dt.UTC
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%H:%M")


def station_printer(svc: OrderingContext, station: str) -> tuple[str, str]:
    """Return (printer, backup) device ids for a station ("" when it prints nowhere: KDS only).

    The menu's station ``printer`` wins; else the printer whose ``station`` option names it; else
    the store's only printer. The print service itself fails over to a printer's ``backup``.
    """
    st = svc.menu.station(station)
    printer, backup = st.printer, st.backup
    printers = [d for d in svc.cfg.devices if d.kind == "escpos"]
    if not printer:
        for dev in printers:
            if dev.options.get("station") == station:
                printer = dev.id
                break
    if not printer and len(printers) == 1:
        printer = printers[0].id
    if printer and not backup:
        for dev in printers:
            if dev.id == printer:
                backup = str(dev.options.get("backup") or "")
    return printer, backup


def make_round(svc: OrderingContext, c: Connection, table: Table, sid: int, idem: str, nick: str) -> dict[str, Any]:
    """Turn the session's cart into a round: server prices, stock, lines, one ticket per station."""
    cart = c.execute("SELECT id, item_id, qty, mods, note, diner FROM ord_cart WHERE session_id = ? ORDER BY id",
                     (sid,)).fetchall()
    if not cart:
        raise OrderingError("The cart is empty. 购物车是空的。", code="empty", status=409)
    total_qty = sum(r[2] for r in cart)
    if total_qty > svc.ocfg.max_items_per_round:
        raise OrderingError(f"At most {svc.ocfg.max_items_per_round} dishes per round. "
                            f"每轮最多{svc.ocfg.max_items_per_round}份。", code="too_many", status=409)
    menu = svc.menu
    ts = now_ms()
    round_no = c.execute("SELECT coalesce(max(round_no), 0) + 1 FROM ord_rounds WHERE session_id = ?",
                         (sid,)).fetchone()[0]
    stock_left: dict[str, int] = {}
    priced = []
    for _cid, iid, qty, mods, note, diner in cart:
        item = menu.items.get(iid)
        if item is None or not item.active:
            raise OrderingError("A dish in the cart is no longer on the menu; remove it and send again. "
                                "购物车中有菜品已下架。", code="no_item", status=409)
        if iid in svc.sold_out:
            raise OrderingError(f"Sold out: {item.name_en}. Remove it and send again. 已估清：{item.name_zh}",
                                code="sold_out", status=409)
        selected: dict[str, list[str]] = {}
        for gid, chid in json.loads(mods):
            selected.setdefault(gid, []).append(chid)
        unit, chosen = price_line(item, selected)
        row = c.execute("SELECT stock, sold_out FROM ord_items WHERE id = ?", (iid,)).fetchone()
        if row is None or row[1]:
            raise OrderingError(f"Sold out: {item.name_en}. 已估清：{item.name_zh}", code="sold_out", status=409)
        if row[0] is not None and not (svc.stock_svc is not None and svc.stock_svc.has_recipe(iid)):
            left = stock_left.get(iid, row[0]) - qty
            if left < 0:
                raise OrderingError(f"Only {stock_left.get(iid, row[0])} left of {item.name_en}. "
                                    f"{item.name_zh}仅剩{stock_left.get(iid, row[0])}份。",
                                    code="sold_out", status=409)
            stock_left[iid] = left
        priced.append((item, qty, unit, chosen, note, diner))
    for iid, left in stock_left.items():
        c.execute("UPDATE ord_items SET stock = ?, sold_out = ? WHERE id = ?", (left, int(left == 0), iid))
    total = sum(unit * qty for _, qty, unit, *_ in priced)
    rid = c.execute("INSERT INTO ord_rounds (session_id, table_id, round_no, idem_key, created_ms, total_cents, "
                    "diner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sid, table.id, round_no, idem, ts, total, nick)).lastrowid
    c.execute("UPDATE ord_sessions SET rounds = ? WHERE id = ?", (round_no, sid))
    by_station: dict[str, list[TicketLine]] = {}
    consumed = []  # (line, item, qty, options): ingredients are taken at commit, in this transaction
    for item, qty, unit, chosen, note, diner in priced:
        station = menu.station_for(item, chosen)
        mods = [{"g": g.id, "c": ch.id, "zh": ch.name_zh, "en": ch.name_en, "delta": ch.delta} for g, ch in chosen]
        lid = c.execute(
            "INSERT INTO ord_lines (round_id, session_id, table_id, item_id, name_zh, name_en, qty, unit_cents, "
            "mods, allergens, note, diner, station, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, sid, table.id, item.id, item.name_zh, item.name_en, qty, unit,
             json.dumps(mods, ensure_ascii=False), json.dumps(list(item.allergens)), note, diner, station,
             ts)).lastrowid
        consumed.append((lid, item.id, qty, [(g.id, ch.id) for g, ch in chosen]))
        by_station.setdefault(station, []).append(TicketLine(
            lid, qty, item.name_zh, item.name_en, [f"{ch.name_zh} / {ch.name_en}" for _, ch in chosen], note,
            diner, list(item.allergens)))
    if svc.stock_svc is not None:  # refuses (409 sold_out) when the ingredients are not there: nothing is kept
        svc.stock_svc.consume(c, consumed, {item.id: item.name_en for item, *_ in priced})
    c.execute("DELETE FROM ord_cart WHERE session_id = ?", (sid,))
    for station, lines in by_station.items():
        tid = c.execute("INSERT INTO ord_tickets (round_id, table_id, round_no, station, created_ms) "
                        "VALUES (?, ?, ?, ?, ?)", (rid, table.id, round_no, station, ts)).lastrowid
        c.execute(f"UPDATE ord_lines SET ticket_id = ? WHERE id IN ({','.join('?' * len(lines))})",  # noqa: S608
                  (tid, *[ln.id for ln in lines]))
        st = menu.station(station)
        doc = TicketDoc(tid, st.name_zh, st.name_en, table.label, round_no, _local_time(svc, ts), lines,
                        queue_label=_queue_label(c, sid))
        _print_ticket(svc, c, tid, station, doc)
    return {"round": round_no, "total": total, "duplicate": False, "lines": len(priced),
            "stations": sorted(by_station), "stock": stock_left}


def _print_ticket(svc: OrderingContext, c: Connection, tid: int, station: str, doc: TicketDoc,
                  printer: str | None = None) -> str:
    """Queue a ticket on its printer (same transaction); fall back to KDS-only. Return the state."""
    printing = svc.printing
    if printer is None:
        printer, _ = station_printer(svc, station)
    if not printer or printer not in printing.workers:
        c.execute("UPDATE ord_tickets SET state = 'kds', printer = '' WHERE id = ?", (tid,))
        return "kds"
    job_id = printing.enqueue(c, printer=printer, station=station, doc=blocks(doc), source="ordering",
                              source_id=str(tid))
    c.execute("UPDATE ord_tickets SET state = 'queued', printer = ?, job_id = ? WHERE id = ?",
              (printer, str(job_id), tid))
    return "queued"


def _queue_label(c: Connection, session_id: int) -> str:
    """The queue number of the party whose pre-order session became this table session, if any."""
    row = c.execute("SELECT prefix, number FROM ord_queue WHERE session_id = ? AND seated_ms IS NOT NULL",
                    (session_id,)).fetchone()
    return f"{row[0]}{row[1]:03d}" if row else ""


def _ticket_doc(svc: OrderingContext, c: Connection, tid: int) -> tuple[TicketDoc, str]:
    row = c.execute("SELECT t.table_id, t.round_no, t.station, t.created_ms, t.reprints, t.rerouted_from, "
                    "r.session_id FROM ord_tickets t JOIN ord_rounds r ON r.id = t.round_id "
                    "WHERE t.id = ?", (tid,)).fetchone()
    if row is None:
        raise OrderingError("no such ticket", code="no_ticket", status=404)
    table_id, round_no, station, created, reprints, rerouted, session_id = row
    lines = [TicketLine(lid, qty, zh, en, [f"{m['zh']} / {m['en']}" for m in json.loads(mods)], note, diner,
                        json.loads(allergens))
             for lid, qty, zh, en, mods, note, diner, allergens in c.execute(
                 "SELECT id, qty, name_zh, name_en, mods, note, diner, allergens FROM ord_lines WHERE ticket_id = ? "
                 "AND status != 'void' ORDER BY id", (tid,))]
    st = svc.menu.station(station)
    table = svc.tables.get(table_id)
    doc = TicketDoc(tid, st.name_zh, st.name_en, table.label if table else table_id, round_no,
                    _local_time(svc, created), lines, rerouted_from=rerouted, reprint=reprints,
                    queue_label=_queue_label(c, session_id))
    return doc, station


def _received(c: Connection, tid: int, ts: int) -> list[str]:
    c.execute("UPDATE ord_tickets SET received_ms = coalesce(received_ms, ?) WHERE id = ?", (ts, tid))
    c.execute("UPDATE ord_lines SET status = 'received', received_ms = ? WHERE ticket_id = ? AND status = 'sent'",
              (ts, tid))
    row = c.execute("SELECT table_id, station FROM ord_tickets WHERE id = ?", (tid,)).fetchone()
    return [f"table:{row[0]}", f"kds:{row[1]}", "staff"] if row else []


def print_update(svc: OrderingContext, c: Connection, job_id: str, state: str, printer: str) -> list[str]:
    """Apply a print job state: confirmed → kitchen received; moved → REROUTED; failed → KDS."""
    row = c.execute("SELECT id, station, printer, state FROM ord_tickets WHERE job_id = ?", (str(job_id),)).fetchone()
    if row is None:
        return []
    tid, station, current, old = row
    ts = now_ms()
    if state == "confirmed":
        c.execute("UPDATE ord_tickets SET state = 'confirmed', printer = ? WHERE id = ?", (printer or current, tid))
        return _received(c, tid, ts)
    if printer and current and printer != current:  # the print service failed over to the backup printer
        c.execute("UPDATE ord_tickets SET printer = ?, rerouted_from = ? WHERE id = ?", (printer, current, tid))
    if state == "failed" and old != "confirmed":
        c.execute("UPDATE ord_tickets SET state = 'kds', rerouted_from = ? WHERE id = ?", (printer or current, tid))
        return [f"kds:{station}", "staff"]
    if state in ("sent", "queued") and old not in ("confirmed", "kds"):
        c.execute("UPDATE ord_tickets SET state = ? WHERE id = ?", (state, tid))
    return [f"kds:{station}"]


def mark_shown(svc: OrderingContext, c: Connection, ticket_ids: list[int]) -> list[str]:
    """Tickets shown on a KDS count as received by the kitchen."""
    chans: list[str] = []
    ts = now_ms()
    for tid in ticket_ids:
        row = c.execute("SELECT received_ms FROM ord_tickets WHERE id = ?", (tid,)).fetchone()
        if row and row[0] is None:
            chans += _received(c, tid, ts)
    return list(dict.fromkeys(chans))


def kds_view(svc: OrderingContext, conn: Connection, station: str, limit: int = 40) -> dict[str, Any]:
    """Return a station's open tickets with their lines (oldest first) and the last bumped one."""
    tickets = []
    down = printers_down(svc)
    rows = conn.execute(
        "SELECT t.id, t.table_id, t.round_no, t.created_ms, t.state, t.rerouted_from, t.received_ms, t.printer, "
        "r.session_id FROM ord_tickets t JOIN ord_rounds r ON r.id = t.round_id "
        "WHERE t.station = ? AND t.done_ms IS NULL ORDER BY t.id LIMIT ?", (station, limit)).fetchall()
    for tid, table_id, round_no, created, state, rerouted, received, printer, session_id in rows:
        lines = [{"id": lid, "qty": qty, "name_zh": zh, "name_en": en,
                  "mods": [f"{m['zh']} / {m['en']}" for m in json.loads(mods)], "note": note, "diner": diner,
                  "allergens": json.loads(allergens), "status": status}
                 for lid, qty, zh, en, mods, note, diner, allergens, status in conn.execute(
                     "SELECT id, qty, name_zh, name_en, mods, note, diner, allergens, status FROM ord_lines "
                     "WHERE ticket_id = ? ORDER BY id", (tid,))]
        table = svc.tables.get(table_id)
        rush = conn.execute("SELECT count(*) FROM ord_tasks t JOIN ord_lines l ON l.id = t.line_id "
                            "WHERE l.ticket_id = ? AND t.kind = 'rush' AND t.ack_ms IS NULL", (tid,)).fetchone()[0]
        if state in ("queued", "sent") and printer in down and not rerouted:
            rerouted = printer  # the printer is down: this screen is where the kitchen sees the ticket
        tickets.append({"id": tid, "table": table.label if table else table_id, "round": round_no,
                        "created_ms": created, "state": state, "rerouted_from": rerouted, "received_ms": received,
                        "printer": printer, "lines": lines, "rush": rush, "queue": _queue_label(conn, session_id)})
    last = conn.execute("SELECT id FROM ord_tickets WHERE station = ? AND done_ms IS NOT NULL "
                        "ORDER BY done_ms DESC LIMIT 1", (station,)).fetchone()
    return {"station": station, "tickets": tickets, "last_done": last[0] if last else None}


def printers_down(svc: OrderingContext) -> set[str]:
    """Return the ids of printers the print service reports unavailable or faulty."""
    try:
        printers = svc.printing.health().get("printers", {})
    except Exception:  # noqa: BLE001 - the KDS must show tickets even if printing health fails
        return set()
    return {pid for pid, h in printers.items() if h.get("state") not in ("ready", "unknown")}


def _line_channels(c: Connection, where: str, arg: int) -> list[str]:
    row = c.execute(f"SELECT table_id, station FROM ord_lines WHERE {where} = ? LIMIT 1", (arg,)).fetchone()  # noqa: S608
    return [f"table:{row[0]}", f"kds:{row[1]}", "staff"] if row else []


def _finish_ticket_if_done(c: Connection, tid: int, ts: int) -> None:
    left = c.execute("SELECT count(*) FROM ord_lines WHERE ticket_id = ? AND status IN ('sent','received','cooking')",
                     (tid,)).fetchone()[0]
    if not left:
        c.execute("UPDATE ord_tickets SET done_ms = coalesce(done_ms, ?) WHERE id = ?", (ts, tid))


def start_ticket(svc: OrderingContext, c: Connection, tid: int) -> tuple[int, list[str]]:
    """Mark a ticket's lines as cooking."""
    ts = now_ms()
    c.execute("UPDATE ord_tickets SET received_ms = coalesce(received_ms, ?) WHERE id = ?", (ts, tid))
    n = c.execute("UPDATE ord_lines SET status = 'cooking', received_ms = coalesce(received_ms, ?) "
                  "WHERE ticket_id = ? AND status IN ('sent','received')", (ts, tid)).rowcount
    return n, _line_channels(c, "ticket_id", tid)


def bump_line(svc: OrderingContext, c: Connection, lid: int) -> tuple[int, list[str]]:
    """Mark one line served (bump item)."""
    ts = now_ms()
    row = c.execute("SELECT ticket_id FROM ord_lines WHERE id = ?", (lid,)).fetchone()
    if row is None:
        raise OrderingError("no such line", code="no_line", status=404)
    n = c.execute("UPDATE ord_lines SET status = 'served', served_ms = ?, received_ms = coalesce(received_ms, ?) "
                  "WHERE id = ? AND status IN ('sent','received','cooking')", (ts, ts, lid)).rowcount
    if row[0] is not None:
        _finish_ticket_if_done(c, row[0], ts)
    return n, _line_channels(c, "id", lid)


def bump_ticket(svc: OrderingContext, c: Connection, tid: int) -> tuple[int, list[str]]:
    """Mark every line of a ticket served and close the ticket (bump ticket)."""
    ts = now_ms()
    n = c.execute("UPDATE ord_lines SET status = 'served', served_ms = ?, received_ms = coalesce(received_ms, ?) "
                  "WHERE ticket_id = ? AND status IN ('sent','received','cooking')", (ts, ts, tid)).rowcount
    c.execute("UPDATE ord_tickets SET done_ms = coalesce(done_ms, ?), received_ms = coalesce(received_ms, ?) "
              "WHERE id = ?", (ts, ts, tid))
    return n, _line_channels(c, "ticket_id", tid)


def recall(svc: OrderingContext, c: Connection, station: str) -> tuple[int | None, list[str]]:
    """Bring the station's last bumped ticket back (its served lines return to cooking)."""
    row = c.execute("SELECT id FROM ord_tickets WHERE station = ? AND done_ms IS NOT NULL "
                    "ORDER BY done_ms DESC LIMIT 1", (station,)).fetchone()
    if row is None:
        return None, []
    tid = row[0]
    c.execute("UPDATE ord_tickets SET done_ms = NULL WHERE id = ?", (tid,))
    c.execute("UPDATE ord_lines SET status = 'cooking', served_ms = NULL WHERE ticket_id = ? AND status = 'served'",
              (tid,))
    return tid, _line_channels(c, "ticket_id", tid)


def serve_code(svc: OrderingContext, c: Connection, code: str, who: str) -> tuple[int, list[str]]:
    """Scan-to-serve: a line code serves that line, a ticket code serves the ticket."""
    parsed = parse_code(code)
    if parsed is None:
        raise OrderingError("not an order code", code="bad_code")
    kind, ident = parsed
    if kind == "line":
        return bump_line(svc, c, ident)
    if not c.execute("SELECT 1 FROM ord_tickets WHERE id = ?", (ident,)).fetchone():
        raise OrderingError("no such ticket", code="no_ticket", status=404)
    return bump_ticket(svc, c, ident)


def reprint(svc: OrderingContext, c: Connection, tid: int, staff_name: str) -> tuple[str, list[str]]:
    """Print a ticket again, visibly marked REPRINT #n."""
    c.execute("UPDATE ord_tickets SET reprints = reprints + 1 WHERE id = ?", (tid,))
    doc, station = _ticket_doc(svc, c, tid)
    printing = svc.printing
    printer, backup = station_printer(svc, station)
    target = printer or backup
    if printing is None or not target:
        raise OrderingError("This station has no printer; the ticket is on its KDS.", code="no_printer")
    job = printing.enqueue(c, printer=target, station=station, doc=blocks(doc), source="ordering-reprint",
                           source_id=str(tid))
    audit(c, staff_name, "reprint", f"ticket:{tid}")
    return str(job), ["staff"]
