"""Feedback and complaints (现场评价): a diner's rating after the bill, staff complaints against a dish.

Complaints are counted per business day and category; reaching ``members.complaint_alert_per_day``
in one category raises the ``complaint-surge`` store-health alert (cleared the next day). Comment and
note text stay in the store: HQ gets counts, and text only with ``members.feedback_text_upstream``
(and then redacted by ``redact``; the tripwires' recognisers replace it when they land).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from gateway.core.text import form_uint, free_text
from gateway.members.ledger import MembersError
from gateway.staff.accounts import audit
from gateway.store.db import Connection

if TYPE_CHECKING:
    from gateway.members.context import MembersContext

CATEGORIES: dict[str, tuple[str, str]] = {
    "taste": ("口味", "Taste"),
    "wait": ("上菜慢", "Slow service"),
    "service": ("服务态度", "Staff attitude"),
    "hygiene": ("卫生", "Hygiene"),
    "wrong": ("上错菜", "Wrong dish"),
    "foreign": ("异物", "Foreign object"),
    "price": ("价格", "Price"),
    "other": ("其他", "Other"),
}
COMMENT_MAX = 280
ALERT_PREFIX = "members:complaints:"
_DIGITS = re.compile(r"[0-9][0-9 \-]{5,}[0-9Xx]")
_EMAILISH = re.compile(r"\S+@\S+")


def redact(text: str) -> str:
    """Mask runs of 7+ digits (phones, ID and card numbers) and e-mail-like words."""
    return _EMAILISH.sub("[redacted]", _DIGITS.sub("[redacted]", text))


def day_of(ctx: MembersContext, now: int) -> str:
    """The business day (store.timezone) of ``now``."""
    return dt.datetime.fromtimestamp(now / 1000, ctx.tz).strftime("%Y-%m-%d")


def rate(conn: Connection, bill: dict[str, Any], table_id: str, diner: str, rating: Any, comment: Any,
         now: int) -> int:
    """A diner rates the visit after paying (one rating per phone and bill; a second one replaces it)."""
    if bill["session"] is None or bill["paid"] <= 0:
        raise MembersError("You can rate the visit once the bill is paid. 结账后即可评价。", code="not_paid",
                           status=409)
    stars = form_uint(rating, 0) or 0  # ASCII digits: int() also takes "５"
    if not 1 <= stars <= 5:
        raise MembersError("Choose 1 to 5 stars. 请选择1-5星。", code="bad_rating")
    text = free_text(comment, COMMENT_MAX)
    conn.execute(
        "INSERT INTO mem_feedback (session_id, table_id, diner, rating, comment, created_ms) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (session_id, diner) DO UPDATE SET rating = excluded.rating, comment = excluded.comment",
        (bill["session"], table_id, diner, stars, text, now))
    return int(conn.execute("SELECT id FROM mem_feedback WHERE session_id = ? AND diner = ?",
                            (bill["session"], diner)).fetchone()[0])


def complain(ctx: MembersContext, conn: Connection, bill: dict[str, Any], table_id: str, line_id: int | None,
             category: str, note: Any, who: str, now: int) -> int:
    """Staff log a complaint against an order line of the table's bill; a surge raises an alert."""
    if category not in CATEGORIES:
        raise MembersError("Choose a category. 请选择类别。", code="bad_category")
    if bill["session"] is None:
        raise MembersError("The table is not open. 该桌未开台。", code="not_open", status=409)
    if line_id is not None and line_id not in {ln["id"] for ln in bill["lines"]}:
        raise MembersError("That dish is not on this bill. 该菜品不在本单上。", code="not_on_bill", status=404)
    day = day_of(ctx, now)
    cid = int(conn.execute(
        "INSERT INTO mem_complaints (session_id, line_id, table_id, category, note, staff, day, created_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (bill["session"], line_id, table_id, category, free_text(note, COMMENT_MAX), who, day, now)).lastrowid)
    audit(conn, who, "complaint", f"table:{table_id}", category)
    limit = ctx.mcfg.complaint_alert_per_day
    if limit > 0:
        n = conn.execute("SELECT count(*) FROM mem_complaints WHERE day = ? AND category = ?",
                         (day, category)).fetchone()[0]
        if n >= limit:
            ctx.alerts.raise_(conn, f"{ALERT_PREFIX}{day}:{category}", kind="store-health", rule="complaint-surge",
                              device="gateway", severity="major", value=float(n),
                              text=f"{n} complaints today in category {category}")
    return cid


def clear_old_alerts(ctx: MembersContext, conn: Connection, now: int) -> int:
    """Clear complaint-surge alerts of earlier days."""
    today = day_of(ctx, now)
    n = 0
    for key in [k for k in ctx.alerts.active if k.startswith(ALERT_PREFIX)]:
        if key[len(ALERT_PREFIX):].split(":")[0] != today:
            n += ctx.alerts.clear(conn, key, text="a new business day")
    return n


def today(ctx: MembersContext, conn: Connection, now: int) -> dict[str, Any]:
    """Today's complaints per category and the ratings so far (staff page)."""
    day = day_of(ctx, now)
    counts = dict(conn.execute("SELECT category, count(*) FROM mem_complaints WHERE day = ? GROUP BY category",
                               (day,)).fetchall())
    recent = [{"table": t, "category": c, "note": n, "staff": s, "ts_ms": ts}
              for t, c, n, s, ts in conn.execute("SELECT table_id, category, note, staff, created_ms FROM "
                                                 "mem_complaints WHERE day = ? ORDER BY id DESC LIMIT 20", (day,))]
    start = int(dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=ctx.tz).timestamp() * 1000)
    rated = conn.execute("SELECT count(*), avg(rating) FROM mem_feedback WHERE created_ms >= ?", (start,)).fetchone()
    return {"day": day, "counts": counts, "recent": recent, "ratings": rated[0],
            "avg": round(rated[1], 2) if rated[1] is not None else None}
