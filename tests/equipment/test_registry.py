"""The registry: records, plans, import and export (CLI and facade), clear errors naming row and field;
maintenance alerts raised by the check and closed by a service done; device health from the alert log."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gateway.core.models import now_ms
from gateway.equipment.registry import RowErrors

DOC = {"equipment": [
    {"device_id": "fridge-1", "kind": "mqtt", "brand": "Haier", "model": "SC-240", "serial": "HR2024-0042",
     "location": "kitchen", "purchased": "2024-03-01", "life_years": 8, "warranty_end": "2026-03-01",
     "plans": [{"task": "clean condenser coil", "mode": "fixed", "every": "90d", "start": "2024-03-01"},
               {"task": "door gasket", "mode": "floating", "every_hours": 500}]},
    {"device_id": "printer-hot", "kind": "escpos", "brand": "Xprinter", "model": "XP-80C", "location": "hot line"},
]}


def cli(*args, input=None):  # noqa: A002
    from gateway.cli import main

    return CliRunner().invoke(main, list(args), input=input)


def test_import_export_round_trip_through_the_facade(eq):
    assert eq.import_rows(DOC["equipment"]) == {"devices": 2, "plans": 2}
    out = eq.export_doc()
    assert out["equipment"][0]["plans"][0] == {"task": "clean condenser coil", "mode": "fixed", "every": "90d",
                                               "start": "2024-03-01"}
    assert eq.import_rows(out["equipment"]) == {"devices": 2, "plans": 2}  # idempotent: same plans updated
    assert eq.export_doc() == out
    dev = eq.device("fridge-1")
    assert (dev["brand"], dev["serial"], dev["end_of_life"]) == ("Haier", "HR2024-0042", "2032-03-01")


@pytest.mark.parametrize(("row", "message"), [
    ({"device_id": "fridge 1"}, "row 1 (fridge 1), device_id: expected [A-Za-z0-9_.-]{1,64}"),
    ({"device_id": "f1", "purchased": "2024/03/01"},
     'row 1 (f1), purchased: expected a date YYYY-MM-DD, found "2024/03/01"'),
    ({"device_id": "f1", "life_years": "ten"}, 'row 1 (f1), life_years: expected a number, found "ten"'),
    ({"device_id": "f1", "colour": "red"}, "row 1 (f1), colour: not a field"),
    ({"device_id": "f1", "plans": [{"task": "x", "every": "90d"}]}, 'row 1 (f1), plan 1: plans.mode: choose "fixed"'),
    ({"device_id": "f1", "plans": [{"task": "x", "mode": "fixed"}]}, "plan 1: plans: give at least one trigger"),
    ({"device_id": "f1", "plans": [{"task": "x", "mode": "fixed", "every": 90}]}, "plan 1: plans.every: don't know"),
])
def test_bad_rows_are_named_and_nothing_is_imported(eq, row, message):
    with pytest.raises(RowErrors) as err:
        eq.import_rows([DOC["equipment"][1], row])
    assert message.replace("row 1", "row 2") in str(err.value), str(err.value)
    assert eq.export_doc() == {"equipment": []}


def test_cli_import_export_csv_and_json(tmp_path):
    from realparts import config_text, free_port

    config = tmp_path / "storegw.toml"
    config.write_text(config_text(tmp_path / "data", local_port=free_port(), hq_port=free_port(),
                                  web_port=free_port()))
    src = tmp_path / "equipment.json"
    src.write_text(json.dumps(DOC))
    res = cli("equipment", "import", str(src), "--config", str(config))
    assert res.exit_code == 0, res.output
    assert "imported 2 devices and 2 maintenance plans" in res.output
    res = cli("equipment", "export", "--config", str(config))
    assert json.loads(res.output)["equipment"][0]["device_id"] == "fridge-1"
    res = cli("equipment", "export", "--format", "csv", "--config", str(config))
    lines = res.output.splitlines()
    assert lines[0] == "device_id,kind,brand,model,serial,location,purchased,life_years,warranty_end"
    assert lines[1].startswith("fridge-1,mqtt,Haier,SC-240,HR2024-0042,kitchen,2024-03-01,8.0,2026-03-01")
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,brand,purchased\nfr-2,Midea,2025-01-01\nfr-3,Midea,01/02/2025\n")
    res = cli("equipment", "import", str(bad), "--config", str(config))
    assert res.exit_code == 1
    assert 'row 2 (fr-3), purchased: expected a date YYYY-MM-DD, found "01/02/2025"' in res.output
    good = tmp_path / "good.csv"
    good.write_text("device_id,brand,purchased\nfr-2,Midea,2025-01-01\n")
    assert "1 devices and 0 plans would be imported" in cli("equipment", "import", str(good), "--dry-run",
                                                            "--config", str(config)).output
    assert cli("equipment", "import", "x.txt", "--config", str(config)).exit_code == 1
    assert "Example:" in cli("equipment", "import", "--help").output


def test_meter_plan_overdue_then_closed_by_a_service_done(gw, eq):
    from gateway.core.models import Reading

    eq.import_rows([{"device_id": "fryer-1", "plans": [
        {"task": "change oil", "mode": "floating", "every_hours": 1}]}])
    # 2 hours of 60 s windows with running = true, written as telemetry (the meters follow the windows)
    start = now_ms() - 3 * 3600_000
    readings = [Reading("fryer-1", start + i * 30_000, {"running": True}, digest=f"{i:032x}", stamped=True)
                for i in range(2 * 120)]
    gw.store.writer.call(lambda c: gw.telemetry.write_batch(c, readings))
    eq.run_check()
    meter = eq.device("fryer-1")["meters"]
    assert meter["hours"] == pytest.approx(2.0, abs=0.05)
    due = eq.maintenance_due(now_ms())
    assert [(d["device_id"], d["state"], d["axis"], d["due_hours"]) for d in due] == [
        ("fryer-1", "overdue", "hours", 1.0)]
    plan_id = due[0]["plan_id"]
    assert gw.alerts.is_active(f"maint:over:{plan_id}")
    state = eq.record_done(plan_id, who=7, what="oil changed, filter cleaned", parts="oil 20 L")
    assert state == "ok" and not gw.alerts.is_active(f"maint:over:{plan_id}")
    done = eq.device("fryer-1")["done"][0]
    assert (done["who"], done["hours"], done["parts"]) == (7, pytest.approx(2.0, abs=0.05), "oil 20 L")
    assert eq.maintenance_due(now_ms()) == []
    rows = gw.store.read().execute("SELECT state, rule FROM alert_log WHERE device = 'fryer-1' ORDER BY id").fetchall()
    assert rows == [("raised", "maintenance-overdue"), ("cleared", "maintenance-overdue")]


def test_end_of_life_alert(gw, eq):
    eq.import_rows([{"device_id": "ice-1", "purchased": "2016-01-01", "life_years": 10}])
    eq.run_check()
    active = gw.alerts.active["eol:ice-1"]
    assert (active.rule, active.kind) == ("end-of-life", "maintenance")


def test_device_health_from_the_alert_log(gw, eq):
    t0 = now_ms() - 7 * 86_400_000
    day = 86_400_000

    def write(c):
        a = gw.alerts
        a.raise_(c, "offline:fridge-1", kind="offline", rule="device-offline", device="fridge-1", severity="major",
                 ts_ms=t0 + day)
        a.clear(c, "offline:fridge-1", ts_ms=t0 + 2 * day)
        a.raise_(c, "rule:hot:fridge-1", kind="threshold", rule="hot", device="fridge-1", severity="major",
                 ts_ms=t0 + 3 * day)
        a.clear(c, "rule:hot:fridge-1", ts_ms=t0 + 3 * day + day // 10 * 7)
    gw.store.writer.call(write)
    eq.import_rows([{"device_id": "fridge-1"}, {"device_id": "fridge-2"}])
    got = {h["device_id"]: h for h in eq.device_health(t0, t0 + 7 * day)}
    f1 = got["fridge-1"]
    assert (f1["uptime_pct"], f1["alarm_s"], f1["faults"]) == (pytest.approx(85.71, abs=0.01), 60480, 2)
    # 100 × (6/7) × (1 − 0.1) − 5 × 2 = 67.1 → 67
    assert f1["score"] == 67
    assert got["fridge-2"]["score"] == 100
    series = eq.health_series(days=14)
    assert len(series["fridge-1"]["score"]) == 14
