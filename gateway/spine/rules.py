"""Threshold rules with a hold time (``for``) and hysteresis, and device-offline detection.

A rule breaches when a value goes above ``above`` (or below ``below``); it raises once the
breach has held for ``for`` seconds (measured on reading time, and by the periodic tick on
wall time when readings stop); it clears only past ``clear_below`` (``clear_above``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import AlertRule
from gateway.spine.alerts import AlertManager
from gateway.store.db import Connection


@dataclass(slots=True)
class _Pending:
    since_ms: int
    value: float


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

    def __init__(self, rules: tuple[AlertRule, ...], alerts: AlertManager) -> None:
        self.rules = rules
        self.alerts = alerts
        self._pending: dict[str, _Pending] = {}
        self._by_metric: dict[str, list[AlertRule]] = {}
        for rule in rules:
            self._by_metric.setdefault(rule.metric, []).append(rule)
        # (metric, device) -> the matching rules with their alert keys: globs and keys off the hot path
        self._targets: dict[tuple[str, str], tuple[tuple[AlertRule, str], ...]] = {}

    @staticmethod
    def key(rule: AlertRule, device: str) -> str:
        """Return the alert key of a rule on a device."""
        return f"rule:{rule.name}:{device}"

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
                    (rule, self.key(rule, device)) for rule in rules if rule.matches(device))
            for rule, key in hits:
                self._step(conn, rule, device, key, float(value), ts_ms)

    def _step(self, conn: Connection, rule: AlertRule, device: str, key: str, value: float, ts_ms: int) -> None:
        if self.alerts.is_active(key):
            if recovered(rule, value):
                self.alerts.clear(conn, key, value=value, ts_ms=ts_ms)
            return
        if not breaches(rule, value):
            self._pending.pop(key, None)
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(ts_ms, value)
        pending.value = value
        if ts_ms - pending.since_ms >= rule.for_ * 1000:
            self._raise(conn, rule, device, value, ts_ms)

    def _raise(self, conn: Connection, rule: AlertRule, device: str, value: float, ts_ms: int) -> None:
        self._pending.pop(self.key(rule, device), None)
        self.alerts.raise_(conn, self.key(rule, device), kind="threshold", rule=rule.name, device=device,
                           severity=rule.severity, value=value, ts_ms=ts_ms)

    def tick(self, conn: Connection, now: int) -> None:
        """Raise breaches that have held for their ``for`` on wall time though readings stopped."""
        for key, pending in list(self._pending.items()):
            _, name, device = key.split(":", 2)
            rule = next((r for r in self.rules if r.name == name), None)
            if rule is None:
                continue
            if now - pending.since_ms >= rule.for_ * 1000:
                self._raise(conn, rule, device, pending.value, now)


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
