"""The equipment registry: validated records, maintenance plans and services done, import and export.

Functions take a connection (the writer's in the gateway, the CLI's own outside it) and validate
everything before writing: an import with any bad row writes nothing and names every bad row and
field (``row 3 (fridge-1), purchased: expected a date YYYY-MM-DD, found "2026/01/01"``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from typing import Any

from gateway.core.errors import ConfigError
from gateway.core.models import DEVICE_ID_RE
from gateway.core.options import parse_duration
from gateway.core.text import free_text
from gateway.equipment import EquipmentError
from gateway.equipment.maintenance import MODES, Done, Plan
from gateway.store.db import Connection

TEXT_FIELDS = {"kind": 24, "brand": 60, "model": 60, "serial": 60, "location": 80}
DATE_FIELDS = ("purchased", "warranty_end")
ASSET_FIELDS = ("device_id", "kind", "brand", "model", "serial", "location", "purchased", "life_years",
                "warranty_end")
PLAN_FIELDS = ("task", "mode", "every", "every_hours", "every_cycles", "start", "start_hours", "start_cycles")
MAX_ROWS = 2000
MAX_LIFE_YEARS = 60.0


class RowErrors(EquipmentError):
    """An import's problems, one line per bad row and field; nothing was written."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__("nothing imported; fix these and import again:\n  " + "\n  ".join(shown),
                         code="invalid", status=400)
        self.problems = problems


def parse_date(value: Any, field: str) -> str:
    """A date as YYYY-MM-DD ('' stays ''); raise ValueError with the field's expectation."""
    if value in (None, ""):
        return ""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{field}: expected a date YYYY-MM-DD, found \"{str(value)[:40]}\"") from None


def date_ms(text: str, tz: dt.tzinfo = dt.UTC) -> int:
    """Midnight of a YYYY-MM-DD date in ``tz``, epoch ms."""
    day = dt.date.fromisoformat(text)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def _number(value: Any, field: str, *, low: float = 0.0, high: float = 1e12, allow_empty: bool = True,
            strict_low: bool = False) -> float | None:
    if value in (None, "") and allow_empty:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, found {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected a number, found \"{str(value)[:40]}\"") from None
    if not math.isfinite(number) or number < low or number > high or (strict_low and number <= low):
        rel = ">" if strict_low else ">="
        raise ValueError(f"{field}: expected a number {rel} {low:g} and <= {high:g}, found {value!r}")
    return number


def clean_asset(row: dict[str, Any]) -> dict[str, Any]:
    """A registry record from user input (a form, a CSV row, a JSON object); ValueError names the field."""
    unknown = sorted(set(row) - set(ASSET_FIELDS) - {"plans"})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field (fields: {', '.join(ASSET_FIELDS)}, plans)")
    device = row.get("device_id")
    if not isinstance(device, str) or not DEVICE_ID_RE.match(device.strip()):
        raise ValueError(f"device_id: expected [A-Za-z0-9_.-]{{1,64}}, found {str(device)[:70]!r}")
    out: dict[str, Any] = {"device_id": device.strip()}
    for field, limit in TEXT_FIELDS.items():
        value = row.get(field, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"{field}: expected text, found {value!r}")
        out[field] = free_text(value, limit)
    for field in DATE_FIELDS:
        out[field] = parse_date(row.get(field), field)
    out["life_years"] = _number(row.get("life_years"), "life_years", high=MAX_LIFE_YEARS, strict_low=True)
    return out


def clean_plan(row: dict[str, Any], default_start: str = "", tz: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    """A maintenance plan from user input; ValueError names the field. ``mode`` must be chosen."""
    unknown = sorted(set(row) - set(PLAN_FIELDS))
    if unknown:
        raise ValueError(f"plans.{unknown[0]}: not a field (fields: {', '.join(PLAN_FIELDS)})")
    task = free_text(row.get("task") or "", 80)
    if not task:
        raise ValueError("plans.task: a short name of the work is required, e.g. \"clean condenser coil\"")
    mode = row.get("mode")
    if mode not in MODES:
        raise ValueError(f"plans.mode: choose \"fixed\" (on the grid, e.g. inspections) or \"floating\" (from the "
                         f"last service, e.g. wear parts); found {mode!r}")
    every_s = None
    if row.get("every") not in (None, ""):
        try:
            every_s = parse_duration(row["every"], "plans.every")
        except ConfigError as err:
            raise ValueError(str(err)) from None
        if every_s < 1:
            raise ValueError("plans.every: at least \"1s\"")
    hours = _number(row.get("every_hours"), "plans.every_hours", strict_low=True)
    cycles = _number(row.get("every_cycles"), "plans.every_cycles", strict_low=True)
    if every_s is None and hours is None and cycles is None:
        raise ValueError("plans: give at least one trigger: every (\"90d\"), every_hours or every_cycles")
    start = parse_date(row.get("start"), "plans.start") or default_start or dt.datetime.now(tz).date().isoformat()
    return {"task": task, "mode": mode, "every_s": every_s, "every_hours": hours, "every_cycles": cycles,
            "start": start, "start_hours": _number(row.get("start_hours"), "plans.start_hours") or 0.0,
            "start_cycles": _number(row.get("start_cycles"), "plans.start_cycles") or 0.0}


# -- reading and writing

def save_asset(conn: Connection, asset: dict[str, Any], now: int, who: int | None) -> None:
    """Insert or replace one record (already cleaned)."""
    conn.execute(
        "INSERT INTO equipment_assets (device_id, kind, brand, model, serial, location, purchased, life_years, "
        "warranty_end, updated_ms, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET kind = excluded.kind, brand = excluded.brand, model = excluded.model, "
        "serial = excluded.serial, location = excluded.location, purchased = excluded.purchased, "
        "life_years = excluded.life_years, warranty_end = excluded.warranty_end, updated_ms = excluded.updated_ms, "
        "updated_by = excluded.updated_by",
        tuple(asset[f] for f in ASSET_FIELDS) + (now, who))


def save_plan(conn: Connection, device: str, plan: dict[str, Any], now: int, tz: dt.tzinfo = dt.UTC) -> int:
    """Add a plan, or change the one with the same task on this device; return its id."""
    start_ms = date_ms(plan["start"], tz)
    conn.execute(
        "INSERT INTO equipment_plans (device_id, task, mode, every_s, every_hours, every_cycles, start_ms, "
        "start_hours, start_cycles, active, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
        "ON CONFLICT (device_id, task) DO UPDATE SET mode = excluded.mode, every_s = excluded.every_s, "
        "every_hours = excluded.every_hours, every_cycles = excluded.every_cycles, start_ms = excluded.start_ms, "
        "start_hours = excluded.start_hours, start_cycles = excluded.start_cycles, active = 1",
        (device, plan["task"], plan["mode"], plan["every_s"], plan["every_hours"], plan["every_cycles"], start_ms,
         plan["start_hours"], plan["start_cycles"], now))
    return conn.execute("SELECT id FROM equipment_plans WHERE device_id = ? AND task = ?",
                        (device, plan["task"])).fetchone()[0]


def assets(conn: Connection) -> dict[str, dict[str, Any]]:
    """Every record by device id."""
    cols = ", ".join(ASSET_FIELDS)
    return {r[0]: dict(zip(ASSET_FIELDS, r, strict=True))
            for r in conn.execute(f"SELECT {cols} FROM equipment_assets ORDER BY device_id")}  # noqa: S608


PLAN_COLUMNS = ("id", "device_id", "task", "mode", "every_s", "every_hours", "every_cycles", "start_ms",
                "start_hours", "start_cycles")


def plans(conn: Connection, device: str | None = None) -> list[dict[str, Any]]:
    """Active plans (of one device)."""
    sql = f"SELECT {', '.join(PLAN_COLUMNS)} FROM equipment_plans WHERE active = 1"  # noqa: S608
    args: tuple[Any, ...] = ()
    if device is not None:
        sql += " AND device_id = ?"
        args = (device,)
    return [dict(zip(PLAN_COLUMNS, r, strict=True)) for r in conn.execute(sql + " ORDER BY device_id, id", args)]


def remove_plan(conn: Connection, plan_id: int) -> str:
    """Retire a plan (its history stays); return its device id."""
    row = conn.execute("SELECT device_id FROM equipment_plans WHERE id = ? AND active = 1", (plan_id,)).fetchone()
    if row is None:
        raise EquipmentError(f"no maintenance plan {plan_id}. 无此保养计划。", code="not_found", status=404)
    conn.execute("UPDATE equipment_plans SET active = 0 WHERE id = ?", (plan_id,))
    return row[0]


def plan_of(row: dict[str, Any]) -> Plan:
    """The maintenance model of a plan row."""
    return Plan(task=row["task"], mode=row["mode"], every_s=row["every_s"], every_hours=row["every_hours"],
                every_cycles=row["every_cycles"], start_ms=row["start_ms"], start_hours=row["start_hours"],
                start_cycles=row["start_cycles"])


def history(conn: Connection, plan_id: int) -> list[Done]:
    """The services done under a plan, oldest first."""
    return [Done(*r) for r in conn.execute(
        "SELECT done_ms, hours, cycles FROM equipment_done WHERE plan_id = ? ORDER BY done_ms, id", (plan_id,))]


def done_log(conn: Connection, device: str, limit: int = 50) -> list[dict[str, Any]]:
    """A device's services done, newest first (who as the staff id)."""
    cols = ("id", "plan_id", "task", "done_ms", "hours", "cycles", "who", "what", "parts")
    return [dict(zip(cols, r, strict=True)) for r in conn.execute(
        "SELECT d.id, d.plan_id, p.task, d.done_ms, d.hours, d.cycles, d.who, d.what, d.parts FROM equipment_done d "
        "JOIN equipment_plans p ON p.id = d.plan_id WHERE d.device_id = ? ORDER BY d.done_ms DESC, d.id DESC LIMIT ?",
        (device, limit))]


def record_done(conn: Connection, plan_id: int, *, who: int | None, what: str, parts: str, done_ms: int,
                hours: float | None, cycles: float | None, now: int) -> int:
    """Record a service done under a plan (what and parts cleaned here); return its id."""
    row = conn.execute("SELECT device_id FROM equipment_plans WHERE id = ? AND active = 1", (plan_id,)).fetchone()
    if row is None:
        raise EquipmentError(f"no maintenance plan {plan_id}. 无此保养计划。", code="not_found", status=404)
    cur = conn.execute(
        "INSERT INTO equipment_done (plan_id, device_id, done_ms, hours, cycles, who, what, parts, recorded_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (plan_id, row[0], done_ms, hours, cycles, who, free_text(what, 200), free_text(parts, 200), now))
    return int(cur.lastrowid)


# -- import and export

def parse_import(text: str, fmt: str) -> list[dict[str, Any]]:
    """Rows of an import file (``json``: {"equipment": [...]} or a list; ``csv``: a header row)."""
    if fmt == "json":
        try:
            doc = json.loads(text)
        except ValueError as err:
            raise RowErrors([f"not valid JSON: {err}"]) from None
        rows = doc.get("equipment") if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise RowErrors(['expected {"equipment": [ {...}, ... ]} or a list of objects'])
        return rows
    reader = csv.DictReader(io.StringIO(text))
    missing = [] if reader.fieldnames and "device_id" in reader.fieldnames else ["device_id"]
    if missing:
        raise RowErrors(["the CSV's first row must name the columns, device_id among them "
                         f"(columns: {', '.join(ASSET_FIELDS)})"])
    rows = []
    for row in reader:
        if None in row:
            rows.append({"__error__": "more values than columns"})
            continue
        rows.append({k: v for k, v in row.items() if v != ""})
    return rows


def validate_rows(rows: list[Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Clean every row and its plans; RowErrors with every problem, or the cleaned (asset, plans)."""
    problems: list[str] = []
    out: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if len(rows) > MAX_ROWS:
        raise RowErrors([f"{len(rows)} rows: at most {MAX_ROWS} in one import"])
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        label = f"row {i}"
        if not isinstance(row, dict):
            problems.append(f"{label}: expected an object with device_id, brand, model...")
            continue
        if "__error__" in row:
            problems.append(f"{label}: {row['__error__']}")
            continue
        if isinstance(row.get("device_id"), str):
            label += f" ({row['device_id'][:64]})"
        try:
            asset = clean_asset(row)
        except ValueError as err:
            problems.append(f"{label}, {err}")
            continue
        if asset["device_id"] in seen:
            problems.append(f"{label}, device_id: also in row {seen[asset['device_id']]}")
            continue
        seen[asset["device_id"]] = i
        plans_in = row.get("plans") or []
        if not isinstance(plans_in, list):
            problems.append(f"{label}, plans: expected a list of plans")
            continue
        cleaned = []
        for j, p in enumerate(plans_in, start=1):
            try:
                if not isinstance(p, dict):
                    raise ValueError("plans: expected an object with task, mode and a trigger")
                cleaned.append(clean_plan(p, asset["purchased"]))
            except ValueError as err:
                problems.append(f"{label}, plan {j}: {err}")
        out.append((asset, cleaned))
    if problems:
        raise RowErrors(problems)
    return out


def import_rows(conn: Connection, rows: list[Any], now: int, who: int | None = None,
                tz: dt.tzinfo = dt.UTC) -> dict[str, int]:
    """Validate, then write every record and plan in the caller's transaction."""
    valid = validate_rows(rows)
    n_plans = 0
    for asset, plan_rows in valid:
        save_asset(conn, asset, now, who)
        for plan in plan_rows:
            save_plan(conn, asset["device_id"], plan, now, tz)
            n_plans += 1
    return {"devices": len(valid), "plans": n_plans}


def export_doc(conn: Connection, tz: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    """Every record with its plans, in the import's JSON form (round-trips)."""
    by_device: dict[str, list[dict[str, Any]]] = {}
    for p in plans(conn):
        item: dict[str, Any] = {"task": p["task"], "mode": p["mode"],
                                "start": dt.datetime.fromtimestamp(p["start_ms"] / 1000, tz).date().isoformat()}
        if p["every_s"]:
            item["every"] = duration_text(p["every_s"])
        for key in ("every_hours", "every_cycles"):
            if p[key]:
                item[key] = p[key]
        for key in ("start_hours", "start_cycles"):
            if p[key]:
                item[key] = p[key]
        by_device.setdefault(p["device_id"], []).append(item)
    out = []
    for device, asset in assets(conn).items():
        row = {k: v for k, v in asset.items() if v not in ("", None)}
        if by_device.get(device):
            row["plans"] = by_device[device]
        out.append(row)
    return {"equipment": out}


def export_csv(conn: Connection) -> str:
    """The records (without plans) as CSV with a header row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(ASSET_FIELDS), lineterminator="\n")
    writer.writeheader()
    for asset in assets(conn).values():
        writer.writerow({k: ("" if v is None else v) for k, v in asset.items()})
    return buf.getvalue()


def duration_text(seconds: float) -> str:
    """A duration as the config writes it ("90d", "12h", "30s")."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
