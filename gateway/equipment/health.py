"""Health per device from its alert history: uptime, time in alarm, faults per week and a 0-100 score.

Everything is derived from the alert log (kept a year) and the active alerts, so it costs nothing
on the hot path and is the same after a restart. An alert episode counts as:

- **down** (not available): ``device-offline``, ``device-unavailable``, ``printer-offline``;
- **alarm** (running, but something is wrong): threshold rules, printer faults (paper out, cover
  open, error; not "paper low"), camera faults and ``metric-drift``;
- neither: no-data, maintenance, end-of-life and the gateway's own alerts.

For a device over a period P (from ``since``, or from when the device was first seen if later,
to ``until``), with D = seconds down, A = seconds in alarm (overlapping episodes counted once),
F = episodes of either class raised in the period:

    uptime_pct = 100 × (1 − D / P)
    faults per week = F × 7 d / P
    score = clamp(round(100 × (1 − D/P) × (1 − A/P) − 5 × min(faults per week, 10)), 0, 100)

So a device always up with no alarm and no fault scores 100; a day down in a week costs 14 points;
an alarm for 10 % of the time costs 10; each fault a week costs 5, at most 50.
docs/equipment.md ("Device health") has the formula with a worked example.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.store.db import Connection

WEEK_MS = 7 * 86_400_000
LOOKBACK_MS = 35 * 86_400_000  # episodes raised this long before a period are looked for (longer: alerts_active)
FAULT_PENALTY = 5.0
MAX_FAULTS_PER_WEEK = 10.0

DOWN_RULES = frozenset({"device-offline", "device-unavailable", "printer-offline"})
ALARM_KINDS = frozenset({"threshold", "printer", "camera"})
NOT_FAULTS = frozenset({"printer-paper-low"})
ALARM_RULES = frozenset({"metric-drift"})


def classify(kind: str, rule: str) -> str | None:
    """``down``, ``alarm`` or None (an alert that says nothing about the device's health)."""
    if rule in DOWN_RULES or kind in ("offline", "unavailable"):
        return "down"
    if rule in NOT_FAULTS:
        return None
    if kind in ALARM_KINDS or rule in ALARM_RULES:
        return "alarm"
    return None


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode of a device that counts for its health."""

    device: str
    cls: str
    start_ms: int
    end_ms: int | None  # None: still active


def episodes(conn: Connection, since: int, until: int) -> list[Episode]:
    """The down and alarm episodes that overlap [since, until)."""
    raised: dict[str, tuple[str, str, int]] = {}
    cleared: dict[str, int] = {}
    for episode, state, kind, rule, device, ts in conn.execute(
            "SELECT episode, state, kind, rule, device, ts_ms FROM alert_log WHERE ts_ms >= ? AND ts_ms < ?",
            (since - LOOKBACK_MS, until)):
        cls = classify(kind, rule)
        if cls is None:
            continue
        if state == "raised":
            raised[episode] = (device, cls, ts)
        else:
            cleared[episode] = ts
    for episode, kind, rule, device, ts in conn.execute(
            "SELECT episode, kind, rule, device, raised_ms FROM alerts_active WHERE raised_ms < ?",
            (since - LOOKBACK_MS,)):
        cls = classify(kind, rule)
        if cls is not None:
            raised.setdefault(episode, (device, cls, ts))
    out = []
    for episode, (device, cls, start) in raised.items():
        end = cleared.get(episode)
        if end is not None and end < since:
            continue
        out.append(Episode(device, cls, start, end))
    return out


def _covered(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length of the union of intervals."""
    total, cur_start, cur_end = 0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start  # type: ignore[operator]
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    if cur_end is not None:
        total += cur_end - cur_start  # type: ignore[operator]
    return total


def score(uptime: float, alarm_share: float, faults_per_week: float) -> int:
    """The 0-100 score (see the module's formula)."""
    raw = 100.0 * uptime * (1.0 - alarm_share) - FAULT_PENALTY * min(faults_per_week, MAX_FAULTS_PER_WEEK)
    return int(max(0, min(100, round(raw))))


def device_health(found: list[Episode], devices: dict[str, int | None], since: int, until: int) -> list[dict[str, Any]]:
    """Health of each device over [since, until) (``devices``: id → first seen, ms, or None)."""
    by_device: dict[str, list[Episode]] = {}
    for ep in found:
        by_device.setdefault(ep.device, []).append(ep)
    out = []
    for device in sorted(devices):
        first = devices[device]
        start = max(since, first) if first else since
        period = until - start
        eps = by_device.get(device, [])
        down = alarm = faults = 0
        if period > 0:
            clip = [(ep.cls, max(ep.start_ms, start), min(ep.end_ms if ep.end_ms is not None else until, until))
                    for ep in eps]
            down = _covered((a, b) for cls, a, b in clip if cls == "down" and b > a)
            alarm = _covered((a, b) for cls, a, b in clip if cls == "alarm" and b > a)
            faults = sum(1 for ep in eps if start <= ep.start_ms < until)
        uptime = 1.0 - down / period if period > 0 else 1.0
        alarm_share = min(1.0, alarm / period) if period > 0 else 0.0
        per_week = faults * WEEK_MS / period if period > 0 else 0.0
        out.append({"device_id": device, "uptime_pct": round(100.0 * uptime, 2), "alarm_s": round(alarm / 1000),
                    "faults": faults, "faults_per_week": round(per_week, 2), "period_s": max(0, period) // 1000,
                    "score": score(uptime, alarm_share, per_week)})
    return out
