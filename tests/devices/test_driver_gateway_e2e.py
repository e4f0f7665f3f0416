"""A scanner through the whole gateway: unplug and replug → one raised and one cleared alert at HQ."""

from __future__ import annotations

from pathlib import Path

from driverkit import wait_for

from devices.scanner.simulator import ScannerSimulator
from gateway import config
from gateway.app import build
from gateway.hq.watch import HQCollector


def _device(gw, device_id: str) -> dict:
    return next(d for d in gw.health()["devices"] if d["id"] == device_id)


def test_scanner_unplug_replug_alerts_once_at_hq(mosquitto_factory, write_config, tmp_path: Path) -> None:
    local, hq_broker = mosquitto_factory("local"), mosquitto_factory("hq")
    sim = ScannerSimulator(tmp_path / "by-id" / "usb-scanner-if00")
    sim.link.parent.mkdir()
    sim.plug()
    devices = f'\n[[devices]]\nid = "scanner-bar"\nkind = "scanner"\nport = "{sim.port}"\n'
    path = write_config(local_port=local.port, hq_port=hq_broker.port, extra=devices)
    hq = HQCollector("127.0.0.1", hq_broker.port, client_id="hq-devices").start()
    gw = build(config.load(str(path)))
    try:
        gw.start(web=False)
        wait_for(lambda: _device(gw, "scanner-bar")["available"], timeout=10, what="scanner available")
        sim.table("T12-3f9a")
        wait_for(lambda: _device(gw, "scanner-bar")["events"] == 1, what="first scan counted")

        sim.unplug()
        wait_for(lambda: not _device(gw, "scanner-bar")["available"], timeout=10, what="scanner unavailable")
        sim.plug()
        wait_for(lambda: _device(gw, "scanner-bar")["available"], timeout=3, what="scanner back within 3s")
        sim.scan("]E00012345678905")
        sim.table("T7")
        wait_for(lambda: _device(gw, "scanner-bar")["events"] == 3, what="scans after replug counted")

        def both() -> list[str] | None:
            states = sorted(a["state"] for a in hq.alert_states("device-unavailable"))
            return states if len(states) >= 2 else None

        wait_for(both, timeout=20, what="raised and cleared at HQ")
        wait_for(lambda: gw.health()["outbox"]["alerts"]["depth"] == 0, timeout=20, what="alerts sent")
        alerts = hq.alert_states("device-unavailable")
        assert sorted(a["state"] for a in alerts) == ["cleared", "raised"]
        assert {a["device"] for a in alerts} == {"scanner-bar"}
        assert len({a["episode"] for a in alerts}) == 1
        assert gw.alerts.raised_total == 1
        assert gw.alerts.cleared_total == 1
    finally:
        gw.stop()
        hq.stop()
        sim.unplug()
