"""The store-health service: sales and complaint anomalies as spine alerts, and the daily report at close.

It reads the other domains only through their facades (ordering's ``dishes_by_hour`` and
``report_facts``, stock's ``below_safety``, members' ``complaints_per_day``, equipment's
``device_health`` and ``maintenance_due`` when the build has them), so it sits above them all.

- ``check()`` (every ``health.anomaly_every``): the current hour's dishes so far against the same
  weekday x hour of the last ``health.baseline_weeks`` weeks (``gateway/health/anomaly.py``), and
  today's complaints against the last 28 days. Alerts ``sales-anomaly`` and ``complaint-anomaly``
  (kind ``store-health``) go through the spine's AlertManager: one raised and one cleared message
  per episode, the state in ``alerts_active`` (a restart neither repeats nor forgets an episode).
- ``daily_report()`` (a cron job at ``health.report_at``, store time; caught up at the next check
  after a gateway that was down at close): stores the day's report, sends ``P/reports/daily`` and
  prints the summary on the receipt printer, once per day.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.models import iso_ms, now_ms
from gateway.health import anomaly, report
from gateway.printing import PrintError
from gateway.spine.context import Periodic, ServiceContext
from gateway.store.db import Connection
from gateway.store.outbox import Lane, enqueue

_LOGGER = logging.getLogger(__name__)

SALES_KEY = "health:sales"
COMPLAINT_PREFIX = "health:complaints:"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
COMPLAINT_DAYS = 28
RECEIPT_STATION = "receipt"


def build(gw: ServiceContext) -> HealthService:
    """Build the store-health service (gateway.domains.SERVICES)."""
    return HealthService(gw)


class HealthService:
    """Anomaly alerts and the daily report of one store."""

    def __init__(self, gw: ServiceContext) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.hcfg = gw.cfg.health
        self.services = gw.services  # built before this one: ordering, stock, members, equipment...
        self.alerts = gw.alerts
        try:
            self.tz: dt.tzinfo = ZoneInfo(gw.cfg.store.timezone)
        except Exception:  # noqa: BLE001 - a board without tz data still reports, in UTC
            self.tz = dt.UTC
        self.last: dict[str, Any] = {}
        self.counters = {"checks": 0, "reports": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Nothing to load: alert state lives in the spine's alerts_active."""

    def stop(self) -> None:
        """No thread of its own."""

    def periodic(self) -> tuple[Periodic, ...]:
        """The anomaly check (which also catches up a missed report)."""
        return (Periodic("health-check", max(10.0, self.hcfg.anomaly_every), self.check),)

    def health(self) -> dict[str, Any]:
        """Counters and the last verdicts for /api/v1/health (no personal data)."""
        return {**self.counters, **{k: v for k, v in self.last.items() if k in ("sales", "complaints")}}

    # ------------------------------------------------------------------ anomalies
    def sales_now(self, now: int) -> anomaly.Verdict:
        """The verdict on the current hour's dishes so far (or the last hour's, in its first quarter)."""
        ordering = self.services["ordering"]
        hour = now - now % HOUR_MS
        fraction = (now - hour) / HOUR_MS
        if fraction < 0.25:  # too early in this hour: judge the whole of the previous one
            hour, fraction = hour - HOUR_MS, 1.0
        weeks = self.hcfg.baseline_weeks
        first = hour - weeks * 7 * DAY_MS
        by_hour = ordering.dishes_by_hour(first, hour + HOUR_MS)
        oldest = min(by_hour, default=hour)
        history = [by_hour.get(hour - w * 7 * DAY_MS, 0) for w in range(1, weeks + 1)
                   if hour - w * 7 * DAY_MS >= oldest]
        return anomaly.sales_verdict(history, by_hour.get(hour, 0), fraction, floor=self.hcfg.sales_floor,
                                     z_limit=self.hcfg.sales_z)

    def complaints_now(self, now: int) -> tuple[str, anomaly.Verdict]:
        """Today's complaints (all categories) against the previous 28 days."""
        members = self.services.get("members")
        today = report.day_of(self.tz, now)
        if members is None:
            return today, anomaly.Verdict("quiet")
        first = report.day_of(self.tz, now - COMPLAINT_DAYS * DAY_MS)
        per_day = members.complaints_per_day(first, today)
        days = [report.day_of(self.tz, now - k * DAY_MS) for k in range(1, COMPLAINT_DAYS + 1)]
        history = [sum(per_day.get(d, {}).values()) for d in days]
        return today, anomaly.complaint_verdict(history, sum(per_day.get(today, {}).values()),
                                                p=self.hcfg.complaint_p)

    def check(self, now: int | None = None) -> None:
        """Evaluate the detectors; raise or clear their alerts (one writer call); catch up a missed report."""
        now = now if now is not None else now_ms()
        sales = self.sales_now(now)
        day, complaints = self.complaints_now(now)
        self.last = {"sales": sales.state, "complaints": complaints.state}
        self.counters["checks"] += 1
        self.gw.store.writer.call(lambda c: self._apply(c, sales, day, complaints, now))
        self._catch_up(now)

    def _apply(self, c: Connection, sales: anomaly.Verdict, day: str, complaints: anomaly.Verdict, now: int) -> None:
        alerts = self.alerts
        state = anomaly.Hysteresis(self.hcfg.sales_z, alerts.is_active(SALES_KEY))
        step = state.step(sales)
        if step == "raise":
            direction = "below" if sales.state == "low" else "above"
            alerts.raise_(c, SALES_KEY, kind="store-health", rule="sales-anomaly", device="sales",
                          severity="major" if sales.state == "low" else "minor", value=sales.score, ts_ms=now,
                          text=f"dishes this hour far {direction} the usual for this weekday and hour "
                               f"(expected about {sales.expected:g} so far)")
        elif step == "clear":
            alerts.clear(c, SALES_KEY, value=sales.score, ts_ms=now)
        key = COMPLAINT_PREFIX + day
        for old in [k for k in alerts.active if k.startswith(COMPLAINT_PREFIX) and k != key]:
            alerts.clear(c, old, ts_ms=now, text="a new business day")
        if complaints.state == "surge":
            alerts.raise_(c, key, kind="store-health", rule="complaint-anomaly", device="complaints",
                          severity="major", value=complaints.score, ts_ms=now,
                          text=f"complaints today far above the usual {complaints.baseline:g} a day")

    # ------------------------------------------------------------------ the daily report
    def report_day(self, now: int) -> str:
        """The business day a report made at ``now`` covers (before 06:00 it is still yesterday's)."""
        return report.day_of(self.tz, now - 6 * HOUR_MS)

    def build_report(self, day: str, now: int | None = None) -> dict[str, Any]:
        """The report of ``day`` as of now (not stored)."""
        now = now if now is not None else now_ms()
        rep = report.build(self.services, self.tz, day, now, weeks=self.hcfg.baseline_weeks)
        rep["alerts"] = report.alerts_of(self.gw.store.read(), rep["since_ms"], rep["until_ms"])
        return rep

    def stored(self, day: str) -> dict[str, Any] | None:
        """The report made at close for ``day``, if any."""
        row = self.gw.store.read().execute("SELECT doc FROM hl_reports WHERE day = ?", (day,)).fetchone()
        return json.loads(row[0]) if row else None

    def days(self, limit: int = 60) -> list[str]:
        """Days with a stored report, newest first."""
        return [r[0] for r in self.gw.store.read().execute(
            "SELECT day FROM hl_reports ORDER BY day DESC LIMIT ?", (limit,))]

    def daily_report(self, now: int | None = None, *, day: str | None = None, force: bool = False) -> str | None:
        """Make, store, send (``P/reports/daily``) and print the report once per day; return the day."""
        now = now if now is not None else now_ms()
        day = day or self.report_day(now)
        if not force and self.stored(day) is not None:
            return None
        rep = self.build_report(day, now)
        msg = report.hq_message(rep, self.cfg.store.id, self._currency(), iso_ms(now))
        doc = report.receipt(rep, self.cfg.store.name)

        def write(c: Connection) -> None:
            c.execute("INSERT OR REPLACE INTO hl_reports (day, doc, created_ms) VALUES (?, ?, ?)",
                      (day, json.dumps(rep, ensure_ascii=False), now))
            enqueue(c, Lane.SUMMARIES, f"{self.cfg.prefix}/reports/daily", msg["id"], "report", msg)
            job = self._print(c, doc, day)
            if job:
                c.execute("UPDATE hl_reports SET print_job = ? WHERE day = ?", (job, day))
        self.gw.store.writer.call(write)
        self.counters["reports"] += 1
        _LOGGER.info("Daily report for %s made", day)
        return day

    def print_summary(self, day: str) -> str:
        """Print a stored (or the current) report's summary again; return the print job id."""
        rep = self.stored(day) or self.build_report(day)
        doc = report.receipt(rep, self.cfg.store.name)
        job = self.gw.store.writer.call(lambda c: self._print(c, doc, day))
        if not job:
            from gateway.core.errors import OrderingError

            raise OrderingError("No receipt printer is configured (health.report_printer).", code="no_printer",
                                status=409)
        return job

    def _print(self, c: Connection, doc: list[dict[str, Any]], day: str) -> str:
        printing = self.services.get("printing")
        if printing is None:
            return ""
        targets = ([{"printer": self.hcfg.report_printer}] if self.hcfg.report_printer
                   else [{"station": RECEIPT_STATION}, {}])
        for target in targets:
            try:
                return printing.enqueue(c, doc=doc, source="health-report", source_id=day, **target)
            except PrintError:
                continue
        _LOGGER.info("Daily report not printed: no receipt printer (health.report_printer)")
        return ""

    def _currency(self) -> str:
        ordering = self.services.get("ordering")
        return getattr(getattr(ordering, "menu", None), "currency", "") or "CNY"

    def _catch_up(self, now: int) -> None:
        """Make yesterday's report if the gateway was down at close (once report_at has passed)."""
        if not self.hcfg.report_at:
            return
        hour, minute = (int(x) for x in self.hcfg.report_at.split(":"))
        local = dt.datetime.fromtimestamp(now / 1000, self.tz)
        at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if local < at:
            at -= dt.timedelta(days=1)
        due_day = report.day_of(self.tz, int(at.timestamp() * 1000) - 6 * HOUR_MS)
        if self.stored(due_day) is not None or now - at.timestamp() * 1000 < 60_000:
            return
        since, until = report.day_window(self.tz, due_day)
        if self.services["ordering"].dishes_by_hour(since, until):  # a day the store traded (not before install)
            self.daily_report(now, day=due_day)
