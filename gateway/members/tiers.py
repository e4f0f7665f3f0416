"""Tiers (普通/银卡/金卡/白金 by default): qualification over a rolling period, upgrade hold, downgrade rule.

- **Qualifying value**: points earned (earn minus reversals) or money spent (paid bills, refunds
  taken off) within ``members.tier_period``, per ``members.tier_basis``.
- **Upgrade** at once when the value reaches a higher threshold; it then **holds** for
  ``members.tier_hold`` (保级期): no downgrade before that, whatever happens.
- **Downgrade** after the hold, by ``members.downgrade``: ``none`` keeps the tier, ``one`` drops one
  tier (and holds again: the common 保级 rule), ``recalc`` drops to the tier the value qualifies for.
- Reaching a tier issues its perk coupon once (``members.tier_perk_cents``).

Evaluated in the transaction that changes the value (a paid or refunded bill) and by the hourly
job for holds that ended. Every change is logged in ``mem_tier_log``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.members import benefits
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.members.context import MembersContext


def name(ctx: MembersContext, tier: int, lang: str = "zh") -> str:
    """A tier's name in ``lang``."""
    names = ctx.mcfg.tier_names if lang == "zh" else ctx.mcfg.tier_names_en
    return names[max(0, min(tier, len(names) - 1))]


def qualifying(ctx: MembersContext, conn: Connection, member_id: int, now: int) -> int:
    """Points earned, or whole yuan spent, within the tier period."""
    since = now - int(ctx.mcfg.tier_period * 1000)
    if ctx.mcfg.tier_basis == "spend":
        cents = conn.execute("SELECT coalesce(sum(spend_cents), 0) FROM mem_visits WHERE member_id = ? "
                             "AND paid_ms >= ?", (member_id, since)).fetchone()[0]
        return int(cents) // 100
    return int(conn.execute("SELECT coalesce(sum(points), 0) FROM mem_ledger WHERE member_id = ? "
                            "AND kind IN ('earn', 'reverse') AND ts_ms >= ?", (member_id, since)).fetchone()[0])


def level_for(ctx: MembersContext, value: int) -> int:
    """The highest tier whose threshold ``value`` reaches."""
    level = 0
    for i, threshold in enumerate(ctx.mcfg.tier_thresholds):
        if value >= threshold:
            level = i
    return level


def evaluate(ctx: MembersContext, conn: Connection, member_id: int, now: int, why: str) -> tuple[int, int]:
    """Apply the tier rules to one member now; return (old tier, new tier)."""
    row = conn.execute("SELECT tier, tier_hold_until_ms FROM mem_members WHERE id = ?", (member_id,)).fetchone()
    if row is None:
        return 0, 0
    current, hold_until = int(row[0]), int(row[1])
    level = level_for(ctx, qualifying(ctx, conn, member_id, now))
    hold_ms = int(ctx.mcfg.tier_hold * 1000)
    new = current
    if level > current:
        new = level
    elif level < current and now >= hold_until and ctx.mcfg.downgrade != "none":
        new = current - 1 if ctx.mcfg.downgrade == "one" else level
        new = max(new, level)
    if new == current:
        return current, current
    conn.execute("UPDATE mem_members SET tier = ?, tier_since_ms = ?, tier_hold_until_ms = ? WHERE id = ?",
                 (new, now, now + hold_ms, member_id))
    conn.execute("INSERT INTO mem_tier_log (member_id, ts_ms, from_tier, to_tier, why) VALUES (?, ?, ?, ?, ?)",
                 (member_id, now, current, new, why[:80]))
    if new > current:
        n = conn.execute("SELECT count(*) FROM mem_tier_log WHERE member_id = ? AND to_tier > from_tier",
                         (member_id,)).fetchone()[0]
        for tier in range(current + 1, new + 1):
            cents = ctx.mcfg.tier_perk_cents[tier]
            if cents > 0:
                benefits.issue(ctx, conn, member_id, kind="tier", issue_key=f"tier:{member_id}:{tier}:{n}",
                               title_zh=f"{name(ctx, tier, 'zh')}升级礼券", title_en=f"{name(ctx, tier, 'en')} welcome "
                               "coupon", value_kind="amount", value=cents, now=now, who="tier")
    return current, new


def due_for_review(conn: Connection, now: int) -> list[int]:
    """Members above the lowest tier whose hold has ended (the hourly job evaluates them)."""
    return [int(r[0]) for r in conn.execute(
        "SELECT id FROM mem_members WHERE tier > 0 AND tier_hold_until_ms <= ? LIMIT 1000", (now,))]


def progress(ctx: MembersContext, conn: Connection, member_id: int, tier: int, now: int) -> dict[str, Any]:
    """What the member's own page shows: the value so far and what the next tier needs."""
    value = qualifying(ctx, conn, member_id, now)
    nxt = tier + 1 if tier + 1 < len(ctx.mcfg.tier_thresholds) else None
    return {"value": value, "basis": ctx.mcfg.tier_basis, "next": nxt,
            "needed": (ctx.mcfg.tier_thresholds[nxt] - value) if nxt is not None else 0}
