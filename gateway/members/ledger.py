"""Points as an append-only ledger with lots (FEFO), every entry under a UNIQUE idempotency key.

Rules (docs/members.md, "Points"):

- ``mem_ledger`` rows are never updated or deleted; a balance is ``sum(points)`` of a member's
  rows, and ``mem_members.points`` caches it, changed by the same statement sequence in the same
  transaction as the entry (``post``). ``storegw members check`` compares the two.
- every entry has an idempotency key (``idem``): a bill and a rule (``earn:S:bill``), a request id
  from a staff form or an API caller (``redeem:REQ``), a lot (``expire:lot:N``). A second attempt
  with the same key finds the first entry and returns it (``Posted.duplicate``) without changing
  anything, so a retry, a double tap or a replay after a kill -9 between commit and reply changes a
  balance once. The key's request digest (``req``) must match, or the attempt is refused.
- credits make lots (``mem_lots``) that expire; debits take from the first-expiring lots and record
  which (``mem_lot_use``), so a reversal gives back exactly those lots.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import OrderingError
from gateway.store.db import Connection

DAY_MS = 86_400_000


class MembersError(OrderingError):
    """A members action that cannot be done, with a message fit to show (zh and en)."""


@dataclass(frozen=True)
class Posted:
    """The outcome of posting one entry: the entry, the balance after it, and whether it was a replay."""

    entry_id: int
    points: int
    balance: int
    duplicate: bool


def digest(*parts: Any) -> str:
    """A short digest of a request's parameters (stored beside its key)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:16]


def balance(conn: Connection, member_id: int) -> int:
    """The cached balance."""
    row = conn.execute("SELECT points FROM mem_members WHERE id = ?", (member_id,)).fetchone()
    return int(row[0]) if row else 0


def find(conn: Connection, idem: str) -> tuple[int, int, int, str] | None:
    """The entry posted under ``idem``: (id, member, points, req), or None."""
    row = conn.execute("SELECT id, member_id, points, req FROM mem_ledger WHERE idem = ?", (idem,)).fetchone()
    return (int(row[0]), int(row[1]), int(row[2]), row[3]) if row else None


def replay(conn: Connection, found: tuple[int, int, int, str], member_id: int, req: str) -> Posted:
    entry_id, owner, points, old_req = found
    if owner != member_id or (req and old_req and req != old_req):
        raise MembersError("This request id was already used for another request. 此请求编号已被其他请求使用。",
                           code="idem_mismatch", status=409)
    return Posted(entry_id, points, balance(conn, member_id), True)


def _insert(conn: Connection, member_id: int, kind: str, points: int, idem: str, req: str, now: int, *,
            session_id: int | None, ref: str, who: str) -> int:
    entry_id = int(conn.execute(
        "INSERT INTO mem_ledger (member_id, ts_ms, kind, points, idem, req, session_id, ref, who) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (member_id, now, kind, points, idem, req, session_id, ref[:80], who[:40])).lastrowid)
    conn.execute("UPDATE mem_members SET points = points + ? WHERE id = ?", (points, member_id))
    return entry_id


def credit(conn: Connection, member_id: int, points: int, idem: str, now: int, *, kind: str = "earn",
           expiry_ms: int, req: str = "", session_id: int | None = None, ref: str = "", who: str = "") -> Posted:
    """Add ``points`` (> 0) as a new lot expiring ``expiry_ms`` after ``now``; once per ``idem``."""
    found = find(conn, idem)
    if found:
        return replay(conn, found, member_id, req)
    if points <= 0:
        raise MembersError("points must be positive", code="bad_points")
    debt = max(0, -balance(conn, member_id))  # a reversal of points already spent is settled first
    entry_id = _insert(conn, member_id, kind, points, idem, req, now, session_id=session_id, ref=ref, who=who)
    lot = int(conn.execute("INSERT INTO mem_lots (member_id, entry_id, earned_ms, expires_ms, points, remaining) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (member_id, entry_id, now, now + expiry_ms, points, max(0, points - debt))).lastrowid)
    conn.execute("UPDATE mem_ledger SET lot_id = ? WHERE id = ? AND lot_id IS NULL", (lot, entry_id))
    return Posted(entry_id, points, balance(conn, member_id), False)


def spendable(conn: Connection, member_id: int, now: int) -> int:
    """Points in unexpired lots (what a redemption may take)."""
    return int(conn.execute("SELECT coalesce(sum(remaining), 0) FROM mem_lots WHERE member_id = ? AND remaining > 0 "
                            "AND expires_ms > ?", (member_id, now)).fetchone()[0])


def debit(conn: Connection, member_id: int, points: int, idem: str, now: int, *, kind: str = "redeem",
          req: str = "", session_id: int | None = None, ref: str = "", who: str = "",
          allow_negative: bool = False) -> Posted:
    """Take ``points`` (> 0) from the first-expiring lots; once per ``idem``.

    Refused when the unexpired lots hold too little, unless ``allow_negative`` (a reversal of points
    already spent: the balance goes below zero, visibly, and is settled by later earnings).
    """
    found = find(conn, idem)
    if found:
        return replay(conn, found, member_id, req)
    if points <= 0:
        raise MembersError("points must be positive", code="bad_points")
    available = spendable(conn, member_id, now)
    if points > available and not allow_negative:
        raise MembersError(f"Not enough points: {available} available. 积分不足：可用{available}分。",
                           code="not_enough_points", status=409)
    entry_id = _insert(conn, member_id, kind, -points, idem, req, now, session_id=session_id, ref=ref, who=who)
    _take(conn, member_id, entry_id, points, now)
    return Posted(entry_id, -points, balance(conn, member_id), False)


def _take(conn: Connection, member_id: int, entry_id: int, points: int, now: int) -> int:
    left = points
    for lot_id, remaining in conn.execute(
            "SELECT id, remaining FROM mem_lots WHERE member_id = ? AND remaining > 0 AND expires_ms > ? "
            "ORDER BY expires_ms, id", (member_id, now)).fetchall():
        take = min(left, remaining)
        conn.execute("UPDATE mem_lots SET remaining = remaining - ? WHERE id = ?", (take, lot_id))
        conn.execute("INSERT INTO mem_lot_use (entry_id, lot_id, points) VALUES (?, ?, ?)", (entry_id, lot_id, take))
        left -= take
        if left == 0:
            break
    return points - left


def reverse_credit(conn: Connection, entry_id: int, points: int, idem: str, now: int, *, who: str = "",
                   ref: str = "") -> Posted | None:
    """Take back up to ``points`` of a credit: first from its own lot, the rest FEFO (or below zero)."""
    row = conn.execute("SELECT member_id, lot_id, session_id FROM mem_ledger WHERE id = ?", (entry_id,)).fetchone()
    if row is None or points <= 0:
        return None
    member_id, lot_id, session_id = row
    found = find(conn, idem)
    if found:
        return replay(conn, found, member_id, "")
    new = _insert(conn, member_id, "reverse", -points, idem, "", now, session_id=session_id, ref=ref, who=who)
    left = points
    if lot_id is not None:
        remaining = conn.execute("SELECT remaining FROM mem_lots WHERE id = ?", (lot_id,)).fetchone()[0]
        take = min(left, remaining)
        if take:
            conn.execute("UPDATE mem_lots SET remaining = remaining - ? WHERE id = ?", (take, lot_id))
            conn.execute("INSERT INTO mem_lot_use (entry_id, lot_id, points) VALUES (?, ?, ?)", (new, lot_id, take))
            left -= take
    if left:
        _take(conn, member_id, new, left, now)  # what the lot no longer had; any rest leaves the balance below 0
    return Posted(new, -points, balance(conn, member_id), False)


def restore_debit(conn: Connection, entry_id: int, idem: str, now: int, *, who: str = "",
                  ref: str = "") -> Posted | None:
    """Give back a debit (a redemption on a bill that was cancelled): the same lots regain what they gave."""
    row = conn.execute("SELECT member_id, points, session_id FROM mem_ledger WHERE id = ?", (entry_id,)).fetchone()
    if row is None or row[1] >= 0:
        return None
    member_id, points, session_id = row
    found = find(conn, idem)
    if found:
        return replay(conn, found, member_id, "")
    new = _insert(conn, member_id, "restore", -points, idem, "", now, session_id=session_id, ref=ref, who=who)
    for lot_id, used in conn.execute("SELECT lot_id, points FROM mem_lot_use WHERE entry_id = ?",
                                     (entry_id,)).fetchall():
        conn.execute("UPDATE mem_lots SET remaining = remaining + ? WHERE id = ?", (used, lot_id))
    return Posted(new, -points, balance(conn, member_id), False)


def expire_due(conn: Connection, now: int, limit: int = 500) -> int:
    """Expire lots past their date (an ``expire`` entry per lot, key ``expire:lot:N:USES``); return how many."""
    done = 0
    for lot_id, member_id, remaining in conn.execute(
            "SELECT id, member_id, remaining FROM mem_lots WHERE remaining > 0 AND expires_ms <= ? "
            "ORDER BY expires_ms LIMIT ?", (now, limit)).fetchall():
        uses = conn.execute("SELECT count(*) FROM mem_lot_use WHERE lot_id = ?", (lot_id,)).fetchone()[0]
        idem = f"expire:lot:{lot_id}:{uses}"  # a lot refilled by a restore after expiring expires again
        if find(conn, idem):
            continue
        entry = _insert(conn, member_id, "expire", -remaining, idem, "", now, session_id=None, ref=f"lot {lot_id}",
                        who="")
        conn.execute("UPDATE mem_lots SET remaining = 0 WHERE id = ?", (lot_id,))
        conn.execute("INSERT INTO mem_lot_use (entry_id, lot_id, points) VALUES (?, ?, ?)", (entry, lot_id, remaining))
        done += 1
    return done


def check(conn: Connection) -> list[dict[str, Any]]:
    """Every member whose cached balance differs from the sum of their ledger, or whose unspent lots do not
    add up to it (a balance below zero, from reversing points already spent, has no lots left)."""
    bad = []
    for member_no, cached, summed, lots in conn.execute(
            "SELECT m.member_no, m.points, "
            "(SELECT coalesce(sum(points), 0) FROM mem_ledger WHERE member_id = m.id), "
            "(SELECT coalesce(sum(remaining), 0) FROM mem_lots WHERE member_id = m.id) "
            "FROM mem_members m ORDER BY m.id"):
        if cached != summed or lots != max(summed, 0):
            bad.append({"member": member_no, "cached": cached, "ledger": summed, "lots": lots})
    return bad


def lots(conn: Connection, member_id: int, now: int) -> list[dict[str, Any]]:
    """A member's unexpired lots with points left, first-expiring first."""
    return [{"points": r, "earned_ms": e, "expires_ms": x}
            for r, e, x in conn.execute("SELECT remaining, earned_ms, expires_ms FROM mem_lots WHERE member_id = ? "
                                        "AND remaining > 0 AND expires_ms > ? ORDER BY expires_ms, id",
                                        (member_id, now))]


def history(conn: Connection, member_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """A member's latest ledger entries."""
    return [{"ts_ms": t, "kind": k, "points": p, "ref": r}
            for t, k, p, r in conn.execute("SELECT ts_ms, kind, points, ref FROM mem_ledger WHERE member_id = ? "
                                           "ORDER BY id DESC LIMIT ?", (member_id, limit))]
