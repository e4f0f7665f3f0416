"""Staff accounts: PINs (argon2), roles and what each may do, the per-account back-off and lock,
and server-side sessions.

Functions take a connection; writes run in the gateway's writer (``StaffService`` does that). The
tables (``ord_staff``, ``ord_staff_sessions``) were created by the ordering migrations, where the
staff pages began; they belong to this package now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.core.errors import CardNumberRefused, OrderingError
from gateway.core.models import now_ms
from gateway.core.text import clean, free_text
from gateway.privacy import audit as audit_chain
from gateway.store.db import Connection, IntegrityError

ROLES = ("waiter", "kitchen", "cashier", "manager", "technician")
# What each role may do; managers may do everything. "guests": the front-desk registration page
# (cashiers work the hotel front desk); "authority": the police-report outbox (managers only).
PERMISSIONS: dict[str, frozenset[str]] = {
    "waiter": frozenset({"tables", "tasks", "orders", "kds"}),
    "kitchen": frozenset({"kds", "tasks"}),
    "cashier": frozenset({"tables", "orders", "bill", "reprint", "tasks", "guests"}),
    "manager": frozenset({"tables", "tasks", "orders", "kds", "bill", "reprint", "void", "menu", "staff", "guests",
                          "authority"}),
    "technician": frozenset({"reprint", "kds"}),
}
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
    name = free_text(name, 32)
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
    try:
        name = free_text(name, 32)  # as stored by add_staff
    except CardNumberRefused:
        name = ""
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
        "VALUES (?, ?, ?, ?, ?, ?)", (token_hash, staff_id, ts, ts, addr[:64], clean(agent, 80))).lastrowid)


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


def audit(conn: Connection, staff_name: str, action: str, target: str, reason: str = "",
          detail: dict[str, Any] | None = None) -> None:
    """Record a staff action on the audit chain (``gateway.privacy.audit``), in the caller's transaction.

    The chain keeps references, never names: the member becomes ``staff:ID/ROLE`` ("" is the
    gateway itself, ``system``; ``cli`` a shell command), a ``staff:NAME`` target ``staff:ID``.
    """
    audit_chain.append(conn, audit_who(conn, staff_name), action, audit_subject(conn, target), reason, detail)


def audit_who(conn: Connection, staff_name: str) -> str:
    """The chain's reference for whoever acted: ``staff:ID/ROLE``, ``system`` or ``cli``."""
    row = conn.execute("SELECT id, role FROM ord_staff WHERE name = ?", (staff_name,)).fetchone() \
        if staff_name else None
    if row is not None:
        return f"staff:{row[0]}/{row[1]}"
    if staff_name in ("", "system", "cli"):
        return staff_name or "system"
    return audit_chain.pseudonym(conn, "staff", staff_name)


def audit_subject(conn: Connection, target: str) -> str:
    """A target as the chain keeps it: ``staff:NAME`` becomes ``staff:ID`` (or a pseudonym)."""
    kind, _, ref = target.partition(":")
    if kind == "staff" and not ref.isdigit():
        row = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (ref,)).fetchone()
        return f"staff:{row[0]}" if row else audit_chain.pseudonym(conn, "staff", ref)
    return target


def try_add_staff(conn: Connection, name: str, role: str, pin: str) -> int:
    """``add_staff`` that turns a database conflict into an OrderingError."""
    try:
        return add_staff(conn, name, role, pin)
    except IntegrityError as err:
        raise OrderingError(f"cannot add staff {name!r}: {err}") from err
