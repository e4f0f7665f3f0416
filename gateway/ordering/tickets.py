"""Kitchen tickets: text sanitising and the print document of one round at one station.

Layout (80 mm): station banner (inverted), large table number, round (加菜 #n), time, an
inverted REROUTED / REPRINT banner when it applies, ``qty x name`` lines with modifiers and
notes indented, an inverted ALLERGY banner, a barcode per line for scan-to-serve (划菜) and a
ticket QR code; partial cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.ordering.menu import allergen_name

LINE_PREFIX = "L"
TICKET_PREFIX = "T"


def line_code(line_id: int) -> str:
    """Return the scan-to-serve code printed for one order line."""
    return f"{LINE_PREFIX}{line_id}"


def ticket_code(ticket_id: int) -> str:
    """Return the scan-to-serve code that serves every line of a ticket."""
    return f"{TICKET_PREFIX}{ticket_id}"


def parse_code(code: str) -> tuple[str, int] | None:
    """Parse a scanned code into ("line"|"ticket", id), or None."""
    code = code.strip().upper()
    m = re.fullmatch(r"([LT])([1-9][0-9]{0,11})", code)
    if not m:
        return None
    return ("line" if m.group(1) == LINE_PREFIX else "ticket"), int(m.group(2))


@dataclass
class TicketLine:
    """One line as printed."""

    id: int
    qty: int
    name_zh: str
    name_en: str
    mods: list[str] = field(default_factory=list)
    note: str = ""
    diner: str = ""
    allergens: list[str] = field(default_factory=list)


@dataclass
class TicketDoc:
    """What goes on one station ticket."""

    ticket_id: int
    station_zh: str
    station_en: str
    table_label: str
    round_no: int
    time_local: str
    lines: list[TicketLine]
    rerouted_from: str = ""
    reprint: int = 0
    queue_label: str = ""  # the queue number (取号) of a party seated from the queue, e.g. A023


def blocks(t: TicketDoc) -> list[dict[str, Any]]:
    """Return the print-service document blocks for a ticket."""
    out: list[dict[str, Any]] = [
        {"t": "text", "text": f" {t.station_zh} {t.station_en.upper()} ", "size": "double", "align": "center",
         "bold": True, "invert": True},
        {"t": "text", "text": f"桌 TABLE {t.table_label}", "size": "large", "align": "center", "bold": True},
        {"t": "columns", "left": f"加菜 ROUND #{t.round_no}" if t.round_no > 1 else f"ROUND #{t.round_no}",
         "right": t.time_local},
    ]
    if t.queue_label:
        out.append({"t": "text", "text": f"排队号 QUEUE {t.queue_label}", "size": "normal", "align": "center",
                    "bold": True, "invert": False})
    if t.rerouted_from:
        out.append({"t": "text", "text": f" REROUTED from {t.rerouted_from} ", "size": "normal", "align": "center",
                    "bold": True, "invert": True})
    if t.reprint:
        out.append({"t": "text", "text": f" REPRINT #{t.reprint} ", "size": "normal", "align": "center",
                    "bold": True, "invert": True})
    out.append({"t": "rule"})
    allergens: list[str] = []
    for ln in t.lines:
        out.append({"t": "text", "text": f"{ln.qty} x {ln.name_zh}", "size": "double", "align": "left",
                    "bold": True, "invert": False})
        out.append({"t": "text", "text": f"    {ln.name_en}", "size": "normal", "align": "left", "bold": False,
                    "invert": False})
        for m in ln.mods:
            out.append({"t": "text", "text": f"  - {m}", "size": "normal", "align": "left", "bold": False,
                        "invert": False})
        if ln.note:
            out.append({"t": "text", "text": f"  NOTE: {ln.note}", "size": "normal", "align": "left", "bold": True,
                        "invert": False})
        if ln.diner:
            out.append({"t": "text", "text": f"  @ {ln.diner}", "size": "normal", "align": "left", "bold": False,
                        "invert": False})
        out.append({"t": "barcode", "data": line_code(ln.id), "symbology": "CODE128"})
        for a in ln.allergens:
            if a not in allergens:
                allergens.append(a)
    if allergens:
        names = ", ".join(f"{allergen_name(a, 'zh')} {allergen_name(a, 'en')}" for a in allergens)
        out.append({"t": "rule"})
        out.append({"t": "text", "text": f" 过敏 ALLERGY: {names} ", "size": "normal", "align": "left",
                    "bold": True, "invert": True})
    out.append({"t": "rule"})
    out.append({"t": "qr", "data": ticket_code(t.ticket_id), "size": 4})
    out.append({"t": "text", "text": f"#{ticket_code(t.ticket_id)}", "size": "normal", "align": "center",
                "bold": False, "invert": False})
    out.append({"t": "feed", "lines": 2})
    out.append({"t": "cut"})
    return out
