"""The health service on a real gateway: a dead busy hour raises sales-anomaly (and a normal one clears
it), a complaint surge raises complaint-anomaly, both as ordinary spine alerts queued for HQ; the daily
report is caught up after a gateway that was down at close; bad [health] values are refused by key."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from gateway.config import parse
from gateway.core.errors import ConfigError
from gateway.health import report as rpt

DAY = 86_400_000
HOUR = 3_600_000
WEEK = 7 * DAY


def _lines(gw: Any, ts_list: list[int], qty: int = 1) -> None:
    def write(c: Any) -> None:
        for ts in ts_list:
            c.execute("INSERT INTO ord_lines (round_id, session_id, table_id, item_id, name_zh, name_en, qty, "
                      "unit_cents, station, created_ms) VALUES (0, 0, 'A1', 'c01', 'x', 'x', ?, 100, 'cold', ?)",
                      (qty, ts))
    gw.store.writer.call(write)


def _states(gw: Any, rule: str) -> list[str]:
    return [r[0] for r in gw.store.read().execute("SELECT state FROM alert_log WHERE rule = ? ORDER BY id", (rule,))]


def test_sales_drop_raises_and_a_normal_hour_clears(gw: Any) -> None:
    health = gw.services["health"]
    hour = 1_795_000_000_000 // HOUR * HOUR
    # four past weeks: 50 dishes in this weekday-hour and the next
    _lines(gw, [hour - w * WEEK + k * 60_000 for w in (1, 2, 3, 4) for k in range(50)])
    _lines(gw, [hour + HOUR - w * WEEK + k * 60_000 for w in (1, 2, 3, 4) for k in range(50)])
    _lines(gw, [hour + k * 600_000 for k in range(3)])  # this hour: 3 dishes in 45 minutes
    health.check(hour + 45 * 60_000)
    assert gw.alerts.is_active("health:sales") and _states(gw, "sales-anomaly") == ["raised"]
    health.check(hour + 50 * 60_000)  # still low: no second episode
    assert _states(gw, "sales-anomaly") == ["raised"]
    _lines(gw, [hour + HOUR + k * 60_000 for k in range(40)])  # the next hour is normal again
    health.check(hour + HOUR + 45 * 60_000)
    assert _states(gw, "sales-anomaly") == ["raised", "cleared"]
    sent = [json.loads(r[0]) for r in gw.store.read().execute(
        "SELECT payload FROM outbox WHERE topic LIKE '%/alerts' ORDER BY seq")]
    assert [(m["rule"], m["state"], m["kind"]) for m in sent if m["rule"] == "sales-anomaly"] == [
        ("sales-anomaly", "raised", "store-health"), ("sales-anomaly", "cleared", "store-health")]


def test_quiet_hours_and_no_history_raise_nothing(gw: Any) -> None:
    health = gw.services["health"]
    hour = 1_795_000_000_000 // HOUR * HOUR
    _lines(gw, [hour - w * WEEK for w in (1, 2, 3, 4)], qty=3)  # 3 dishes an hour: under the volume floor
    health.check(hour + 50 * 60_000)
    assert health.last["sales"] == "quiet" and not _states(gw, "sales-anomaly")


def test_complaint_surge_raises(gw: Any, svc: Any) -> None:
    health = gw.services["health"]
    mem = gw.services["members"]
    svc.open_table("A1", 2, "mgr")
    for cat in ("taste", "taste", "wait", "hygiene"):
        mem.complain("A1", None, cat, "", "mgr")
    health.check()
    assert _states(gw, "complaint-anomaly") == ["raised"]
    assert health.last["complaints"] == "surge"


def test_missed_report_is_caught_up_once(gw: Any) -> None:
    health = gw.services["health"]
    now = 1_795_000_000_000
    today = rpt.day_of(health.tz, now)
    yesterday = rpt.day_of(health.tz, now - DAY)
    since, _ = rpt.day_window(health.tz, yesterday)
    _lines(gw, [since + 12 * HOUR])  # the store traded yesterday
    health.check(now)  # the gateway was down at close: the next check makes the report
    assert health.stored(yesterday) is not None and health.stored(today) is None
    health.check(now + 60_000)
    assert health.days() == [yesterday]
    topics = [r[0] for r in gw.store.read().execute("SELECT topic FROM outbox WHERE topic LIKE '%/reports/daily'")]
    assert len(topics) == 1


@pytest.mark.parametrize(("key", "value"), [("baseline_weeks", "2"), ("sales_z", "0"), ("complaint_p", "1.5")])
def test_bad_health_values_name_the_key(tmp_path: Any, key: str, value: str) -> None:
    text = f'[store]\nid = "s"\ndata_dir = "{tmp_path.as_posix()}"\n[health]\n{key} = {value}\n'
    with pytest.raises(ConfigError, match=f"health.{key}"):
        parse(tomllib.loads(text))
