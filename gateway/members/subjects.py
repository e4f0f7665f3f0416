"""The members' data-subject hooks (``member:NUMBER``): export and erase, for ``storegw privacy``.

Erasure deletes the member's profile, points, benefits, visits and tier history; the consent answers
and the requests are kept (proof of consent and of the request, PIPL Art. 14 and 47) without any
identifier but the member's row number. The phone and allergies are exported as what they are in
the database (field-encrypted): the counter shows the member their own values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.core.inventory import LEGAL_OBLIGATION, Erasure
from gateway.store.db import Connection

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def member_normalise(value: str) -> str:
    """Member numbers in upper case, spaces removed."""
    return value.strip().upper().replace(" ", "")


def _member(conn: Connection, value: str) -> int | None:
    row = conn.execute("SELECT id FROM mem_members WHERE member_no = ?", (member_normalise(value),)).fetchone()
    return int(row[0]) if row else None


def _rows(conn: Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, args)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k, v in item.items():
            if isinstance(v, bytes | memoryview):
                item[k] = "(field-encrypted)"
        out.append(item)
    return out


_TABLES = {
    "mem_members": "SELECT * FROM mem_members WHERE id = ?",
    "mem_consents": "SELECT purpose, granted, text_version, channel, ts_ms FROM mem_consents WHERE member_id = ?",
    "mem_ledger": "SELECT ts_ms, kind, points, ref FROM mem_ledger WHERE member_id = ?",
    "mem_lots": "SELECT earned_ms, expires_ms, points, remaining FROM mem_lots WHERE member_id = ?",
    "mem_benefits": "SELECT code, kind, title_zh, title_en, value_kind, value, state, valid_to_ms FROM mem_benefits "
                    "WHERE member_id = ?",
    "mem_visits": "SELECT table_id, attached_ms, paid_ms, spend_cents, discount_cents FROM mem_visits "
                  "WHERE member_id = ?",
    "mem_tier_log": "SELECT ts_ms, from_tier, to_tier, why FROM mem_tier_log WHERE member_id = ?",
    "mem_requests": "SELECT kind, state, created_ms, done_ms, note FROM mem_requests WHERE member_id = ?",
}


def member_export(conn: Connection, value: str) -> dict[str, list[dict[str, Any]]]:
    """Everything the members tables hold about one member."""
    mid = _member(conn, value)
    if mid is None:
        return {}
    out = {table: _rows(conn, sql, (mid,)) for table, sql in _TABLES.items()}
    return {k: v for k, v in out.items() if v}


def member_erase(conn: Connection, value: str, now: int) -> Erasure:
    """Delete the member and everything tied to them; keep the consent answers and requests as proof."""
    mid = _member(conn, value)
    if mid is None:
        return Erasure()
    erased = {}
    erased["mem_lot_use"] = conn.execute("DELETE FROM mem_lot_use WHERE entry_id IN (SELECT id FROM mem_ledger "
                                         "WHERE member_id = ?)", (mid,)).rowcount
    for table in ("mem_ledger", "mem_lots", "mem_benefits", "mem_visits", "mem_tier_log"):
        erased[table] = conn.execute(f"DELETE FROM {table} WHERE member_id = ?", (mid,)).rowcount  # noqa: S608
    erased["mem_members"] = conn.execute("DELETE FROM mem_members WHERE id = ?", (mid,)).rowcount
    kept = conn.execute("SELECT (SELECT count(*) FROM mem_consents WHERE member_id = ?) + "
                        "(SELECT count(*) FROM mem_requests WHERE member_id = ?)", (mid, mid)).fetchone()[0]
    retained = [{"table": "mem_consents", "rows": int(kept), "basis": LEGAL_OBLIGATION, "until": "3 years",
                 "why": "proof of consent and of the request (no identifier but a row number)"}] if kept else []
    return Erasure({k: v for k, v in erased.items() if v}, retained)


def member_values(conn: Connection) -> Iterable[str]:
    """Every member number held."""
    return [r[0] for r in conn.execute("SELECT member_no FROM mem_members")]
