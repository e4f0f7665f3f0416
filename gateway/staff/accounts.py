"""Staff accounts: PINs (argon2), roles and what each may do, the per-account back-off and lock,
and server-side sessions.

Functions take a connection; writes run in the gateway's writer (``StaffService`` does that). The
tables (``ord_staff``, ``ord_staff_sessions``) were created by the ordering migrations, where the
staff pages began; they belong to this package now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.core.errors import CardNumberRefused, OrderingError
from gateway.core.models import now_ms
from gateway.core.text import clean, free_text
from gateway.privacy import audit as audit_chain
from gateway.privacy.fields import FieldCipher
from gateway.staff import matrix, totp
from gateway.staff.clock import ClockState
from gateway.staff.clock import remember as clock_remember
from gateway.store.db import Connection, IntegrityError

ROLES = matrix.ROLES
# 8 MiB, 3 passes: argon2's 64 MiB default would double the gateway's memory at every login
# on a Pi (target <= 80 MB RSS); PINs are also protected by rate limits and the encrypted store.
# Passwords (managers, technicians, auditors) use the same hasher: they are >= 12 characters and
# come with a TOTP, so the work factor is not what protects them.
_HASHER = PasswordHasher(time_cost=3, memory_cost=8 * 1024, parallelism=1)
# One PIN hash at a time: each takes 8 MiB, and 16 web threads checking PINs at once took RSS from
# 57 to 237 MB (docs/architecture.md, Memory). Sign-ins are rare; a burst of guesses waits its turn.
_HASH_SLOT = threading.Lock()


@dataclass(frozen=True)
class StaffMember:
    """A signed-in staff member; ``mfa``: the account signs in with password + TOTP."""

    id: int
    name: str
    role: str
    mfa: bool = False

    def can(self, perm: str) -> bool:
        """Return whether the role allows ``perm`` (``gateway/staff/matrix.py``)."""
        return matrix.allowed(self.role, perm, mfa=self.mfa)

    @property
    def must_enrol(self) -> bool:
        """A manager, technician or auditor still on a PIN: floor actions only until enrolled."""
        return matrix.needs_totp(self.role) and not self.mfa


PIN_MIN = 6  # new and reset PINs; accounts made with shorter PINs keep signing in until reset
PIN_MAX = 12
LOCK_AFTER = 100  # consecutive wrong PINs, then locked until a manager unlocks (NIST SP 800-63B 5.2.2)
FREE_FAILURES = 5  # wrong PINs before the account's back-off starts
BACKOFF_MAX_S = 300
PASSWORD_MIN = 12  # managers, technicians, auditors (with TOTP; NIST SP 800-63-4: >= 8 with MFA)
PASSWORD_MAX = 128


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


def valid_password(password: str) -> bool:
    """A password is 12-128 characters (any script; no composition rules, NIST SP 800-63B)."""
    return isinstance(password, str) and PASSWORD_MIN <= len(password) <= PASSWORD_MAX and password.isprintable()


def enrol(conn: Connection, name: str, role: str, password: str, who: str = "cli", *, cipher: FieldCipher) -> str:
    """Create or reset a manager, technician or auditor: a password hash and a new TOTP secret.

    Returns the TOTP secret for the person to scan (shown once; stored only field-encrypted with
    ``cipher``, the keyring's: ``ord_staff.totp_sealed`` is declared in gateway/privacy/fields.py). A reset
    (the name exists: a lost phone, a forgotten password, or a PIN account enrolling) ends the
    member's sessions, clears its wrong-try count, lock and last accepted TOTP step; audited.
    """
    name = free_text(name, 32)  # as add_staff stores names
    if not name:
        raise OrderingError("staff name is required")
    if not matrix.needs_totp(role):
        raise OrderingError(f"{role} accounts sign in with a PIN: use a PIN for floor staff")
    if not valid_password(password):
        raise OrderingError(f"the password must be {PASSWORD_MIN}-{PASSWORD_MAX} printable characters")
    with _HASH_SLOT:
        digest = _HASHER.hash(password)
    secret = totp.new_secret()
    known = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms, auth) VALUES (?, ?, ?, ?, 'totp') "
                 "ON CONFLICT (name) DO UPDATE SET role = excluded.role, pin_hash = excluded.pin_hash, active = 1, "
                 "failures = 0, failed_ms = NULL, locked_ms = NULL, auth = 'totp', totp_step = NULL",
                 (name, role, digest, now_ms()))
    staff_id = int(conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()[0])
    conn.execute("UPDATE ord_staff SET totp_sealed = ? WHERE id = ?",
                 (cipher.encrypt("ord_staff", "totp_sealed", secret, staff_id), staff_id))
    if known is not None:
        end_sessions(conn, "sign-in-reset", staff_id=staff_id)
    audit(conn, who, "enrol" if known is None else "reset-sign-in", f"staff:{name}", f"{role}, password + TOTP")
    return secret


def totp_secret(conn: Connection, staff_id: int, cipher: FieldCipher) -> str | None:
    """The account's TOTP secret (decrypted), or None when it has none."""
    row = conn.execute("SELECT totp_sealed FROM ord_staff WHERE id = ?", (staff_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    return cipher.decrypt_text("ord_staff", "totp_sealed", bytes(row[0]), staff_id)


def accept_step(conn: Connection, staff_id: int, step: int) -> bool:
    """Record ``step`` as the account's last accepted TOTP step unless it is not newer (a replay)."""
    return conn.execute("UPDATE ord_staff SET totp_step = ? WHERE id = ? AND (totp_step IS NULL OR totp_step < ?)",
                        (step, staff_id, step)).rowcount == 1


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
    if matrix.needs_totp(role):
        raise OrderingError(f"{role} accounts sign in with a password and an authenticator code, not a PIN: "
                            f"storegw staff add {name} --role {role} (asks for the password)")
    if not valid_pin(pin):
        raise OrderingError(f"PIN must be {PIN_MIN}-{PIN_MAX} digits")
    with _HASH_SLOT:
        digest = _HASHER.hash(pin)
    known = conn.execute("SELECT id FROM ord_staff WHERE name = ?", (name,)).fetchone()
    conn.execute("INSERT INTO ord_staff (name, role, pin_hash, created_ms) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (name) DO UPDATE SET role = excluded.role, pin_hash = excluded.pin_hash, active = 1, "
                 "failures = 0, failed_ms = NULL, locked_ms = NULL, auth = 'pin', totp_sealed = NULL, "
                 "totp_step = NULL",
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
        with _HASH_SLOT:
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


def check_login(conn: Connection, write: Any, name: str, secret: str, code: str = "", *,
                clock: Any = None, cipher: FieldCipher | None = None) -> tuple[StaffMember | None, str]:
    """Sign-in check with the account's back-off and lock; return (member, "") or (None, why).

    ``secret`` is the PIN, or the password of an account that signs in with password + TOTP
    (``auth = 'totp'``), which also needs ``code``. ``why``: ``wrong``, ``wait`` (the account's
    back-off: nothing was checked), ``locked``, ``code`` (a TOTP account without a code: nothing
    checked, nothing counted), ``clock`` (``clock()`` says the board's time is untrusted: nothing
    checked) or ``replay`` (the right password and a code already used). Every try that reaches a
    known account and is not right counts as a consecutive failure, including tries refused during
    the back-off and replayed codes, so at most ``LOCK_AFTER`` come before the lock however many
    addresses they come from. ``write(fn)`` runs ``fn(conn)`` in the writer; ``cipher`` (the
    keyring's) decrypts TOTP secrets: without it a TOTP account cannot sign in (``clock``).
    """
    try:
        name = free_text(name, 32)  # as stored by add_staff
    except CardNumberRefused:
        name = ""
    row = conn.execute("SELECT id, name, role, pin_hash, failures, failed_ms, locked_ms, auth FROM ord_staff "
                       "WHERE name = ? AND active = 1", (name,)).fetchone()
    if row is None:
        verify(conn, "", secret)  # the same work as for a known name
        return None, "wrong"
    staff_id, _, role, digest, failures, failed_ms, locked_ms, auth = row
    mfa = auth == "totp"
    if locked_ms is not None:
        return None, "locked"
    if mfa and not (isinstance(code, str) and code.strip()):
        return None, "code"
    if mfa:
        state: ClockState = clock() if clock is not None else ClockState(False, "no clock policy")
        if not state.trusted or cipher is None:
            return None, "clock"
    if failures and now_ms() < (failed_ms or 0) + backoff_ms(failures):
        n = write(lambda c: _failed(c, staff_id))
        return None, "locked" if n >= LOCK_AFTER else "wait"
    try:
        with _HASH_SLOT:
            _HASHER.verify(digest, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        n = write(lambda c: _failed(c, staff_id))
        return None, "locked" if n >= LOCK_AFTER else "wrong"
    step = None
    if mfa:
        step = totp.match(totp_secret(conn, staff_id, cipher) or "", code)
        if step is None:
            n = write(lambda c: _failed(c, staff_id))
            return None, "locked" if n >= LOCK_AFTER else "wrong"

    def succeed(c: Connection) -> str:
        if step is not None and not accept_step(c, staff_id, step):
            audit(c, "", "totp-replay", f"staff:{row[1]}", "sign-in with a code already used")
            n = _failed(c, staff_id)
            return "locked" if n >= LOCK_AFTER else "replay"
        if not c.execute("UPDATE ord_staff SET failures = 0, failed_ms = NULL WHERE id = ? AND locked_ms IS NULL",
                         (staff_id,)).rowcount:
            return "locked"  # locked between the read and now
        if step is not None:
            clock_remember(c)
        return ""
    why = write(succeed)
    if why:
        return None, why
    return StaffMember(staff_id, row[1], role, mfa), ""


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
        "SELECT s.id, s.seen_ms, s.created_ms, m.id, m.name, m.role, m.auth FROM ord_staff_sessions s "
        "JOIN ord_staff m ON m.id = s.staff_id WHERE s.token_hash = ? AND s.ended_ms IS NULL AND m.active = 1",
        (token_hash,)).fetchone()
    if row is None:
        return None
    ts = now_ms()
    if ts - row[1] > idle_ms or ts - row[2] > max_ms:
        return None
    return StaffMember(row[3], row[4], row[5], row[6] == "totp"), int(row[0]), int(row[1])


def touch_session(conn: Connection, session_id: int) -> None:
    """Mark a session used now (its idle timer restarts)."""
    conn.execute("UPDATE ord_staff_sessions SET seen_ms = ? WHERE id = ? AND ended_ms IS NULL",
                 (now_ms(), session_id))


def accounts(conn: Connection, idle_ms: int, max_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Staff accounts and their live sessions, for the manager's page."""
    ts = now_ms()
    people = [{"id": i, "name": n, "role": r, "active": bool(a), "failures": f, "locked": lk is not None,
               "auth": au, "must_enrol": matrix.needs_totp(r) and au != "totp"}
              for i, n, r, a, f, lk, au in conn.execute(
                  "SELECT id, name, role, active, failures, locked_ms, auth FROM ord_staff ORDER BY name")]
    sessions = [{"id": i, "name": n, "role": r, "created_ms": c, "seen_ms": s, "addr": addr, "agent": ag}
                for i, n, r, c, s, addr, ag in conn.execute(
                    "SELECT s.id, m.name, m.role, s.created_ms, s.seen_ms, s.addr, s.agent FROM ord_staff_sessions s "
                    "JOIN ord_staff m ON m.id = s.staff_id WHERE s.ended_ms IS NULL AND m.active = 1 "
                    "AND s.seen_ms >= ? AND s.created_ms >= ? ORDER BY s.seen_ms DESC", (ts - idle_ms, ts - max_ms))]
    return {"staff": people, "sessions": sessions}


def get_staff(conn: Connection, staff_id: int) -> StaffMember | None:
    """Return an active staff member by id."""
    row = conn.execute("SELECT id, name, role, auth FROM ord_staff WHERE id = ? AND active = 1",
                       (staff_id,)).fetchone()
    return StaffMember(row[0], row[1], row[2], row[3] == "totp") if row else None


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


def pending_enrolment(conn: Connection) -> list[tuple[str, str]]:
    """Active managers, technicians and auditors still on a PIN: (name, role)."""
    roles = sorted(matrix.PRIVILEGED_ROLES)
    marks = ",".join("?" * len(roles))
    return [(n, r) for n, r in conn.execute(
        f"SELECT name, role FROM ord_staff WHERE active = 1 AND auth != 'totp' AND role IN ({marks}) "  # noqa: S608
        "ORDER BY name", roles)]


def try_add_staff(conn: Connection, name: str, role: str, pin: str) -> int:
    """``add_staff`` that turns a database conflict into an OrderingError."""
    try:
        return add_staff(conn, name, role, pin)
    except IntegrityError as err:
        raise OrderingError(f"cannot add staff {name!r}: {err}") from err
