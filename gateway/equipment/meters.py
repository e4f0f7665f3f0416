"""Hours-running and cycle meters per device, built from the telemetry windows.

Runs on the writer inside the equipment check. Each closed window (its end plus the summary
grace has passed) of ``equipment.running_metric`` adds its running share to the hours meter: a
boolean's true share (``true_count / count``), or a number's mean clipped to 0..1, times the
window's length. ``equipment.cycles_metric`` is a counter the device keeps: the meter follows
its last value per window, adding each rise; a drop is taken as a reset (the new value is added).
A window changed by data arriving after it was counted is not counted again.
"""

from __future__ import annotations

from gateway.store.db import Connection

HOUR_S = 3600.0


def update(conn: Connection, running_metric: str, cycles_metric: str, now: int, grace_ms: int) -> int:
    """Fold every newly closed window into the meters; return windows counted."""
    counted = 0
    devices = dict(conn.execute("SELECT id, name FROM devices").fetchall())
    for meter, metric in (("hours", running_metric), ("cycles", cycles_metric)):
        row = conn.execute("SELECT id FROM metrics WHERE name = ?", (metric,)).fetchone()
        if row is None:
            continue
        metric_id = row[0]
        state = {d: (v, raw, upto) for d, v, raw, upto in conn.execute(
            "SELECT device_id, value, last_raw, upto_ms FROM equipment_meters WHERE meter = ?", (meter,))}
        for dev_id, name in devices.items():
            value, last_raw, upto = state.get(name, (0.0, None, -1))
            changed = False
            for wstart, window_s, is_bool, count, true_count, total, last in conn.execute(
                    "SELECT wstart_ms, window_s, is_bool, count, true_count, sum, last FROM windows "
                    "WHERE device_id = ? AND metric_id = ? AND wstart_ms > ? AND wstart_ms + window_s * 1000 + ? <= ? "
                    "ORDER BY wstart_ms", (dev_id, metric_id, upto, grace_ms, now)):
                if meter == "hours":
                    share = true_count / count if is_bool else min(1.0, max(0.0, total / count))
                    value += share * window_s / HOUR_S
                elif last is not None:
                    if last_raw is None:
                        value = float(last)
                    else:
                        value += last - last_raw if last >= last_raw else last
                    last_raw = float(last)
                upto = wstart
                changed = True
                counted += 1
            if changed:
                conn.execute(
                    "INSERT INTO equipment_meters (device_id, meter, value, last_raw, upto_ms) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (device_id, meter) DO UPDATE SET value = excluded.value, "
                    "last_raw = excluded.last_raw, upto_ms = excluded.upto_ms", (name, meter, value, last_raw, upto))
    return counted


def readings(conn: Connection) -> dict[str, dict[str, float]]:
    """Device → {"hours": ..., "cycles": ...} as the meters stand."""
    out: dict[str, dict[str, float]] = {}
    for device, meter, value in conn.execute("SELECT device_id, meter, value FROM equipment_meters"):
        out.setdefault(device, {})[meter] = value
    return out
