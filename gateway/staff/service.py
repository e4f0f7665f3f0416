"""The staff facade: what the staff pages and the CLI call to sign people in and manage accounts.

Every write runs in the gateway's single writer; reads use the caller's read connection. Session
lifetimes come from ``[ordering] staff_session`` (idle) and ``staff_session_max`` (absolute).
"""

from __future__ import annotations

from typing import Any

from gateway.spine.context import Periodic, ServiceContext
from gateway.staff import accounts
from gateway.staff.accounts import StaffMember
from gateway.store.db import Connection


def build(ctx: ServiceContext) -> StaffService:
    """Build the staff service for a gateway (``gateway.domains.SERVICES``)."""
    return StaffService(ctx)


class StaffService:
    """Sign-in, sessions and accounts of the store's staff."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._store = ctx.store
        self._idle_ms = int(ctx.cfg.ordering.staff_session * 1000)
        self._max_ms = int(ctx.cfg.ordering.staff_session_max * 1000)

    # -- lifecycle (nothing runs in the background)
    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def health(self) -> dict[str, Any]:
        """Counts for /api/v1/health (no names)."""
        row = self._read().execute("SELECT count(*), coalesce(sum(locked_ms IS NOT NULL), 0) FROM ord_staff "
                                   "WHERE active = 1").fetchone()
        return {"accounts": row[0], "locked": row[1]}

    def periodic(self) -> tuple[Periodic, ...]:
        """No periodic work (ended sessions are pruned at the next sign-in)."""
        return ()

    def _read(self) -> Connection:
        return self._store.read()

    def _write(self, fn: Any) -> Any:
        return self._store.writer.call(fn)

    # -- sign-in and sessions
    def check_login(self, name: str, pin: str) -> tuple[StaffMember | None, str]:
        """Check a name and PIN with the account's back-off and lock: (member, "") or (None, why)."""
        return accounts.check_login(self._read(), self._write, name, pin)

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
        """Create or reset an account (a reset ends its sessions)."""
        return self._write(lambda c: accounts.try_add_staff(c, name, role, pin))
