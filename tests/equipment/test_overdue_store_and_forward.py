"""Maintenance computed on the board with HQ unreachable: a real `storegw run`, real Mosquitto for the
store and for HQ. HQ is down when a plan falls overdue (and a device reaches its end of life); the
alerts are raised on the board at once and reach HQ, schema-checked, when HQ's broker comes back."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from realparts import wait_for

from gateway.hq.watch import HQCollector

pytestmark = pytest.mark.slow


def test_overdue_with_hq_down_is_delivered_when_it_returns(mosquitto_factory, write_config, gateway_process,
                                                           tmp_path):
    from gateway.cli import main

    local = mosquitto_factory("local")
    hq_broker = mosquitto_factory("hq", persistence=True)
    # HQ's durable consumer has a session on its broker, then HQ goes down
    HQCollector("127.0.0.1", hq_broker.port, client_id="hq-durable", persistent=True).start().stop()
    hq_broker.stop()
    cfg = write_config(local_port=local.port, hq_port=hq_broker.port,
                       extra='\n[equipment]\ncheck_every = "1s"\n')
    doc = {"equipment": [
        {"device_id": "fryer-1", "brand": "Rational", "purchased": "2015-01-01", "life_years": 10,
         "plans": [{"task": "descale", "mode": "fixed", "every": "2s", "start": "2026-01-01"}]}]}
    (tmp_path / "eq.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["equipment", "import", str(tmp_path / "eq.json"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    gw = gateway_process(cfg).start()
    # overdue and end of life raised on the board, committed to the outbox, waiting for HQ
    health = wait_for(lambda: (h := gw.health())["equipment"]["overdue"] >= 1 and h["outbox"]["alerts"]["depth"] >= 2
                      and h, timeout=20, what="the overdue alert on the board")
    assert not health["uplink"]["connected"]
    hq_broker.start()
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-durable", persistent=True).start()
    try:
        got = wait_for(lambda: {a["rule"]: a for a in hq.alert_states() if a["state"] == "raised"}
                       if len(hq.alert_states()) >= 2 else None, timeout=30, what="alerts at HQ")
    finally:
        hq.stop()
    over = got["maintenance-overdue"]
    assert (over["kind"], over["device"], over["severity"]) == ("maintenance", "fryer-1", "major")
    assert "descale" in over["text"]
    assert got["end-of-life"]["device"] == "fryer-1"
    assert wait_for(lambda: gw.health()["outbox"]["alerts"]["depth"] == 0, timeout=10, what="outbox drained")
