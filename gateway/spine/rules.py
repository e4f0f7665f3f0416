"""Threshold rules with a hold time (``for``), hysteresis and a no-data state; device-offline detection.

A rule breaches when a value goes above ``above`` (or below ``below``); it raises once the
breach has held for ``for`` seconds (measured on reading time, and by the periodic tick on
wall time when readings pause); it clears only past ``clear_below`` (``clear_above``).

What survives a restart (table ``rule_state``, written in the same transaction as the reading
that changed it): the start of every pending breach, so a 10-minute rule killed at minute 7
raises at minute 10 of the breach, not 17 (ThingsBoard's duration state and Grafana's pending
state are in memory); and every series (rule, device) the engine has seen, so the no-data check
knows them after a start.

No data is its own state and its own alert (kind ``no-data``, key ``nodata:RULE:DEVICE``), never
the alarm: a device that keeps talking (it is not offline) but sends no value of the rule's
metric for ``no_data`` raises it; the next value clears it. The threshold alert keeps its state
meanwhile (neither raised nor cleared by missing data), and a pending breach is dropped (it must
be seen again). After a start every known series gets a full ``no_data`` period again before it
can be no-data, so a restart is never followed by a no-data storm (Grafana's NoData after every
upgrade). docs/equipment.md ("Alert rules across restarts") has the rules with examples.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import AlertRule
from gateway.spine.alerts import AlertManager
from gateway.store.db import Connection
from gateway.store.writer import on_rollback

SEEN_WRITE_MS = 60_000  # a series' last-seen time is written at most this often (the ``pending_resume`` check)


@dataclass(slots=True)
class _Pending:
    since_ms: int
    value: float
    seen_ms: int  # the latest breaching reading


def breaches(rule: AlertRule, value: float) -> bool:
    """Return whether a value is past the rule's threshold."""
    if rule.above is not None:
        return value > rule.above
    return value < rule.below  # type: ignore[operator]


def recovered(rule: AlertRule, value: float) -> bool:
    """Return whether a value is back past the rule's clear threshold (hysteresis)."""
    if rule.above is not None:
        limit = rule.clear_below if rule.clear_below is not None else rule.above
        return value < limit if rule.clear_below is not None else value <= limit
    limit = rule.clear_above if rule.clear_above is not None else rule.below
    return value > limit if rule.clear_above is not None else value >= limit  # type: ignore[operator]


class RuleEngine:
    """Evaluate the configured rules on readings; raise and clear through the AlertManager."""

    def __init__(self, rules: tuple[AlertRule, ...], alerts: AlertManager, *, no_data_after: float = 0.0,
                 pending_resume: float = 900.0, device_seen: dict[str, int] | None = None) -> None:
        self.device_seen = device_seen if device_seen is not None else {}  # device -> last message (wall ms)
        self.rules = rules
        self.alerts = alerts
        self._by_name = {rule.name: rule for rule in rules}
        # alerts.no_data_after and alerts.pending_resume (gateway/config.py), in seconds
        self._no_data_ms = {rule.name: int((rule.no_data if rule.no_data is not None else no_data_after) * 1000)
                            for rule in rules}
        self.resume_ms = int(pending_resume * 1000)
        self._pending: dict[str, _Pending] = {}
        self._last: dict[str, int] = {}  # series key -> latest reading time (or the start: the restart grace)
        self._written: dict[str, int] = {}  # series key -> seen_ms as stored
        self._by_metric: dict[str, list[AlertRule]] = {}
        for rule in rules:
            self._by_metric.setdefault(rule.metric, []).append(rule)
        # (metric, device) -> the matching rules with their alert and no-data keys: globs and keys off the hot path
        self._targets: dict[tuple[str, str], tuple[tuple[AlertRule, str, str], ...]] = {}

    @staticmethod
    def key(rule: AlertRule, device: str) -> str:
        """Return the alert key of a rule on a device."""
        return f"rule:{rule.name}:{device}"

    @staticmethod
    def nodata_key(rule: AlertRule, device: str) -> str:
        """Return the alert key of a rule's no-data state on a device."""
        return f"nodata:{rule.name}:{device}"

    def load(self, conn: Connection, now: int) -> None:
        """Restore the series and pending timers after a start.

        Every known series counts as seen now (a full ``no_data`` period of grace); a pending breach
        whose latest breaching reading is at most ``pending_resume`` old keeps its start.
        """
        for key, name, since, value, seen in conn.execute(
                "SELECT key, rule, since_ms, value, seen_ms FROM rule_state").fetchall():
            if name not in self._by_name:
                continue
            self._last[key] = now
            self._written[key] = seen
            if since is not None and now - seen <= self.resume_ms and not self.alerts.is_active(key):
                self._pending[key] = _Pending(since, value if value is not None else 0.0, seen)

    def evaluate(self, conn: Connection, device: str, metrics: dict, ts_ms: int) -> None:
        """Evaluate one reading's metrics against every matching rule."""
        by_metric, targets = self._by_metric, self._targets
        for metric, value in metrics.items():
            rules = by_metric.get(metric)
            if not rules or isinstance(value, bool):
                continue
            hits = targets.get((metric, device))
            if hits is None:
                hits = targets[(metric, device)] = tuple(
                    (rule, self.key(rule, device), self.nodata_key(rule, device))
                    for rule in rules if rule.matches(device))
            for rule, key, nodata in hits:
                written = self._written.get(key)
                if written is None or ts_ms - written >= SEEN_WRITE_MS or nodata in self.alerts.active:
                    self._seen(conn, rule, device, key, nodata, ts_ms)
                elif ts_ms > self._last.get(key, 0):  # the common case: nothing to write
                    self._last[key] = ts_ms
                self._step(conn, rule, device, key, float(value), ts_ms)

    def _seen(self, conn: Connection, rule: AlertRule, device: str, key: str, nodata: str, ts_ms: int) -> None:
        last = self._last.get(key)
        if last is None or ts_ms > last:
            self._last[key] = ts_ms
        written = self._written.get(key)
        if written is None:
            conn.execute("INSERT OR IGNORE INTO rule_state (key, rule, device, seen_ms) VALUES (?, ?, ?, ?)",
                         (key, rule.name, device, ts_ms))
            self._written[key] = ts_ms
            on_rollback(lambda: self._written.pop(key, None))
        elif ts_ms - written >= SEEN_WRITE_MS:
            conn.execute("UPDATE rule_state SET seen_ms = ? WHERE key = ?", (ts_ms, key))
            self._written[key] = ts_ms
            on_rollback(lambda: self._written.__setitem__(key, written))
        if nodata in self.alerts.active:
            self.alerts.clear(conn, nodata, ts_ms=ts_ms, text="values again")

    def _set_pending(self, conn: Connection, key: str, pending: _Pending | None) -> None:
        old = self._pending.get(key)
        if pending is None:
            self._pending.pop(key, None)
            conn.execute("UPDATE rule_state SET since_ms = NULL, value = NULL WHERE key = ?", (key,))
        else:
            self._pending[key] = pending
            conn.execute("UPDATE rule_state SET since_ms = ?, value = ?, seen_ms = ? WHERE key = ?",
                         (pending.since_ms, pending.value, pending.seen_ms, key))
            self._written[key] = pending.seen_ms

        def undo() -> None:
            if old is None:
                self._pending.pop(key, None)
            else:
                self._pending[key] = old
        on_rollback(undo)

    def _step(self, conn: Connection, rule: AlertRule, device: str, key: str, value: float, ts_ms: int) -> None:
        if self.alerts.is_active(key):
            if recovered(rule, value):
                self.alerts.clear(conn, key, value=value, ts_ms=ts_ms)
            return
        if not breaches(rule, value):
            if key in self._pending:
                self._set_pending(conn, key, None)
            return
        pending = self._pending.get(key)
        if pending is None:
            self._set_pending(conn, key, _Pending(ts_ms, value, ts_ms))
            pending = self._pending[key]
        pending.value = value
        if ts_ms > pending.seen_ms:
            pending.seen_ms = ts_ms
        if ts_ms - pending.since_ms >= rule.for_ * 1000:
            self._raise(conn, rule, device, value, ts_ms)

    def _raise(self, conn: Connection, rule: AlertRule, device: str, value: float, ts_ms: int) -> None:
        key = self.key(rule, device)
        if key in self._pending:
            self._set_pending(conn, key, None)
        self.alerts.raise_(conn, key, kind="threshold", rule=rule.name, device=device,
                           severity=rule.severity, value=value, ts_ms=ts_ms)

    def tick(self, conn: Connection, now: int) -> None:
        """Raise breaches held for their ``for`` on wall time while readings pause; raise no-data."""
        for key, pending in list(self._pending.items()):
            _, name, device = key.split(":", 2)
            rule = self._by_name.get(name)
            if rule is None:
                continue
            no_data = self._no_data_ms[name]
            if no_data and now - self._last.get(key, now) >= no_data:
                continue  # no data: the no-data check below drops it
            if now - pending.since_ms >= rule.for_ * 1000:
                self._raise(conn, rule, device, pending.value, now)
        for key, last in self._last.items():
            _, name, device = key.split(":", 2)
            rule = self._by_name.get(name)
            no_data = self._no_data_ms.get(name, 0)
            if rule is None or not no_data or now - last < no_data:
                continue
            nodata = self.nodata_key(rule, device)
            if (self.alerts.is_active(nodata) or self.alerts.is_active(OfflineWatch.key(device))
                    or now - self.device_seen.get(device, now) >= no_data):
                continue  # already no-data, or the whole device is silent or offline (device-offline says it)
            if key in self._pending:
                self._set_pending(conn, key, None)
            self.alerts.raise_(conn, nodata, kind="no-data", rule=rule.name, device=device, severity="warning",
                               ts_ms=now, text=f"no {rule.metric} value for {no_data // 1000}s from an online device")

    def state(self, rule: AlertRule, device: str) -> str:
        """The series' state: ``alerting``, ``pending``, ``no-data`` or ``normal``."""
        key = self.key(rule, device)
        if self.alerts.is_active(key):
            return "alerting"
        if self.alerts.is_active(self.nodata_key(rule, device)):
            return "no-data"
        return "pending" if key in self._pending else "normal"


class OfflineWatch:
    """Raise ``offline`` when a device is silent too long or says so; clear when it speaks."""

    RULE = "device-offline"

    def __init__(self, after_s: float, alerts: AlertManager, severity: str = "major") -> None:
        self.after_ms = int(after_s * 1000)
        self.alerts = alerts
        self.severity = severity
        self.last_seen: dict[str, int] = {}

    @staticmethod
    def key(device: str) -> str:
        """Return the alert key of a device's offline alert."""
        return f"offline:{device}"

    def seen(self, conn: Connection, device: str, now: int) -> None:
        """Note a message from a device (clears its offline alert)."""
        self.last_seen[device] = now
        if self.alerts.is_active(self.key(device)):
            self.alerts.clear(conn, self.key(device), ts_ms=now)

    def said_offline(self, conn: Connection, device: str, now: int) -> None:
        """Raise at once: the device (or its LWT) said it is offline."""
        self.last_seen.setdefault(device, now)
        self.alerts.raise_(conn, self.key(device), kind="offline", rule=self.RULE, device=device,
                           severity=self.severity, ts_ms=now, text="device reported offline")

    def tick(self, conn: Connection, now: int) -> None:
        """Raise for devices silent longer than the threshold."""
        for device, seen in self.last_seen.items():
            if now - seen >= self.after_ms:
                self.alerts.raise_(conn, self.key(device), kind="offline", rule=self.RULE, device=device,
                                   severity=self.severity, ts_ms=now, text="no message received")
