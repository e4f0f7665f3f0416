"""Alert rules across restarts, with a real `storegw run` and real Mosquitto:

- SIGKILL at 70 % of a rule's ``for`` (minute 7 of 10, scaled to 14 s of 20 s): after the restart the
  alert is raised at the rule's ``for`` from the breach's start, ± 5 s, not ``for`` after the restart.
  ``STOREGW_REAL_SCALE=1`` runs the real 10-minute rule with the kill at minute 7 (about 11 minutes).
- no data is its own state: a device that keeps talking but stops sending the rule's metric raises the
  rule's no-data alert (kind ``no-data``) and leaves the alarm as it was; values again clear both.
- no no-data storm: devices whose last values are older than ``no_data`` when the gateway comes back
  (it was down longer than that) get a full ``no_data`` of grace and raise nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from realparts import equipment, wait_for

from gateway.hq.watch import HQCollector

pytestmark = pytest.mark.slow

REAL_SCALE = os.environ.get("STOREGW_REAL_SCALE") == "1"


def rules(for_: str, no_data: str = "0s") -> str:
    return f"""
[alerts]
device_offline_after = "1h"
no_data_after = "{no_data}"

[[alerts.rules]]
name = "fridge-warm"
devices = "fridge-*"
metric = "temp_c"
above = 8.0
for = "{for_}"
clear_below = 6.0
"""


class Fridge:
    """A fridge publishing its own timestamped readings once a second (QoS 1) until stopped."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.client = equipment(port, f"sim-{name}")
        self.values: dict[str, float] = {"temp_c": 4.0}
        self.first_breach_ms: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Fridge:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.send()

    def send(self) -> None:
        ts = int(time.time() * 1000)
        values = dict(self.values)
        if values.get("temp_c", 0) > 8 and self.first_breach_ms is None:
            self.first_breach_ms = ts
        self.client.publish(f"devices/{self.name}/telemetry", json.dumps({"ts": ts, **values}), qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def setup(broker, write_config, gateway_process, extra):
    cfg = write_config(local_port=broker.port, hq_port=broker.port, uplink='client_id = "hq-side"', extra=extra)
    hq = HQCollector("127.0.0.1", broker.port, client_id="hq-test").start()
    return cfg, hq, gateway_process(cfg)


def raised(hq, rule, kind="threshold"):
    return [a for a in hq.alert_states(rule) if a["state"] == "raised" and a["kind"] == kind]


def test_kill_9_at_70_percent_of_for_raises_on_time_after_restart(broker, write_config, gateway_process):
    for_s, kill_at = (600, 420) if REAL_SCALE else (20, 14)
    cfg, hq, gw = setup(broker, write_config, gateway_process, rules(f"{for_s}s"))
    gw.start()
    fridge = Fridge(broker.port, "fridge-1").start()
    try:
        time.sleep(2)
        fridge.values["temp_c"] = 9.5
        wait_for(lambda: fridge.first_breach_ms, timeout=5, what="breach")
        t0 = fridge.first_breach_ms / 1000
        time.sleep(max(0.0, t0 + kill_at - time.time()))
        gw.kill()
        assert not raised(hq, "fridge-warm")
        gw.start()
        found = wait_for(lambda: raised(hq, "fridge-warm"), timeout=for_s + 20, what="the rule's alert")
        received = time.time()
    finally:
        fridge.stop()
        hq.stop()
    alert_ts = _epoch(found[0]["ts"])
    due = t0 + for_s
    print(f"for={for_s}s killed at {kill_at}s: raised at {alert_ts - t0:.1f}s after the breach began, "
          f"at HQ {received - t0:.1f}s")
    assert abs(alert_ts - due) <= 5, f"raised {alert_ts - t0:.1f}s after the breach began, due at {for_s}s"
    assert received - due <= 6, f"reached HQ {received - t0:.1f}s after the breach began"
    assert len(found) == 1


def test_no_data_is_not_an_alarm_and_values_clear_it(broker, write_config, gateway_process):
    cfg, hq, gw = setup(broker, write_config, gateway_process, rules("0s", no_data="3s"))
    gw.start()
    fridge = Fridge(broker.port, "fridge-1")
    try:
        fridge.values = {"temp_c": 9.0, "door": 0}
        fridge.send()
        wait_for(lambda: raised(hq, "fridge-warm"), timeout=10, what="the threshold alert")
        fridge.values = {"door": 0}  # still talking, but no temperature
        fridge.start()
        nodata = wait_for(lambda: raised(hq, "fridge-warm", "no-data"), timeout=15, what="the no-data alert")
        assert nodata[0]["severity"] == "warning" and nodata[0]["episode"] != raised(hq, "fridge-warm")[0]["episode"]
        states = {(a["kind"], a["state"]) for a in hq.alert_states("fridge-warm")}
        assert ("threshold", "cleared") not in states  # the alarm keeps its state while there is no data
        fridge.values = {"temp_c": 5.0, "door": 0}
        wait_for(lambda: {("no-data", "cleared"), ("threshold", "cleared")}
                 <= {(a["kind"], a["state"]) for a in hq.alert_states("fridge-warm")}, timeout=10,
                 what="values clear both")
    finally:
        fridge.stop()
        hq.stop()


def test_no_no_data_storm_after_a_restart(broker, write_config, gateway_process):
    cfg, hq, gw = setup(broker, write_config, gateway_process, rules("0s", no_data="4s"))
    gw.start()
    fridges = [Fridge(broker.port, f"fridge-{i}") for i in range(6)]
    try:
        for f in fridges:
            f.start()
        time.sleep(3)
        gw.kill()
        for f in fridges:
            f.stop()  # the devices pause too (a power cut), longer than no_data
        time.sleep(6)
        gw.start()
        fridges = [Fridge(broker.port, f"fridge-{i}").start() for i in range(6)]
        time.sleep(7)  # past the grace: the series are alive again, none is no-data
        assert not raised(hq, "fridge-warm", "no-data")
        for f in fridges[:2]:
            f.values = {"door": 0}  # two stop sending the temperature: exactly those two
        wait_for(lambda: len(raised(hq, "fridge-warm", "no-data")) == 2, timeout=15, what="two no-data alerts")
        time.sleep(2)
        assert sorted(a["device"] for a in raised(hq, "fridge-warm", "no-data")) == ["fridge-0", "fridge-1"]
    finally:
        for f in fridges:
            f.stop()
        hq.stop()


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
