"""Members on a bill: attach a member, tier discount, coupons and points against it, points on payment.

``BillHook`` is what ordering calls (``gateway/ordering/hooks.py``): members depends on ordering,
never the other way round (docs/members.md, "Why members sits above ordering"). Every hook runs in
ordering's transaction, so a discount, a coupon's redemption and the points earned commit with the
payment, and a void or refund reverses them in its own transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.core import masking
from gateway.core.errors import OrderingError
from gateway.members import benefits, ledger, registry, tiers
from gateway.members.ledger import MembersError
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.members.context import MembersContext


def visit(conn: Connection, session_id: int | None) -> tuple[int, int | None] | None:
    """(member id, paid ms) of the member on a bill, or None."""
    if session_id is None:
        return None
    row = conn.execute("SELECT member_id, paid_ms FROM mem_visits WHERE session_id = ?", (session_id,)).fetchone()
    return (int(row[0]), row[1]) if row else None


def points_on_bill(conn: Connection, session_id: int) -> int:
    """Points redeemed against a bill (net of any given back)."""
    return -int(conn.execute("SELECT coalesce(sum(points), 0) FROM mem_ledger WHERE session_id = ? "
                             "AND kind IN ('redeem', 'restore')", (session_id,)).fetchone()[0])


def earned_on_bill(conn: Connection, session_id: int) -> int:
    """Points earned on a bill (net of reversals)."""
    return int(conn.execute("SELECT coalesce(sum(points), 0) FROM mem_ledger WHERE session_id = ? "
                            "AND kind IN ('earn', 'reverse')", (session_id,)).fetchone()[0])


def earn_for(ctx: MembersContext, total_cents: int) -> int:
    """Points for a paid amount: whole yuan times ``members.points_per_yuan``."""
    return max(0, total_cents) // 100 * ctx.mcfg.points_per_yuan


class BillHook:
    """Ordering's bill hook for members (``OrderingService.add_bill_hook``)."""

    def __init__(self, ctx: MembersContext, now: Any) -> None:
        self.ctx = ctx
        self.now = now  # the clock (tests advance it)

    def adjustments(self, conn: Connection, session_id: int, base: dict[str, Any]) -> list[dict[str, Any]]:
        """The bill's member lines: who (info), tier discount, coupons, points; and the points to earn."""
        v = visit(conn, session_id)
        if v is None:
            return []
        member_id, paid_ms = v
        ctx = self.ctx
        row = conn.execute("SELECT member_no, tier, state FROM mem_members WHERE id = ?", (member_id,)).fetchone()
        if row is None:
            return []
        number, tier, state = row
        subtotal = base["subtotal"]
        shown = masking.mask_member_no(number)  # bills and receipts are seen by others: masked
        out: list[dict[str, Any]] = [{"kind": "member", "amount": 0,
                                      "label_zh": f"会员 {shown} · {tiers.name(ctx, tier, 'zh')}",
                                      "label_en": f"Member {shown} · {tiers.name(ctx, tier, 'en')}"}]
        pct = ctx.mcfg.tier_discount_pct[tier] if state == "active" else 0
        if pct and subtotal > 0:
            out.append({"kind": "tier", "amount": subtotal * pct // 100,
                        "label_zh": f"{tiers.name(ctx, tier, 'zh')}折扣 {pct}%",
                        "label_en": f"{tiers.name(ctx, tier, 'en')} discount {pct}%"})
        for b in benefits.on_bill(conn, session_id):
            out.append({"kind": "coupon", "amount": benefits.amount(b, subtotal), "benefit": b["id"],
                        "label_zh": f"优惠券 {b['title_zh']}", "label_en": f"Coupon: {b['title_en']}"})
        pts = points_on_bill(conn, session_id)
        if pts > 0:
            out.append({"kind": "points", "amount": pts * 100 // ctx.mcfg.redeem_points_per_yuan,
                        "label_zh": f"积分抵扣 {pts}分", "label_en": f"Points redeemed: {pts}"})
        if paid_ms is None:
            due = subtotal + base["service"] - sum(a["amount"] for a in out)
            earn = earn_for(ctx, due) if state == "active" else 0
            out.append({"kind": "earn", "amount": 0, "points": earn,
                        "label_zh": f"结账后可积 {earn} 分（待入账）",
                        "label_en": f"Points to earn once paid: {earn} (pending)"})
        else:
            earned = earned_on_bill(conn, session_id)
            out.append({"kind": "earn", "amount": 0, "points": earned, "label_zh": f"本单积分 {earned} 分",
                        "label_en": f"Points earned: {earned}"})
        return out

    def on_paid(self, conn: Connection, session_id: int, table_id: str, bill: dict[str, Any], who: str) -> None:
        """The bill was paid: coupons redeemed, points earned (key ``earn:SESSION:bill``), tier checked."""
        v = visit(conn, session_id)
        if v is None:
            return
        member_id = v[0]
        now = self.now()
        ctx = self.ctx
        conn.execute("UPDATE mem_visits SET paid_ms = ?, spend_cents = ?, discount_cents = ? WHERE session_id = ?",
                     (now, bill["total"], bill.get("discount", 0), session_id))
        conn.execute("UPDATE mem_members SET last_visit_ms = ? WHERE id = ?", (now, member_id))
        benefits.redeem_bill(conn, session_id, now)
        state = conn.execute("SELECT state FROM mem_members WHERE id = ?", (member_id,)).fetchone()[0]
        points = earn_for(ctx, bill["total"])
        if points and state == "active":
            ledger.credit(conn, member_id, points, f"earn:{session_id}:bill", now,
                          expiry_ms=int(ctx.mcfg.points_expiry * 1000), req=ledger.digest("bill", session_id),
                          session_id=session_id, ref=f"bill {table_id}", who=who)
        tiers.evaluate(ctx, conn, member_id, now, f"bill {session_id} paid")

    def on_changed(self, conn: Connection, session_id: int, bill: dict[str, Any], who: str) -> None:
        """A line was voided or comped, or the bill refunded: after payment, points earned beyond what
        the bill now earns are reversed (key ``earn:SESSION:to:TARGET``, so a repeat changes nothing);
        a bill refunded to nothing gives back its redeemed points and coupons."""
        v = visit(conn, session_id)
        if v is None or v[1] is None:
            return  # not paid yet: the bill's lines show the live amounts
        member_id = v[0]
        now = self.now()
        conn.execute("UPDATE mem_visits SET spend_cents = ?, discount_cents = ? WHERE session_id = ?",
                     (max(0, bill["total"]), bill.get("discount", 0), session_id))
        target = earn_for(self.ctx, bill["total"])
        earned = earned_on_bill(conn, session_id)
        if target < earned:
            entry = ledger.find(conn, f"earn:{session_id}:bill")
            if entry is not None:
                ledger.reverse_credit(conn, entry[0], earned - target, f"earn:{session_id}:to:{target}", now,
                                      who=who, ref=f"bill {session_id} changed")
        if bill["subtotal"] == 0:
            self._give_back(conn, session_id, who, now, redeemed_too=True)
        tiers.evaluate(self.ctx, conn, member_id, now, f"bill {session_id} changed")

    def on_closed(self, conn: Connection, session_id: int, paid: bool, who: str) -> None:
        """The table was cleared: an unpaid bill gives back its points and coupons."""
        v = visit(conn, session_id)
        if v is None or paid:
            return
        self._give_back(conn, session_id, who, self.now(), redeemed_too=False)

    def on_merge(self, conn: Connection, src_session: int, dst_session: int) -> None:
        """A bill with a member on it is not merged (its redemptions name that bill)."""
        if visit(conn, src_session) is not None or visit(conn, dst_session) is not None:
            raise OrderingError("A member is on one of these bills; take the member off before merging. "
                                "账单上有会员，请先移除会员再并台。", code="member_on_bill", status=409)

    def _give_back(self, conn: Connection, session_id: int, who: str, now: int, *, redeemed_too: bool) -> None:
        for (entry_id,) in conn.execute("SELECT id FROM mem_ledger WHERE session_id = ? AND kind = 'redeem'",
                                        (session_id,)).fetchall():
            ledger.restore_debit(conn, entry_id, f"restore:{entry_id}", now, who=who, ref=f"bill {session_id}")
        benefits.release_bill(conn, session_id, who, redeemed_too=redeemed_too)


# ------------------------------------------------------------------------------- counter actions

def _open_bill(bill: dict[str, Any]) -> int:
    if bill["session"] is None:
        raise MembersError("The table is not open. 该桌未开台。", code="not_open", status=409)
    if bill["paid"] > 0:
        raise MembersError("The bill is already paid. 该单已结账。", code="paid", status=409)
    return int(bill["session"])


def attach(ctx: MembersContext, conn: Connection, bill: dict[str, Any], table_id: str, member_id: int, who: str,
           now: int) -> None:
    """Put a member on a table's open bill (one member per bill); the birthday perk is issued if due."""
    sid = _open_bill(bill)
    m = conn.execute("SELECT state, birthday FROM mem_members WHERE id = ?", (member_id,)).fetchone()
    if m is None:
        raise MembersError("No such member. 没有该会员。", code="no_member", status=404)
    current = visit(conn, sid)
    if current is not None:
        if current[0] == member_id:
            return
        raise MembersError("Another member is on this bill; take them off first. 本单已有其他会员。",
                           code="other_member", status=409)
    conn.execute("INSERT INTO mem_visits (session_id, member_id, table_id, attached_ms, by) VALUES (?, ?, ?, ?, ?)",
                 (sid, member_id, table_id, now, who[:40]))
    if m[0] == "active":
        benefits.ensure_birthday(ctx, conn, member_id, m[1], registry.has_consent(conn, member_id, "birthday"), now)


def detach(conn: Connection, bill: dict[str, Any], who: str) -> None:
    """Take the member off an unpaid bill with nothing redeemed on it."""
    sid = _open_bill(bill)
    if points_on_bill(conn, sid) or benefits.on_bill(conn, sid):
        raise MembersError("Remove the coupons and points from the bill first. 请先撤销本单的优惠券和积分。",
                           code="redeemed", status=409)
    conn.execute("DELETE FROM mem_visits WHERE session_id = ? AND paid_ms IS NULL", (sid,))


def redeem_points(ctx: MembersContext, conn: Connection, bill: dict[str, Any], points: int, idem: str, who: str,
                  now: int) -> ledger.Posted:
    """Pay part of a bill with points, once per request id (``redeem:IDEM``)."""
    req = ledger.digest("bill-points", points)  # the entry names its bill; a replay after clearing still matches
    found = ledger.find(conn, f"redeem:{idem}")
    if found is not None:  # a replay: the same answer, even after the bill was paid
        return ledger.replay(conn, found, found[1], req)
    sid = _open_bill(bill)
    v = visit(conn, sid)
    if v is None:
        raise MembersError("Put a member on the bill first. 请先识别会员。", code="no_member", status=409)
    member_id = v[0]
    state = conn.execute("SELECT state FROM mem_members WHERE id = ?", (member_id,)).fetchone()[0]
    if state != "active":
        raise MembersError("This membership is suspended (consent withdrawn). 会员已暂停。", code="suspended",
                           status=409)
    rate = ctx.mcfg.redeem_points_per_yuan
    if points <= 0 or points % rate:
        raise MembersError(f"Redeem points in steps of {rate} (¥1 each). 积分须为{rate}的倍数。", code="bad_points")
    cap = (bill["subtotal"] + bill["service"]) * ctx.mcfg.redeem_max_pct // 100
    already = points_on_bill(conn, sid) * 100 // rate
    other = bill.get("discount", 0) - already
    worth = points * 100 // rate
    if already + worth > cap or other + already + worth > bill["subtotal"] + bill["service"]:
        raise MembersError(f"At most ¥{cap / 100:.2f} of this bill may be paid with points. "
                           f"本单最多可用积分抵扣¥{cap / 100:.2f}。", code="points_cap", status=409)
    return ledger.debit(conn, member_id, points, f"redeem:{idem}", now, req=req, session_id=sid,
                        ref=f"bill {bill['session']}", who=who)
