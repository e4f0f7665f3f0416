"""``storegw privacy report`` (issue 10, item 10): what is held, since when, when it goes, who
unmasked what this week, which keys. Counts, dates and references only."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.inventory import Inventory
from gateway.core.models import iso_ms
from gateway.privacy import retention
from gateway.store.db import Connection

DEFAULT_AT = "04:15"


def next_run(at: str, tz: str, now_ms: int) -> str:
    """The next daily run at local ``HH:MM`` in ``tz`` after ``now_ms`` (ISO, UTC)."""
    zone = ZoneInfo(tz)
    hour, minute = (int(x) for x in (at or DEFAULT_AT).split(":"))
    now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
    nxt = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if nxt <= now:
        nxt = (now + dt.timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return iso_ms(int(nxt.timestamp() * 1000))


def week_start_ms(tz: str, now_ms: int) -> int:
    """Monday 00:00 of this week, store time."""
    now = dt.datetime.fromtimestamp(now_ms / 1000, ZoneInfo(tz))
    monday = (now - dt.timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(monday.timestamp() * 1000)


def unmasks(conn: Connection, since_ms: int) -> dict[str, int]:
    """Audit chain entries with action ``unmask`` since ``since_ms``, per staff member, by the
    reference the chain keeps (``staff:ID/ROLE``; never a name)."""
    sql = "SELECT who, count(*) FROM audit_log WHERE action = 'unmask' AND ts_ms >= ? GROUP BY who"
    return {str(who): int(n) for who, n in conn.execute(sql, (since_ms,))}


def key_versions(db_primary: object, fields: list[dict[str, Any]], signing: object) -> dict[str, Any]:
    """The report's key versions: the database key's primary version, each field-key version with its
    status and rows, the signing key's id (``storegw keys status`` has the rest)."""
    return {"database": db_primary or "n/a",
            "fields": ", ".join(f"v{v['version']} {v['status']} ({v['rows']} rows)" for v in fields) or "n/a",
            "signing": signing or "n/a"}


def build(conn: Connection, inventory: Inventory, *, now_ms: int, tz: str, at: str,
          key_versions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report as plain data."""
    counts, oldest = retention.held(conn, inventory)
    last = retention.last_receipt(conn)
    return {
        "generated": iso_ms(now_ms),
        "categories": {cat: {"held": counts.get(cat, 0), "oldest": oldest.get(cat)} for cat in inventory.categories()},
        "next_retention_run": next_run(at, tz, now_ms),
        "last_receipt": ({"id": last["id"], "ts": last["ts"], "deleted": last["deleted"], "rows": last["rows"],
                          "key_id": last["key_id"]} if last else None),
        "unmask_this_week": unmasks(conn, week_start_ms(tz, now_ms)),
        "key_versions": key_versions if key_versions is not None else "n/a",
    }


def text(doc: dict[str, Any]) -> str:
    """The report for a terminal."""
    lines = [f"privacy report  {doc['generated']}", "", f"{'category':<34} {'held':>8}  oldest"]
    for cat, v in doc["categories"].items():
        lines.append(f"{cat:<34} {v['held']:>8}  {v['oldest'] or '-'}")
    lines.append("")
    lines.append(f"next retention run  {doc['next_retention_run']}")
    last = doc["last_receipt"]
    if last:
        deleted = ", ".join(f"{k} {v}" for k, v in last["deleted"].items()) or "nothing due"
        lines.append(f"last receipt        {last['ts']}  {last['id']}  deleted: {deleted}")
    else:
        lines.append("last receipt        none yet")
    um = doc["unmask_this_week"]
    lines.append("unmasks this week   " + (", ".join(f"{k} {v}" for k, v in sorted(um.items())) or "none"))
    kv = doc["key_versions"]
    lines.append("key versions        " + (kv if isinstance(kv, str) else ", ".join(f"{k} {v}" for k, v in kv.items())))
    return "\n".join(lines)
