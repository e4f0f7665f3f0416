"""Drift from a device's own weekly profile (median/MAD per weekday x hour, two hours running, hysteresis),
quiet without history and by default; and the SVG sparkline (gaps, scale, no style attribute)."""

from __future__ import annotations

import pytest

from gateway.core.models import Reading, now_ms
from gateway.equipment.drift import HOUR_MS, WEEK_MS, robust_z
from web.charts import sparkline


def _readings(device, ts_list, value):
    return [Reading(device, ts, {"temp_c": value}, digest=f"{ts:032x}", stamped=True) for ts in ts_list]


@pytest.fixture
def drifting(make_gw):
    gw = make_gw('[equipment]\ndrift_metrics = ["temp_c"]\n', sample=False)
    return gw, gw.services["equipment"]


def test_two_hours_off_the_weekly_profile_raise_and_back_within_clear_z_clears(drifting):
    gw, eq = drifting
    now = now_ms()
    last = (now - eq.settle_ms) // HOUR_MS * HOUR_MS - HOUR_MS
    usual = [4.0, 4.1, 3.9, 4.05]

    def history(c):
        for hour in (last - HOUR_MS, last, last + HOUR_MS):
            for k, mean in enumerate(usual, start=1):
                c.execute("INSERT INTO equipment_hourly VALUES ('fridge-1', 'temp_c', ?, ?, 60)",
                          (hour - k * WEEK_MS, mean))
    gw.store.writer.call(history)
    # one hour off only: noise, nothing raised
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, _readings("fridge-1", [last + 600_000], 12.0)))
    gw.store.writer.call(lambda c: eq.drift.run(c, now, eq.settle_ms))
    assert not gw.alerts.is_active("drift:fridge-1:temp_c")
    # the hour before was off too: a drift
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, _readings("fridge-1", [last - HOUR_MS + 600_000],
                                                                         12.0)))
    eq.drift.done_hour = last - 2 * HOUR_MS  # judge both hours again
    gw.store.writer.call(lambda c: eq.drift.run(c, now, eq.settle_ms))
    alert = gw.alerts.active["drift:fridge-1:temp_c"]
    assert (alert.rule, alert.kind, alert.value) == ("metric-drift", "store-health", 12.0)
    # the next hour is back to usual: cleared
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, _readings("fridge-1", [last + HOUR_MS + 600_000],
                                                                         4.2)))
    gw.store.writer.call(lambda c: eq.drift.run(c, now + HOUR_MS, eq.settle_ms))
    assert not gw.alerts.is_active("drift:fridge-1:temp_c")


def test_no_drift_without_enough_weeks_or_when_not_configured(make_gw):
    gw = make_gw(sample=False)
    eq = gw.services["equipment"]
    assert eq.drift.run(gw.store.read(), now_ms(), eq.settle_ms) == 0  # drift_metrics empty: off


def test_robust_z_has_a_floor_for_flat_histories():
    z, med = robust_z(4.05, [4.0, 4.0, 4.0, 4.0])
    assert med == 4.0 and abs(z) < 1  # MAD 0: the floor (0.1 here) keeps a wobble from being a drift
    z, _ = robust_z(100.0, [10.0, 11.0, 9.0, 10.5])
    assert z > 6


def test_sparkline_gaps_scale_and_no_style():
    svg = str(sparkline([None, 90.0, 100.0, None, 95.0], label="uptime", lo=0, hi=100, unit="%"))
    assert svg.startswith('<svg class="spark"') and "style=" not in svg and "<script" not in svg
    assert svg.count("<polyline") == 1 and 'class="spark-point"' in svg  # 90-100 a line, 95 alone a point
    assert 'aria-label="uptime: 95% (last of 5)"' in svg
    empty = str(sparkline([None, None], label="faults"))
    assert "faults: no data" in empty and "<polyline" not in empty
    flat = str(sparkline([3, 3, 3]))
    assert "nan" not in flat.lower()
