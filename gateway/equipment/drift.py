"""Device metrics drifting from their own weekly profile: median/MAD per weekday × hour, with hysteresis.

Each closed hour, the mean of every watched metric (``equipment.drift_metrics`` globs) of every
device goes into ``equipment_hourly`` (kept 9 weeks). The hour is compared with the same weekday
and hour of the previous weeks (up to 8): with at least ``drift_weeks`` of them,

    z = (mean − median) / max(1.4826 × MAD, 2 % of |median|, 0.1)

(the floor keeps a flat history, MAD 0, from calling every wobble a drift). Two hours running
with |z| > ``drift_z`` raise ``metric-drift`` (kind ``store-health``); it clears only when an hour
is back within ``drift_clear_z``. The same weekday and hour is 7 × 24 h earlier (the board keeps
UTC; a store in a daylight-saving zone is off by an hour for a week twice a year).
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Sequence

from gateway.spine.alerts import AlertManager
from gateway.store.db import Connection

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
MAX_WEEKS = 8
CATCH_UP_HOURS = 48  # after a long stop, at most this many missed hours are aggregated
RULE = "metric-drift"


def robust_z(value: float, history: Sequence[float]) -> tuple[float, float]:
    """(z, median) of ``value`` against ``history`` (see the module's formula)."""
    med = statistics.median(history)
    mad = statistics.median(abs(x - med) for x in history)
    scale = max(1.4826 * mad, 0.02 * abs(med), 0.1)
    return (value - med) / scale, med


def key(device: str, metric: str) -> str:
    """The alert key of a drift alert."""
    return f"drift:{device}:{metric}"


class DriftWatch:
    """Aggregate closed hours and judge them; used on the writer inside the equipment check."""

    def __init__(self, globs: tuple[str, ...], z: float, clear_z: float, weeks: int, alerts: AlertManager) -> None:
        self.globs = globs
        self.z = z
        self.clear_z = clear_z
        self.weeks = weeks
        self.alerts = alerts
        self.done_hour: int | None = None

    def watched(self, metric: str) -> bool:
        """Whether a metric name matches ``equipment.drift_metrics``."""
        return any(fnmatch.fnmatchcase(metric, g) for g in self.globs)

    def run(self, conn: Connection, now: int, settle_ms: int) -> int:
        """Aggregate and judge every hour closed since the last run; return hours judged."""
        if not self.globs:
            return 0
        last_closed = (now - settle_ms) // HOUR_MS * HOUR_MS - HOUR_MS  # its windows are all closed and sent
        if self.done_hour is None:
            row = conn.execute("SELECT max(hour_ms) FROM equipment_hourly").fetchone()
            self.done_hour = row[0] if row[0] is not None else last_closed - HOUR_MS
        hour = max(self.done_hour + HOUR_MS, last_closed - CATCH_UP_HOURS * HOUR_MS)
        judged = 0
        while hour <= last_closed:
            self._aggregate(conn, hour)
            self._judge(conn, hour)
            self.done_hour = hour
            hour += HOUR_MS
            judged += 1
        return judged

    def _aggregate(self, conn: Connection, hour: int) -> None:
        rows = conn.execute(
            "SELECT d.name, m.name, sum(w.sum), sum(w.count) FROM windows w JOIN devices d ON d.id = w.device_id "
            "JOIN metrics m ON m.id = w.metric_id WHERE w.is_bool = 0 AND w.wstart_ms >= ? AND w.wstart_ms < ? "
            "GROUP BY w.device_id, w.metric_id", (hour, hour + HOUR_MS)).fetchall()
        for device, metric, total, count in rows:
            if count and self.watched(metric):
                conn.execute("INSERT OR REPLACE INTO equipment_hourly (device_id, metric, hour_ms, mean, count) "
                             "VALUES (?, ?, ?, ?, ?)", (device, metric, hour, total / count, count))

    def _z(self, conn: Connection, device: str, metric: str, hour: int) -> tuple[float, float, float] | None:
        row = conn.execute("SELECT mean FROM equipment_hourly WHERE device_id = ? AND metric = ? AND hour_ms = ?",
                           (device, metric, hour)).fetchone()
        if row is None:
            return None
        marks = [hour - k * WEEK_MS for k in range(1, MAX_WEEKS + 1)]
        history = [r[0] for r in conn.execute(
            f"SELECT mean FROM equipment_hourly WHERE device_id = ? AND metric = ? AND hour_ms IN "  # noqa: S608
            f"({', '.join('?' * len(marks))})", (device, metric, *marks))]
        if len(history) < self.weeks:
            return None
        z, med = robust_z(row[0], history)
        return z, med, row[0]

    def _judge(self, conn: Connection, hour: int) -> None:
        for device, metric in conn.execute(
                "SELECT device_id, metric FROM equipment_hourly WHERE hour_ms = ?", (hour,)).fetchall():
            now_z = self._z(conn, device, metric, hour)
            if now_z is None:
                continue
            z, med, mean = now_z
            k = key(device, metric)
            if self.alerts.is_active(k):
                if abs(z) < self.clear_z:
                    self.alerts.clear(conn, k, value=round(mean, 4), ts_ms=hour + HOUR_MS,
                                      text=f"{metric} back to its usual level for this weekday and hour")
                continue
            if abs(z) <= self.z:
                continue
            before = self._z(conn, device, metric, hour - HOUR_MS)
            if before is None or abs(before[0]) <= self.z:
                continue  # one hour off is noise; two in a row is a drift
            self.alerts.raise_(conn, k, kind="store-health", rule=RULE, device=device, severity="minor",
                               value=round(mean, 4), ts_ms=hour + HOUR_MS,
                               text=f"{metric} {mean:.4g} against a usual {med:.4g} for this weekday and hour "
                                    f"(robust z {z:+.1f})")
