"""Staff side: PIN accounts (argon2), table map operations, void/comp, bills and payments, tasks.

Write functions take ``(svc, conn, ...)`` and return ``(result, channels_to_notify)``; every change
a manager or cashier makes is written to ``ord_audit`` in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.core.errors import OrderingError
from gateway.core.models import now_ms
from gateway.ordering import summary
from gateway.ordering.tickets import clean_text
from gateway.store.db import Connection, IntegrityError

if TYPE_CHECKING:
    from gateway.ordering.context import OrderingContext

ROLES = ("waiter", "kitchen", "cashier", "manager", "technician")
# What each role may do; managers may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "waiter": frozenset({"tables", "tasks", "orders", "kds"}),
    "kitchen": frozenset({"kds", "tasks"}),
    "cashier": frozenset({"tables", "orders", "bill", "reprint", "tasks"}),
    "manager": frozenset({"tables", "tasks", "orders", "kds", "bill", "reprint", "void", "menu", "staff"}),
    "technician": frozenset({"reprint", "kds"}),
}
PAY_METHODS = ("cash", "card", "qr")
# 8 MiB, 3 passes: argon2's 64 MiB default would double the gateway's memory at every login
# on a Pi (target <= 80 MB RSS); PINs are also protected by rate limits and the encrypted store.
_HASHER = PasswordHasher(time_cost=3, memory_cost=8 * 1024, parallelism=1)


@dataclass(frozen=True)
class StaffMember:
    """A signed-in staff member."""

    id: int
    name: str
    role: str

    def can(self, perm: str) -> bool:
        """Return whether the role allows ``perm``."""
        return perm in PERMISSIONS.get(self.role, frozenset())


PIN_MIN = 6  # new and reset PINs; accounts made with shorter PINs keep signing in until reset
PIN_MAX = 12
LOCK_AFTER = 100  # consecutive wrong PINs, then locked until a manager unlocks (NIST SP 800-63B 5.2.2)
FREE_FAILURES = 5  # wrong PINs before the account's back-off starts
BACKOFF_MAX_S = 300


def valid_pin(pin: str) -> bool:
    """A new PIN is 6-12 ASCII digits."""
    return isinstance(pin, str) and pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX


def backoff_ms(failures: int) -> int:
    """How long after the last wrong PIN the account refuses the next try: none for the first
    ``FREE_FAILURES``, then 1 s doubling up to ``BACKOFF_MAX_S``."""
    if failures < FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES), BACKOFF_MAX_S) * 1000


def end_sessions(conn: Connection, why: str, *, staff_id: int | None = None, session_id: int | None = None) -> int:
    """End a member's open sessions (or one session); return how many ended."""
    if staff_id is None and session_id is None:
        raise ValueError("staff_id or session_id")
    where, arg = ("staff_id = ?", staff_id) if session_id is None else ("id = ?", session_id)
    cur = conn.execute(f"UPDATE ord_staff_sessions SET ended_ms = ?, ended_why = ? "  # noqa: S608 - fixed columns
                       f"WHERE {where} AND ended_ms IS NULL", (now_ms(), why[:40], arg))
    return cur.rowcount


def add_staff(conn: Connection, name: str, role: str, pin: str) -> int:
    """Create (or reset) a staff account with an argon2 hash of its PIN.

    A reset (the name exists) ends every session of the member, clears its wrong-PIN count and lock,
    and re-enables it.
    """
    name = clean_text(name, 32)
    if not name:
        raise OrderingError("staff name is required")
    if role not in ROLES:
        raise OrderingError(f"role must be one of {', '.join(ROLES)}")
    if not valid_pin(pin):
        raise OrderingError(f"PIN must be {PIN_MIN}-{PIN_MAX} digits")
    digest = _HASHER.hash(pin)
    known = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET role = excluded.role, pin_hash = excluded.pin_hash, active = 1, "
                 "failures = 0, failed_ms = NULL, locked_ms = NULL",
                 (name, role, digest, now_ms()))
    staff_id = int(conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()[0])
    if known is not None:
        end_sessions(conn, "pin-reset", staff_id=staff_id)
    return staff_id


def verify(conn: Connection, name: str, pin: str) -> StaffMember | None:
    """Check a name and PIN; return the staff member or None (constant work for unknown names).

    No lockout here: the sign-in page uses ``check_login``.
    """
    row = conn.execute("SELECT id, name, role, pin_hash FROM ord_staff WHERE name = ? AND active = 1",
                       (name,)).fetchone()
    digest = row[3] if row else _DUMMY
    try:
        _HASHER.verify(digest, pin)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return StaffMember(row[0], row[1], row[2]) if row else None


_DUMMY = _HASHER.hash("0000-not-a-pin")


def _failed(c: Connection, staff_id: int) -> int:
    """Count one more consecutive wrong PIN (in the writer); lock at ``LOCK_AFTER``; return the count."""
    ts = now_ms()
    c.execute("UPDATE ord_staff SET failures = failures + 1, failed_ms = ?, "
              "locked_ms = CASE WHEN failures + 1 >= ? THEN coalesce(locked_ms, ?) ELSE locked_ms END WHERE id = ?",
              (ts, LOCK_AFTER, ts, staff_id))
    row = c.execute("SELECT name, failures, locked_ms FROM ord_staff WHERE id = ?", (staff_id,)).fetchone()
    if row[2] == ts:
        audit(c, "", "lock", f"staff:{row[0]}", f"{row[1]} wrong PINs in a row")
    return int(row[1])


def check_login(conn: Connection, write: Any, name: str, pin: str) -> tuple[StaffMember | None, str]:
    """Sign-in check with the account's back-off and lock; return (member, "") or (None, why).

    ``why`` is ``wrong``, ``wait`` (the account's back-off: the PIN was not even checked) or
    ``locked``. Every try that reaches a known account and is not right counts as a consecutive
    failure, including tries refused during the back-off, so at most ``LOCK_AFTER`` come before the
    lock however many addresses they come from. ``write(fn)`` runs ``fn(conn)`` in the writer.
    """
    name = clean_text(name, 32)
    row = conn.execute("SELECT id, name, role, pin_hash, failures, failed_ms, locked_ms FROM ord_staff "
                       "WHERE name = ? AND active = 1", (name,)).fetchone()
    if row is None:
        verify(conn, "", pin)  # the same work as for a known name
        return None, "wrong"
    staff_id, _, role, digest, failures, failed_ms, locked_ms = row
    if locked_ms is not None:
        return None, "locked"
    if failures and now_ms() < (failed_ms or 0) + backoff_ms(failures):
        n = write(lambda c: _failed(c, staff_id))
        return None, "locked" if n >= LOCK_AFTER else "wait"
    try:
        _HASHER.verify(digest, pin)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        n = write(lambda c: _failed(c, staff_id))
        return None, "locked" if n >= LOCK_AFTER else "wrong"
    ok = write(lambda c: c.execute("UPDATE ord_staff SET failures = 0, failed_ms = NULL WHERE id = ? "
                                   "AND locked_ms IS NULL", (staff_id,)).rowcount)
    if not ok:  # locked between the read and now
        return None, "locked"
    return StaffMember(staff_id, row[1], role), ""


def unlock(conn: Connection, name: str, who: str) -> int:
    """Clear an account's lock and wrong-PIN count (a manager, or `storegw staff unlock`); return its id."""
    row = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise OrderingError(f"no staff member {name!r}", code="no_staff", status=404)
    conn.execute("UPDATE ord_staff SET failures = 0, failed_ms = NULL, locked_ms = NULL WHERE id = ?", (row[0],))
    audit(conn, who, "unlock", f"staff:{name}")
    return int(row[0])


def set_active(conn: Connection, name: str, active: bool, who: str) -> int:
    """Disable (ending every session) or re-enable an account; return its id."""
    row = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise OrderingError(f"no staff member {name!r}", code="no_staff", status=404)
    conn.execute("UPDATE ord_staff SET active = ? WHERE id = ?", (int(active), row[0]))
    if not active:
        end_sessions(conn, "disabled", staff_id=row[0])
    audit(conn, who, "enable" if active else "disable", f"staff:{name}")
    return int(row[0])


def set_role(conn: Connection, name: str, role: str, who: str) -> int:
    """Change an account's role; its sessions end (they were granted under the old role)."""
    if role not in ROLES:
        raise OrderingError(f"role must be one of {', '.join(ROLES)}")
    row = conn.execute("SELECT id, role FROM ord_staff WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise OrderingError(f"no staff member {name!r}", code="no_staff", status=404)
    if row[1] != role:
        conn.execute("UPDATE ord_staff SET role = ? WHERE id = ?", (role, row[0]))
        end_sessions(conn, "role-change", staff_id=row[0])
        audit(conn, who, "role", f"staff:{name}", f"{row[1]} -> {role}")
    return int(row[0])


# ---------------------------------------------------------------------------- server-side sessions

def start_session(conn: Connection, staff_id: int, token_hash: str, addr: str, agent: str) -> int:
    """Record a new session (in the writer); old ended or long-idle rows are pruned."""
    ts = now_ms()
    conn.execute("DELETE FROM ord_staff_sessions WHERE coalesce(ended_ms, seen_ms) < ?", (ts - 30 * 86400_000,))
    return int(conn.execute(
        "INSERT INTO ord_staff_sessions (token_hash, staff_id, created_ms, seen_ms, addr, agent) "
        "VALUES (?, ?, ?, ?, ?, ?)", (token_hash, staff_id, ts, ts, addr[:64], clean_text(agent, 80))).lastrowid)


def session_member(conn: Connection, token_hash: str, idle_ms: int, max_ms: int) -> tuple[StaffMember, int, int] | None:
    """Return (member, session id, last seen ms) of a live session, or None (ended, expired, account off)."""
    row = conn.execute(
        "SELECT s.id, s.seen_ms, s.created_ms, m.id, m.name, m.role FROM ord_staff_sessions s "
        "JOIN ord_staff m ON m.id = s.staff_id WHERE s.token_hash = ? AND s.ended_ms IS NULL AND m.active = 1",
        (token_hash,)).fetchone()
    if row is None:
        return None
    ts = now_ms()
    if ts - row[1] > idle_ms or ts - row[2] > max_ms:
        return None
    return StaffMember(row[3], row[4], row[5]), int(row[0]), int(row[1])


def touch_session(conn: Connection, session_id: int) -> None:
    """Mark a session used now (its idle timer restarts)."""
    conn.execute("UPDATE ord_staff_sessions SET seen_ms = ? WHERE id = ? AND ended_ms IS NULL",
                 (now_ms(), session_id))


def accounts(conn: Connection, idle_ms: int, max_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Staff accounts and their live sessions, for the manager's page."""
    ts = now_ms()
    people = [{"id": i, "name": n, "role": r, "active": bool(a), "failures": f, "locked": lk is not None}
              for i, n, r, a, f, lk in conn.execute(
                  "SELECT id, name, role, active, failures, locked_ms FROM ord_staff ORDER BY name")]
    sessions = [{"id": i, "name": n, "role": r, "created_ms": c, "seen_ms": s, "addr": addr, "agent": ag}
                for i, n, r, c, s, addr, ag in conn.execute(
                    "SELECT s.id, m.name, m.role, s.created_ms, s.seen_ms, s.addr, s.agent FROM ord_staff_sessions s "
                    "JOIN ord_staff m ON m.id = s.staff_id WHERE s.ended_ms IS NULL AND m.active = 1 "
                    "AND s.seen_ms >= ? AND s.created_ms >= ? ORDER BY s.seen_ms DESC", (ts - idle_ms, ts - max_ms))]
    return {"staff": people, "sessions": sessions}


def get_staff(conn: Connection, staff_id: int) -> StaffMember | None:
    """Return an active staff member by id."""
    row = conn.execute("SELECT id, name, role FROM ord_staff WHERE id = ? AND active = 1", (staff_id,)).fetchone()
    return StaffMember(*row) if row else None


def audit(conn: Connection, staff_name: str, action: str, target: str, reason: str = "") -> None:
    """Record a staff action."""
    conn.execute("INSERT INTO ord_audit (ts_ms, staff, action, target, reason) VALUES (?, ?, ?, ?, ?)",
                 (now_ms(), staff_name, action, target, reason[:200]))


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
    reason = clean_text(reason, 140)
    if not reason:
        raise OrderingError("A reason is required. 请填写原因。", code="reason_required")
    row = c.execute("SELECT table_id, station FROM ord_lines WHERE id = ?", (line_id,)).fetchone()
    if row is None:
        raise OrderingError("no such line", code="no_line", status=404)
    if action == "void":
        c.execute("UPDATE ord_lines SET status = 'void', reason = ? WHERE id = ?", (reason, line_id))
    elif action == "comp":
        c.execute("UPDATE ord_lines SET comp = 1, reason = ? WHERE id = ?", (reason, line_id))
    else:
        raise OrderingError("action must be void or comp")
    audit(c, who, action, f"line:{line_id}", reason)
    return line_id, [f"table:{row[0]}", f"kds:{row[1]}", "staff"]


def bill(svc: OrderingContext, conn: Connection, table_id: str) -> dict[str, Any]:
    """Return the bill of a table's open session (voids excluded, comps at zero, service charge)."""
    sid = _session(conn, table_id)
    if sid is None:
        return {"session": None, "lines": [], "subtotal": 0, "service": 0, "total": 0, "paid": 0}
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
    return {"session": sid, "lines": lines, "subtotal": subtotal, "service": service, "total": subtotal + service,
            "paid": paid}


def pay(svc: OrderingContext, c: Connection, table_id: str, method: str, reference: str,
        who: str) -> tuple[int, list[str]]:
    """Mark the bill paid at the counter (cash, card terminal, QR); queue the HQ bill summary.

    Only a method and a short terminal reference are kept: card data never enters the gateway.
    """
    if method not in PAY_METHODS:
        raise OrderingError(f"method must be one of {', '.join(PAY_METHODS)}")
    ref = clean_text(reference, 32)
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
    summary.bill_summary(svc, c, b["session"], table_id, method, b)
    return pid, [f"table:{table_id}", "staff"]


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


def try_add_staff(conn: Connection, name: str, role: str, pin: str) -> int:
    """``add_staff`` that turns a database conflict into an OrderingError."""
    try:
        return add_staff(conn, name, role, pin)
    except IntegrityError as err:
        raise OrderingError(f"cannot add staff {name!r}: {err}") from err
