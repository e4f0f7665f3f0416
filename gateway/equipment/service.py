"""The equipment facade: registry, maintenance plans and alerts, meters, device health, drift.

Everything is computed on the board, with HQ unreachable: the periodic check (every
``equipment.check_every``) runs on the writer, updates the meters from the telemetry windows,
and raises or clears maintenance (due soon, overdue), end-of-life and drift alerts through the
spine's alerts, so they reach HQ raised and cleared through the outbox (store and forward).
Recording a service done closes the plan's alerts in the same transaction.

Named methods for web and the CLI: :meth:`devices`, :meth:`device`, :meth:`save_asset`,
:meth:`save_plan`, :meth:`remove_plan`, :meth:`record_done`, :meth:`import_rows`, :meth:`export_doc`; for the daily
report: :meth:`maintenance_due` and :meth:`device_health`; for the staff page:
:meth:`health_series`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.models import now_ms
from gateway.equipment import EquipmentError, drift, health, meters, registry
from gateway.equipment.maintenance import status
from gateway.spine.context import Periodic, ServiceContext
from gateway.store.db import Connection

_LOGGER = logging.getLogger(__name__)

DAY_MS = 86_400_000
YEAR_MS = 365.25 * DAY_MS
SERIES_DAYS = 14  # the staff page's sparklines: one point a day


def build(ctx: ServiceContext) -> EquipmentService:
    """Build the equipment service for a gateway (``gateway.domains.SERVICES``)."""
    return EquipmentService(ctx)


def soon_key(plan_id: int) -> str:
    """Alert key of a plan's due-soon alert."""
    return f"maint:soon:{plan_id}"


def over_key(plan_id: int) -> str:
    """Alert key of a plan's overdue alert."""
    return f"maint:over:{plan_id}"


def eol_key(device: str) -> str:
    """Alert key of a device's end-of-life alert."""
    return f"eol:{device}"


class EquipmentService:
    """Registry, maintenance and health of the store's equipment."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.cfg = ctx.cfg
        self.eq = ctx.cfg.equipment
        self.store = ctx.store
        self.alerts = ctx.alerts
        self.tz = ZoneInfo(ctx.cfg.store.timezone)
        self.settle_ms = int((ctx.cfg.telemetry.summary_window + ctx.cfg.telemetry.summary_grace) * 1000)
        self.grace_ms = int(ctx.cfg.telemetry.summary_grace * 1000)
        self.drift = drift.DriftWatch(self.eq.drift_metrics, self.eq.drift_z, self.eq.drift_clear_z,
                                      self.eq.drift_weeks, ctx.alerts)
        self.checks = 0
        self.last_check_ms: int | None = None

    # -- lifecycle
    def start(self) -> None:
        """Nothing runs in the background but the periodic check."""

    def stop(self) -> None:
        """Nothing to stop."""

    def health(self) -> dict[str, Any]:
        """Counts for /api/v1/health (no names)."""
        row = self.store.read().execute(
            "SELECT (SELECT count(*) FROM equipment_assets), (SELECT count(*) FROM equipment_plans WHERE active = 1)"
        ).fetchone()
        due = sum(1 for k in self.alerts.active if k.startswith("maint:over:"))
        return {"registered": row[0], "plans": row[1], "overdue": due, "checks": self.checks}

    def periodic(self) -> tuple[Periodic, ...]:
        """The equipment check: meters, maintenance, end of life, drift."""
        return (Periodic("equipment-check", self.eq.check_every, self.check),)

    def check(self) -> None:
        """Queue one check on the writer (the periodic job)."""
        self.store.writer.submit(self._check)

    def run_check(self, now: int | None = None) -> None:
        """Run one check now and wait for it (tests, the CLI)."""
        self.store.writer.call(lambda c: self._check(c, now))

    def _check(self, conn: Connection, now: int | None = None) -> None:
        now = now if now is not None else now_ms()
        meters.update(conn, self.eq.running_metric, self.eq.cycles_metric, now, self.grace_ms)
        readings = meters.readings(conn)
        for plan in registry.plans(conn):
            self._plan_alerts(conn, plan, readings.get(plan["device_id"], {}), now)
        self._orphan_alerts(conn)
        self._eol_alerts(conn, now)
        self.drift.run(conn, now, self.settle_ms)
        self.checks += 1
        self.last_check_ms = now

    # -- maintenance alerts
    def _status(self, conn: Connection, plan: dict[str, Any], meter: dict[str, float], now: int) -> Any:
        return status(registry.plan_of(plan), registry.history(conn, plan["id"]), now, meter.get("hours"),
                      meter.get("cycles"), self.eq.due_soon_pct)

    def _plan_alerts(self, conn: Connection, plan: dict[str, Any], meter: dict[str, float], now: int) -> str:
        st = self._status(conn, plan, meter, now)
        pid, device = plan["id"], plan["device_id"]
        what = f"{plan['task']}: {self._due_text(st)}"
        if st.state == "overdue":
            self.alerts.clear(conn, soon_key(pid), ts_ms=now, text="overdue now")
            self.alerts.raise_(conn, over_key(pid), kind="maintenance", rule="maintenance-overdue", device=device,
                               severity="major", ts_ms=now, text=f"maintenance overdue, {what}")
        elif st.state == "due-soon":
            self.alerts.clear(conn, over_key(pid), ts_ms=now, text="no longer due")
            self.alerts.raise_(conn, soon_key(pid), kind="maintenance", rule="maintenance-due-soon", device=device,
                               severity="warning", ts_ms=now, text=f"maintenance due soon, {what}")
        else:
            self.alerts.clear(conn, over_key(pid), ts_ms=now, text="no longer due")
            self.alerts.clear(conn, soon_key(pid), ts_ms=now, text="no longer due")
        return st.state

    def _orphan_alerts(self, conn: Connection) -> None:
        """Clear maintenance alerts of plans that were removed."""
        live = {p[0] for p in conn.execute("SELECT id FROM equipment_plans WHERE active = 1")}
        for key in [k for k in self.alerts.active if k.startswith("maint:")]:
            if int(key.rsplit(":", 1)[1]) not in live:
                self.alerts.clear(conn, key, text="plan removed")

    def _due_text(self, st: Any) -> str:
        parts = []
        if "calendar" in st.due:
            parts.append(f"due {self._date(int(st.due['calendar']))}")
        if "hours" in st.due:
            parts.append(f"due at {st.due['hours']:g} h")
        if "cycles" in st.due:
            parts.append(f"due at {st.due['cycles']:g} cycles")
        return ", ".join(parts)

    def _date(self, ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, self.tz).date().isoformat()

    def _eol_ms(self, asset: dict[str, Any]) -> int | None:
        if not asset.get("purchased") or not asset.get("life_years"):
            return None
        return registry.date_ms(asset["purchased"], self.tz) + int(asset["life_years"] * YEAR_MS)

    def _eol_alerts(self, conn: Connection, now: int) -> None:
        warn_ms = int(self.eq.eol_warn * 1000)
        for device, asset in registry.assets(conn).items():
            eol = self._eol_ms(asset)
            key = eol_key(device)
            if eol is None or now < eol - warn_ms:
                self.alerts.clear(conn, key, ts_ms=now, text="service life changed")
                continue
            when = self._date(eol)
            text = f"past its expected service life since {when}" if now >= eol else f"service life ends {when}"
            self.alerts.raise_(conn, key, kind="maintenance", rule="end-of-life", device=device,
                               severity="minor", ts_ms=now, text=f"end of life: {text}; plan a replacement")

    # -- the registry
    def _read(self) -> Connection:
        return self.store.read()

    def devices(self) -> list[dict[str, Any]]:
        """Every device the store knows (seen on MQTT, configured, or registered), with its record."""
        conn = self._read()
        found: dict[str, dict[str, Any]] = {}
        for name, first in conn.execute("SELECT name, first_seen_ms FROM devices"):
            found[name] = {"device_id": name, "kind": "mqtt", "first_seen_ms": first}
        for dev in self.cfg.devices:
            found.setdefault(dev.id, {"device_id": dev.id, "first_seen_ms": None})["kind"] = dev.kind
        for device, asset in registry.assets(conn).items():
            item = found.setdefault(device, {"device_id": device, "kind": asset["kind"], "first_seen_ms": None})
            item.update({k: v for k, v in asset.items() if k != "kind" or v})
        for item in found.values():
            for field in registry.ASSET_FIELDS:
                item.setdefault(field, "" if field != "life_years" else None)
            eol = self._eol_ms(item)
            item["end_of_life"] = self._date(eol) if eol else ""
        return sorted(found.values(), key=lambda d: d["device_id"])

    def device(self, device: str) -> dict[str, Any]:
        """One device with its record, meters, plans (with status), services done and active alerts (any kind:
        threshold, no-data, offline, maintenance...)."""
        item = next((d for d in self.devices() if d["device_id"] == device), None)
        if item is None:
            raise EquipmentError(f"no device {device!r}. 无此设备。", code="not_found", status=404)
        conn = self._read()
        now = now_ms()
        meter = meters.readings(conn).get(device, {})
        item["meters"] = meter
        item["plans"] = [self._plan_view(conn, p, meter, now) for p in registry.plans(conn, device)]
        item["done"] = registry.done_log(conn, device)
        item["alerts"] = sorted(({"rule": a.rule, "kind": a.kind, "severity": a.severity, "since_ms": a.raised_ms}
                                 for a in list(self.alerts.active.values()) if a.device == device),
                                key=lambda a: a["since_ms"])
        return item

    def _plan_view(self, conn: Connection, plan: dict[str, Any], meter: dict[str, float], now: int) -> dict[str, Any]:
        st = self._status(conn, plan, meter, now)
        view = dict(plan, state=st.state, axis=st.axis, due_text=self._due_text(st),
                    every=registry.duration_text(plan["every_s"]) if plan["every_s"] else "")
        view["due_ms"] = int(st.due["calendar"]) if "calendar" in st.due else None
        view["due_hours"] = st.due.get("hours")
        view["due_cycles"] = st.due.get("cycles")
        return view

    def save_asset(self, device: str, fields: dict[str, Any], who: int | None) -> None:
        """Create or change one device's record (a form: every field; ValueError → EquipmentError)."""
        try:
            asset = registry.clean_asset(dict(fields, device_id=device))
        except ValueError as err:
            raise EquipmentError(f"{err}") from None
        self.store.writer.call(lambda c: registry.save_asset(c, asset, now_ms(), who))

    def save_plan(self, device: str, fields: dict[str, Any]) -> int:
        """Add (or change, same task) a maintenance plan; return its id. ``mode`` must be chosen."""
        try:
            plan = registry.clean_plan({k: v for k, v in fields.items() if v not in (None, "")}, tz=self.tz)
        except ValueError as err:
            raise EquipmentError(f"{err}") from None
        return self.store.writer.call(lambda c: registry.save_plan(c, device, plan, now_ms(), self.tz))

    def remove_plan(self, plan_id: int) -> None:
        """Retire a plan (its history stays); its alerts are cleared in the same transaction."""
        def write(conn: Connection) -> None:
            registry.remove_plan(conn, plan_id)
            self._orphan_alerts(conn)
        self.store.writer.call(write)

    def record_done(self, plan_id: int, *, who: int | None, what: str, parts: str = "",
                    hours: float | None = None, cycles: float | None = None, done_ms: int | None = None) -> str:
        """Record a service done (who: the staff id); it closes the plan's alerts. Return the plan's new state.

        Meters not given are taken as they stand now.
        """
        def write(conn: Connection) -> str:
            now = now_ms()
            row = conn.execute("SELECT device_id FROM equipment_plans WHERE id = ? AND active = 1",
                               (plan_id,)).fetchone()
            if row is None:
                raise EquipmentError(f"no maintenance plan {plan_id}. 无此保养计划。", code="not_found", status=404)
            meter = meters.readings(conn).get(row[0], {})
            registry.record_done(conn, plan_id, who=who, what=what, parts=parts, done_ms=done_ms or now,
                                 hours=hours if hours is not None else meter.get("hours"),
                                 cycles=cycles if cycles is not None else meter.get("cycles"), now=now)
            plan = next(p for p in registry.plans(conn, row[0]) if p["id"] == plan_id)
            return self._plan_alerts(conn, plan, meter, now)
        return self.store.writer.call(write)

    def import_rows(self, rows: list[Any], who: int | None = None) -> dict[str, int]:
        """Import records and plans (all or nothing; RowErrors names every bad row and field)."""
        return self.store.writer.call(lambda c: registry.import_rows(c, rows, now_ms(), who, self.tz))

    def export_doc(self) -> dict[str, Any]:
        """Every record with its plans (the import's JSON form)."""
        return registry.export_doc(self._read(), self.tz)

    # -- for the daily report and the staff page
    def maintenance_due(self, now_ms: int) -> list[dict[str, Any]]:
        """Plans due soon or overdue at ``now_ms``, overdue first: device_id, plan_id, task, mode, state, axis,
        due_date (store's day), due_hours, due_cycles, hours, cycles."""
        conn = self._read()
        readings = meters.readings(conn)
        out = []
        for plan in registry.plans(conn):
            meter = readings.get(plan["device_id"], {})
            st = self._status(conn, plan, meter, now_ms)
            if st.state == "ok":
                continue
            out.append({"device_id": plan["device_id"], "plan_id": plan["id"], "task": plan["task"],
                        "mode": plan["mode"], "state": st.state, "axis": st.axis,
                        "due_date": self._date(int(st.due["calendar"])) if "calendar" in st.due else None,
                        "due_hours": st.due.get("hours"), "due_cycles": st.due.get("cycles"),
                        "hours": meter.get("hours"), "cycles": meter.get("cycles")})
        return sorted(out, key=lambda d: (d["state"] != "overdue", d["device_id"], d["plan_id"]))

    def _known(self) -> dict[str, int | None]:
        return {d["device_id"]: d["first_seen_ms"] for d in self.devices()}

    def device_health(self, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Health of every device over [since_ms, until_ms): device_id, uptime_pct, alarm_s, faults, score
        (and faults_per_week, period_s); the formula is in gateway/equipment/health.py."""
        found = health.episodes(self._read(), since_ms, until_ms)
        return health.device_health(found, self._known(), since_ms, until_ms)

    def health_series(self, days: int = SERIES_DAYS, now: int | None = None) -> dict[str, dict[str, list[Any]]]:
        """Device → metric → one value a day for the last ``days`` store days (None before the device existed)."""
        now = now if now is not None else now_ms()
        today = dt.datetime.fromtimestamp(now / 1000, self.tz).replace(hour=0, minute=0, second=0, microsecond=0)
        starts = [int((today - dt.timedelta(days=days - 1 - i)).timestamp() * 1000) for i in range(days)]
        found = health.episodes(self._read(), starts[0], now)
        known = self._known()
        out: dict[str, dict[str, list[Any]]] = {d: {"uptime_pct": [], "alarm_s": [], "faults": [], "score": []}
                                               for d in known}
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else now
            for item in health.device_health(found, known, start, end):
                series = out[item["device_id"]]
                empty = item["period_s"] <= 0
                for metric in series:
                    series[metric].append(None if empty else item[metric])
        return out
