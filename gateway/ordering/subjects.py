"""Data-subject requests for ordering's tables: a staff member (``staff:NAME``) and a queue number
(``queue:A12`` today, or ``queue:YYYYMMDD/A12``).

Declared with the inventory (``gateway/ordering/schema.py``); ``storegw privacy export|erase`` runs
them (``gateway/privacy/dsr.py``). Each ``erase`` runs inside the caller's transaction and says what
it deleted or blanked, and what it keeps because the law requires it (PIPL Art. 47(2): only storage
and security then), with the date that ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gateway.core.inventory import DAY_MS, LEGAL_OBLIGATION, Erasure
from gateway.core.models import iso_ms, now_ms
from gateway.privacy import audit
from gateway.store.db import Connection

# How long the legal obligation to keep the audit chain's entries about a member lasts, for the DSR
# answer (Cybersecurity Law Art. 21 asks >= 6 months of logs; we keep a year). The chain itself is
# never deleted (gateway/privacy/schema.py INVENTORY; docs/privacy.md).
AUDIT_KEEP_DAYS = 365
SALES_KEEP_DAYS = 400        # sales rows' rule (schema.py)
ERASED = "erased"            # what a staff name becomes in sales and task rows


def _rows(conn: Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# ---------------------------------------------------------------------------------------- staff

def _audit_about(conn: Connection, name: str) -> tuple[str, tuple[str, ...]]:
    """The condition (and its arguments) that finds the audit chain's entries about a staff member.

    The chain names people by reference (``gateway.staff.accounts.audit_who``/``audit_subject``):
    the member who acted is ``staff:ID/ROLE`` (the role of the day), a member acted on is
    ``staff:ID``, and a name that had no account then is its keyed pseudonym ``staff:p:<hex>``.
    """
    refs = [audit.pseudonym(conn, "staff", name)]
    row = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    if row is None:
        return "who = ? OR subject = ?", (refs[0], refs[0])
    ref = f"staff:{row[0]}"
    return ("who = ? OR who LIKE ? OR subject = ? OR who = ? OR subject = ?",
            (ref, ref + "/%", ref, refs[0], refs[0]))


def staff_export(conn: Connection, name: str) -> dict[str, list[dict[str, Any]]]:
    """Everything ordering holds about a staff member (the PIN hash is named, never shown)."""
    out: dict[str, list[dict[str, Any]]] = {}
    account = _rows(conn, "SELECT id, name, role, active, created_ms, failures, failed_ms, locked_ms, auth "
                          "FROM ord_staff WHERE name = ?", (name,))
    if account:
        for row in account:
            if row.pop("auth") == "totp":  # managers, technicians, auditors (gateway/staff)
                row["pin_hash"] = "(held: an Argon2 hash of the password; not exported)"
                row["totp_sealed"] = "(held: the authenticator secret, encrypted; not exported)"
            else:
                row["pin_hash"] = "(held: an Argon2 hash of the PIN; not exported)"
        out["ord_staff"] = account
        out["staff_unmasks"] = _rows(conn, "SELECT id, ts_ms, field, ref, granted, cause FROM staff_unmasks "
                                           "WHERE staff_id = ? ORDER BY id", (account[0]["id"],))
        out["ord_staff_sessions"] = _rows(
            conn, "SELECT id, created_ms, seen_ms, ended_ms, ended_why, addr, agent FROM ord_staff_sessions "
                  "WHERE staff_id = ? ORDER BY id", (account[0]["id"],))
    cond, args = _audit_about(conn, name)
    out["audit_log"] = _rows(conn, f"SELECT seq, ts_ms, who, action, subject, why, detail FROM audit_log "  # noqa: S608
                                   f"WHERE {cond} ORDER BY seq", args)
    out["ord_payments"] = _rows(conn, "SELECT id, session_id, table_id, method, amount_cents, ts_ms FROM ord_payments "
                                      "WHERE staff = ? ORDER BY id", (name,))
    out["ord_sessions"] = _rows(conn, "SELECT id, table_id, opened_ms, closed_ms FROM ord_sessions "
                                      "WHERE opened_by = ? ORDER BY id", (name,))
    out["ord_tasks"] = _rows(conn, "SELECT id, session_id, table_id, kind, created_ms, ack_ms FROM ord_tasks "
                                   "WHERE ack_by = ? ORDER BY id", (name,))
    return {k: v for k, v in out.items() if v}


def staff_erase(conn: Connection, name: str, now: int) -> Erasure:
    """Delete the account and its sessions; take the name out of sales and task rows. The audit
    chain's entries about the member (references, never the name) are kept, untouched: retained by
    legal obligation until a year after the newest; the chain is append-only and is not rewritten,
    and once the account is gone its references lead to nobody the store can name."""
    erased: dict[str, int] = {}
    cond, args = _audit_about(conn, name)  # before the account goes: its id finds the entries
    count, newest = conn.execute(f"SELECT count(*), max(ts_ms) FROM audit_log WHERE {cond}",  # noqa: S608
                                 args).fetchone()
    row = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    if row is not None:
        erased["ord_staff_sessions"] = conn.execute("DELETE FROM ord_staff_sessions WHERE staff_id = ?",
                                                    (row[0],)).rowcount
        erased["staff_unmasks"] = conn.execute("DELETE FROM staff_unmasks WHERE staff_id = ?", (row[0],)).rowcount
        erased["ord_staff"] = conn.execute("DELETE FROM ord_staff WHERE id = ?", (row[0],)).rowcount
    erased["ord_payments"] = conn.execute("UPDATE ord_payments SET staff = ? WHERE staff = ?", (ERASED, name)).rowcount
    erased["ord_sessions"] = conn.execute("UPDATE ord_sessions SET opened_by = ? WHERE opened_by = ?",
                                          (ERASED, name)).rowcount
    erased["ord_tasks"] = conn.execute("UPDATE ord_tasks SET ack_by = ? WHERE ack_by = ?", (ERASED, name)).rowcount
    retained = []
    if count:
        retained.append({"table": "audit_log", "rows": int(count), "basis": LEGAL_OBLIGATION,
                         "until": iso_ms(int(newest) + AUDIT_KEEP_DAYS * DAY_MS),
                         "why": "audit chain entries (staff:ID references and redacted reasons, never the name): "
                                "Cybersecurity Law Art. 21 (network logs kept at least 6 months). The chain is "
                                "append-only and is not rewritten (that would break it); the account the "
                                "references point to is erased, so they no longer lead to the member"})
    return Erasure({k: v for k, v in erased.items() if v}, retained)


def staff_values(conn: Connection) -> Iterable[str]:
    """Every staff name ordering holds (to re-apply erasures from keyed hashes; the audit chain
    holds no names)."""
    seen: set[str] = set()
    for sql in ("SELECT name FROM ord_staff", "SELECT DISTINCT staff FROM ord_payments",
                "SELECT DISTINCT opened_by FROM ord_sessions", "SELECT DISTINCT ack_by FROM ord_tasks"):
        seen.update(r[0] for r in conn.execute(sql) if r[0])
    return sorted(seen - {ERASED, "diner", "queue"})


# ---------------------------------------------------------------------------------------- queue

_QUEUE = re.compile(r"(?:(\d{8})/)?([AB])0*(\d{1,4})")


def _queue_row(conn: Connection, value: str) -> dict[str, Any] | None:
    from gateway.ordering.queue import day_of

    m = _QUEUE.fullmatch(value.strip().upper())
    if not m:
        return None
    day = m.group(1) or day_of(now_ms())
    rows = _rows(conn, "SELECT id, day, prefix, number, party, nickname, created_ms, called_ms, seated_ms, skipped_ms, "
                       "left_ms, table_id, session_id FROM ord_queue WHERE day = ? AND prefix = ? AND number = ?",
                 (day, m.group(2), int(m.group(3))))
    return rows[0] if rows else None


def queue_export(conn: Connection, value: str) -> dict[str, list[dict[str, Any]]]:
    """A queue number's row and its pre-order (cart, rounds, lines with their notes)."""
    entry = _queue_row(conn, value)
    if entry is None:
        return {}
    out = {"ord_queue": [entry]}
    sid = entry["session_id"]
    if sid is not None:
        out["ord_cart"] = _rows(conn, "SELECT id, item_id, qty, mods, note, diner, created_ms FROM ord_cart "
                                      "WHERE session_id = ?", (sid,))
        out["ord_rounds"] = _rows(conn, "SELECT id, round_no, created_ms, total_cents, diner FROM ord_rounds "
                                        "WHERE session_id = ?", (sid,))
        out["ord_lines"] = _rows(conn, "SELECT id, round_id, item_id, name_en, qty, unit_cents, mods, note, diner, "
                                       "status, reason, created_ms FROM ord_lines WHERE session_id = ?", (sid,))
    return {k: v for k, v in out.items() if v}


def queue_erase(conn: Connection, value: str, now: int) -> Erasure:
    """Blank the nickname and the phone and client MACs of the number, and the free text of its
    pre-order; the sales rows of a paid pre-order stay (amounts and items only) under their rule."""
    entry = _queue_row(conn, value)
    if entry is None:
        return Erasure()
    erased = {"ord_queue": conn.execute("UPDATE ord_queue SET nickname = '', phone = '', origin = '' WHERE id = ?",
                                        (entry["id"],)).rowcount}
    retained = []
    sid = entry["session_id"]
    if sid is not None:
        erased["ord_cart"] = conn.execute("DELETE FROM ord_cart WHERE session_id = ?", (sid,)).rowcount
        erased["ord_rounds"] = conn.execute("UPDATE ord_rounds SET diner = '' WHERE session_id = ?", (sid,)).rowcount
        erased["ord_lines"] = conn.execute("UPDATE ord_lines SET note = '', diner = '', reason = '' "
                                           "WHERE session_id = ?", (sid,)).rowcount
        paid = conn.execute("SELECT coalesce(closed_ms, paid_ms) FROM ord_sessions "
                            "WHERE id = ? AND paid_ms IS NOT NULL", (sid,)).fetchone()
        if paid is not None:
            lines = conn.execute("SELECT count(*) FROM ord_lines WHERE session_id = ?", (sid,)).fetchone()[0]
            retained.append({"table": "ord_lines", "rows": int(lines), "basis": LEGAL_OBLIGATION,
                             "until": iso_ms(int(paid[0]) + SALES_KEEP_DAYS * DAY_MS),
                             "why": "sales record of a paid bill (items and amounts; its free text is erased)"})
    return Erasure({k: v for k, v in erased.items() if v}, retained)


def queue_values(conn: Connection) -> Iterable[str]:
    """Every queue number ordering holds that still has personal data, as ``DAY/A12``."""
    return [f"{r[0]}/{r[1]}{r[2]}" for r in conn.execute(
        "SELECT day, prefix, number FROM ord_queue WHERE nickname != '' OR phone != '' OR origin != '' "
        "OR session_id IS NOT NULL")]


def queue_normalise(value: str) -> str:
    """``a012`` and ``A12`` are one number (today's, unless a day is given)."""
    from gateway.ordering.queue import day_of

    m = _QUEUE.fullmatch(value.strip().upper())
    if not m:
        return value.strip()
    return f"{m.group(1) or day_of(now_ms())}/{m.group(2)}{int(m.group(3))}"
