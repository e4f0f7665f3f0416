"""``P/members/summary``: aggregates only, one message per completed window (``members.summary_every``).

Registered and active members per tier (a snapshot at the window's end), new members, points
issued / redeemed / expired / reversed / given back, coupons redeemed per kind, complaints per
category and ratings in the window. No member number, nickname, phone, card ref or id of any kind
leaves the store; comment text only with ``members.feedback_text_upstream`` (redacted).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from gateway.core.models import iso_ms
from gateway.members import feedback
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

if TYPE_CHECKING:
    from gateway.members.context import MembersContext

CURSOR = "summary_window"
MAX_CATCH_UP = 48


def build(ctx: MembersContext, c: Connection, start: int, end: int, now: int) -> dict[str, Any]:
    """The summary of [start, end)."""
    m = ctx.mcfg
    active_since = end - int(m.active_window * 1000)
    reg = dict(c.execute("SELECT tier, count(*) FROM mem_members WHERE created_ms < ? GROUP BY tier", (end,)))
    act = dict(c.execute("SELECT tier, count(*) FROM mem_members WHERE created_ms < ? AND last_visit_ms >= ? "
                         "AND last_visit_ms < ? GROUP BY tier", (end, active_since, end)))
    kinds = dict(c.execute("SELECT kind, coalesce(sum(points), 0) FROM mem_ledger WHERE ts_ms >= ? AND ts_ms < ? "
                           "GROUP BY kind", (start, end)))
    coupons = dict(c.execute("SELECT kind, count(*) FROM mem_benefits WHERE state = 'redeemed' AND used_ms >= ? "
                             "AND used_ms < ? GROUP BY kind", (start, end)))
    complaints = dict(c.execute("SELECT category, count(*) FROM mem_complaints WHERE created_ms >= ? "
                                "AND created_ms < ? GROUP BY category", (start, end)))
    rated = c.execute("SELECT count(*), avg(rating) FROM mem_feedback WHERE created_ms >= ? AND created_ms < ?",
                      (start, end)).fetchone()
    label = dt.datetime.fromtimestamp(start / 1000, dt.UTC).strftime("%Y%m%dT%H%M")
    msg: dict[str, Any] = {
        "id": f"{ctx.store_id}:members:{label}", "ts": iso_ms(now), "kind": "window", "store": ctx.store_id,
        "window_start": iso_ms(start), "window_s": (end - start) // 1000,
        "tiers": [{"tier": i, "name_zh": m.tier_names[i], "name_en": m.tier_names_en[i],
                   "registered": int(reg.get(i, 0)), "active": int(act.get(i, 0))} for i in range(len(m.tier_names))],
        "new_members": int(c.execute("SELECT count(*) FROM mem_members WHERE created_ms >= ? AND created_ms < ?",
                                     (start, end)).fetchone()[0]),
        "points": {"issued": int(kinds.get("earn", 0)) + max(0, int(kinds.get("adjust", 0))),
                   "redeemed": -int(kinds.get("redeem", 0)), "expired": -int(kinds.get("expire", 0)),
                   "reversed": -int(kinds.get("reverse", 0)), "restored": int(kinds.get("restore", 0))},
        "coupons_redeemed": {k: int(v) for k, v in sorted(coupons.items())},
        "complaints": {k: int(v) for k, v in sorted(complaints.items())},
        "feedback": {"count": int(rated[0]), "avg_rating": round(float(rated[1]), 2) if rated[1] is not None else None},
    }
    if m.feedback_text_upstream:
        texts = [{"source": "feedback", "rating": r, "category": None, "text": feedback.redact(t)}
                 for r, t in c.execute("SELECT rating, comment FROM mem_feedback WHERE created_ms >= ? "
                                       "AND created_ms < ? AND comment != ''", (start, end))]
        texts += [{"source": "complaint", "rating": None, "category": cat, "text": feedback.redact(t)}
                  for cat, t in c.execute("SELECT category, note FROM mem_complaints WHERE created_ms >= ? "
                                          "AND created_ms < ? AND note != ''", (start, end))]
        msg["comments"] = texts[:100]
    return msg


def tick(ctx: MembersContext, c: Connection, now: int) -> int:
    """Queue a summary for every completed window not yet sent; return how many were queued."""
    every = int(ctx.mcfg.summary_every * 1000)
    current = now - now % every
    row = c.execute("SELECT value FROM mem_meta WHERE key = ?", (CURSOR,)).fetchone()
    if row is None:
        first = c.execute("SELECT min(created_ms) FROM mem_members").fetchone()[0]
        start = (first - first % every) if first else current
    else:
        start = int(row[0])
    sent = 0
    window = max(start, current - MAX_CATCH_UP * every)
    while window < current:
        msg = build(ctx, c, window, window + every, now)
        enqueue(c, Lane.SUMMARIES, f"{ctx.cfg.prefix}/members/summary", msg["id"], "members", msg)
        sent += 1
        window += every
    c.execute("INSERT INTO mem_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
              (CURSOR, str(window)))
    return sent
