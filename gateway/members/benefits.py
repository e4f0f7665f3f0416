"""Benefits: coupons and perks (birthday, tier, campaign), single-use under concurrency, owner-checked.

One table for every benefit a member holds (``mem_benefits``); a benefit moves

    issued ──apply (to a bill)──► applied ──bill paid──► redeemed
      ▲                             │                      │
      └──── removed / bill closed unpaid ┘   bill refunded ─┘ (back to issued)

and every move is a conditional ``UPDATE ... WHERE state = <expected>`` whose row count is checked,
in the writer's transaction (for a bill: the same transaction as the sale), so two tills applying
one coupon at once: exactly one UPDATE matches, the other gets a clear refusal. The owner is
checked in the same UPDATE (``member_id`` = the member on the bill). Issuing is idempotent on
``issue_key`` (a birthday perk once per member and year, a tier perk once per upgrade).

Kinds and value kinds leave room for what comes later: ``value_kind = 'access'`` benefits
(``kind`` = ``booking`` for priority booking, ``event`` for member events) have no money value and
are used on ``used_on = 'booking:ID'`` / ``'event:ID'`` with the same state machine.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from gateway.core.text import free_text, parse_uint_or
from gateway.members.ledger import MembersError
from gateway.staff.accounts import audit
from gateway.store.db import Connection, IntegrityError

if TYPE_CHECKING:
    from gateway.members.context import MembersContext

KINDS = ("birthday", "tier", "campaign", "booking", "event")
VALUE_KINDS = ("amount", "percent", "access")
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L


def new_code() -> str:
    """A coupon code: 10 characters, hard to guess, easy to read out."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def issue(ctx: MembersContext, conn: Connection, member_id: int, *, kind: str, issue_key: str, title_zh: str,
          title_en: str, value_kind: str, value: int, now: int, who: str, min_spend: int = 0,
          valid_from: int | None = None, valid_to: int | None = None) -> int:
    """Issue a benefit once per ``issue_key``; return its id (the existing one for a repeat)."""
    if kind not in KINDS or value_kind not in VALUE_KINDS:
        raise MembersError("unknown benefit kind")
    if value_kind == "percent" and not 1 <= value <= 50:
        raise MembersError("a percent coupon is 1-50 % off")
    if value_kind == "amount" and not 1 <= value <= 1_000_000:
        raise MembersError("a coupon is worth ¥0.01-¥10,000")
    row = conn.execute("SELECT id FROM mem_benefits WHERE issue_key = ?", (issue_key,)).fetchone()
    if row:
        return int(row[0])
    start = valid_from if valid_from is not None else now
    end = valid_to if valid_to is not None else now + int(ctx.mcfg.coupon_days * 1000)
    bid = int(conn.execute(
        "INSERT INTO mem_benefits (code, member_id, kind, issue_key, title_zh, title_en, value_kind, value, "
        "min_spend_cents, valid_from_ms, valid_to_ms, issued_ms, issued_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (new_code(), member_id, kind, issue_key, free_text(title_zh, 40), free_text(title_en, 60), value_kind,
         value, min_spend, start, end, now, who[:40])).lastrowid)
    audit(conn, who, "benefit-issue", f"benefit:{bid}", f"{kind} {value_kind} {value}")
    return bid


def month_bounds(tz: Any, now: int) -> tuple[int, int, str, int]:
    """(start ms, end ms, MM, year) of the local month containing ``now``."""
    local = dt.datetime.fromtimestamp(now / 1000, tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (start + dt.timedelta(days=32)).replace(day=1)
    return int(start.timestamp() * 1000), int(nxt.timestamp() * 1000), f"{local.month:02d}", local.year


def ensure_birthday(ctx: MembersContext, conn: Connection, member_id: int, birthday: str, consented: bool,
                    now: int) -> int | None:
    """In the birthday month, with the birthday consent: the birthday perk, once a year."""
    cents = ctx.mcfg.birthday_coupon_cents
    if not consented or not birthday or cents <= 0:
        return None
    start, end, month, year = month_bounds(ctx.tz, now)
    if birthday[:2] != month:
        return None
    return issue(ctx, conn, member_id, kind="birthday", issue_key=f"birthday:{member_id}:{year}",
                 title_zh="生日月礼券", title_en="Birthday-month coupon", value_kind="amount", value=cents, now=now,
                 who="birthday", valid_from=start, valid_to=end)


_COLS = ("id, code, member_id, kind, title_zh, title_en, value_kind, value, min_spend_cents, valid_from_ms, "
         "valid_to_ms, state, session_id, used_on, used_ms")


def _row(r: Any) -> dict[str, Any]:
    return {"id": r[0], "code": r[1], "member_id": r[2], "kind": r[3], "title_zh": r[4], "title_en": r[5],
            "value_kind": r[6], "value": r[7], "min_spend": r[8], "valid_from_ms": r[9], "valid_to_ms": r[10],
            "state": r[11], "session_id": r[12], "used_on": r[13], "used_ms": r[14]}


def of_member(conn: Connection, member_id: int, now: int, *, usable_only: bool = False) -> list[dict[str, Any]]:
    """A member's benefits (usable ones: issued and within their validity)."""
    sql = f"SELECT {_COLS} FROM mem_benefits WHERE member_id = ?"  # noqa: S608
    args: tuple[Any, ...] = (member_id,)
    if usable_only:
        sql += " AND state = 'issued' AND valid_from_ms <= ? AND valid_to_ms > ?"
        args += (now, now)
    return [_row(r) for r in conn.execute(sql + " ORDER BY valid_to_ms, id", args)]


def on_bill(conn: Connection, session_id: int) -> list[dict[str, Any]]:
    """The benefits applied to (or redeemed on) a bill."""
    return [_row(r) for r in conn.execute(
        f"SELECT {_COLS} FROM mem_benefits WHERE session_id = ? AND state IN ('applied', 'redeemed') "  # noqa: S608
        "ORDER BY id", (session_id,))]


def find(conn: Connection, code_or_id: str) -> dict[str, Any] | None:
    """A benefit by its code (or numeric id)."""
    text = str(code_or_id).strip().upper()
    number = parse_uint_or(text)  # ASCII digits only ("²".isdigit() is true, int("²") raises)
    if number is not None:
        r = conn.execute(f"SELECT {_COLS} FROM mem_benefits WHERE id = ?", (number,)).fetchone()  # noqa: S608
    else:
        r = conn.execute(f"SELECT {_COLS} FROM mem_benefits WHERE code = ?", (text,)).fetchone()  # noqa: S608
    return _row(r) if r else None


def apply(conn: Connection, code_or_id: str, member_id: int, session_id: int, subtotal: int, who: str,
          now: int) -> dict[str, Any]:
    """Apply a benefit to a bill: ``issued`` → ``applied`` in one conditional UPDATE (owner and validity
    in its WHERE); exactly one of any number of concurrent attempts succeeds."""
    b = find(conn, code_or_id)
    if b is None:
        raise MembersError("No such coupon. 没有该优惠券。", code="no_coupon", status=404)
    if b["value_kind"] == "access":
        raise MembersError("This benefit is not used on a bill. 此权益不能用于账单。", code="not_for_bills")
    if b["min_spend"] and subtotal < b["min_spend"]:
        raise MembersError(f"This coupon needs a bill of at least ¥{b['min_spend'] / 100:.2f}. 未达到使用门槛。",
                           code="min_spend", status=409)
    try:
        cur = conn.execute(
            "UPDATE mem_benefits SET state = 'applied', session_id = ?, used_on = ?, used_ms = ?, used_by = ? "
            "WHERE id = ? AND member_id = ? AND state = 'issued' AND valid_from_ms <= ? AND valid_to_ms > ?",
            (session_id, f"bill:{session_id}", now, who[:40], b["id"], member_id, now, now))
    except IntegrityError:
        raise MembersError("One coupon of this kind per bill. 每单同类优惠券限用一张。", code="one_per_bill",
                           status=409) from None
    if cur.rowcount != 1:
        raise MembersError(_why_not(b, member_id, now), code="coupon_refused", status=409)
    audit(conn, who, "benefit-apply", f"benefit:{b['id']}", f"bill:{session_id}")
    return b


def _why_not(b: dict[str, Any], member_id: int, now: int) -> str:
    if b["member_id"] != member_id:
        return "This coupon belongs to another member. 该优惠券属于其他会员。"
    if b["state"] in ("applied", "redeemed"):
        return "This coupon has already been used. 该优惠券已被使用。"
    if b["valid_to_ms"] <= now or b["state"] == "expired":
        return "This coupon has expired. 该优惠券已过期。"
    if b["valid_from_ms"] > now:
        return "This coupon is not valid yet. 该优惠券尚未生效。"
    return "This coupon cannot be used. 该优惠券不可用。"


def remove(conn: Connection, benefit_id: int, session_id: int, who: str, now: int) -> None:
    """Take an applied benefit off a bill (``applied`` → ``issued``)."""
    cur = conn.execute("UPDATE mem_benefits SET state = 'issued', session_id = NULL, used_on = '', used_ms = NULL, "
                       "used_by = '' WHERE id = ? AND session_id = ? AND state = 'applied'", (benefit_id, session_id))
    if cur.rowcount != 1:
        raise MembersError("That coupon is not on this bill. 该优惠券不在本单上。", code="not_on_bill", status=409)
    audit(conn, who, "benefit-remove", f"benefit:{benefit_id}", f"bill:{session_id}")


def redeem_bill(conn: Connection, session_id: int, now: int) -> int:
    """The bill was paid: its applied benefits become redeemed (same transaction as the payment)."""
    return conn.execute("UPDATE mem_benefits SET state = 'redeemed', used_ms = ? WHERE session_id = ? "
                        "AND state = 'applied'", (now, session_id)).rowcount


def release_bill(conn: Connection, session_id: int, who: str, *, redeemed_too: bool) -> int:
    """The bill was closed unpaid (applied ones) or refunded (redeemed ones too): back to ``issued``."""
    states = ("applied", "redeemed") if redeemed_too else ("applied",)
    ids = [r[0] for r in conn.execute(
        f"SELECT id FROM mem_benefits WHERE session_id = ? AND state IN ({','.join('?' * len(states))})",  # noqa: S608
        (session_id, *states))]
    for bid in ids:
        conn.execute("UPDATE mem_benefits SET state = 'issued', session_id = NULL, used_on = '', used_ms = NULL, "
                     "used_by = '' WHERE id = ?", (bid,))
        audit(conn, who, "benefit-release", f"benefit:{bid}", f"bill:{session_id}")
    return len(ids)


def expire_due(conn: Connection, now: int) -> int:
    """Issued benefits past their validity become ``expired``."""
    return conn.execute("UPDATE mem_benefits SET state = 'expired' WHERE state = 'issued' AND valid_to_ms <= ?",
                        (now,)).rowcount


def amount(b: dict[str, Any], subtotal: int) -> int:
    """What a benefit takes off a bill of ``subtotal`` cents."""
    if b["min_spend"] and subtotal < b["min_spend"]:
        return 0
    if b["value_kind"] == "amount":
        return min(b["value"], subtotal)
    if b["value_kind"] == "percent":
        return subtotal * b["value"] // 100
    return 0
