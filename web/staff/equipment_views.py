"""Equipment pages (on the staff blueprint, managers only): the registry with each device's health as SVG
sparklines, a device's record, its maintenance plans, and recording a service done.

Every page reaches the gateway through the equipment facade (``gateway/equipment/service.py``); the
sparklines are rendered here (``web/charts.py``): no chart library, no script, no external request.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import abort, current_app, g, redirect, request, url_for

from gateway.core.errors import OrderingError
from gateway.core.models import DEVICE_ID_RE, now_ms
from web.charts import sparkline
from web.kit import services_of
from web.staff.views import _done, _render, bp, flash, need, staff

WEEK_MS = 7 * 86_400_000
METRICS = (  # (key, label, unit, fixed range)
    ("score", "score 评分", "", (0.0, 100.0)),
    ("uptime_pct", "uptime 在线 %", "%", (0.0, 100.0)),
    ("alarm_s", "time in alarm 报警时长 s", " s", (0.0, None)),
    ("faults", "faults 故障", "", (0.0, None)),
)


def equipment() -> Any:
    """The equipment service (404 when this build has none)."""
    svc = services_of(current_app).services.get("equipment")
    if svc is None:
        abort(404)
    return svc


def _date(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, equipment().tz).strftime("%Y-%m-%d %H:%M")


def _number(name: str) -> float | None:
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,12}(?:\.[0-9]{1,6})?", text):  # ASCII digits: float() takes "１２" and "1_0"
        raise OrderingError(f"{name}: expected a number, found {text[:20]!r}. 请输入数字。")
    value = float(text)
    if not 0 <= value < 1e12:
        raise OrderingError(f"{name}: expected a number of 0 or more. 请输入非负数。")
    return value


@bp.get("/equipment")
@need("equipment")
def equipment_home() -> Any:
    """Every device: record, health score over the last 7 days, 14 days of sparklines, maintenance due."""
    svc = equipment()
    now = now_ms()
    week = {h["device_id"]: h for h in svc.device_health(now - WEEK_MS, now)}
    series = svc.health_series()
    due: dict[str, list[dict[str, Any]]] = {}
    for item in svc.maintenance_due(now):
        due.setdefault(item["device_id"], []).append(item)
    rows = []
    for dev in svc.devices():
        did = dev["device_id"]
        charts = [(label, sparkline(series.get(did, {}).get(key, []), label=label, lo=lo, hi=hi, unit=unit))
                  for key, label, unit, (lo, hi) in METRICS]
        rows.append({"dev": dev, "week": week.get(did), "charts": charts, "due": due.get(did, [])})
    return _render("staff/equipment.html", rows=rows)


@bp.get("/equipment/<device_id>")
@need("equipment")
def equipment_device(device_id: str) -> Any:
    """One device: its record (editable), plans with their state, a service done form, the history."""
    try:
        dev = equipment().device(device_id)
    except OrderingError:
        abort(404)
    names = {}
    for item in dev["done"]:
        if item["who"] is not None and item["who"] not in names:
            names[item["who"]] = staff().name_of(item["who"]) or f"#{item['who']}"
    return _render("staff/equipment_device.html", dev=dev, names=names, date=_date)


@bp.post("/equipment/<device_id>")
@need("equipment")
def equipment_save(device_id: str) -> Any:
    """Save a device's record (every field of the form)."""
    if not DEVICE_ID_RE.match(device_id):
        abort(404)
    fields = {k: request.form.get(k, "") for k in ("kind", "brand", "model", "serial", "location", "purchased",
                                                  "life_years", "warranty_end")}
    target = url_for("staff.equipment_device", device_id=device_id)
    try:
        equipment().save_asset(device_id, fields, who=g.staff.id)
    except OrderingError as err:
        return _done(target, err)
    flash("Saved 已保存", "ok")
    return _done(target)


@bp.post("/equipment/<device_id>/plans")
@need("equipment")
def equipment_plan(device_id: str) -> Any:
    """Add a maintenance plan (or change the one with the same task); fixed or floating must be chosen."""
    if not DEVICE_ID_RE.match(device_id):
        abort(404)
    target = url_for("staff.equipment_device", device_id=device_id)
    fields = {k: request.form.get(k, "") for k in ("task", "mode", "every", "every_hours", "every_cycles", "start",
                                                  "start_hours", "start_cycles")}
    try:
        equipment().device(device_id)
        equipment().save_plan(device_id, fields)
    except OrderingError as err:
        return _done(target, err)
    flash("Plan saved 保养计划已保存", "ok")
    return _done(target)


@bp.post("/equipment/plans/<int:plan_id>/done")
@need("equipment")
def equipment_done(plan_id: int) -> Any:
    """Record a service done (who: the signed-in account's id; what; parts): it closes the plan's alerts."""
    back = request.form.get("device", "")
    target = (url_for("staff.equipment_device", device_id=back) if DEVICE_ID_RE.match(back)
              else url_for("staff.equipment_home"))
    try:
        state = equipment().record_done(plan_id, who=g.staff.id, what=request.form.get("what", ""),
                                        parts=request.form.get("parts", ""), hours=_number("hours"),
                                        cycles=_number("cycles"))
    except OrderingError as err:
        return _done(target, err)
    flash(f"Service recorded 已记录保养 ({state})", "ok")
    return redirect(target, code=303)


@bp.post("/equipment/plans/<int:plan_id>/remove")
@need("equipment")
def equipment_plan_remove(plan_id: int) -> Any:
    """Retire a maintenance plan (its history stays; its alerts are cleared)."""
    back = request.form.get("device", "")
    target = (url_for("staff.equipment_device", device_id=back) if DEVICE_ID_RE.match(back)
              else url_for("staff.equipment_home"))
    try:
        equipment().remove_plan(plan_id)
    except OrderingError as err:
        return _done(target, err)
    flash("Plan removed 保养计划已删除", "ok")
    return redirect(target, code=303)
