"""The staff facade: what the staff pages and the CLI call to sign people in and manage accounts.

Every write runs in the gateway's single writer; reads use the caller's read connection. Session
lifetimes come from ``[ordering] staff_session`` (idle) and ``staff_session_max`` (absolute).
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import OrderingError
from gateway.privacy import audit as audit_chain
from gateway.privacy.fields import FieldCipher
from gateway.spine.context import Periodic, ServiceContext
from gateway.staff import accounts, clock, totp, unmask
from gateway.staff.accounts import StaffMember
from gateway.staff.clock import ClockPolicy, ClockState
from gateway.store.db import Connection

CLOCK_REMEMBER_S = 300.0  # how often the latest trusted time is written (the clock's floor after a reboot)


def build(ctx: ServiceContext) -> StaffService:
    """Build the staff service for a gateway (``gateway.domains.SERVICES``)."""
    return StaffService(ctx)


class StaffService:
    """Sign-in, sessions and accounts of the store's staff."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._store = ctx.store
        self._idle_ms = int(ctx.cfg.ordering.staff_session * 1000)
        self._max_ms = int(ctx.cfg.ordering.staff_session_max * 1000)
        self.clock_policy = ClockPolicy(sync_files=tuple(ctx.cfg.staff.clock_sync_files))
        self.issuer = f"storegw {ctx.cfg.store.id}"
        # TOTP secrets and unmasked values are field-encrypted with the keyring's keys (gateway/privacy/fields.py)
        self.cipher = ctx.privacy.cipher if ctx.privacy is not None else None

    # -- lifecycle (nothing runs in the background)
    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def health(self) -> dict[str, Any]:
        """Counts for /api/v1/health (no names)."""
        row = self._read().execute("SELECT count(*), coalesce(sum(locked_ms IS NOT NULL), 0) FROM ord_staff "
                                   "WHERE active = 1").fetchone()
        return {"accounts": row[0], "locked": row[1], "clock_trusted": self.clock_state().trusted}

    def periodic(self) -> tuple[Periodic, ...]:
        """Remember the latest trusted time (ended sessions are pruned at the next sign-in)."""
        return (Periodic("staff-clock", CLOCK_REMEMBER_S, self.remember_clock),)

    def remember_clock(self) -> None:
        """Write now as the latest trusted time, when the clock is trusted."""
        if self.clock_state().trusted:
            self._write(clock.remember)

    def _need_cipher(self) -> FieldCipher:
        if self.cipher is None:
            raise OrderingError("Authenticator secrets and unmasked values need the keyring's field keys, and this "
                                "gateway has none.", status=503)
        return self.cipher

    def _read(self) -> Connection:
        return self._store.read()

    def _write(self, fn: Any) -> Any:
        return self._store.writer.call(fn)

    # -- sign-in and sessions
    def check_login(self, name: str, secret: str, code: str = "") -> tuple[StaffMember | None, str]:
        """Check a name and PIN (or password and TOTP code) with the account's back-off and lock:
        (member, "") or (None, why) (``accounts.check_login``)."""
        return accounts.check_login(self._read(), self._write, name, secret, code, clock=self.clock_state,
                                    cipher=self.cipher)

    def clock_state(self) -> ClockState:
        """Whether the board's clock is trusted for TOTP, and why (``gateway/staff/clock.py``)."""
        return clock.assess(self._read(), self.clock_policy)

    def trust_clock(self, who: str) -> str:
        """A technician's override until reboot (``storegw staff trust-clock``); audited."""
        def write(c: Connection) -> str:
            when = clock.trust(c, self.clock_policy, who)
            accounts.audit(c, who, "trust-clock", "clock:board", f"clock trusted at {when} until reboot")
            return when
        return self._write(write)

    def start_session(self, staff_id: int, token_hash: str, addr: str, agent: str) -> int:
        """Record a signed-in session under the hash of its cookie; return its id."""
        return self._write(lambda c: accounts.start_session(c, staff_id, token_hash, addr, agent))

    def session(self, token_hash: str) -> tuple[StaffMember, int, int] | None:
        """Return (member, session id, last seen ms) of a live session, or None."""
        return accounts.session_member(self._read(), token_hash, self._idle_ms, self._max_ms)

    def touch(self, session_id: int) -> None:
        """Restart a session's idle timer (queued; the caller does not wait)."""
        self._store.writer.submit(lambda c: accounts.touch_session(c, session_id))

    def end_session(self, session_id: int, why: str) -> None:
        """End one session (sign-out, or signing in again)."""
        self._write(lambda c: accounts.end_sessions(c, why, session_id=session_id))

    def revoke(self, session_id: int, who: str) -> int:
        """End another member's session (a lost tablet, a shared phone); audited."""
        def write(c: Connection) -> int:
            n = accounts.end_sessions(c, f"revoked by {who}", session_id=session_id)
            accounts.audit(c, who, "revoke", f"session:{session_id}")
            return n
        return self._write(write)

    # -- accounts
    def accounts(self) -> dict[str, list[dict[str, Any]]]:
        """Accounts (with lock state) and live sessions, for the manager's page."""
        return accounts.accounts(self._read(), self._idle_ms, self._max_ms)

    def name_of(self, staff_id: int) -> str | None:
        """Return an account's name, or None."""
        row = self._read().execute("SELECT name FROM ord_staff WHERE id = ?", (staff_id,)).fetchone()
        return row[0] if row else None

    def unlock(self, name: str, who: str) -> int:
        """Clear an account's lock and wrong-PIN count; audited."""
        return self._write(lambda c: accounts.unlock(c, name, who))

    def set_active(self, name: str, active: bool, who: str) -> int:
        """Disable (ending its sessions) or re-enable an account; audited."""
        return self._write(lambda c: accounts.set_active(c, name, active, who))

    def set_role(self, name: str, role: str, who: str) -> int:
        """Change an account's role (its sessions end); audited."""
        return self._write(lambda c: accounts.set_role(c, name, role, who))

    def add(self, name: str, role: str, pin: str) -> int:
        """Create or reset a floor account with a PIN (a reset ends its sessions)."""
        return self._write(lambda c: accounts.try_add_staff(c, name, role, pin))

    def enrol(self, name: str, role: str, password: str, who: str) -> tuple[str, str]:
        """Create or reset a manager, technician or auditor: (TOTP secret, otpauth URI), shown once."""
        secret = self._write(lambda c: accounts.enrol(c, name, role, password, who, cipher=self._need_cipher()))
        return secret, totp.uri(secret, name, self.issuer)

    def pending_enrolment(self) -> list[tuple[str, str]]:
        """Managers, technicians and auditors still on a PIN (floor actions only until they enrol)."""
        return accounts.pending_enrolment(self._read())

    # -- audit log and unmask
    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit chain entries (references and redacted reasons; never a sensitive value)."""
        return audit_chain.recent(self._read(), limit)

    def unmaskable(self, kind: str) -> list[str]:
        """The fields of ``kind`` that can be unmasked (``table.column``)."""
        return [u.key for u in unmask.UNMASKABLE if u.offers(kind)]

    def unmask_kind(self, field: str, value: str) -> str | None:
        """Which unmask page reveals the row of ``field`` (``table.column``) whose kind column holds
        ``value`` (a guest's ``doc_type``): ``id``, ``passport``, ``phone``, or None."""
        spec = unmask.lookup(field)
        return spec.kind_of(value) if spec is not None else None

    def unmask(self, member: StaffMember, kind: str, field: str, ref: str, reason: str,
               code: str = "") -> unmask.Outcome:
        """Reveal one masked value, or refuse; every attempt is recorded and audited (``gateway/staff/unmask.py``)."""
        def write(c: Connection) -> unmask.Outcome:
            return unmask.attempt(c, member, kind, field, ref, reason, code, clock.assess(c, self.clock_policy),
                                  self._need_cipher())
        return self._write(write)
