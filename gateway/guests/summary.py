"""``P/guests/summary`` of kind ``hour``: counts per completed hour, no personal data.

Guests checked in and out, stays opened and closed, authority reports sent on time or late,
acknowledged, failed, and overdue (unsent past their deadline) at the hour's end. Only hours with
activity are sent; each has a stable ``id`` (``STORE:guests:YYYYMMDDTHH``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from gateway.core.models import iso_ms
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

if TYPE_CHECKING:
    from gateway.guests.context import GuestsContext

HOUR_MS = 3_600_000
KEY = "summary_hour"


def _count(c: Connection, sql: str, args: tuple[int, ...]) -> int:
    return int(c.execute(sql, args).fetchone()[0])


def hourly(ctx: GuestsContext, c: Connection) -> int:
    """Queue the summary of every completed hour not yet sent; return how many were queued."""
    now = ctx.now()
    current = now - now % HOUR_MS
    row = c.execute("SELECT value FROM guest_meta WHERE key = ?", (KEY,)).fetchone()
    if row is None:
        first = c.execute("SELECT min(created_ms) FROM guest_stays").fetchone()[0]
        start = (first - first % HOUR_MS) if first else current
    else:
        start = int(row[0])
    start = max(start, current - 48 * HOUR_MS)  # after a long pause, the last two days
    sent = 0
    hour = start
    while hour < current:
        a = (hour, hour + HOUR_MS - 1)
        doc = {
            "guests_checked_in": _count(c, "SELECT count(*) FROM guest_people WHERE registered_ms BETWEEN ? AND ?", a),
            "guests_checked_out": _count(c, "SELECT count(*) FROM guest_people WHERE stay_id IN (SELECT id FROM "
                                            "guest_stays WHERE checked_out_ms BETWEEN ? AND ?)", a),
            "stays_opened": _count(c, "SELECT count(*) FROM guest_stays WHERE created_ms BETWEEN ? AND ?", a),
            "stays_closed": _count(c, "SELECT count(*) FROM guest_stays WHERE checked_out_ms BETWEEN ? AND ?", a),
        }
        reports = {
            "sent_on_time": _count(c, "SELECT count(*) FROM guest_reports WHERE sent_ms BETWEEN ? AND ? AND "
                                      "(deadline_ms IS NULL OR sent_ms <= deadline_ms)", a),
            "sent_late": _count(c, "SELECT count(*) FROM guest_reports WHERE sent_ms BETWEEN ? AND ? "
                                   "AND sent_ms > deadline_ms", a),
            "acknowledged": _count(c, "SELECT count(*) FROM guest_reports WHERE acked_ms BETWEEN ? AND ?", a),
            "failed": _count(c, "SELECT count(*) FROM guest_reports WHERE failed_ms BETWEEN ? AND ?", a),
            "overdue": _count(c, "SELECT count(*) FROM guest_reports WHERE deadline_ms < ? AND "
                                 "(sent_ms IS NULL OR sent_ms > deadline_ms) AND created_ms < ?",
                              (hour + HOUR_MS, hour + HOUR_MS)),
        }
        if any(doc.values()) or any(v for k, v in reports.items() if k != "overdue"):
            stamp = dt.datetime.fromtimestamp(hour / 1000, dt.UTC).strftime("%Y%m%dT%H")
            msg = {"id": f"{ctx.store_id}:guests:{stamp}", "ts": iso_ms(now), "kind": "hour", "store": ctx.store_id,
                   "window_start": iso_ms(hour), "window_s": 3600, **doc, "reports": reports}
            enqueue(c, Lane.ORDERS, f"{ctx.cfg.prefix}/guests/summary", msg["id"], "guests", msg)
            sent += 1
        hour += HOUR_MS
    c.execute("INSERT INTO guest_meta (key, value) VALUES (?, ?) "
              "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (KEY, str(hour)))
    return sent
