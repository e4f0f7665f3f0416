"""The rule engine's stored state, in-process: a pending breach's start survives a restart when its last
breaching reading is recent (``alerts.pending_resume``) and is dropped when it is older; the cycles meter
follows a device's counter through a reset; the equipment service reports in health."""

from __future__ import annotations

import pytest

from gateway.core.models import Reading, now_ms

RULE = """
[alerts]
pending_resume = "{resume}"

[[alerts.rules]]
name = "fridge-warm"
metric = "temp_c"
above = 8.0
for = "1h"
"""


def _reading(device, ts, **metrics):
    return Reading(device, ts, metrics, digest=f"{ts:032x}", stamped=True)


@pytest.mark.parametrize(("resume", "kept"), [("15m", True), ("5m", False)])
def test_a_pending_breach_resumes_only_when_recent(make_gw, resume, kept):
    gw = make_gw(RULE.format(resume=resume), sample=False)
    start = now_ms() - 20 * 60_000
    batch = [_reading("fridge-1", start, temp_c=9.0), _reading("fridge-1", start + 10 * 60_000, temp_c=9.5)]
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, batch))
    assert gw.telemetry.rules._pending["rule:fridge-warm:fridge-1"].since_ms == start
    gw.stop()
    again = make_gw(RULE.format(resume=resume), sample=False)  # the same data dir
    pending = again.telemetry.rules._pending.get("rule:fridge-warm:fridge-1")
    assert (pending is not None) == kept
    if kept:
        assert pending.since_ms == start  # the timer runs on from the breach's start, not from the restart
    rule = again.cfg.alerts.rules[0]
    assert again.telemetry.rules.state(rule, "fridge-1") == ("pending" if kept else "normal")


def test_cycles_meter_follows_the_counter_through_a_reset(gw, eq):
    t0 = (now_ms() - 3600_000) // 60_000 * 60_000
    counts = [100, 150, 10, 30]  # the device's own counter; it restarted after 150
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(
        c, [_reading("mixer-1", t0 + i * 120_000, cycles=n) for i, n in enumerate(counts)]))
    eq.run_check()
    assert eq.device("mixer-1")["meters"]["cycles"] == 180  # 100, +50, reset +10, +20
    assert gw.health()["equipment"] == {"registered": 0, "plans": 0, "overdue": 0, "checks": 1}
